"""The operator's roles: generated from airt_operator.rbac, least privilege, no drift.

Fails when charts/airt/files/operator-rules.yaml or files/rbac/ differ from what rbac.py
produces (run `make generate`), when a kind the operator touches has no rule, when a rule grants
what the operator must never have (Secrets, RBAC writes, wildcards), or when an install mode
grants namespaced writes beyond what it confines (cluster mode: an admission policy guards the
protected namespaces; namespaced mode: Roles in the watched namespaces only).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import yaml
from chart_helpers import CHART, ROOT, Render, by_kind, one

from airt_operator import rbac
from airt_operator.kube.resources import (
    CHILD_KINDS,
    EVENT,
    INFERENCE_RUNTIME,
    MODEL_DEPLOYMENT,
    POD,
)
from airt_operator.watches import WATCHES

RULES_FILE = CHART / "files" / "operator-rules.yaml"


def _allowed(group: str, resource: str, verb: str) -> bool:
    return any(
        group in r.api_groups and resource in r.resources and verb in r.verbs for r in rbac.rules()
    )


def test_committed_rules_file_matches_rbac_py() -> None:
    assert RULES_FILE.read_text() == rbac.as_yaml(), (
        "charts/airt/files/operator-rules.yaml drifted from operator/airt_operator/rbac.py: "
        "run `make generate` and commit"
    )


def test_module_prints_the_same_rules() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "airt_operator.rbac"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert proc.stdout == rbac.as_yaml()
    parsed = yaml.safe_load(proc.stdout)
    assert parsed["rules"] == [r.as_dict() for r in rbac.rules()]


def test_every_kind_the_operator_touches_is_granted() -> None:
    for kind in (*CHILD_KINDS, MODEL_DEPLOYMENT, INFERENCE_RUNTIME, POD, EVENT):
        for verb in kind.verbs:
            assert _allowed(kind.group, kind.plural, verb), (kind.plural, verb)
    for kind in (MODEL_DEPLOYMENT, INFERENCE_RUNTIME):
        assert _allowed(kind.group, f"{kind.plural}/status", "patch")


def test_what_kopf_needs_is_granted() -> None:
    for resource in ("clusterkopfpeerings", "kopfpeerings"):
        for verb in ("get", "list", "watch", "patch"):
            assert _allowed("kopf.dev", resource, verb)
    for verb in ("get", "list", "watch"):
        assert _allowed("apiextensions.k8s.io", "customresourcedefinitions", verb)
    assert _allowed("", "namespaces", "list") and _allowed("", "namespaces", "watch")
    assert _allowed("", "events", "create")


def test_nothing_the_operator_must_never_have() -> None:
    for rule in rbac.rules():
        assert "*" not in rule.api_groups + rule.resources + rule.verbs, rule
        assert not {"escalate", "bind", "impersonate"} & set(rule.verbs), rule
    # Secrets: one by name (its metadata: the credentials label), never listed or watched, so
    # the operator cannot enumerate them; no write of any kind.
    assert _allowed("", "secrets", "get")
    for verb in ("list", "watch", "create", "update", "patch", "delete", "deletecollection"):
        assert not _allowed("", "secrets", verb), verb
    for resource in ("clusterroles", "clusterrolebindings"):
        for verb in ("create", "update", "patch", "delete"):
            assert not _allowed("rbac.authorization.k8s.io", resource, verb)
    # The custom resources' specs belong to their users: no create, update or delete on them.
    for kind in (MODEL_DEPLOYMENT, INFERENCE_RUNTIME):
        for verb in ("create", "update", "delete"):
            assert not _allowed(kind.group, kind.plural, verb), (kind.plural, verb)
    assert not _allowed("apiextensions.k8s.io", "customresourcedefinitions", "create")


def test_rules_are_deterministic_and_verbs_ordered() -> None:
    assert rbac.as_yaml() == rbac.as_yaml()
    for rule in rbac.rules():
        assert list(rule.verbs) == [v for v in rbac.VERB_ORDER if v in rule.verbs]
        assert rule.why


def test_committed_role_files_match_rbac_py() -> None:
    for name, make in rbac.ROLE_FILES.items():
        assert (CHART / "files" / "rbac" / name).read_text() == rbac.as_yaml(make()), (
            f"charts/airt/files/rbac/{name} drifted from rbac.py: run `make generate` and commit"
        )


def _named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def _writes(rules: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(group, resource, verb) of every write verb in `rules`."""
    return [
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
        if v not in ("get", "list", "watch")
    ]


NAMESPACED_WRITES = {
    (g, r, v) for g, r, v in _writes([x.as_dict() for x in rbac.namespaced_write_rules()])
}


