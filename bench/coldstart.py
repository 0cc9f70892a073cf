"""Cold start on the real node, phase by phase: `kubectl apply` → scheduled → image present →
model fetched → loaded → warm-up done → pod Ready → ModelDeployment Ready.

Run: `uv run python bench/coldstart.py [--runs 10] [--name coldstart]`. It starts (or reuses) the
local cluster and its real node, the local model store and an operator process, then applies
the CPU example (from the OCI store, sha256-pinned, 1 replica) N times, one at a time, each under
a fresh name, with its images already on the node. Every run is deleted and gone before the next.

Where each instant comes from (all clocks are this machine's):
- apply: taken here just before `kubectl apply`;
- scheduled, image present (the init container started, so its image was on the node), pod
  Ready, ModelDeployment Ready: the first watch event that shows it (`kubectl get -w`, events
  timestamped on arrival, so they include the watch's own latency, tens of ms);
- model fetched, loaded, warm-up done: the fetcher's and the worker's log lines, timestamped by
  the container runtime to the nanosecond (`kubectl logs --timestamps`).
The result goes to docs/benchmarks/<name>.json and a plot to docs/benchmarks/<name>.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from airt_dev.cluster import CACHE_ROOT, REPO_ROOT, Cluster, ClusterManager
from airt_dev.fixtures import install_api
from airt_dev.modelstore import ModelStore
from airt_dev.operator_proc import OperatorProcess
from airt_dev.realnode import RealNode, default_layout, set_real_node_only
from airt_dev.wait import wait_for
from common import CACHE, RESULTS, git_head, log, machine, now_iso, write_result

NS = "airt-coldstart"
PHASES = (
    "scheduled",
    "image_present",
    "model_fetched",
    "loaded",
    "warmed_up",
    "pod_ready",
    "md_ready",
)


def _ts(value: str) -> float:
    """RFC 3339 (with nanoseconds, as `kubectl logs --timestamps` prints) → epoch seconds."""
    head, _, frac = value.rstrip("Z").partition(".")
    base = datetime.fromisoformat(head + "+00:00").timestamp()
    return base + (float("0." + frac) if frac else 0.0)


class Watch:
    """`kubectl get <kind> -w -o json` in the background; the first arrival time of each fact."""

    def __init__(self, cluster: Cluster, kind: str, facts: dict[str, Any]) -> None:
        self.seen: dict[str, float] = {}
        self.facts = facts
        self.proc = subprocess.Popen(
            [str(cluster.bin_dir / "kubectl"), f"--kubeconfig={cluster.kubeconfig}", "-n", NS,
             "get", kind, "-w", "-o", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        decoder, buf = json.JSONDecoder(), ""
        for line in self.proc.stdout:
            buf += line
            try:
                obj, end = decoder.raw_decode(buf.lstrip())
            except json.JSONDecodeError:
                continue
            now = time.time()
            buf = buf.lstrip()[end:]
            for name, test in self.facts.items():
                key = f"{obj['metadata']['name']}/{name}"
                if key not in self.seen and test(obj):
                    self.seen[key] = now

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _cond(obj: dict[str, Any], type_: str) -> bool:
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conds)


def _init_started(pod: dict[str, Any]) -> bool:
    for s in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if "running" in s.get("state", {}) or "terminated" in s.get("state", {}):
            return True
    return False


POD_FACTS = {
    "scheduled": lambda p: bool(p.get("spec", {}).get("nodeName")),
    "image_present": _init_started,
    "pod_ready": lambda p: _cond(p, "Ready"),
}
MD_FACTS = {"md_ready": lambda m: _cond(m, "Ready")}


def _log_time(cluster: Cluster, pod: str, container: str, needle: str) -> float | None:
    out = cluster.kubectl(
        "logs", "-n", NS, pod, "-c", container, "--timestamps", check=False
    ).stdout
    for line in out.splitlines():
        stamp, _, text = line.partition(" ")
        if needle in text:
            return _ts(stamp)
    return None


def md(name: str, uri: str, sha: str) -> dict[str, Any]:
    import yaml

    doc: dict[str, Any] = yaml.safe_load(
        (REPO_ROOT / "examples/deployments/cpu-mlp.yaml").read_text()
    )
    doc["metadata"] = {"name": name}
    doc["spec"]["model"].update({"uri": uri, "sha256": sha, "credentials": {"name": "model-store"}})
    doc["spec"]["replicas"] = 1
    doc["spec"]["resources"] = {"cpu": "1", "memory": "2Gi"}
    return doc


def one_run(cluster: Cluster, i: int, uri: str, sha: str) -> dict[str, float]:
    name = f"cold-{i:02d}"
    pods = Watch(cluster, "pods", POD_FACTS)
    mds = Watch(cluster, "md", MD_FACTS)
    time.sleep(0.5)  # both watches listing, so nothing of this run is missed
    t0 = time.time()
    cluster.apply_objects([md(name, uri, sha)], namespace=NS)
    wait_for(lambda: f"{name}/md_ready" in mds.seen, 300, f"{name} Ready", 0.05)
    pods.stop()
    mds.stop()
    pod_keys = [k for k in pods.seen if k.startswith(f"{name}-")]
    pod = pod_keys[0].split("/")[0]
    marks: dict[str, float | None] = {
        "scheduled": pods.seen.get(f"{pod}/scheduled"),
        "image_present": pods.seen.get(f"{pod}/image_present"),
        "model_fetched": _log_time(cluster, pod, "model-fetch", "fetched "),
        "loaded": _log_time(cluster, pod, "worker", "warming up"),
        "warmed_up": _log_time(cluster, pod, "worker", '"ready"')
        or _log_time(cluster, pod, "worker", " ready"),
        "pod_ready": pods.seen.get(f"{pod}/pod_ready"),
        "md_ready": mds.seen.get(f"{name}/md_ready"),
    }
    cluster.kubectl("delete", "md", name, "-n", NS, "--wait=false")
    wait_for(
        lambda: not cluster.get_json("pods", "-n", NS)["items"], 120, f"{name}'s pod gone", 0.5
    )
    return {k: round(v - t0, 3) for k, v in marks.items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--name", default="coldstart")
    args = ap.parse_args(argv)

    manager = ClusterManager.from_env()
    manager.up()
    cluster = manager.cluster()
    node = RealNode(cluster, default_layout(cluster.name))
    node.up()
    set_real_node_only(cluster, True)
    store = ModelStore(
        CACHE_ROOT / "modelstore", cluster.bin_dir / "modelstore", node.layout.node_ip
    )
    store.start()
    models = Path(
        subprocess.run(
            [sys.executable, str(REPO_ROOT / "examples/model_cache.py")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    uri = store.push(models / "mlp.pt", "models/mlp")
    sha = hashlib.sha256((models / "mlp.pt").read_bytes()).hexdigest()
    install_api(cluster)
    cluster.apply_objects([{"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": NS, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}])  # fmt: skip
    cluster.apply_objects([store.secret_for("model-store", NS)], namespace=NS)
    op = OperatorProcess.start(
        cluster.kubeconfig, CACHE / "coldstart-operator.log", namespaces=(NS,)
    )
    runs: list[dict[str, float]] = []
    try:
        # One unmeasured run: the first container start after a node start pays for cold page cache.
        one_run(cluster, 0, uri, sha)
        for i in range(1, args.runs + 1):
            r = one_run(cluster, i, uri, sha)
            log(f"run {i}: " + ", ".join(f"{k} {v:.2f}s" for k, v in r.items()))
            runs.append(r)
    finally:
        op.stop()
        set_real_node_only(cluster, False)
    summary = {
        p: {
            "p50": round(statistics.median([r[p] for r in runs if p in r]), 3),
            "max": round(max(r[p] for r in runs if p in r), 3),
        }
        for p in PHASES
        if any(p in r for r in runs)
    }
    doc = {
        "benchmark": "coldstart",
        "when": now_iso(),
        "commit": git_head(),
        "machine": machine(),
        "method": __doc__,
        "phases": list(PHASES),
        "runs": runs,
        "summary": summary,
        "images": json.loads((CACHE_ROOT / "images" / "images.json").read_text()),
    }
    path = write_result(args.name, doc)
    log(f"wrote {path}")
    plot(doc, RESULTS / f"{args.name}.png")
    return 0


def plot(doc: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, phases = doc["runs"], [p for p in doc["phases"] if p in doc["summary"]]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    colors = plt.get_cmap("tab10")
    for i, r in enumerate(runs):
        prev = 0.0
        for j, p in enumerate(phases):
            if p not in r:
                continue
            ax.barh(i + 1, r[p] - prev, left=prev, color=colors(j), label=p if i == 0 else None)
            prev = r[p]
    ax.set_xlabel("seconds since kubectl apply")
    ax.set_ylabel("run")
    total = doc["summary"]["md_ready"]
    ax.set_title(f"Cold start on the real node (CPU example, image on the node): "
                 f"p50 {total['p50']:.1f}s, max {total['max']:.1f}s")  # fmt: skip
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
