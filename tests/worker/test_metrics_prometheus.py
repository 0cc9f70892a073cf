"""A real Prometheus scrapes a real worker through the real metrics sidecar, on localhost only.

The worker tier's observability check (issue 6). One module-scoped stack: the example models
(examples/build_models.py), the worker (`python -m airt_worker`) with its metrics on a free
loopback port, the sidecar (`python -m airt_metrics`) in front of it, and Debian's Prometheus
(/usr/bin/prometheus, installed by tools/install-prometheus.sh) started here with a generated
config that scrapes only 127.0.0.1 every second. The tests then drive the worker with tritonclient
and read everything back through Prometheus's HTTP query API:

- after N requests, PromQL on the request counter says N;
- every query of the chart's Grafana dashboard returns data. The GPU panels need `nv_gpu_*`
  series, which only a worker holding a GPU reports; on a machine without one they are checked
  against a stand-in worker that serves a fixed GPU page through a second real sidecar, and the
  real worker must then say `airt_gpu_telemetry_available 0`;
- with the worker killed, the sidecar still answers a scrape, saying `airt_worker_up 0`, and
  Prometheus sees it too (the last test: it kills the worker).

Waits poll with a deadline; nothing sleeps a fixed time or asserts on wall time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

from airt_dev.ports import free_port
from airt_dev.wait import wait_for as shared_wait_for

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "airt" / "dashboards" / "airt-models.json"
NAMESPACE = "team-a"
MODELDEPLOYMENT = "simple"
POD = "simple-5d8c7b9f4-x2k7q"
GPU_STANDIN = "gpu-standin"
REQUESTS = 25

# Values given to the dashboard's Grafana variables when its queries are sent to Prometheus.
GRAFANA_VARIABLES = {
    "$__rate_interval": "30s",
    "$__interval": "1s",
    "$namespace": ".*",
    "$modeldeployment": ".*",
    "$model": ".*",
}

# What a worker holding one GPU reports (values as NVML gives them), for the stand-in.
GPU_PAGE = """\
# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="GPU-4a1e9f5c-0000-0000-0000-000000000000"} 0.42
# HELP nv_gpu_memory_total_bytes GPU total memory, in bytes
# TYPE nv_gpu_memory_total_bytes gauge
nv_gpu_memory_total_bytes{gpu_uuid="GPU-4a1e9f5c-0000-0000-0000-000000000000"} 85899345920
# HELP nv_gpu_memory_used_bytes GPU used memory, in bytes
# TYPE nv_gpu_memory_used_bytes gauge
nv_gpu_memory_used_bytes{gpu_uuid="GPU-4a1e9f5c-0000-0000-0000-000000000000"} 21474836480
# HELP airt_gpu_telemetry_available 1 when GPU telemetry is read (NVML)
# TYPE airt_gpu_telemetry_available gauge
airt_gpu_telemetry_available 1
"""

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    """The shared wait, with a probe's connection and parse errors meaning "not yet"."""
    result: T = shared_wait_for(
        probe, timeout, what, interval_s=0.2, ignore=(OSError, ValueError, KeyError)
    )
    return result


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode()


@dataclass
class Process:
    """A child process whose output goes to a log file, shown when a test fails."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ({self.log}) ---\n" + "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=15)


def spawn(name: str, argv: list[str], logdir: Path, env: dict[str, str] | None = None) -> Process:
    log = logdir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    return Process(name, popen, log)


@dataclass
class Stack:
    """Everything the tests talk to; `processes` are stopped at module teardown."""

    tmp: Path
    worker_http: int = 0
    worker_metrics: int = 0
    sidecar: int = 0
    prometheus: int = 0
    model: str = ""
    processes: dict[str, Process] = field(default_factory=dict)

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.processes.values())

    def api(self, path: str, **params: str) -> Any:
        """The `data` of a Prometheus HTTP API answer; fails on an error such as bad PromQL."""
        url = f"http://127.0.0.1:{self.prometheus}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            doc = json.loads(http_get(url)[1])
        except urllib.error.HTTPError as err:
            raise AssertionError(f"{path} {params}: {err.read().decode()}") from err
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query."""
        result: list[dict[str, Any]] = self.api("query", query=promql)["result"]
        return result

    def label_values(self, label: str, match: str) -> list[str]:
        values: list[str] = self.api(f"label/{label}/values", **{"match[]": match})
        return values


@dataclass
class Grafana:
    """The dashboard's PromQL: panel targets and the variables' label_values() lookups."""

    exprs: dict[str, str]
    variables: dict[str, tuple[str, str]]  # variable name -> (metric selector, label)

    @classmethod
    def load(cls, path: Path = DASHBOARD) -> Grafana:
        doc = json.loads(path.read_text())
        exprs: dict[str, str] = {}

        def walk(panels: list[dict[str, Any]]) -> None:
            for panel in panels:
                walk(panel.get("panels", []))
                for target in panel.get("targets", []):
                    if target.get("expr"):
                        exprs[f"{panel['title']} [{target.get('refId', '?')}]"] = target["expr"]

        walk(doc["panels"])
        variables: dict[str, tuple[str, str]] = {}
        for var in doc["templating"]["list"]:
            if var["type"] != "query":
                continue
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            found = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
            assert found, f"variable {var['name']}: unexpected query {query!r}"
            variables[var["name"]] = (found.group(1), found.group(2))
        return cls(exprs, variables)

    @staticmethod
    def promql(expr: str) -> str:
        """`expr` as Prometheus must see it: Grafana's variables replaced by their All values."""
        for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
            expr = expr.replace(name, GRAFANA_VARIABLES[name])
        assert "$" not in expr, f"unreplaced Grafana variable in {expr!r}"
        return expr