def test_cluster_mode_splits_reads_from_writes_and_guards_protected_namespaces(
    render: Render,
) -> None:
    objects = render("--set", "rbac.protectedNamespaces={monitoring}")
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    read = _named(objects, "ClusterRole", "airt-operator")
    write = _named(objects, "ClusterRole", "airt-operator-write")
    assert read["rules"] == [
        r.as_dict() for r in [*rbac.cluster_scoped_rules(), *rbac.namespaced_read_rules()]
    ]
    assert write["rules"] == [r.as_dict() for r in rbac.namespaced_write_rules()]
    # The read role writes only cluster-scoped airt and kopf objects, never a namespaced one.
    assert not set(_writes(read["rules"])) & NAMESPACED_WRITES
    for name in ("airt-operator", "airt-operator-write"):
        binding = _named(objects, "ClusterRoleBinding", name)
        assert binding["roleRef"]["name"] == name
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": "airt-system"}
        ]
    assert not by_kind(objects, "Role") and not by_kind(objects, "RoleBinding")
    policy = one(objects, "ValidatingAdmissionPolicy")["spec"]
    guarded = policy["matchConstraints"]["namespaceSelector"]["matchExpressions"][0]["values"]
    assert guarded == ["kube-system", "airt-system", "monitoring"]
    assert (
        f"system:serviceaccount:airt-system:{account}" in policy["matchConditions"][0]["expression"]
    )
    assert policy["matchConstraints"]["resourceRules"][0]["operations"] == [
        "CREATE",
        "UPDATE",
        "DELETE",
    ]
    binding = one(objects, "ValidatingAdmissionPolicyBinding")["spec"]
    assert binding == {"policyName": "airt-operator-write", "validationActions": ["Deny"]}


def test_namespaced_mode_grants_writes_only_in_the_watched_namespaces(render: Render) -> None:
    objects = render("--set", "watchNamespaces={team-a,team-b}")
    cluster_role = one(objects, "ClusterRole")
    assert cluster_role["rules"] == [r.as_dict() for r in rbac.namespaced_mode_cluster_rules()]
    assert not set(_writes(cluster_role["rules"])) & NAMESPACED_WRITES
    assert {w[0] for w in _writes(cluster_role["rules"])} == {"airt.dev"}  # runtimes' status
    roles = by_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert role["rules"] == [
            r.as_dict() for r in [*rbac.namespaced_read_rules(), *rbac.namespaced_write_rules()]
        ]
    bindings = by_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert not by_kind(objects, "ValidatingAdmissionPolicy")
    env = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "AIRT_OPERATOR_NAMESPACES", "value": '["team-a","team-b"]'} in env
    # Replicas peer per namespace there: a KopfPeering in each, no ClusterKopfPeering.
    peerings = by_kind(objects, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert not by_kind(objects, "ClusterKopfPeering")


def test_rbac_create_false_renders_no_roles(render: Render) -> None:
    objects = render("--set", "rbac.create=false")
    kinds = {
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ValidatingAdmissionPolicy",
    }
    assert not [o for o in objects if o["kind"] in kinds]


def test_every_resource_the_kopf_handlers_watch_is_granted() -> None:
    """The handlers' watches (the table they are registered from), not only the Kind table: a
    watch without a rule would be a 403 at run time."""
    assert WATCHES
    for watch in WATCHES:
        for verb in watch.verbs:
            assert _allowed(watch.group, watch.plural, verb), (watch.group, watch.plural, verb)
    # Change handlers make kopf write its bookkeeping on the object (metadata only).
    changed = [w for w in WATCHES if w.spec_changes]
    assert changed and all("patch" in w.verbs for w in changed)


def test_default_runtimes_require_pinned_models_and_pass_access_policy(render: Render) -> None:
    objects = render(
        "--set-json",
        'defaultRuntimes.torchCpu.policy.namespaceSelector={"matchLabels":{"airt.dev/ml":"yes"}}',
        "--set-json",
        'defaultRuntimes.torchCpu.policy.allowedCredentialSecrets=["s3-models"]',
        "--set",
        "defaultRuntimes.torchCpu.policy.maxModelSize=8Gi",
    )
    runtimes = {
        r["metadata"]["name"]: r["spec"]["policy"] for r in by_kind(objects, "InferenceRuntime")
    }
    assert all(p["requireModelSha256"] is True for p in runtimes.values()), runtimes
    cpu = runtimes["torch-cpu"]
    assert cpu["namespaceSelector"] == {"matchLabels": {"airt.dev/ml": "yes"}}
    assert cpu["allowedCredentialSecrets"] == ["s3-models"] and cpu["maxModelSize"] == "8Gi"
    # What the chart renders is what the operator's own model accepts.
    from airt_operator.api import parse_inference_runtime

    for r in by_kind(objects, "InferenceRuntime"):
        parse_inference_runtime(r)
