"""Worker processes for the worker tier: `python -m airt_worker` on free localhost ports.

Used by conftest's fixtures and by tests that need a worker of their own (drain, queue limits).
Readiness is polled with a deadline; `stop` sends SIGTERM and waits for the exit code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from airt_dev.ports import bind_failed, free_port
from airt_dev.wait import WaitTimeoutError, wait_for

ROOT = Path(__file__).resolve().parents[2]
START_DEADLINE_S = 120.0


@dataclass
class Worker:
    """One running worker process and its addresses."""

    name: str
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path
    args: list[str] = field(default_factory=list)
    restarts: int = 0
    env: dict[str, str] | None = None

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def base(self) -> str:
        return f"http://{self.http}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            body: bytes = r.read()
            return body.decode()

    def metric(self, name: str) -> float:
        """Sum of every sample of `name` (exact name, any labels)."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_ready(self, deadline_s: float = START_DEADLINE_S) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                if bind_failed(self.log()) and self.restarts < 3:
                    self._restart_on_new_ports()  # another process took a port meanwhile
                    return False
                raise RuntimeError(f"worker {self.name} exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base}/v2/health/ready", timeout=2) as r:
                    return bool(r.status == 200)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        try:
            wait_for(ready, deadline_s, f"worker {self.name} to be ready", interval_s=0.1)
        except WaitTimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log()}") from None

    def _restart_on_new_ports(self) -> None:
        self.restarts += 1
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        ports = {
            "--http-port": self.http_port,
            "--grpc-port": self.grpc_port,
            "--metrics-port": self.metrics_port,
        }
        self.args = [
            str(ports[self.args[i - 1]]) if i and self.args[i - 1] in ports else a
            for i, a in enumerate(self.args)
        ]
        with self.log_path.open("ab") as log:
            log.write(b"\n[workerproc] a port was taken: restarting on new ports\n")
            self.proc = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=self.env
            )

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


def spawn(
    name: str,
    model: Path,
    log_dir: Path,
    *args: str,
    config: Path | None = None,
    env: dict[str, str] | None = None,
) -> Worker:
    """Start a worker; `env` adds to (or overrides) this process's environment."""
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    argv = [
        sys.executable,
        "-m",
        "airt_worker",
        "--model-path",
        str(model),
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--metrics-port",
        str(metrics_port),
        "--host",
        "127.0.0.1",
        "--threads",
        "1",
        *(["--config-file", str(config)] if config else []),
        *args,
    ]
    full_env = {**os.environ, **env} if env is not None else None
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=full_env)
    return Worker(name, proc, http_port, grpc_port, metrics_port, log_path, argv, env=full_env)
