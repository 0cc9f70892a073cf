"""Operator scale: N ModelDeployments applied at once, against the same children applied directly.

Called by bench/run.py (`--operator`, `--quick`); writes `docs/benchmarks/operator.json` (or
`operator-quick.json`). It runs on its own local control plane (`airt-bench`: the real
kube-apiserver, etcd, controller-manager and scheduler plus kwok nodes, from the project's pinned
binaries), so tests on the `airt` cluster neither disturb nor see it, and its
audit policy logs every request (reads too) so requests per ModelDeployment can be counted by
user agent. Each size N gets a fresh control plane and two namespaces:

- baseline: the children the operator would render for each ModelDeployment
  (`airt_operator.reconcile.render`), owner references removed, applied by parallel
  `kubectl apply --server-side`; time until every Deployment is Available;
- operator: the real `airt-operator run` process scoped to its namespace; all N ModelDeployments
  applied in one go; time until every one reports Ready=True; the operator's CPU seconds and
  peak RSS (VmHWM) from /proc; its API requests from the audit log during creation and over
  60 s of steady state.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from airt_dev.cluster import Cluster, ClusterManager
from airt_dev.fixtures import ensure_fixtures, example_copies
from airt_dev.operator_proc import OperatorProcess
from airt_operator.api import parse_inference_runtime, parse_model_deployment
from airt_operator.reconcile.build import BuildSettings, build_context
from airt_operator.reconcile.render import render
from airt_operator.reconcile.resolve import resolve
from common import BENCH, CACHE, ROOT, log, machine, now_iso, venv_python, write_result
from stacks import top_frames

AGENTS = ("airt-operator/", "kopf/")
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
FIELD_MANAGER = "airt-bench"
PARALLEL_APPLIES = 4
CHUNK = 200


class BenchCluster(ClusterManager):
    """The `airt-bench` cluster: the bench's node pool, an audit log of every request, and a
    Service range large enough for thousands of Services."""

    def write_config(self) -> Path:
        path = super().write_config()
        policy = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived"],
            "rules": [{"level": "Metadata"}],
        }
        audit = self.kwok_workdir / f"{self.name}-audit-policy.yaml"
        audit.write_text(yaml.safe_dump(policy, sort_keys=False))
        # The API server's default Service range is a /24 (254 addresses); 1,000 ModelDeployments
        # plus the baseline's copies need 2,000 Services.
        config = yaml.safe_load(path.read_text())
        config["componentsPatches"] = [
            {
                "name": "kube-apiserver",
                "extraArgs": [{"key": "service-cluster-ip-range", "value": "10.96.0.0/16"}],
            }
        ]
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path


def bench_cluster() -> BenchCluster:
    return BenchCluster(name="airt-bench", nodepool=BENCH / "nodepool.yaml")


def model_deployments(n: int) -> list[dict[str, Any]]:
    """N copies of the CPU example: one replica each, small requests so that all fit."""
    return example_copies(n, "mlp", cpu="100m", memory="256Mi")


def rendered_children(mds: list[dict[str, Any]], ns: str) -> list[dict[str, Any]]:
    """What the operator would apply for each ModelDeployment, without owner references."""
    runtimes = [
        parse_inference_runtime(yaml.safe_load(p.read_text()))
        for p in sorted((ROOT / "examples" / "runtimes").glob("*.yaml"))
    ]
    out: list[dict[str, Any]] = []
    for raw in mds:
        md = parse_model_deployment({**raw, "metadata": {**raw["metadata"], "namespace": ns}})
        ctx = build_context(
            md, resolve(md, runtimes), BuildSettings.defaults(), str(uuid.uuid4()), 1, False
        )
        for child in render(ctx):
            child["metadata"].pop("ownerReferences", None)
            child["metadata"]["namespace"] = ns
            out.append(child)
    return out


def apply_parallel(cluster: Cluster, ns: str, objs: list[dict[str, Any]]) -> None:
    """Server-side apply in chunks by several kubectl processes at once."""
    chunks = [objs[i : i + CHUNK] for i in range(0, len(objs), CHUNK)]

    def one(chunk: list[dict[str, Any]]) -> None:
        cluster.apply_objects(chunk, ns, field_manager=FIELD_MANAGER)

    with ThreadPoolExecutor(PARALLEL_APPLIES) as pool:
        list(pool.map(one, chunks))


def count_lines(cluster: Cluster, kind: str, ns: str, jsonpath: str, want: str) -> int:
    out = cluster.kubectl("get", kind, "-n", ns, "-o", f"jsonpath={jsonpath}", check=False)
    return sum(1 for line in out.stdout.splitlines() if line.strip() == want)


def wait_count(
    cluster: Cluster, kind: str, ns: str, jsonpath: str, want: str, n: int, timeout_s: float
) -> tuple[float | None, int]:
    """Seconds (monotonic) at which `n` objects matched, or None at the deadline; last count."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        seen = count_lines(cluster, kind, ns, jsonpath, want)
        if seen >= n:
            return time.monotonic(), seen
        # Listing N objects costs the API server and this 2-core machine; poll less as N grows.
        time.sleep(1.0 + n / 250)
    return None, seen


