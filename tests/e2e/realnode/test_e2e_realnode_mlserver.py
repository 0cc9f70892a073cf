"""A bring-your-own runtime on the real node: MLServer, in the image built from
runtime-images/mlserver, serving the example MLP beside the airt worker.

The runtime is examples/runtimes/byo/mlserver.yaml as shipped (the chart's
exampleRuntimes.mlserver is the same spec), applied under a name of this run. Its model is the
example MLP's weights (mlp.npz) on the local store's https file tree, fetched and sha256-checked
by the airt fetcher. The tests prove: Ready comes from MLServer's own /v2/health/ready; tritonclient
over v2 REST (JSON: MLServer has no binary tensor extension) and gRPC, through the Service's
ports 8000/8001, gets the same answers as the airt worker serving the same model in the same
run; the pod runs under Pod Security `restricted` with a read-only root; MLServer's own metrics
reach Prometheus through the sidecar on 8002 with the pod's labels; the NetworkPolicy guards
MLServer's ports like the worker's; weights it cannot load turn the ModelDeployment's Ready to
ModelLoadFailed with the runtime's message. tests/unit/chart checks that the chart ships this
same spec.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from realnode_helpers import (
    MODEL_STORE_SECRET,
    apply,
    assert_network_policy,
    condition,
    get_md,
    last_termination,
    pods_of,
    port_forward,
    wait_condition,
)

from airt_dev.cluster import REPO_ROOT
from airt_dev.ports import free_port
from airt_dev.wait import wait_for
from conftest import Env

NAME = "mlserver-mlp"  # the ModelDeployment; the served model is "mlp", as the worker's
MODEL = "mlp"
OUTPUTS = ("logits", "probabilities")
RUNTIME_FILE = REPO_ROOT / "examples" / "runtimes" / "byo" / "mlserver.yaml"


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def mlserver(env: Env, served: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The shipped MLServer runtime and a ModelDeployment on it, Ready on the real node (the
    airt worker's `served` model is up first, so both run in this module)."""
    runtime = yaml.safe_load(RUNTIME_FILE.read_text())
    # Cluster-scoped: a name of this run, so that parallel runs and the chart never collide.
    runtime["metadata"] = {"name": f"mlserver-{env.ns}"}
    npz = env.store.models / "mlp.npz"
    uri = env.store.store.publish(npz, f"{env.ns}/mlp.npz")
    md = {
        "apiVersion": "airt.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {
                "uri": uri,
                "format": "mlp-npz",
                "name": MODEL,
                "sha256": hashlib.sha256(npz.read_bytes()).hexdigest(),
                "credentials": {"name": MODEL_STORE_SECRET},
            },
            "runtime": {"name": runtime["metadata"]["name"]},
            "replicas": 1,
            "resources": {"cpu": "500m", "memory": "1Gi"},
        },
    }
    try:
        apply(env.cluster, runtime)
        apply(env.cluster, md, env.ns)
        wait_condition(env.cluster, env.ns, NAME, "Ready", "True", timeout_s=300)
        yield md
    finally:
        env.cluster.kubectl("delete", "md", NAME, "-n", env.ns, "--wait=false", check=False)
        env.cluster.kubectl(
            "delete", "inferenceruntime", runtime["metadata"]["name"], "--wait=false", check=False
        )


