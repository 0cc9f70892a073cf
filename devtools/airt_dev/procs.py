"""Background processes of the local-development tooling, tracked by pidfiles.

Called by realnode.py (containerd, kubelet, kube-router), modelstore.py and devjob.py (the
operator and the port-forward). They outlive the Python process that started them (`make dev`
leaves them running for `airt-dev down`), so a pidfile, not a Popen object, is what later calls
find them by. Written here rather than with a supervisor library because the whole need is
spawn / alive / stop on one machine, and because "alive" must not count zombies: a process that
a test started and stopped stays a zombie until its parent reaps it, and `kill(pid, 0)` still
succeeds on a zombie — stopping then waited for a dead process until its deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def _reaped_or_zombie(pid: int) -> bool:
    """True when pid has exited: reaped here if it is our child, or left as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def alive(pidfile: Path) -> int | None:
    """The PID in pidfile if that process still runs (not a zombie), else None."""
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return None if _reaped_or_zombie(pid) else pid


def spawn(pidfile: Path, log: Path, args: list[str], env: dict[str, str] | None = None) -> int:
    """Start args in a new session (it outlives us), output appended to log; record its PID."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    pidfile.write_text(str(proc.pid))
    return proc.pid


def stop(pidfile: Path, timeout_s: float = 15.0) -> None:
    """SIGTERM the recorded process, SIGKILL it after timeout_s, and forget the pidfile."""
    pid = alive(pidfile)
    if pid:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and alive(pidfile):
            time.sleep(0.05)
        if alive(pidfile):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