READY = '{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}'
AVAILABLE = '{range .items[*]}{.status.conditions[?(@.type=="Available")].status}{"\\n"}{end}'


@dataclass
class Requests:
    total: int
    writes: int
    by_verb: dict[str, int]


@dataclass
class AuditTail:
    """The operator's requests from the audit log, read incrementally (the log grows large)."""

    path: Path
    offset: int = 0
    seen: list[tuple[datetime, str, str]] = field(default_factory=list)  # when, verb, ns

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # only whole lines; the rest waits for the next poll
        self.offset += end
        for raw in data[:end].splitlines():
            if b'"ResponseComplete"' not in raw or not any(a.encode() in raw for a in AGENTS):
                continue
            ev = json.loads(raw)
            if not str(ev.get("userAgent", "")).startswith(AGENTS):
                continue
            when = datetime.fromisoformat(ev["requestReceivedTimestamp"].replace("Z", "+00:00"))
            ref = ev.get("objectRef", {})
            res = ref.get("resource", "") + (
                f"/{ref['subresource']}" if ref.get("subresource") else ""
            )
            self.seen.append((when, f"{ev['verb']} {res}", ref.get("namespace", "")))

    def requests(self, ns: str, since: datetime, until: datetime | None = None) -> Requests:
        """The operator's requests in [since, until) on `ns` or cluster-scoped objects."""
        self.poll()
        verbs: Counter[str] = Counter(
            what
            for when, what, where in self.seen
            if where in (ns, "") and when >= since and (until is None or when < until)
        )
        writes = sum(v for k, v in verbs.items() if k.split(" ", 1)[0] in WRITE_VERBS)
        return Requests(sum(verbs.values()), writes, dict(verbs.most_common()))


