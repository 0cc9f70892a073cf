"""The operator under control-plane faults, at full size: the heavy versions of
tests/cluster/test_faults.py, whose figures go into docs/reliability.md ("## Operator").

Run: `AIRT_CLUSTER_NAME=<name> uv run python bench/faults.py [--models 200] [--outage 45]
[--only sigkill,apiserver,etcd,peering,errors,never]`. It starts (or reuses) the named local
cluster and runs the real `airt-operator run` process, scenario by scenario, each in a fresh
namespace it deletes afterwards:

- sigkill: N ModelDeployments created at once, the operator SIGKILLed part-way, restarted:
  time to all Ready, duplicate or orphaned children, ReplicaSets per model;
- apiserver: kube-apiserver killed for `--outage` seconds right after drift (deleted Services)
  and status-changing spec edits on 20 Ready models: time to converge after it returns, lost
  status or Events;
- etcd: etcd killed for 10 s while 50 ModelDeployments are being created: time to all Ready;
- peering: two peered replicas, the active one SIGKILLed: time until the standby reconciles a
  new model;
- errors: every write of the operator answered 500/429/409 or a reset at random (30 %) for 60 s
  through the fault proxy while 20 models are created: time to all Ready, attempts;
- never: one model whose Deployment the API server always refuses (422): its reason, its apply
  attempts in the first 10 s after creation, and per minute over the three minutes after;
- retrying: the same with a 500 that never ends, which the operator retries with backoff and
  explains in status ("retrying after N failed attempts"): the same counts.

Components that exit on their own during an outage (the controller manager and the scheduler
lose their leader leases) are restarted, as a kubelet or systemd would. The result goes to
docs/benchmarks/faults.json. Nothing here passes or fails: it measures.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from airt_dev.cluster import Cluster, ClusterManager
from airt_dev.faults import ControlPlane, Fault, FaultProxy
from airt_dev.fixtures import ensure_fixtures, example_copies, install_api
from airt_dev.operator_proc import OperatorProcess
from airt_dev.wait import observe_for, wait_for
from common import git_head, log, machine, now_iso, write_result

SCENARIOS = ("sigkill", "apiserver", "etcd", "peering", "errors", "never", "retrying")
ROOT = Path(__file__).resolve().parents[1]
WORK = Path("/tmp") / "airt-bench-faults"


def _condition(md: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (md.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c  # type: ignore[no-any-return]
    return {}


def ready_count(cluster: Cluster, ns: str) -> int:
    items = cluster.get_json("md", "-n", ns)["items"]
    return sum(_condition(m, "Ready").get("status") == "True" for m in items)


def namespace(cluster: Cluster, prefix: str) -> str:
    ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    ensure_fixtures(cluster, ns)
    return ns


def drop(cluster: Cluster, ns: str) -> None:
    """Delete a scenario's namespace and wait until it is gone: the next scenario must not share
    the cluster's 254 Service IPs (a /24) with 200 Services still being deleted."""
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)

    def gone() -> bool:
        got = cluster.kubectl("get", "namespace", ns, "-o", "name", check=False)
        return got.returncode != 0

    try:
        wait_for(gone, 300, f"namespace {ns} to be deleted", interval_s=1.0)
    except AssertionError as exc:
        log(f"{exc}: going on")


def children_check(cluster: Cluster, ns: str) -> dict[str, Any]:
    """Duplicates and orphans among the operator's children, and ReplicaSets per model."""
    uids = {
        m["metadata"]["name"]: m["metadata"]["uid"]
        for m in cluster.get_json("md", "-n", ns)["items"]
    }
    out: dict[str, Any] = {"models": len(uids)}
    for kind in ("deployments", "services", "serviceaccounts", "networkpolicies"):
        items = cluster.get_json(
            kind, "-n", ns, "-l", "app.kubernetes.io/managed-by=airt-operator"
        )["items"]
        owners = [[r["uid"] for r in i["metadata"].get("ownerReferences", [])] for i in items]
        out[kind] = {
            "count": len(items),
            "orphans": sum(1 for o in owners if not set(o) & set(uids.values())),
            "multiple_owners": sum(1 for o in owners if len(o) != 1),
        }
    out["replicasets"] = len(cluster.get_json("replicasets", "-n", ns)["items"])
    return out


def reconciles(op: OperatorProcess) -> int:
    text = op.metrics()
    found = re.findall(r"^airt_operator_reconciles_total\{.*\} (\S+)$", text, re.M)
    return int(sum(float(v) for v in found))


def sigkill(cluster: Cluster, n: int) -> dict[str, Any]:
    ns = namespace(cluster, "bf-kill")
    try:
        cluster.apply_objects(example_copies(n, "kill", cpu="5m", memory="32Mi"), ns)
        first = OperatorProcess.start(cluster.kubeconfig, WORK / "kill-1.log", namespaces=(ns,))
        start = time.monotonic()
        wait_for(
            lambda: len(cluster.get_json("deployments", "-n", ns)["items"]) >= n // 3,
            600,
            "a third of the Deployments",
        )
        made = len(cluster.get_json("deployments", "-n", ns)["items"])
        first.kill()
        killed_at = time.monotonic()
        second = OperatorProcess.start(cluster.kubeconfig, WORK / "kill-2.log", namespaces=(ns,))
        try:
            wait_for(lambda: ready_count(cluster, ns) == n, 1200, f"{n} Ready", interval_s=2)
            done = time.monotonic()
            return {
                "models": n,
                "deployments_when_killed": made,
                "killed_after_s": round(killed_at - start, 1),
                "all_ready_after_restart_s": round(done - killed_at, 1),
                "children": children_check(cluster, ns),
            }
        finally:
            second.stop()
    finally:
        drop(cluster, ns)


