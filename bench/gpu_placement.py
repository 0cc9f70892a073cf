"""GPU placement: time to place N GPU ModelDeployments with DRA against the device plugin.

A figure, not a test: `uv run python bench/gpu_placement.py` (AIRT_CLUSTER_NAME picks the local
cluster; `--models`, `--rounds`). Both modes run on the same cluster in the same run, rounds
alternating, so the machine's load falls on both alike. The local pool gains a bench pool
(bench/nodepool-gpu.yaml: H100 nodes offered both as `nvidia.com/gpu` extended resources and
as NVIDIA-DRA-shaped ResourceSlices), removed at the end.

Each round: a fresh namespace, the real `airt-operator run` scoped to it with its placement
pinned (AIRT_OPERATOR_GPU_PLACEMENT=dra or devicePlugin), N one-replica ModelDeployments asking
for one GPU (H100, else A100) applied in one request; measured from the apply until every pod
has a node (`scheduled_s`), and until every ModelDeployment reports Scheduled=True
(`status_s`). The namespace is deleted and its pods and claims gone before the next round.
Writes docs/benchmarks/gpu-placement.json and gpu-placement.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from airt_dev.cluster import Cluster, ClusterManager
from airt_dev.fixtures import ensure_fixtures, install_api
from airt_dev.nodes import NodePool, render_nodes, render_resource_slices
from airt_dev.operator_proc import OperatorProcess
from common import BENCH, CACHE, RESULTS, log, machine, now_iso, write_result

POOL = BENCH / "nodepool-gpu.yaml"
MODES = ("dra", "devicePlugin")


def model_deployments(n: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "airt.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": f"gpu-{i:04d}"},
            "spec": {
                "model": {"uri": "pvc://airt-models/mlp/model.pt", "format": "torchscript"},
                "runtime": {"name": "torch-cuda"},
                "replicas": 1,
                "resources": {
                    "cpu": "100m",
                    "memory": "256Mi",
                    "gpu": {"products": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-40GB"]},
                },
            },
        }
        for i in range(n)
    ]


def _pools() -> list[NodePool]:
    return [NodePool.model_validate(p) for p in yaml.safe_load(POOL.read_text())["pools"]]


def add_pool(cluster: Cluster) -> None:
    pools = _pools()
    cluster.apply_objects([*render_nodes(pools), *render_resource_slices(pools)])


def remove_pool(cluster: Cluster) -> None:
    pools = _pools()
    for obj in [*render_resource_slices(pools), *render_nodes(pools)]:
        kind = obj["kind"].lower()
        cluster.kubectl("delete", kind, obj["metadata"]["name"], "--wait=false", check=False)


def _counts(cluster: Cluster, ns: str) -> tuple[int, int]:
    pods = cluster.get_json("pods", "-n", ns)["items"]
    scheduled = sum(1 for p in pods if p["spec"].get("nodeName"))
    mds = cluster.get_json("md", "-n", ns)["items"]
    ok = sum(
        1
        for m in mds
        for c in (m.get("status") or {}).get("conditions") or []
        if c["type"] == "Scheduled" and c["status"] == "True"
    )
    return scheduled, ok


def run_round(cluster: Cluster, mode: str, n: int, timeout_s: float) -> dict[str, Any]:
    ns = f"gpubench-{mode.lower()}-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", ns)
    ensure_fixtures(cluster, ns)
    logs = CACHE / "gpu-placement"
    op = OperatorProcess.start(
        cluster.kubeconfig,
        logs / f"{ns}.log",
        namespaces=(ns,),
        extra_env={"AIRT_OPERATOR_GPU_PLACEMENT": mode, "AIRT_OPERATOR_LOG_FORMAT": "plain"},
    )
    try:
        items = model_deployments(n)
        t0 = time.monotonic()
        cluster.kubectl(
            "apply",
            "-n",
            ns,
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )
        scheduled_s = status_s = None
        while time.monotonic() - t0 < timeout_s:
            pods, ok = _counts(cluster, ns)
            now = time.monotonic() - t0
            if scheduled_s is None and pods >= n:
                scheduled_s = now
            if status_s is None and ok >= n:
                status_s = now
            if scheduled_s is not None and status_s is not None:
                break
            time.sleep(0.25)
        claims = len(cluster.get_json("resourceclaims", "-n", ns)["items"])
        log(f"{mode}: {n} placed in {scheduled_s} s, Scheduled=True after {status_s} s")
        return {
            "mode": mode,
            "models": n,
            "scheduled_s": scheduled_s,
            "status_s": status_s,
            "claims": claims,
        }
    finally:
        op.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        _wait_gone(cluster, ns, timeout_s)


def _wait_gone(cluster: Cluster, ns: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        proc = cluster.kubectl("get", "namespace", ns, check=False)
        if proc.returncode != 0:
            return
        time.sleep(0.5)
    raise TimeoutError(f"namespace {ns} still there after {timeout_s} s")


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    labels, placed, status = [], [], []
    for mode in MODES:
        s = doc["summary"][mode]
        labels.append({"dra": "DRA (ResourceClaimTemplate)", "devicePlugin": "device plugin"}[mode])
        placed.append(s["scheduled_s_median"])
        status.append(s["status_s_median"])
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], placed, 0.4, label="every pod has a node")
    ax.bar([i + 0.2 for i in x], status, 0.4, label="every model Scheduled=True")
    for i, mode in enumerate(MODES):  # every round, so the spread shows
        rounds = doc["summary"][mode]
        ax.scatter([i - 0.2] * len(rounds["scheduled_s"]), rounds["scheduled_s"], c="k", s=10)
        ax.scatter([i + 0.2] * len(rounds["status_s"]), rounds["status_s"], c="k", s=10)
    for i in x:
        ax.text(i - 0.2, placed[i], f"{placed[i]:.1f}", ha="center", va="bottom", fontsize=8)
        ax.text(i + 0.2, status[i], f"{status[i]:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("seconds (bars: median; dots: rounds)")
    ax.set_title(f"Placing {doc['models']} one-GPU ModelDeployments, same cluster")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--plot-only", action="store_true", help="redraw from the JSON")
    args = parser.parse_args(argv)
    if args.plot_only:
        plot(
            json.loads((RESULTS / "gpu-placement.json").read_text()), RESULTS / "gpu-placement.png"
        )
        return 0
    manager = ClusterManager.from_env()
    manager.up()
    cluster = manager.cluster()
    install_api(cluster)
    started = now_iso()
    add_pool(cluster)
    runs = []
    try:
        manager._wait(  # the bench nodes Ready before the first round
            lambda: all(
                any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n.get("status", {}).get("conditions", [])
                )
                for n in cluster.get_json("nodes", "-l", "airt.dev/pool=bench-h100")["items"]
            ),
            120,
            "the bench GPU nodes to become Ready",
        )
        for r in range(args.rounds):
            order = MODES if r % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                runs.append({"round": r, **run_round(cluster, mode, args.models, args.timeout)})
    finally:
        remove_pool(cluster)
    summary = {}
    for mode in MODES:
        mine = [x for x in runs if x["mode"] == mode]
        summary[mode] = {
            "scheduled_s_median": statistics.median(x["scheduled_s"] for x in mine),
            "status_s_median": statistics.median(x["status_s"] for x in mine),
            "scheduled_s": [x["scheduled_s"] for x in mine],
            "status_s": [x["status_s"] for x in mine],
        }
    doc = {
        "benchmark": "gpu-placement",
        "started": started,
        "finished": now_iso(),
        "cluster": manager.name,
        "models": args.models,
        "rounds": args.rounds,
        "machine": machine(),
        "method": "same cluster, rounds alternating the mode; kube-scheduler allocates the "
        "claims from ResourceSlices (no DRA kubelet plugin; kwok runs the pods)",
        "summary": summary,
        "runs": runs,
    }
    path = write_result("gpu-placement", doc)
    plot(doc, RESULTS / "gpu-placement.png")
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