def serve_gpu_standin() -> ThreadingHTTPServer:
    """A stand-in worker that reports one GPU, for machines without a GPU (see the docstring)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = GPU_PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    return server


def start_sidecar(stack: Stack, name: str, port: int, worker_url: str, md: str) -> None:
    stack.processes[name] = spawn(
        name,
        [
            sys.executable,
            *f"-m airt_metrics --host 127.0.0.1 --port {port} --worker-url {worker_url}".split(),
        ],
        stack.tmp,
        env={
            "POD_NAME": f"{md}-0" if md == GPU_STANDIN else POD,
            "POD_NAMESPACE": NAMESPACE,
            "AIRT_MODELDEPLOYMENT": md,
        },
    )
    wait_for(
        f"{name} /healthz",
        lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200 or None,
        timeout=30,
    )


def start_prometheus(stack: Stack, targets: list[int]) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: run tools/install-prometheus.sh (Debian's prometheus)")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ROOT / "charts" / "airt" / "alerts" / "airt-rules.yaml")],
        "scrape_configs": [
            {
                "job_name": "airt-models",
                # Like the ServiceMonitor: the sidecar's namespace/pod labels are the truth.
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in targets]}],
            }
        ],
    }
    config_file = stack.tmp / "prometheus.yml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    stack.prometheus = free_port()
    stack.processes["prometheus"] = spawn(
        "prometheus",
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={stack.tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{stack.prometheus}",
        ],
        stack.tmp,
    )
    wait_for(
        "prometheus /-/ready",
        lambda: http_get(f"http://127.0.0.1:{stack.prometheus}/-/ready")[0] == 200 or None,
    )


def start_worker(stack: Stack) -> None:
    build = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "model_cache.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    models = Path(build.stdout.strip())
    model_path, config = models / "mlp.pt", models / "mlp.yaml"
    assert model_path.is_file(), f"examples/build_models.py built no {model_path}"
    stack.worker_http, stack.worker_metrics = free_port(), free_port()
    stack.processes["worker"] = spawn(
        "worker",
        # No warm-up inference: the request counter then counts this test's requests only.
        [
            sys.executable,
            *f"-m airt_worker --no-warmup --host 127.0.0.1 --model-path {model_path} "
            f"--config-file {config} --http-port {stack.worker_http} --grpc-port {free_port()} "
            f"--metrics-port {stack.worker_metrics}".split(),
        ],
        stack.tmp,
    )

    def ready() -> bool | None:
        if not stack.processes["worker"].alive():
            raise AssertionError("the worker exited:\n" + stack.processes["worker"].tail())
        return http_get(f"http://127.0.0.1:{stack.worker_http}/v2/health/ready")[0] == 200 or None

    wait_for("worker ready", ready, timeout=180)
    index = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(
                f"http://127.0.0.1:{stack.worker_http}/v2/repository/index",
                data=b"",
                method="POST",
            ),
            timeout=10,
        ).read()
    )
    stack.model = index[0]["name"]


def send_requests(stack: Stack, count: int) -> None:
    """`count` one-row inferences through tritonclient, with inputs made from the metadata."""
    import numpy as np
    import tritonclient.http as httpclient
    from tritonclient.utils import triton_to_np_dtype

    client = httpclient.InferenceServerClient(f"127.0.0.1:{stack.worker_http}")
    try:
        meta = client.get_model_metadata(stack.model)
        inputs = []
        for spec in meta["inputs"]:
            shape = [1 if d == -1 else d for d in spec["shape"]]
            data = np.ones(shape, dtype=triton_to_np_dtype(spec["datatype"]))
            tensor = httpclient.InferInput(spec["name"], shape, spec["datatype"])
            tensor.set_data_from_numpy(data)
            inputs.append(tensor)
        for _ in range(count):
            client.infer(stack.model, inputs)
    finally:
        client.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp=tmp_path_factory.mktemp("metrics-prometheus"))
    standin = serve_gpu_standin()
    try:
        start_worker(stack)
        stack.sidecar = free_port()
        start_sidecar(
            stack,
            "sidecar",
            stack.sidecar,
            f"http://127.0.0.1:{stack.worker_metrics}/metrics",
            MODELDEPLOYMENT,
        )
        standin_sidecar = free_port()
        start_sidecar(
            stack,
            "sidecar-gpu-standin",
            standin_sidecar,
            f"http://127.0.0.1:{standin.server_address[1]}/metrics",
            GPU_STANDIN,
        )
        start_prometheus(stack, [stack.sidecar, standin_sidecar])
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        for process in reversed(stack.processes.values()):
            process.stop()
        standin.shutdown()
        standin.server_close()


def value_of(result: list[dict[str, Any]]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_request_counter_after_n_requests(stack: Stack) -> None:
    send_requests(stack, REQUESTS)
    selector = (
        f'namespace="{NAMESPACE}",modeldeployment="{MODELDEPLOYMENT}",pod="{POD}",'
        f'model="{stack.model}"'
    )
    query = f"sum(nv_inference_request_success{{{selector}}})"
    seen = wait_for(
        f"{query} to reach {REQUESTS}",
        lambda: (
            v if (v := value_of(stack.query(query) or [{"value": [0, "0"]}])) >= REQUESTS else None
        ),
    )
    assert seen == REQUESTS, stack.logs()
    assert value_of(stack.query(f"sum(nv_inference_count{{{selector}}})")) == REQUESTS


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    grafana = Grafana.load()
    assert grafana.exprs, "the dashboard has no queries"
    empty: dict[str, str] = {}

    def all_answer() -> bool | None:
        empty.clear()
        for title, expr in grafana.exprs.items():
            if not stack.query(Grafana.promql(expr)):
                empty[title] = expr
        return not empty or None

    try:
        wait_for("every dashboard query to return data", all_answer, timeout=60)
    except AssertionError:
        pytest.fail(
            "dashboard queries without data:\n"
            + "\n".join(f"  {t}: {Grafana.promql(e)}" for t, e in empty.items())
        )
    for name, (selector, label) in grafana.variables.items():
        values = stack.label_values(label, Grafana.promql(selector))
        assert values, f"variable {name}: label_values({selector}, {label}) is empty"
    assert MODELDEPLOYMENT in stack.label_values("modeldeployment", "airt_worker_up")

    # Without a GPU the real worker says so, and the GPU panels' data came from the stand-in.
    telemetry = value_of(
        stack.query(f'airt_gpu_telemetry_available{{modeldeployment="{MODELDEPLOYMENT}"}}')
    )
    gpu_series = stack.query(f'nv_gpu_memory_used_bytes{{modeldeployment="{MODELDEPLOYMENT}"}}')
    assert (telemetry == 1) == bool(gpu_series), (telemetry, gpu_series)


def test_latency_percentiles_come_from_the_workers_histogram(stack: Stack) -> None:
    # The latency panels read the worker's request-duration histogram; the query above returned
    # data for them, and here the p99 is a real, positive duration.
    q = (
        "histogram_quantile(0.99, sum by (le) "
        f'(airt_request_duration_seconds_bucket{{modeldeployment="{MODELDEPLOYMENT}"}}))'
    )
    p99 = value_of(stack.query(q))
    assert p99 > 0, q


def test_alert_rules_evaluate_against_real_series(stack: Stack) -> None:
    def rules() -> list[dict[str, Any]] | None:
        found = [r for g in stack.api("rules")["groups"] for r in g["rules"]]
        return (
            found
            if found
            and all(
                r.get("lastEvaluation", "").startswith("2") and r["health"] != "unknown"
                for r in found
            )
            else None
        )

    evaluated = wait_for("every alert rule evaluated", rules)
    assert {r["name"]: r["health"] for r in evaluated} == {r["name"]: "ok" for r in evaluated}, (
        evaluated
    )


def test_killed_worker_sidecar_answers_worker_down(stack: Stack) -> None:
    worker = stack.processes["worker"]
    worker.popen.kill()
    worker.popen.wait(timeout=30)

    status, page = http_get(f"http://127.0.0.1:{stack.sidecar}/metrics")
    assert status == 200
    up = [line for line in page.splitlines() if line.startswith("airt_worker_up{")]
    assert up == [
        f'airt_worker_up{{namespace="{NAMESPACE}",modeldeployment="{MODELDEPLOYMENT}",'
        f'pod="{POD}"}} 0.0'
    ], page
    assert re.search(r'airt_worker_scrape_errors_total\{[^}]*reason="connect"\} [1-9]', page)
    assert "nv_inference_request_success" not in page

    # Prometheus sees it too: the sidecar target stays up, the worker is down, the alert pends.
    sidecar_up = f'up{{instance="127.0.0.1:{stack.sidecar}"}}'
    worker_up = f'airt_worker_up{{modeldeployment="{MODELDEPLOYMENT}"}} == 0'
    wait_for("Prometheus to see the worker down", lambda: stack.query(worker_up) or None)
    assert value_of(stack.query(sidecar_up)) == 1

    def pending() -> list[dict[str, Any]] | None:
        found = [
            a
            for a in stack.api("alerts")["alerts"]
            if a["labels"]["alertname"] == "AirtModelWorkersAllDown"
            and a["labels"].get("modeldeployment") == MODELDEPLOYMENT
        ]
        return found or None

    [alert] = wait_for("AirtModelWorkersAllDown to be pending", pending)
    assert alert["state"] in {"pending", "firing"}