def proc_usage(pid: int) -> dict[str, float]:
    """CPU seconds (user+system) and peak/current RSS in MB of a live process, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    status = {
        line.split(":")[0]: line.split(":")[1].strip()
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    }
    return {
        "cpu_s": cpu,
        "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
        "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
    }


def fresh_namespace(cluster: Cluster, prefix: str) -> str:
    ns = f"{prefix}-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", ns)
    ensure_fixtures(cluster, ns)
    return ns


def run_baseline(cluster: Cluster, n: int, timeout_s: float) -> dict[str, Any]:
    ns = fresh_namespace(cluster, f"base-{n}")
    children = rendered_children(model_deployments(n), ns)
    t0 = time.monotonic()
    apply_parallel(cluster, ns, children)
    applied = time.monotonic() - t0
    done, seen = wait_count(cluster, "deployments", ns, AVAILABLE, "True", n, timeout_s)
    return {
        "namespace": ns,
        "objects_applied": len(children),
        "apply_s": applied,
        "all_available_s": (done - t0) if done else None,
        "available": seen,
        "timed_out": done is None,
    }


def run_operator(
    cluster: Cluster,
    n: int,
    timeout_s: float,
    steady_s: float,
    profile: bool = False,
    mem_frames: int = 0,
    census: bool = False,
    label: str = "operator",
) -> dict[str, Any]:
    ns = fresh_namespace(cluster, f"op-{n}")
    log_path = CACHE / "runs" / "operator" / f"operator-{n}.log"
    snapshot_path = log_path.with_suffix(".tracemalloc")
    census_path = log_path.with_suffix(".census.json")
    env = memprobe_env(mem_frames, snapshot_path, census_path if census else None)
    env = env if (mem_frames or census) else None
    op = OperatorProcess.start(
        cluster.kubeconfig, log_path, namespaces=(ns,), standalone=True, extra_env=env
    )
    pid = op.proc.pid
    collapsed = log_path.with_suffix(".collapsed")
    spy = start_py_spy(pid, collapsed) if profile else None
    audit = AuditTail(cluster.audit_log)
    audit.poll()  # skip what came before
    try:
        idle = proc_usage(pid)
        since = datetime.now(UTC)
        t0 = time.monotonic()
        cluster.apply_objects(model_deployments(n), ns, field_manager=FIELD_MANAGER)
        applied = time.monotonic() - t0
        done, seen = wait_count(cluster, "md", ns, READY, "True", n, timeout_s)
        ready_at = datetime.now(UTC)
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(timeout=60)
        at_ready = proc_usage(pid)
        if mem_frames:
            memory = take_memprofile(pid, snapshot_path, n, at_ready)
            write_result(f"memprofile-operator-{n}", memory)
        if census:
            write_result(f"memcensus-operator-{n}", take_census(pid, census_path, n, at_ready))
        # Let the tail of the creation burst (status updates after Ready) finish, then watch.
        settle_deadline = time.monotonic() + 120
        while time.monotonic() < settle_deadline:
            recent = audit.requests(ns, datetime.fromtimestamp(time.time() - 5, UTC))
            if recent.writes == 0:
                break
            time.sleep(2)
        settled_at = datetime.now(UTC)
        creation = audit.requests(ns, since, settled_at)
        at_settled = proc_usage(pid)
        time.sleep(steady_s)
        steady = audit.requests(ns, settled_at)
        end = proc_usage(pid)
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        op.stop()
    if spy is not None and collapsed.exists():
        prof = top_frames(collapsed)
        prof.update(n=n, taken=now_iso(), collapsed=str(collapsed), what="operator, creation")
        write_result(f"profile-{label}-{n}", prof)
    return {
        "namespace": ns,
        "apply_s": applied,
        "all_ready_s": (done - t0) if done else None,
        "ready": seen,
        "timed_out": done is None,
        "settle_s": (settled_at - ready_at).total_seconds(),
        "operator_cpu_s_creation": at_ready["cpu_s"] - idle["cpu_s"],
        "operator_cpu_s_steady": end["cpu_s"] - at_settled["cpu_s"],
        "operator_cpu_s_total": end["cpu_s"],
        "operator_rss_mb_idle": idle["rss_mb"],
        "operator_peak_rss_mb": end["peak_rss_mb"],
        "creation_requests": creation.total,
        "creation_writes": creation.writes,
        "creation_requests_per_md": creation.total / n,
        "creation_writes_per_md": creation.writes / n,
        "creation_by_verb": creation.by_verb,
        "steady_window_s": steady_s,
        "steady_requests": steady.total,
        "steady_writes": steady.writes,
        "steady_requests_per_md": steady.total / n,
        "steady_by_verb": steady.by_verb,
        "log": str(log_path),
    }


def memprobe_env(frames: int, out: Path, census: Path | None) -> dict[str, str]:
    """Environment that loads bench/memprobe into the operator: tracemalloc (`frames` > 0)
    or a census of who holds memory (`census`), both written on SIGUSR1."""
    path = [str(BENCH / "memprobe"), os.environ.get("PYTHONPATH", "")]
    env = {"PYTHONPATH": os.pathsep.join(p for p in path if p)}
    if frames:
        env |= {"AIRT_BENCH_TRACEMALLOC": str(frames), "AIRT_BENCH_TRACEMALLOC_OUT": str(out)}
    if census is not None:
        env["AIRT_BENCH_MEMCENSUS"] = str(census)
    return env


def _signal_and_wait(pid: int, out: Path, timeout_s: float = 300) -> None:
    out.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout_s
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(1)


def take_census(pid: int, out: Path, n: int, usage: dict[str, float]) -> dict[str, Any]:
    """Ask the operator for its memory census (SIGUSR1, bench/memprobe) when all are Ready."""
    _signal_and_wait(pid, out)
    census: dict[str, Any] = json.loads(out.read_text())
    return {
        "n": n,
        "taken": now_iso(),
        "what": "operator memory census when all ModelDeployments were Ready (bench/memprobe)",
        "rss_mb": usage["rss_mb"],
        "peak_rss_mb": usage["peak_rss_mb"],
        **census,
    }


def take_memprofile(pid: int, out: Path, n: int, usage: dict[str, float]) -> dict[str, Any]:
    """Ask the operator for a tracemalloc snapshot (SIGUSR1) and summarise where memory lives:
    by line, and by the first frame in the operator's own code (who asked for it)."""
    import tracemalloc

    _signal_and_wait(pid, out)
    snap = tracemalloc.Snapshot.load(str(out))
    total = sum(s.size for s in snap.statistics("filename"))

    by_line = [
        {"where": str(s.traceback[0]), "mb": s.size / 2**20, "blocks": s.count}
        for s in snap.statistics("lineno")[:40]
    ]
    by_file = [
        {"where": str(s.traceback[0].filename), "mb": s.size / 2**20, "blocks": s.count}
        for s in snap.statistics("filename")[:25]
    ]
    by_owner: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for s in snap.statistics("traceback"):
        frames = list(reversed(s.traceback))  # innermost (the allocation) first
        ours = next((f for f in frames if "airt_operator" in f.filename), None)
        label = (
            f"{ours.filename.split('airt_operator/')[-1]}:{ours.lineno}"
            if ours
            else (
                "kopf: "
                + next(
                    (
                        f"{f.filename.split('site-packages/')[-1]}:{f.lineno}"
                        for f in frames
                        if "/kopf/" in f.filename
                    ),
                    "other (imports, libraries)",
                )
            )
        )
        by_owner[label] += s.size
        counts[label] += s.count
    return {
        "n": n,
        "taken": now_iso(),
        "what": "operator, tracemalloc snapshot when all ModelDeployments were Ready",
        "rss_mb": usage["rss_mb"],
        "peak_rss_mb": usage["peak_rss_mb"],
        "traced_mb": total / 2**20,
        "snapshot": str(out),
        "by_file": by_file,
        "by_line": by_line,
        "by_owner": [
            {"where": k, "mb": v / 2**20, "blocks": counts[k]} for k, v in by_owner.most_common(40)
        ],
    }


