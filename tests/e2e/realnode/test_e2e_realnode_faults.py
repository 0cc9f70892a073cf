"""Faults on the real node, each surfaced as a reason and the real message: bytes that do not match
their sha256, a model that cannot load, an image the node cannot get; and a delete that drains.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from realnode_helpers import (
    apply,
    last_termination,
    md_manifest,
    pods_of,
    port_forward,
    wait_condition,
)

from airt_dev.cluster import REPO_ROOT as ROOT
from airt_dev.wait import wait_for
from conftest import Env


def _delete(env: Env, name: str) -> None:
    env.cluster.kubectl("delete", "md", name, "-n", env.ns, "--wait=false", check=False)


def test_bytes_that_do_not_match_the_sha256_fail_the_fetch_with_one_line(env: Env) -> None:
    uri = env.store.store.publish(env.store.models / "mlp.pt", "mismatch/mlp.pt")
    wrong = hashlib.sha256(b"not the model").hexdigest()
    apply(env.cluster, md_manifest("mismatch", uri, wrong), env.ns)
    try:
        started = time.monotonic()
        ready = wait_condition(
            env.cluster, env.ns, "mismatch", "Ready", "False", "ModelDigestMismatch", timeout_s=60
        )
        assert time.monotonic() - started < 30 + 5, "the mismatch took more than 30 s to surface"
        # The fetcher's own one-line message, read from the init container's termination message.
        assert wrong in ready["message"] and env.store.mlp_sha256 in ready["message"], ready
        assert "\n" not in ready["message"] and "Traceback" not in ready["message"]
        pod = pods_of(env.cluster, env.ns, "mismatch")[0]
        fetch = pod["status"]["initContainerStatuses"][0]
        terminated = last_termination(fetch)
        assert terminated["message"].startswith("ModelDigestMismatch: "), terminated
    finally:
        _delete(env, "mismatch")


def test_a_model_that_cannot_load_says_so_with_the_workers_message(
    env: Env, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.pt"  # not beside the example models: their folder is a shared cache
    junk.write_bytes(b"this is not a TorchScript archive\n" * 64)
    uri = env.store.store.publish(junk, "junk/model.pt")
    digest = hashlib.sha256(junk.read_bytes()).hexdigest()
    apply(env.cluster, md_manifest("junk", uri, digest), env.ns)
    try:
        ready = wait_condition(
            env.cluster, env.ns, "junk", "Ready", "False", "ModelLoadFailed", timeout_s=120
        )
        assert "ModelLoadFailed" in ready["message"], ready
        pod = pods_of(env.cluster, env.ns, "junk")[0]
        worker = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "worker")
        terminated = last_termination(worker)
        assert terminated and terminated["message"].startswith("ModelLoadFailed: "), worker
        # The condition carries the worker's words, not a generic CrashLoopBackOff.
        assert terminated["message"].removeprefix("ModelLoadFailed: ")[:60] in ready["message"]
    finally:
        _delete(env, "junk")


def test_an_image_the_node_cannot_get_is_reported_with_the_kubelets_message(env: Env) -> None:
    # A runtime that lets a model name its image on a registry that refuses at once (a closed
    # loopback port), so the kubelet's pull fails without any lookup leaving the machine.
    runtime = yaml.safe_load((ROOT / "examples" / "runtimes" / "torch-cpu.yaml").read_text())
    runtime["metadata"] = {"name": f"{env.ns}-local"}
    runtime["spec"]["priority"] = 1
    runtime["spec"]["policy"]["allowedImagePrefixes"] = ["127.0.0.1:1/"]
    apply(env.cluster, runtime)
    image = "127.0.0.1:1/airt/worker-cpu:absent"
    md = md_manifest(
        "noimage", env.store.mlp_uri, env.store.mlp_sha256,
        runtime={"name": f"{env.ns}-local", "image": image},
    )  # fmt: skip
    apply(env.cluster, md, env.ns)
    try:
        ready = wait_condition(
            env.cluster, env.ns, "noimage", "Ready", "False", "ImagePullFailed", timeout_s=120
        )
        assert image in ready["message"], ready
    finally:
        _delete(env, "noimage")
        env.cluster.kubectl(
            "delete", "inferenceruntime", f"{env.ns}-local", "--wait=false", check=False
        )


def test_deleting_drains_in_flight_requests_and_stops_within_the_grace_period(env: Env) -> None:
    md = md_manifest("drain", env.store.mlp_uri, env.store.mlp_sha256)
    apply(env.cluster, md, env.ns)
    wait_condition(env.cluster, env.ns, "drain", "Ready", "True", timeout_s=300)
    pod = pods_of(env.cluster, env.ns, "drain")[0]
    name = pod["metadata"]["name"]
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    import tritonclient.http as httpclient

    results: list[Any] = []
    stop = threading.Event()

    def client(port: int) -> None:
        c = httpclient.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=60)
        x = np.ones((1, 64), dtype=np.float32)
        while not stop.is_set():
            i = httpclient.InferInput("features", [1, 64], "FP32")
            i.set_data_from_numpy(x)
            sent = time.monotonic()
            try:
                c.infer("drain", [i])  # the served name is the ModelDeployment's name
                results.append(("ok", sent))
            except Exception as exc:  # classified below
                results.append((str(exc), sent))
                break
        c.close()

    with port_forward(env.cluster, env.ns, f"pod/{name}", 8000) as (port,):
        threads = [threading.Thread(target=client, args=(port,)) for _ in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: len(results) >= 20, 30, "requests flowing before the delete", 0.05)
        deleted = time.monotonic()
        env.cluster.kubectl("delete", "md", "drain", "-n", env.ns, "--wait=false")

        def gone() -> bool:
            return not [
                p for p in pods_of(env.cluster, env.ns, "drain") if p["metadata"]["name"] == name
            ]

        wait_for(gone, grace + 30, f"pod {name} to go", 0.5)
        took = time.monotonic() - deleted
        stop.set()
        for t in threads:
            t.join(timeout=30)
    ok_after_delete = [r for r in results if r[0] == "ok" and r[1] > deleted]
    failures = [r[0] for r in results if r[0] != "ok"]
    # Requests kept being answered while the pod left the endpoints and drained (preStop); once
    # the worker stopped accepting, new requests were turned away (503 "accepts no new
    # requests", or the connection refused after it closed its port) — never cut off halfway or
    # failed with another server error.
    assert ok_after_delete, "no request was answered after the delete"
    turned_away = ("accepts no new requests", "refused", "Connection reset", "closed", "EOF")
    assert all(any(t in f for t in turned_away) for f in failures), failures
    assert took <= grace + 15, f"the pod took {took:.1f}s to go, grace period {grace}s"