def apiserver(cluster: Cluster, outage_s: float) -> dict[str, Any]:
    ns = namespace(cluster, "bf-api")
    n = 20
    op = OperatorProcess.start(cluster.kubeconfig, WORK / "api.log", namespaces=(ns,))
    plane = ControlPlane(cluster)
    try:
        models = example_copies(n, "api", cpu="5m", memory="32Mi")
        cluster.apply_objects(models, ns)
        wait_for(lambda: ready_count(cluster, ns) == n, 300, f"{n} Ready", interval_s=1)
        names = [m["metadata"]["name"] for m in models]
        drifted, edited = names[: n // 2], names[n // 2 :]
        for name in drifted:
            cluster.kubectl("delete", "service", name, "-n", ns, "--wait=false")
        for m in models[n // 2 :]:
            m["spec"]["runtime"] = {"name": "no-such-runtime"}
        cluster.apply_objects(models[n // 2 :], ns)
        plane["kube-apiserver"].kill()
        down = time.monotonic()
        unhealthy_after = None
        while time.monotonic() - down < outage_s:
            if unhealthy_after is None and not op.healthy():
                unhealthy_after = round(time.monotonic() - down, 1)
            time.sleep(0.5)
        plane["kube-apiserver"].start()
        plane["kube-apiserver"].wait_ready()
        up = time.monotonic()
        revived = plane.revive()

        def converged() -> bool:
            for name in drifted:
                got = cluster.kubectl("get", "service", name, "-n", ns, check=False)
                if got.returncode != 0:
                    return False
            for name in edited:
                md = cluster.get_json("md", name, "-n", ns)
                c = _condition(md, "RuntimeResolved")
                if c.get("reason") != "RuntimeNotFound":
                    return False
                if md["status"].get("observedGeneration") != md["metadata"]["generation"]:
                    return False
            return True

        wait_for(converged, 600, "convergence after the outage", interval_s=1)
        done = time.monotonic()
        events = cluster.get_json("events", "-n", ns, "--field-selector", "reason=RuntimeNotFound")
        with_event = {e["involvedObject"]["name"] for e in events["items"]}
        healthy_again = None
        wait_for(op.healthy, 60, "healthz again")
        healthy_again = round(time.monotonic() - up, 1)
        return {
            "models": n,
            "outage_s": outage_s,
            "healthz_failed_after_s": unhealthy_after,
            "healthz_ok_after_return_s": healthy_again,
            "components_restarted": revived,
            "converged_after_return_s": round(done - up, 1),
            "services_repaired": len(drifted),
            "status_edits_written": len(edited),
            "edits_missing_their_event": sorted(set(edited) - with_event),
        }
    finally:
        plane.revive()
        op.stop()
        drop(cluster, ns)


def etcd(cluster: Cluster) -> dict[str, Any]:
    ns = namespace(cluster, "bf-etcd")
    n = 50
    op = OperatorProcess.start(cluster.kubeconfig, WORK / "etcd.log", namespaces=(ns,))
    plane = ControlPlane(cluster)
    try:
        cluster.apply_objects(example_copies(n, "etcd", cpu="5m", memory="32Mi"), ns)
        wait_for(lambda: len(cluster.get_json("deployments", "-n", ns)["items"]) >= 5, 120, "load")
        plane["etcd"].kill()
        time.sleep(10)  # the outage itself is the measurement's input, not a wait for a state
        plane["etcd"].start()
        plane["kube-apiserver"].wait_ready()
        up = time.monotonic()
        revived = plane.revive()
        wait_for(lambda: ready_count(cluster, ns) == n, 900, f"{n} Ready", interval_s=2)
        return {
            "models": n,
            "etcd_down_s": 10,
            "components_restarted": revived,
            "all_ready_after_return_s": round(time.monotonic() - up, 1),
            "children": children_check(cluster, ns),
        }
    finally:
        plane.revive()
        op.stop()
        drop(cluster, ns)


def peering(cluster: Cluster) -> dict[str, Any]:
    ns = namespace(cluster, "bf-peer")
    name = "bench-peering"
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "charts" / "airt" / "crds"))
    peering_obj = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": name}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(peering_obj))
    env = {"AIRT_OPERATOR_PEERING_NAME": name}
    ops = [
        OperatorProcess.start(
            cluster.kubeconfig, WORK / f"peer{i}.log", (ns,), standalone=False, extra_env=env
        )
        for i in range(2)
    ]
    try:

        def both() -> bool:
            status = cluster.get_json("kopfpeering", name, "-n", ns).get("status") or {}
            return len(status) == 2

        wait_for(both, 60, "both replicas in the peering")
        status = cluster.get_json("kopfpeering", name, "-n", ns)["status"]
        top = max(int(p["priority"]) for p in status.values())
        active = next(op for op in ops if f"priority {top}" in op.log_path.read_text())
        standby = next(op for op in ops if op is not active)
        active.kill()
        killed = time.monotonic()
        cluster.apply_objects(example_copies(1, "after-kill", cpu="5m", memory="32Mi"), ns)
        wait_for(
            lambda: (
                cluster.kubectl(
                    "get", "deployment", "after-kill-0000", "-n", ns, check=False
                ).returncode
                == 0
            ),
            300,
            "the standby to take over",
            interval_s=0.5,
        )
        return {
            "takeover_s": round(time.monotonic() - killed, 1),
            "standby_healthy": standby.healthy(),
        }
    finally:
        for op in ops:
            op.stop()
        drop(cluster, ns)


def errors(cluster: Cluster) -> dict[str, Any]:
    ns = namespace(cluster, "bf-err")
    n = 20
    proxy = FaultProxy(cluster).start()
    rng = random.Random(7)
    op = OperatorProcess.start(
        proxy.kubeconfig(WORK / "proxy.kubeconfig"), WORK / "errors.log", namespaces=(ns,)
    )
    try:
        writes = rf"/namespaces/{ns}/"
        # 30 % of the operator's writes in this namespace fail, in four ways, for 60 s: the
        # faults are drawn up front (a Fault answers `times` matching requests in turn).
        draws = [rng.choice((500, 429, 409, 0)) for _ in range(400)]
        for method in ("PATCH", "POST"):
            proxy.add(*(Fault(method, writes, s, times=1) for s in draws if rng.random() < 0.3))
        start = time.monotonic()
        cluster.apply_objects(example_copies(n, "err", cpu="5m", memory="32Mi"), ns)
        observe_for(60)
        proxy.clear()
        wait_for(lambda: ready_count(cluster, ns) == n, 600, f"{n} Ready", interval_s=1)
        return {
            "models": n,
            "injected": {f"{m} {s or 'reset'}": c for (m, s), c in proxy.injected.items()},
            "operator_writes": proxy.count("PATCH", writes) + proxy.count("POST", writes),
            "all_ready_after_s": round(time.monotonic() - start, 1),
            "children": children_check(cluster, ns),
        }
    finally:
        op.stop()
        proxy.stop()
        drop(cluster, ns)


def never(cluster: Cluster, status: int = 422) -> dict[str, Any]:
    """A model whose Deployment apply is always answered `status`."""
    ns = namespace(cluster, "bf-never")
    proxy = FaultProxy(cluster).start()
    path = rf"/namespaces/{ns}/deployments/never-0000\b"
    proxy.add(Fault("PATCH", path, status))
    op = OperatorProcess.start(
        proxy.kubeconfig(WORK / f"never-{status}.kubeconfig"),
        WORK / f"never-{status}.log",
        namespaces=(ns,),
    )
    try:
        created = time.monotonic()
        cluster.apply_objects(example_copies(1, "never", cpu="5m", memory="32Mi"), ns)

        def refused() -> dict[str, Any]:
            md = cluster.get_json("md", "never-0000", "-n", ns)
            c = _condition(md, "Degraded")
            return c if c.get("reason") == "ApplyFailed" and str(status) in c["message"] else {}

        cond = wait_for(refused, 60, "the refusal in status")
        refused_after = time.monotonic() - created
        observe_for(max(0.0, created + 10 - time.monotonic()))
        first_10s = proxy.count("PATCH", path)
        per_minute = []
        for _ in range(3):
            before = proxy.count("PATCH", path)
            observe_for(60)
            per_minute.append(proxy.count("PATCH", path) - before)
        return {
            "reason": cond["reason"],
            "message": cond["message"][:200],
            "refused_in_status_after_s": round(refused_after, 1),
            "apply_attempts_first_10s": first_10s,
            "apply_attempts_per_minute": per_minute,
            "reconciles_total": reconciles(op),
        }
    finally:
        op.stop()
        proxy.stop()
        drop(cluster, ns)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--outage", type=float, default=45.0)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--name", default="faults")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    mgr = ClusterManager.from_env()
    mgr.up()
    cluster = mgr.cluster()
    install_api(cluster)
    result: dict[str, Any] = {"when": now_iso(), "commit": git_head(), "machine": machine()}
    runs = {
        "sigkill": lambda: sigkill(cluster, args.models),
        "apiserver": lambda: apiserver(cluster, args.outage),
        "etcd": lambda: etcd(cluster),
        "peering": lambda: peering(cluster),
        "errors": lambda: errors(cluster),
        "never": lambda: never(cluster),
        "retrying": lambda: never(cluster, 500),
    }
    for name in args.only.split(","):
        log(f"scenario {name}")
        try:
            result[name] = runs[name]()
        except Exception as exc:  # one scenario's failure is a result too
            result[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        log(json.dumps(result[name]))
    write_result(args.name, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