def start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy (from the bench's tools venv) sampling the operator until SIGINT."""
    py_spy = venv_python("tools").parent / "py-spy"
    argv = [str(py_spy), "record", "--pid", str(pid), "--rate", "100", "--nonblocking"]
    argv += ["--format", "raw", "--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def prepare(mgr: ClusterManager) -> Cluster:
    mgr.down()
    mgr.up(timeout_s=300)
    cluster = mgr.cluster()
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    cluster.wait_crds_established()
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "examples" / "runtimes"))
    return cluster


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="N=100 only, 20 s steady window")
    ap.add_argument("--sizes", default="", help="comma separated, default 100,300,1000")
    ap.add_argument("--steady", type=float, default=0.0, help="steady-state window, seconds")
    ap.add_argument("--timeout", type=float, default=1500.0, help="per run, seconds")
    ap.add_argument("--keep-cluster", action="store_true")
    ap.add_argument("--profile", action="store_true", help="py-spy the operator while creating")
    ap.add_argument("--name", default="")
    ap.add_argument("--no-baseline", action="store_true", help="operator runs only")
    ap.add_argument(
        "--profile-label", default="operator", help="profile file name: profile-LABEL-N.json"
    )
    ap.add_argument(
        "--memprofile",
        type=int,
        default=0,
        metavar="FRAMES",
        help="trace the operator's allocations (tracemalloc, FRAMES deep; slows it) and write "
        "memprofile-operator-N.json when all are Ready",
    )
    ap.add_argument(
        "--memcensus",
        action="store_true",
        help="write memcensus-operator-N.json (who holds the operator's memory) when all are Ready",
    )
    a = ap.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",") if s] or ([100] if a.quick else [100, 300, 1000])
    steady = a.steady or (20.0 if a.quick else 60.0)
    name = a.name or ("operator-quick" if a.quick else "operator")

    mgr = bench_cluster()
    started, t_start = now_iso(), time.monotonic()
    runs: list[dict[str, Any]] = []
    try:
        for n in sizes:
            log(f"operator scale N={n}: fresh control plane")
            cluster = prepare(mgr)
            base: dict[str, Any] = {"all_available_s": None, "skipped": True}
            if not a.no_baseline:
                base = run_baseline(cluster, n, a.timeout)
                log(f"  baseline: {base['all_available_s']} s until {n} Deployments Available")
            op = run_operator(
                cluster, n, a.timeout, steady, a.profile, a.memprofile, a.memcensus, a.profile_label
            )
            log(
                f"  operator: {op['all_ready_s']} s until {n} Ready; "
                f"cpu {op['operator_cpu_s_creation']:.1f} s; peak rss "
                f"{op['operator_peak_rss_mb']:.0f} MB; {op['creation_requests_per_md']:.1f} "
                f"req/MD; steady writes {op['steady_writes']}"
            )
            ratio = (
                op["all_ready_s"] / base["all_available_s"]
                if op["all_ready_s"] and base["all_available_s"]
                else None
            )
            runs.append({"n": n, "baseline": base, "operator": op, "ready_over_baseline": ratio})
            write_result(name, _doc(started, t_start, runs, steady))
    finally:
        if not a.keep_cluster:
            mgr.down()
    write_result(name, _doc(started, t_start, runs, steady))
    return 0


def _doc(started: str, t_start: float, runs: list[dict[str, Any]], steady: float) -> dict[str, Any]:
    return {
        "benchmark": "operator-scale",
        "started": started,
        "finished": now_iso(),
        "wall_s": time.monotonic() - t_start,
        "machine": machine(),
        "settings": {
            "cluster": "airt-bench: kube-apiserver/etcd/controller-manager/scheduler + kwok",
            "model_deployment": "examples/deployments/cpu-mlp.yaml, replicas 1, cpu 100m",
            "baseline_apply": f"{PARALLEL_APPLIES} parallel kubectl apply --server-side, "
            f"{CHUNK} objects each",
            "steady_window_s": steady,
            "audit": "every request at Metadata level; operator = user agents " + ", ".join(AGENTS),
        },
        "runs": runs,
    }


if __name__ == "__main__":
    sys.exit(main())
