"""The serving unit on the real node: Ready only after the warm-up, the same answers as the model
run in-process (tritonclient HTTP and gRPC through port-forward), restricted and read-only
containers, the sidecar scraped by Prometheus, and NetworkPolicy enforced by kube-router.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import urllib.parse
import urllib.request
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from realnode_helpers import assert_network_policy, condition, get_md, pods_of, port_forward

from airt_dev.cluster import CACHE_ROOT
from airt_dev.ports import free_port
from airt_dev.wait import wait_for
from conftest import Env


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _pod(env: Env) -> dict[str, Any]:
    pods = [p for p in pods_of(env.cluster, env.ns, "mlp") if p["status"].get("phase") == "Running"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    assert pods[0]["spec"]["nodeName"] == env.node.layout.name
    return pods[0]


def _config_digest(archive: Path) -> str:
    """The config digest (the image ID containerd reports) of the one image in an OCI archive."""
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> dict[str, Any]:
            f = tar.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
            assert f is not None
            doc: dict[str, Any] = json.load(f)
            return doc

        index_file = tar.extractfile("index.json")
        assert index_file is not None
        manifest = blob(json.load(index_file)["manifests"][0]["digest"])
        digest: str = manifest["config"]["digest"]
        return digest


def _in_process(model: Path, x: np.ndarray) -> np.ndarray:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
        module = torch.jit.load(str(model))
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    tensor = next(iter(out.values())) if isinstance(out, dict) else out
    result: np.ndarray = tensor.numpy()
    return result


def test_ready_only_after_the_warm_up_and_answers_like_the_model_in_process(
    env: Env, served: dict[str, Any]
) -> None:
    pod = _pod(env)
    name = pod["metadata"]["name"]
    worker = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "worker")
    started = _ts(worker["state"]["running"]["startedAt"])
    ready_pod = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    ready_md = condition(get_md(env.cluster, env.ns, "mlp"), "Ready")
    assert ready_md and ready_md["status"] == "True"
    # The worker's own log: when it finished loading and warming up (it says "ready" only then).
    logs = env.cluster.kubectl("logs", "-n", env.ns, name, "-c", "worker", "--timestamps").stdout
    warm = [
        line for line in logs.splitlines() if '"ready"' in line or line.rstrip().endswith(" ready")
    ]
    assert warm, logs[-2000:]
    warmed = _ts(warm[0].split()[0])
    # The kubelet's readiness probe passed only after the warm-up (so after the container start),
    # and the ModelDeployment turned Ready only after its pod did.
    assert started <= warmed, (started, warmed)
    assert _ts(ready_pod["lastTransitionTime"]).replace(microsecond=0) >= warmed.replace(
        microsecond=0
    )
    assert _ts(ready_md["lastTransitionTime"]) >= _ts(ready_pod["lastTransitionTime"])

    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    x = np.random.default_rng(7).standard_normal((3, 64)).astype(np.float32)
    expected = _in_process(env.store.models / "mlp.pt", x)
    with port_forward(env.cluster, env.ns, f"pod/{name}", 8000, 8001) as (http_port, grpc_port):
        h = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
        assert h.is_model_ready("mlp")
        out_name = h.get_model_metadata("mlp")["outputs"][0]["name"]
        i = httpclient.InferInput("features", list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        got_http = h.infer("mlp", [i]).as_numpy(out_name)
        h.close()
        g = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        gi = grpcclient.InferInput("features", list(x.shape), "FP32")
        gi.set_data_from_numpy(x)
        got_grpc = g.infer("mlp", [gi]).as_numpy(out_name)
        g.close()
    np.testing.assert_allclose(got_http, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_grpc, expected, rtol=1e-5, atol=1e-6)


def test_status_records_the_image_and_the_model_digest_that_really_ran(
    env: Env, served: dict[str, Any]
) -> None:
    pod = _pod(env)
    worker = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "worker")
    status = get_md(env.cluster, env.ns, "mlp")["status"]
    # The kubelet's imageID: the image ID (config digest) of the image built here, not a tag.
    assert status.get("imageID") == worker["imageID"]
    built = json.loads((CACHE_ROOT / "images" / "images.json").read_text())["worker-cpu"]
    assert worker["imageID"].endswith(_config_digest(Path(built["archive"]))), worker["imageID"]
    assert env.node.image_digests()[worker["image"]] == built["digest"]
    # The model digest the fetcher computed over the bytes it placed (its termination message).
    fetch = next(c for c in pod["status"]["initContainerStatuses"] if c["name"] == "model-fetch")
    message = json.loads(fetch["state"]["terminated"]["message"])
    assert message["modelDigest"] == f"sha256:{env.store.mlp_sha256}"
    assert status.get("modelDigest") == f"sha256:{env.store.mlp_sha256}"


def test_every_container_is_non_root_with_a_read_only_root(
    env: Env, served: dict[str, Any]
) -> None:
    pod = _pod(env)
    ns = env.cluster.get_json("namespace", env.ns)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True, c["name"]
    check = (
        "import os, tempfile\n"
        "print(os.getuid(), os.getgid())\n"
        "try:\n    open('/opt/written-by-test', 'w')\n"
        "except OSError as e:\n    print('root', e.errno)\n"
        "with tempfile.NamedTemporaryFile(dir='/tmp') as f:\n    print('tmp ok')\n"
    )
    name = pod["metadata"]["name"]
    for container in ("worker", "metrics"):
        out = env.cluster.kubectl(
            "exec", "-n", env.ns, name, "-c", container, "--", "python", "-c", check
        ).stdout.split("\n")
        assert out[0] == "65532 65532", (container, out)
        assert out[1] == "root 30", (container, out)  # EROFS: the root file system is read-only
        assert out[2] == "tmp ok", (container, out)  # /tmp is the declared emptyDir


def test_the_sidecar_serves_the_workers_series_to_prometheus(
    env: Env, served: dict[str, Any]
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: run tools/install-prometheus.sh (Debian's prometheus)")
    pod = _pod(env)
    ip = pod["status"]["podIP"]
    # Some traffic first, so that the counters are non-zero.
    import tritonclient.http as httpclient

    with port_forward(env.cluster, env.ns, f"pod/{pod['metadata']['name']}", 8000) as (port,):
        c = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        x = np.zeros((1, 64), dtype=np.float32)
        for _ in range(5):
            i = httpclient.InferInput("features", [1, 64], "FP32")
            i.set_data_from_numpy(x)
            c.infer("mlp", [i])
        c.close()
    tmp = env.node.layout.workdir / "prometheus"
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
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("wb"),
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
        wait_for(
            lambda: bool(query('nv_inference_request_success{model="mlp"} >= 5')),
            60,
            "Prometheus to scrape nv_inference_request_success from the pod's port 8002",
            0.5,
        )
        series = query('nv_inference_request_success{model="mlp"}')
        assert series[0]["metric"].get("pod") == pod["metadata"]["name"], series
        assert query("up == 1"), "the scrape target is not up"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_network_policy_is_enforced(env: Env, served: dict[str, Any]) -> None:
    ip = _pod(env)["status"]["podIP"]
    assert_network_policy(env.cluster, env.ns, env.other, env.monitoring, ip, (8000, 8001))