def _pod(env: Env) -> dict[str, Any]:
    pods = [p for p in pods_of(env.cluster, env.ns, NAME) if p["status"].get("phase") == "Running"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    assert pods[0]["spec"]["nodeName"] == env.node.layout.name
    return pods[0]


def _server(pod: dict[str, Any]) -> dict[str, Any]:
    server: dict[str, Any] = next(c for c in pod["spec"]["containers"] if c["name"] == "worker")
    return server


def test_mlserver_is_ready_through_its_own_readiness_endpoint(
    env: Env, mlserver: dict[str, Any]
) -> None:
    pod = _pod(env)
    server = _server(pod)
    assert server["image"] == "ghcr.io/airt-dev/mlserver:0.1.0"
    assert server["command"] == ["mlserver", "start", "/mnt/models/model"]
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert (ports["http"], ports["grpc"]) == (8080, 8081)
    # The kubelet asks MLServer itself: /v2/health/ready on its HTTP port.
    for probe in ("startupProbe", "readinessProbe"):
        get = server[probe]["httpGet"]
        assert (get["path"], get["port"]) == ("/v2/health/ready", "http"), probe
    # MLServer loaded the model before the kubelet saw it ready, and the ModelDeployment turned
    # Ready only after its pod did.
    logs = env.cluster.kubectl(
        "logs", "-n", env.ns, pod["metadata"]["name"], "-c", "worker", "--timestamps"
    ).stdout
    loaded = [line for line in logs.splitlines() if f"Loaded model '{MODEL}' successfully" in line]
    assert loaded, logs[-3000:]
    ready_pod = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert ready_pod["status"] == "True"
    assert _ts(ready_pod["lastTransitionTime"]).replace(microsecond=0) >= _ts(
        loaded[0].split()[0]
    ).replace(microsecond=0)
    md = get_md(env.cluster, env.ns, NAME)
    ready_md = condition(md, "Ready")
    assert ready_md and _ts(ready_md["lastTransitionTime"]) >= _ts(ready_pod["lastTransitionTime"])
    status = md["status"]
    assert status.get("runtimeName") == f"mlserver-{env.ns}"
    assert status.get("grpcAddress"), status  # the runtime declares a gRPC port
    # The fetcher checked and recorded the digest of the weights it placed.
    fetch = next(c for c in pod["status"]["initContainerStatuses"] if c["name"] == "model-fetch")
    digest = json.loads(fetch["state"]["terminated"]["message"])["modelDigest"]
    assert digest == f"sha256:{mlserver['spec']['model']['sha256']}"
    import tritonclient.http as httpclient

    with port_forward(env.cluster, env.ns, f"svc/{NAME}", 8000) as (port,):
        c = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        assert c.is_server_live() and c.is_server_ready() and c.is_model_ready(MODEL)
        meta = c.get_model_metadata(MODEL)
        c.close()
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 64]}]
    assert [o["name"] for o in meta["outputs"]] == list(OUTPUTS)


def _ask_http(port: int, x: np.ndarray, *, binary: bool) -> dict[str, np.ndarray]:
    import tritonclient.http as httpclient

    c = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        i = httpclient.InferInput("features", list(x.shape), "FP32")
        i.set_data_from_numpy(x, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in OUTPUTS]
        # A pure-JSON body must say so: MLServer (FastAPI) does not parse an octet-stream.
        headers = None if binary else {"Content-Type": "application/json"}
        result = c.infer(MODEL, [i], outputs=outputs, headers=headers)
        return {n: result.as_numpy(n) for n in OUTPUTS}
    finally:
        c.close()


