"""The operator's ClusterRole: generated from airt_operator.rbac, least privilege, no drift.

Fails when charts/airt/files/operator-rules.yaml differs from what rbac.py produces (run
`make generate`), when a kind the operator touches has no rule, or when a rule grants what the
operator must never have (Secrets, cluster RBAC, wildcards).
"""

from __future__ import annotations

import subprocess
import sys

import yaml
from chart_helpers import CHART, ROOT, Render, one

from airt_operator import rbac
from airt_operator.kube.resources import (
    CHILD_KINDS,
    EVENT,
    INFERENCE_RUNTIME,
    MODEL_DEPLOYMENT,
    POD,
)

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
    assert not _allowed("", "secrets", "get") and not _allowed("", "secrets", "list")
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


def test_chart_cluster_role_is_exactly_the_generated_rules(render: Render) -> None:
    objects = render()
    role = one(objects, "ClusterRole")
    assert role["rules"] == [r.as_dict() for r in rbac.rules()]
    binding = one(objects, "ClusterRoleBinding")
    account = one(objects, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "airt-system"}
    ]


def test_rbac_create_false_renders_no_cluster_role(render: Render) -> None:
    objects = render("--set", "rbac.create=false")
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def _registered_selectors() -> dict[str, set[tuple[str, str]]]:
    """(group, plural) of every resource the operator's kopf handlers use, by handler family."""
    from unittest.mock import MagicMock

    import kopf

    from airt_operator.handlers import World, register

    registry = kopf.OperatorRegistry()
    register(registry, MagicMock(), World())
    families = {
        "watching": registry._watching,  # on.event
        "indexing": registry._indexing,  # kopf.index
        "changing": registry._changing,  # on.create/update/resume/delete
        "spawning": registry._spawning,  # timers and daemons
    }
    out: dict[str, set[tuple[str, str]]] = {}
    for family, sub in families.items():
        out[family] = set()
        for handler in sub.get_all_handlers():
            selector = handler.selector
            assert selector is not None and selector.any_name, handler.id
            out[family].add((selector.group or "", selector.any_name))
    return out


def test_every_resource_the_kopf_handlers_use_is_granted() -> None:
    """The handlers, not only the Kind table: a watch without a rule would be a 403 at run time."""
    families = _registered_selectors()
    assert families["watching"] and families["indexing"]
    for family, resources in families.items():
        for group, plural in sorted(resources):
            for verb in ("get", "list", "watch"):
                assert _allowed(group, plural, verb), (family, group, plural, verb)
    # Change handlers and timers make kopf write its bookkeeping on the object (metadata only).
    for group, plural in families["changing"] | families["spawning"]:
        assert _allowed(group, plural, "patch"), (group, plural)
