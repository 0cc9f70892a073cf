"""Start and stop the servers under test — airt's worker, Triton (PyTriton), MLServer, KServe's
Python ModelServer — alike.

Called by bench/worker.py and bench/profile_worker.py. Every server gets the same cores (pinned
with `sched_setaffinity` before exec, inherited by its children), the same torch thread count and
the same batching settings (max batch, queue delay). Each runs in its own process group so that
`stop` ends exactly what was started (tritonserver and its Python-backend stubs included).
`batch_sizes()` returns rows -> batches as the server itself formed them: the v2 statistics
endpoint for airt and Triton, the runtime's own count for MLServer and KServe (they have no
such endpoint).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import BENCH, ROOT, free_port, http_json, http_ok, pinned, venv_python, wait_until


@dataclass(frozen=True)
class ModelSpec:
    """One benchmark model: its file stem, input and outputs (as the example builder makes it)."""

    name: str
    input: str
    dims: tuple[int, ...]
    outputs: tuple[str, ...]
    kind: str  # "overhead-bound" | "compute-bound"


MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec("mlp", "features", (64,), ("logits", "probabilities"), "overhead-bound"),
    "cnn": ModelSpec("cnn", "image", (3, 32, 32), ("logits",), "compute-bound"),
}


@dataclass(frozen=True)
class ServeSettings:
    """What every server gets, identically."""

    threads: int = 1
    max_batch: int = 32
    delay_us: int = 1000
    device: str = "cpu"
    cores: frozenset[int] = frozenset({0})


@dataclass
class Running:
    """A started server: its addresses, process and log."""

    server: str
    model: ModelSpec
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log_path: Path
    batch_log: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def batch_sizes(self) -> dict[int, int]:
        """Rows per executed batch -> number of such batches, since the server started."""
        return {rows: n for rows, (n, _) in self.batch_stats().items()}

    def batch_stats(self) -> dict[int, tuple[int, int | None]]:
        """Rows per batch -> (batches, nanoseconds in compute_infer, when the server says).

        compute_infer is the server's own clock around the model call: for airt the torch
        call; for Triton's Python backend it includes the hop to the PyTriton process.
        MLServer reports neither, so its runtime's count stands in, without times.
        """
        if self.batch_log is not None:
            if not self.batch_log.exists():
                return {}
            counts = json.loads(self.batch_log.read_text())
            return {int(k): (int(v), None) for k, v in counts.items()}
        doc = http_json(f"http://{self.http}/v2/models/{self.model.name}/stats")
        out: dict[int, tuple[int, int | None]] = {}
        for stat in doc["model_stats"][0].get("batch_stats", []):
            infer = stat["compute_infer"]
            out[int(stat["batch_size"])] = (int(infer["count"]), int(infer["ns"]))
        return out

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds so far: the whole process group, and the leader's main thread alone.

        For airt the main thread is the event loop (transports, data plane, batcher) and the
        other threads run the model; the split says where a shared core's time went.
        """
        tick = os.sysconf("SC_CLK_TCK")
        pgid = self.proc.pid

        def stat_cpu(path: Path) -> tuple[int, float]:
            fields = path.read_text().rsplit(")", 1)[1].split()
            return int(fields[2]), (int(fields[11]) + int(fields[12])) / tick

        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                group, cpu = stat_cpu(stat)
                if group == pgid:
                    total += cpu
        main = 0.0
        with contextlib.suppress(OSError, ValueError, IndexError):
            main = stat_cpu(Path(f"/proc/{pgid}/task/{pgid}/stat"))[1]
        return {"total": total, "main_thread": main}

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait()
        with contextlib.suppress(ProcessLookupError):  # children may outlive the leader
            os.killpg(pgid, signal.SIGKILL)


def _popen(argv: list[str], log_path: Path, cores: frozenset[int], env: dict[str, str]) -> Any:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            preexec_fn=pinned(set(cores)),
            start_new_session=True,
        )


def _launch(
    server: str,
    m: ModelSpec,
    argv: list[str],
    env: dict[str, str],
    s: ServeSettings,
    work: Path,
    ports: tuple[int, int],
    ready_timeout_s: float,
    batch_log: Path | None = None,
) -> Running:
    """Start one server on the shared cores and wait until the v2 API says the model is ready."""
    log = work / f"{server}-{m.name}.log"
    proc = _popen(argv, log, s.cores, env)
    r = Running(server, m, proc, ports[0], ports[1], log, batch_log=batch_log)
    wait_until(
        lambda: http_ok(f"http://{r.http}/v2/models/{m.name}/ready"),
        ready_timeout_s,
        server,
        proc,
        log,
    )
    return r


