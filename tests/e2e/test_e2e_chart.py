"""The Helm chart against the real control plane: lint, dry-run, install, RBAC, upgrade, uninstall.

e2e tier, on the session cluster (tests/conftest.py). One release in its own namespace (Pod
Security `restricted` enforced) goes through the platform team's whole life cycle, in the order
of the tests in this module. The operator's pods are kwok's (no image runs), so the operator
itself is run locally, authenticated with a token of the chart's ServiceAccount, to prove that
the chart's RBAC is enough for it and denies what it must not do.

The cluster is shared with other tiers: the airt CRDs may already exist (applied with kubectl),
so they are marked as the release's first (what `--take-ownership` does, docs/install.md), and
the default runtimes get release-specific names with autoSelect off so that they never change
which runtime another test's models resolve to. Uninstall keeps the CRDs (crds.keep), so
nobody's models go.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from airt_dev.cluster import Cluster
from airt_dev.wait import wait_for
from airt_operator import rbac

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "airt"
EXAMPLES = sorted((ROOT / "examples" / "deployments").glob("*.yaml"))
RUNTIMES = ROOT / "examples" / "runtimes"
CRD_NAMES = (
    "inferenceruntimes.airt.dev",
    "modeldeployments.airt.dev",
    "namespacedinferenceruntimes.airt.dev",
)


class Release:
    """One install of the chart: names, values and the helm/kubectl calls the tests make."""

    def __init__(self, cluster: Cluster, tmp: Path) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.cluster = cluster
        self.name = f"e2e-{suffix}"
        self.ns = f"airt-e2e-{suffix}"
        self.fullname = f"{self.name}-airt"
        self.sa = f"{self.fullname}-operator"
        self.install_output = ""
        self.values = tmp / "values.yaml"
        self.values.write_text(
            yaml.safe_dump(
                {
                    "defaultRuntimes": {
                        "torchCpu": {"name": f"{self.name}-torch-cpu", "autoSelect": False},
                        "torchCuda": {"name": f"{self.name}-torch-cuda", "autoSelect": False},
                    }
                }
            )
        )

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.helm(*args, check=check)

    def can_i(self, *args: str) -> bool:
        proc = self.cluster.kubectl(
            "auth", "can-i", *args, f"--as=system:serviceaccount:{self.ns}:{self.sa}", check=False
        )
        answer = proc.stdout.strip()
        assert answer in ("yes", "no"), proc.stdout + proc.stderr
        return answer == "yes"

    def adopt_existing_crds(self) -> None:
        """Mark CRDs that already exist as this release's, as `--take-ownership` would."""
        for name in CRD_NAMES:
            if self.cluster.kubectl("get", "crd", name, check=False).returncode != 0:
                continue
            self.cluster.kubectl(
                "annotate",
                "--overwrite",
                "crd",
                name,
                f"meta.helm.sh/release-name={self.name}",
                f"meta.helm.sh/release-namespace={self.ns}",
            )
            self.cluster.kubectl(
                "label", "--overwrite", "crd", name, "app.kubernetes.io/managed-by=Helm"
            )


@pytest.fixture(scope="module")
def release(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    for path in (ROOT / "crds").glob("*.yaml"):
        copy = CHART / "files" / "crds" / path.name
        if not copy.exists() or copy.read_text() != path.read_text():
            pytest.fail(
                f"{copy} differs from {path}: run `make generate` (the chart must install the "
                "CRDs the code generates, never older ones into a shared cluster)"
            )
    rel = Release(cluster, tmp_path_factory.mktemp("chart"))
    cluster.kubectl("create", "namespace", rel.ns)
    cluster.kubectl("label", "namespace", rel.ns, "pod-security.kubernetes.io/enforce=restricted")
    rel.adopt_existing_crds()
    try:
        yield rel
    finally:
        rel.helm("uninstall", rel.name, "-n", rel.ns, "--wait", "--timeout", "60s", check=False)
        cluster.kubectl("delete", "namespace", rel.ns, "--wait=false", check=False)
        # Hand the kept CRDs back to kubectl's field manager, as the cluster tier applies them,
        # so that its next `kubectl apply --server-side -f crds/` meets no conflict with helm.
        cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"), check=False
        )


