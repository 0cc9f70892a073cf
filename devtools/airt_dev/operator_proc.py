"""Run the operator as a child process against the local cluster, and stop it cleanly.

Called by `make dev` (tools/dev.sh through `airt-dev operator`) and by the cluster and e2e test
tiers: the operator under test is the real `airt-operator run` process, not an in-process
imitation, so what the API server sees from it is what a deployment would see.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from airt_dev.ports import free_port
from airt_dev.wait import wait_for


@dataclass
class OperatorProcess:
    """A running `airt-operator run`; its log goes to `log_path`."""

    proc: subprocess.Popen[bytes]
    health_port: int
    log_path: Path

    @classmethod
    def start(
        cls,
        kubeconfig: Path,
        log_path: Path,
        namespaces: tuple[str, ...] = (),
        standalone: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> OperatorProcess:
        port = free_port()
        args = [
            sys.executable,
            "-m",
            "airt_operator.cli",
            "run",
            "--health-port",
            str(port),
        ]
        args.append("--standalone" if standalone else "--no-standalone")
        for ns in namespaces:
            args += ["--namespace", ns]
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), **(extra_env or {})}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        op = cls(proc, port, log_path)
        wait_for(op.healthy, 60, "the operator's /healthz")
        return op

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"operator exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=2
            ) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no cleanup, no peering goodbye (a crash, an OOM kill, a lost node)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
