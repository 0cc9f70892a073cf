"""Shared pieces of the benchmark harness: paths, CPU pinning, ports, readiness, result files.

Imported by every bench module (worker.py, operator_scale.py, profile_worker.py, plots.py) that
`bench/run.py` drives. Nothing here is a test: the harness measures and writes
`docs/benchmarks/*.json`; it never passes or fails on a number.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airt_dev.wait import WaitTimeoutError, wait_for

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = ROOT / "docs" / "benchmarks"
#: Peer virtual environments and built models live outside the repository.
CACHE = Path(os.environ.get("AIRT_BENCH_CACHE", Path.home() / ".cache" / "airt" / "bench"))
VENVS = Path(os.environ.get("AIRT_BENCH_VENVS", Path.home() / ".cache" / "airt" / "bench-venvs"))


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def server_cores() -> set[int]:
    """Cores the servers under test get: the first half of this process's cores (at least 1)."""
    cores = sorted(os.sched_getaffinity(0))
    return set(cores[: max(1, len(cores) // 2)])


def client_cores() -> set[int]:
    """Cores the load generator gets: the rest (the same core when there is only one)."""
    cores = sorted(os.sched_getaffinity(0))
    rest = cores[max(1, len(cores) // 2) :]
    return set(rest or cores)


def pinned(cores: set[int]) -> Callable[[], None]:
    """A `preexec_fn` that pins the child (and everything it starts) to `cores`."""

    def pin() -> None:
        os.sched_setaffinity(0, cores)

    return pin


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def http_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def wait_until(
    predicate: Callable[[], bool],
    timeout_s: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """The shared wait (airt_dev.wait), failing early when `proc` exits, with its log's tail."""

    def tail() -> str:
        return log.read_text(errors="replace")[-3000:] if log and log.exists() else ""

    def exited() -> str | None:
        if proc is None or proc.poll() is None:
            return None
        return f"process exited with {proc.returncode}\n{tail()}"

    try:
        wait_for(predicate, timeout_s, what, interval_s=0.2, abort=exited)
    except WaitTimeoutError as exc:
        raise TimeoutError(f"{exc}\n{tail()}") from None


def machine() -> dict[str, Any]:
    """What the numbers were taken on, recorded next to them."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "commit": git_head(),
        "cpu": model,
        "cores": cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": list(os.getloadavg()),
        "note": "other processes on this machine are not controlled: see loadavg_at_start",
    }


def git_head() -> str:
    """The commit the measured code came from (`+dirty` when the tree had changes)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head + ("+dirty" if dirty else "")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_result(name: str, doc: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    return path


def venv_python(peer: str) -> Path:
    return VENVS / peer / "bin" / "python"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