def start_airt(m: ModelSpec, models: Path, s: ServeSettings, work: Path) -> Running:
    http, grpc, metrics = free_port(), free_port(), free_port()
    argv = [
        sys.executable,
        "-m",
        "airt_worker",
        "--model-path",
        str(models / f"{m.name}.pt"),
        "--config-file",
        str(models / f"{m.name}.yaml"),
        "--device",
        s.device,
        "--threads",
        str(s.threads),
        "--batching.max-batch-size",
        str(s.max_batch),
        "--batching.max-queue-delay-microseconds",
        str(s.delay_us),
        "--host",
        "127.0.0.1",
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--log-level",
        "warning",
    ]
    r = _launch("airt", m, argv, dict(os.environ), s, work, (http, grpc), 180)
    r.extra["config"] = http_json(f"http://{r.http}/v2/models/{m.name}/config")
    return r


def start_triton(m: ModelSpec, models: Path, s: ServeSettings, work: Path) -> Running:
    http, grpc, metrics = free_port(), free_port(), free_port()
    py = venv_python("triton")
    argv = [
        str(py),
        str(BENCH / "peers" / "triton_server.py"),
        "--model",
        str(models / f"{m.name}.pt"),
        "--name",
        m.name,
        "--input",
        m.input,
        "--dims",
        ",".join(map(str, m.dims)),
        "--outputs",
        ",".join(m.outputs),
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--threads",
        str(s.threads),
        "--max-batch",
        str(s.max_batch),
        "--delay-us",
        str(s.delay_us),
        "--device",
        s.device,
    ]
    # The Python-backend stub must load the interpreter's own libpython (peers.md), not the OS's.
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env = {**os.environ, "LD_LIBRARY_PATH": f"{libdir}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    env.pop("VIRTUAL_ENV", None)
    r = _launch("triton", m, argv, env, s, work, (http, grpc), 240)
    r.extra["config"] = http_json(f"http://{r.http}/v2/models/{m.name}/config")
    return r


def start_mlserver(m: ModelSpec, models: Path, s: ServeSettings, work: Path) -> Running:
    http, grpc, metrics = free_port(), free_port(), free_port()
    root = work / f"mlserver-{m.name}"
    model_dir = root / m.name
    model_dir.mkdir(parents=True, exist_ok=True)
    batch_log = root / "batches.json"
    batch_log.unlink(missing_ok=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": http,
        "grpc_port": grpc,
        "metrics_port": metrics,
        "parallel_workers": 0,  # in-process: the default 1 adds a worker-process hop
        "gzip_enabled": False,  # its GZip middleware costs CPU and upsets tritonclient aio
        "debug": False,
    }
    (root / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": m.name,
        "implementation": "mlserver_runtime.TorchScriptRuntime",
        "max_batch_size": s.max_batch,
        "max_batch_time": s.delay_us / 1e6,
        "parameters": {
            "uri": str(models / f"{m.name}.pt"),
            "extra": {
                "threads": s.threads,
                "device": s.device,
                "outputs": list(m.outputs),
                "batch_log": str(batch_log),
            },
        },
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings))
    mlserver = venv_python("mlserver").parent / "mlserver"
    env = {**os.environ, "PYTHONPATH": str(BENCH / "peers")}
    env.pop("VIRTUAL_ENV", None)
    argv = [str(mlserver), "start", str(root)]
    return _launch("mlserver", m, argv, env, s, work, (http, grpc), 240, batch_log)


def start_kserve(m: ModelSpec, models: Path, s: ServeSettings, work: Path) -> Running:
    http, grpc = free_port(), free_port()
    root = work / f"kserve-{m.name}"
    root.mkdir(parents=True, exist_ok=True)
    batch_log = root / "batches.json"
    batch_log.unlink(missing_ok=True)
    argv = [
        str(venv_python("kserve")),
        str(BENCH / "peers" / "kserve_server.py"),
        "--model",
        str(models / f"{m.name}.pt"),
        "--name",
        m.name,
        "--outputs",
        ",".join(m.outputs),
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--threads",
        str(s.threads),
        "--device",
        s.device,
        "--batch-log",
        str(batch_log),
    ]
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    return _launch("kserve", m, argv, env, s, work, (http, grpc), 240, batch_log)


STARTERS = {
    "airt": start_airt,
    "triton": start_triton,
    "mlserver": start_mlserver,
    "kserve": start_kserve,
}


def start(server: str, m: ModelSpec, models: Path, s: ServeSettings, work: Path) -> Running:
    return STARTERS[server](m, models, s, work)