@pytest.fixture(scope="module")
def installed(release: Release) -> Release:
    release.install_output = release.helm(
        "install",
        release.name,
        str(CHART),
        "-n",
        release.ns,
        "-f",
        str(release.values),
        "--wait",
        "--timeout",
        "120s",
    ).stdout
    return release


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c  # type: ignore[no-any-return]
    return {}


def test_helm_lint_is_clean(release: Release) -> None:
    for extra in ([], ["-f", str(release.values)]):
        proc = release.helm("lint", str(CHART), "--strict", *extra)
        assert "0 chart(s) failed" in proc.stdout
        assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_helm_install_succeeds(cluster: Cluster, installed: Release) -> None:
    rel = installed
    status = json.loads(rel.helm("status", rel.name, "-n", rel.ns, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    notes = rel.install_output
    assert f"rollout status deployment/{rel.sa}" in notes and "kubectl wait" in notes, notes
    deployment = cluster.get_json("deployment", rel.sa, "-n", rel.ns)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["status"].get("readyReplicas") == 2  # admitted under `restricted`
    role = cluster.get_json("clusterrole", rel.sa)
    cluster_mode = [*rbac.cluster_scoped_rules(), *rbac.namespaced_read_rules()]
    assert role["rules"] == [r.as_dict() for r in cluster_mode]
    write = cluster.get_json("clusterrole", f"{rel.sa}-write")
    assert write["rules"] == [r.as_dict() for r in rbac.namespaced_write_rules()]
    for name in CRD_NAMES:
        crd = cluster.get_json("crd", name)
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert _condition(crd, "Established").get("status") == "True"
    assert cluster.get_json("clusterkopfpeering", rel.fullname)["metadata"]["name"]


def test_helm_template_passes_server_side_dry_run(cluster: Cluster, installed: Release) -> None:
    """The chart's output, under a release name not installed yet, as the API server sees it."""
    rel = installed
    rendered = rel.helm(
        "template",
        f"{rel.name}-dry",
        str(CHART),
        "-n",
        rel.ns,
        "-f",
        str(rel.values),
        "--set",
        f"defaultRuntimes.torchCpu.name={rel.name}-dry-cpu",
        "--set",
        f"defaultRuntimes.torchCuda.name={rel.name}-dry-cuda",
        "--include-crds",
        "--kube-version",
        "1.34.4",
        "--api-versions",
        "airt.dev/v1alpha1/InferenceRuntime",
        "--api-versions",
        "kopf.dev/v1/ClusterKopfPeering",
    ).stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(rendered) if d}
    assert {"CustomResourceDefinition", "Deployment", "ClusterRole", "InferenceRuntime"} <= kinds
    proc = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "(server dry run)" in proc.stdout


def test_service_account_is_denied_what_it_must_not_do(installed: Release) -> None:
    rel = installed
    denied = [
        ("list", "secrets", "--all-namespaces"),
        ("list", "secrets", "-n", rel.ns),
        ("watch", "secrets", "--all-namespaces"),
        ("update", "secrets", "-n", "default"),
        ("create", "clusterroles"),
        ("create", "clusterrolebindings"),
        ("escalate", "roles", "-n", "default"),
        ("bind", "clusterroles"),
        ("impersonate", "serviceaccounts", "-n", "default"),
        ("delete", "customresourcedefinitions"),
        ("create", "modeldeployments.airt.dev", "-n", "default"),
        ("update", "modeldeployments.airt.dev", "-n", "default"),
        ("delete", "inferenceruntimes.airt.dev"),
        ("create", "pods", "-n", "default"),
        ("create", "pods/exec", "-n", "default"),
        ("delete", "namespaces"),
        ("create", "configmaps", "-n", "default"),
        ("patch", "nodes"),
        # The pods get no Role, so the operator needs no RBAC writes at all.
        ("create", "roles.rbac.authorization.k8s.io", "-n", "team-a"),
        ("create", "rolebindings.rbac.authorization.k8s.io", "-n", "team-a"),
    ]
    granted = [c for c in denied if rel.can_i(*c)]
    assert not granted, f"the operator's ServiceAccount may: {granted}"


def test_service_account_may_do_what_the_operator_needs(installed: Release) -> None:
    rel = installed
    needed = [
        ("watch", "modeldeployments.airt.dev", "--all-namespaces"),
        ("patch", "modeldeployments.airt.dev/status", "-n", "team-a"),
        ("watch", "inferenceruntimes.airt.dev"),
        ("patch", "inferenceruntimes.airt.dev/status"),
        ("create", "deployments.apps", "-n", "team-a"),
        ("patch", "services", "-n", "team-a"),
        # (finalizers is not a discoverable subresource: kubectl needs --subresource for it)
        ("update", "modeldeployments.airt.dev", "--subresource=finalizers", "-n", "team-a"),
        ("create", "networkpolicies.networking.k8s.io", "-n", "team-a"),
        ("create", "poddisruptionbudgets.policy", "-n", "team-a"),
        ("create", "horizontalpodautoscalers.autoscaling", "-n", "team-a"),
        ("watch", "pods", "--all-namespaces"),
        ("create", "events", "-n", "team-a"),
        ("patch", "clusterkopfpeerings.kopf.dev"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("watch", "namespaces"),
    ]
    # (servicemonitors are not asked about: kubectl cannot resolve a kind the cluster does not
    # serve; the unit tests check that rule in the generated ClusterRole.)
    missing = [c for c in needed if not rel.can_i(*c)]
    assert not missing, f"the operator's ServiceAccount may not: {missing}"


def test_admission_policy_keeps_the_operator_out_of_protected_namespaces(
    cluster: Cluster, installed: Release
) -> None:
    """RBAC grants the writes everywhere (it cannot say "all but"); the chart's
    ValidatingAdmissionPolicy refuses them in kube-system and the release's own namespace."""
    rel = installed
    who = f"--as=system:serviceaccount:{rel.ns}:{rel.sa}"
    service = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "airt-probe"},
            "spec": {"ports": [{"port": 80}]},
        }
    )

    def create(ns: str) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl(
            "create", "-n", ns, "--dry-run=server", who, "-f", "-", input=service, check=False
        )

    # The policy's binding takes effect within a second or so of its creation.
    for ns in ("kube-system", rel.ns):
        assert rel.can_i("create", "services", "-n", ns)  # RBAC alone would allow it
        denied = wait_for(
            lambda n=ns: (p := create(n)).returncode != 0 and p,  # type: ignore[misc]
            30,
            f"the policy to refuse the operator in {ns}",
        )
        assert "may not write in namespaces" in denied.stderr, denied.stderr
    other = f"{rel.ns}-team"
    cluster.kubectl("create", "namespace", other)
    try:
        allowed = create(other)
        assert allowed.returncode == 0, allowed.stderr
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_namespaced_mode_writes_only_in_its_namespaces(
    cluster: Cluster, installed: Release
) -> None:
    """The chart's RBAC with watchNamespaces, applied under another release name: impersonating
    its ServiceAccount, writes are allowed in the watched namespace and nowhere else."""
    rel = installed
    name = f"{rel.name}-ns"
    team, elsewhere = f"{rel.ns}-a", f"{rel.ns}-b"
    rendered = rel.helm(
        "template", name, str(CHART), "-n", rel.ns, "-f", str(rel.values),
        "--set", f"watchNamespaces={{{team}}}", "--kube-version", "1.34.4",
    ).stdout  # fmt: skip
    kinds = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    objs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in kinds]
    sa = next(o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount")
    for ns in (team, elsewhere):
        cluster.kubectl("create", "namespace", ns)
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})
    try:
        cluster.kubectl("apply", "-f", "-", input=doc)
        as_sa = f"--as=system:serviceaccount:{rel.ns}:{sa}"

        def can(*args: str) -> bool:
            out = cluster.kubectl("auth", "can-i", *args, as_sa, check=False).stdout.strip()
            return out == "yes"

        for verb, *resource in (
            ("create", "deployments.apps"),
            ("patch", "services"),
            ("delete", "networkpolicies.networking.k8s.io"),
            ("patch", "modeldeployments.airt.dev/status"),
            ("update", "modeldeployments.airt.dev", "--subresource=finalizers"),
            ("create", "events"),
        ):
            assert can(verb, *resource, "-n", team), (verb, resource)
            assert not can(verb, *resource, "-n", elsewhere), (verb, resource)
            assert not can(verb, *resource, "-n", "kube-system"), (verb, resource)
        assert can("watch", "modeldeployments.airt.dev", "-n", team)
        assert not can("watch", "modeldeployments.airt.dev", "--all-namespaces")
        assert can("patch", "inferenceruntimes.airt.dev/status")  # airt's own cluster-scoped CRD
        assert not can("patch", "clusterkopfpeerings.kopf.dev")
    finally:
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", input=doc, check=False)
        for ns in (team, elsewhere):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _operator_available() -> str | None:
    """None when `airt-operator run` exists in this environment, else what went wrong."""
    proc = subprocess.run(
        [sys.executable, "-m", "airt_operator.cli", "run", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return None if proc.returncode == 0 else proc.stdout + proc.stderr


def _token_kubeconfig(cluster: Cluster, rel: Release, path: Path) -> Path:
    """A kubeconfig for the same API server that authenticates as the chart's ServiceAccount."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    entry = dict(server["cluster"])
    ca = entry.pop("certificate-authority", None)
    if ca:
        ca_path = Path(ca)
        if not ca_path.is_absolute():
            ca_path = cluster.kubeconfig.parent / ca_path
        entry["certificate-authority-data"] = base64.b64encode(ca_path.read_bytes()).decode()
    token = cluster.kubectl("create", "token", rel.sa, "-n", rel.ns, "--duration=1h").stdout.strip()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "e2e", "cluster": entry}],
                "users": [{"name": rel.sa, "user": {"token": token}}],
                "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": rel.sa}}],
                "current-context": "e2e",
            }
        )
    )
    return path


def _all_ready(cluster: Cluster, ns: str) -> list[dict[str, Any]] | None:
    items: list[dict[str, Any]] = cluster.get_json("md", "-n", ns)["items"]
    if len(items) < len(EXAMPLES):
        return None
    if all(_condition(m, "Ready").get("status") == "True" for m in items):
        return items
    return None


def _drop_finalizers(cluster: Cluster, ns: str) -> None:
    listed = cluster.kubectl("get", "md", "-n", ns, "-o", "name", check=False)
    for name in listed.stdout.split():
        cluster.kubectl(
            "patch", "-n", ns, name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
            check=False,
        )  # fmt: skip


def test_operator_as_the_service_account_reconciles_the_examples(
    cluster: Cluster, installed: Release, tmp_path: Path
) -> None:
    unavailable = _operator_available()
    if unavailable is not None:
        pytest.skip(f"`airt-operator run` is not available yet: {unavailable[-300:]}")
    from airt_dev.fixtures import ensure_fixtures
    from airt_dev.operator_proc import OperatorProcess

    rel = installed
    whoami = cluster.kubectl(
        "--kubeconfig", str(_token_kubeconfig(cluster, rel, tmp_path / "sa.kubeconfig")),
        "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}",
    )  # fmt: skip
    assert whoami.stdout == f"system:serviceaccount:{rel.ns}:{rel.sa}"

    models = f"{rel.ns}-models"
    cluster.kubectl("create", "namespace", models)
    op = None
    try:
        cluster.kubectl(
            "label", "namespace", models, "pod-security.kubernetes.io/enforce=restricted"
        )
        ensure_fixtures(cluster, models)
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(RUNTIMES))
        op = OperatorProcess.start(
            tmp_path / "sa.kubeconfig", tmp_path / "operator.log", namespaces=(models,)
        )
        files = [a for p in EXAMPLES for a in ("-f", str(p))]
        cluster.kubectl("apply", "--server-side", "-n", models, *files)

        def report() -> str:
            items = cluster.get_json("md", "-n", models)["items"]
            ready = {m["metadata"]["name"]: _condition(m, "Ready") for m in items}
            return json.dumps(ready, indent=1) + "\n" + (op.log_tail(30) if op else "")

        def ready_or_forbidden() -> list[dict[str, Any]] | None:
            # A 403 will not go away by waiting: fail at once, with the API server's words.
            refused = [
                line
                for line in op.log_path.read_text(errors="replace").splitlines()
                if " 403 " in line or "forbidden" in line.lower()
            ]
            assert not refused, "the chart's RBAC refused the operator:\n" + "\n".join(refused[:3])
            return _all_ready(cluster, models)

        try:
            items = wait_for(ready_or_forbidden, 150, "every example Ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{report()}") from None
        for md in items:
            assert md["status"]["observedGeneration"] == md["metadata"]["generation"]

        # The chart's RBAC was enough: the API server refused the operator nothing.
        forbidden = [
            line
            for line in op.metrics().splitlines()
            if line.startswith("airt_operator_api_errors") and 'status="403"' in line
        ]
        assert not [line for line in forbidden if not line.endswith(" 0.0")], forbidden

        # Nothing the user owns was touched: applying every example again changes nothing.
        for path in EXAMPLES:
            diff = cluster.kubectl(
                "diff", "--server-side", "-n", models, "-f", str(path), check=False
            )
            assert diff.returncode == 0, f"{path.name} drifted:\n{diff.stdout}{diff.stderr}"
        before = {m["metadata"]["name"]: m["metadata"]["generation"] for m in items}
        out = cluster.kubectl("apply", "--server-side", "-n", models, *files).stdout
        assert out.count("serverside-applied") == len(EXAMPLES)
        after = cluster.get_json("md", "-n", models)["items"]
        assert {m["metadata"]["name"]: m["metadata"]["generation"] for m in after} == before
        for md in after:
            for entry in md["metadata"].get("managedFields", []):
                if entry["manager"] != "kubectl":
                    assert "f:spec" not in json.dumps(entry.get("fieldsV1", {})), entry
    finally:
        if op is not None:
            # Delete the models while the operator runs, so that kopf lifts its finalizers
            # (its timers put one on every ModelDeployment); only then stop it.
            cluster.kubectl(
                "delete", "md", "--all", "-n", models, "--wait", "--timeout=60s", check=False
            )
            op.stop()
        _drop_finalizers(cluster, models)  # whatever a stopped operator left behind
        cluster.kubectl("delete", "namespace", models, "--wait=false", check=False)
        cluster.kubectl("delete", "pv", f"airt-models-{models}", "--wait=false", check=False)


def test_helm_upgrade_with_changed_values(cluster: Cluster, installed: Release) -> None:
    rel = installed
    rel.helm(
        "upgrade",
        rel.name,
        str(CHART),
        "-n",
        rel.ns,
        "-f",
        str(rel.values),
        "--set",
        "replicaCount=3,operator.logFormat=plain,defaultRuntimes.torchCpu.priority=42",
        "--set",
        "defaultRuntimes.torchCuda.enabled=false",
        "--wait",
        "--timeout",
        "120s",
    )
    status = json.loads(rel.helm("status", rel.name, "-n", rel.ns, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed" and status["version"] == 2
    deployment = cluster.get_json("deployment", rel.sa, "-n", rel.ns)
    assert deployment["spec"]["replicas"] == 3
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["AIRT_OPERATOR_LOG_FORMAT"] == "plain"
    cpu = cluster.get_json("inferenceruntime", f"{rel.name}-torch-cpu")
    assert cpu["spec"]["priority"] == 42 and cpu["spec"]["autoSelect"] is False
    gone = cluster.kubectl("get", "inferenceruntime", f"{rel.name}-torch-cuda", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_helm_uninstall_keeps_the_crds(cluster: Cluster, installed: Release) -> None:
    rel = installed
    rel.helm("uninstall", rel.name, "-n", rel.ns, "--wait", "--timeout", "60s")
    for name in CRD_NAMES:
        crd = cluster.get_json("crd", name)  # still there, and still served
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert cluster.kubectl("get", "md", "-A", check=False).returncode == 0
    for args in (
        ("clusterrole", rel.sa),
        ("clusterrolebinding", rel.sa),
        ("clusterrole", f"{rel.sa}-write"),
        ("validatingadmissionpolicy", f"{rel.sa}-write"),
        ("clusterkopfpeering", rel.fullname),
        ("inferenceruntime", f"{rel.name}-torch-cpu"),
        ("deployment", rel.sa, "-n", rel.ns),
        ("serviceaccount", rel.sa, "-n", rel.ns),
    ):
        proc = cluster.kubectl("get", *args, check=False)
        assert proc.returncode != 0 and "NotFound" in proc.stderr, args