def _ask_grpc(port: int, x: np.ndarray) -> dict[str, np.ndarray]:
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        i = grpcclient.InferInput("features", list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        outputs = [grpcclient.InferRequestedOutput(n) for n in OUTPUTS]
        result = c.infer(MODEL, [i], outputs=outputs)
        return {n: result.as_numpy(n) for n in OUTPUTS}
    finally:
        c.close()


def test_mlserver_answers_like_the_airt_worker_over_rest_and_grpc(
    env: Env, served: dict[str, Any], mlserver: dict[str, Any]
) -> None:
    x = np.random.default_rng(11).standard_normal((4, 64)).astype(np.float32)
    # Both through their Services (8000 HTTP, 8001 gRPC): the Service maps them onto MLServer's
    # own 8080/8081, so a client cannot tell the runtimes apart by address.
    with port_forward(env.cluster, env.ns, f"svc/{served['metadata']['name']}", 8000, 8001) as (
        http_port,
        grpc_port,
    ):
        worker_http = _ask_http(http_port, x, binary=True)
        worker_grpc = _ask_grpc(grpc_port, x)
    with port_forward(env.cluster, env.ns, f"svc/{NAME}", 8000, 8001) as (http_port, grpc_port):
        mls_http = _ask_http(http_port, x, binary=False)
        mls_grpc = _ask_grpc(grpc_port, x)
    for name in OUTPUTS:
        expected = worker_http[name]
        assert expected.shape == (4, 10) and expected.dtype == np.float32, name
        np.testing.assert_allclose(worker_grpc[name], expected, rtol=1e-6, atol=1e-7)
        # torch on the worker, NumPy in MLServer: the same float32 arithmetic, summed in
        # another order.
        for got in (mls_http[name], mls_grpc[name]):
            assert got.shape == expected.shape and got.dtype == np.float32, name
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert (np.argmax(mls_grpc["logits"], axis=1) == np.argmax(worker_http["logits"], axis=1)).all()


def test_mlserver_runs_restricted_with_a_read_only_root(env: Env, mlserver: dict[str, Any]) -> None:
    pod = _pod(env)
    ns = env.cluster.get_json("namespace", env.ns)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True, c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
    check = (
        "import os, tempfile\n"
        "print(os.getuid(), os.getgid())\n"
        "try:\n    open('/opt/venv/written-by-test', 'w')\n"
        "except OSError as e:\n    print('root', e.errno)\n"
        "with tempfile.NamedTemporaryFile(dir=os.environ['HOME']) as f:\n    print('home ok')\n"
    )
    out = env.cluster.kubectl(
        "exec", "-n", env.ns, pod["metadata"]["name"], "-c", "worker", "--", "python", "-c", check
    ).stdout.split("\n")
    assert out[0] == "65532 65532", out
    assert out[1] == "root 30", out  # EROFS: MLServer's root file system is read-only
    assert out[2] == "home ok", out  # HOME=/tmp, the declared emptyDir


def test_mlservers_own_metrics_reach_prometheus_with_the_pods_labels(
    env: Env, mlserver: dict[str, Any]
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: run tools/install-prometheus.sh (Debian's prometheus)")
    pod = _pod(env)
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    x = np.zeros((1, 64), dtype=np.float32)
    with port_forward(env.cluster, env.ns, f"svc/{NAME}", 8001) as (grpc_port,):
        for _ in range(5):
            _ask_grpc(grpc_port, x)
    tmp = env.node.layout.workdir / "prometheus-mlserver"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "airt-models", "honor_labels": True,
             "static_configs": [{"targets": [f"{ip}:8002"]}]}
        ],
    }  # fmt: skip
    (tmp / "prometheus.yml").write_text(json.dumps(config))
    port = free_port()
    with (tmp / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={tmp / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip

    def query(promql: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                result: list[dict[str, Any]] = json.loads(r.read())["data"]["result"]
                return result
        except OSError:
            return []

    try:
        # MLServer's own counter (its name and its `model` label), re-exported by the sidecar.
        # MLServer labels the version "None" over REST and "" over gRPC: one series each.
        success = f'model_infer_request_success_total{{model="{MODEL}"}}'
        total = f"sum by (pod, namespace, modeldeployment) ({success})"
        wait_for(
            lambda: bool(query(f"{total} >= 5")),
            60,
            "Prometheus to scrape MLServer's model_infer_request_success_total from port 8002",
            0.5,
        )
        series = query(success)
        assert series, "no model_infer_request_success_total series"
        for one in series:
            labels = one["metric"]
            assert (labels.get("pod"), labels.get("namespace")) == (name, env.ns), labels
            assert labels.get("modeldeployment") == NAME, labels
        assert query(f'airt_worker_up{{pod="{name}"}} == 1'), "the sidecar cannot read MLServer"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_network_policy_guards_mlservers_ports(env: Env, mlserver: dict[str, Any]) -> None:
    ip = _pod(env)["status"]["podIP"]
    assert_network_policy(env.cluster, env.ns, env.other, env.monitoring, ip, (8080, 8081))


def test_weights_mlserver_cannot_load_are_reported_with_its_message(
    env: Env, mlserver: dict[str, Any], tmp_path: Path
) -> None:
    # Left to MLServer, a load failure exits 0 and the pod restarts with no reason in sight;
    # airt's runtime exits 1 with a ModelLoadFailed termination message instead.
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"these are no weights\n" * 64)
    md = copy.deepcopy(mlserver)
    md["metadata"] = {"name": "mlserver-junk"}
    md["spec"]["model"]["uri"] = env.store.store.publish(junk, f"{env.ns}/junk.npz")
    md["spec"]["model"]["sha256"] = hashlib.sha256(junk.read_bytes()).hexdigest()
    md["spec"]["resources"] = {"cpu": "250m", "memory": "1Gi"}
    apply(env.cluster, md, env.ns)
    try:
        ready = wait_condition(
            env.cluster, env.ns, "mlserver-junk", "Ready", "False", "ModelLoadFailed", timeout_s=180
        )
        assert f"model '{MODEL}' cannot be loaded" in ready["message"], ready
        assert "not a NumPy .npz file" in ready["message"], ready
        assert "\n" not in ready["message"] and "Traceback" not in ready["message"], ready
        pod = pods_of(env.cluster, env.ns, "mlserver-junk")[0]
        server = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "worker")
        ended = last_termination(server)
        assert ended and ended["exitCode"] == 1, server
        assert ended["message"].startswith("ModelLoadFailed: "), server
    finally:
        env.cluster.kubectl(
            "delete", "md", "mlserver-junk", "-n", env.ns, "--wait=false", check=False
        )
