"""Unit tests of the API models: the examples parse, the shared invalid table is refused with the
right field path, wire round-trips, and the pure condition helpers.

Runs without a cluster; the cluster tier (tests/cluster/test_api.py) checks the same table
against the real API server.
"""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from airt_operator.api import (
    API_VERSION,
    GROUP,
    VERSION,
    ApiModel,
    ApiValidationError,
    CelRule,
    Condition,
    ConditionStatus,
    ConditionType,
    InferenceRuntime,
    ModelDeployment,
    Reason,
    parse_inference_runtime,
    parse_model_deployment,
    parse_model_deployment_spec,
    parse_object,
    ready_from,
    set_condition,
)

ROOT = Path(__file__).resolve().parents[3]


def _load_cases() -> ModuleType:
    path = Path(__file__).with_name("api_cases.py")
    spec = importlib.util.spec_from_file_location("airt_api_cases", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cases = _load_cases()
CASES = cases.load_cases()
EXAMPLES = sorted(
    p for p in (ROOT / "examples").rglob("*.yaml") if "models" not in p.relative_to(ROOT).parts[1:2]
)


def test_api_version_constant() -> None:
    assert f"{GROUP}/{VERSION}" == API_VERSION


def test_examples_are_many_and_all_parse() -> None:
    kinds: dict[str, int] = {}
    for path in EXAMPLES:
        text = path.read_text(encoding="utf-8")
        assert text.startswith("#"), f"{path} must open with a comment saying what it shows"
        for doc in yaml.safe_load_all(text):
            obj = parse_object(doc)
            kinds[obj.kind] = kinds.get(obj.kind, 0) + 1
    assert kinds.get("ModelDeployment", 0) >= 6
    assert kinds.get("InferenceRuntime", 0) >= 2


def test_default_runtimes_exist() -> None:
    names = set()
    for path in (ROOT / "examples" / "runtimes").glob("*.yaml"):
        names.add(parse_inference_runtime(yaml.safe_load(path.read_text())).metadata.name)
    assert {"torch-cpu", "torch-cuda"} <= names


def test_table_is_big_and_covers_every_category() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [c for c in CASES if not c.server_only], ids=lambda c: c.id)
def test_models_refuse_invalid_case(case: Any) -> None:
    with pytest.raises(ApiValidationError) as info:
        parse_object(case.manifest)
    expected = case.python_field or case.field
    assert expected in info.value.paths, str(info.value)
    assert expected in str(info.value)


VALID = cases.load_valid()


@pytest.mark.parametrize(("case_id", "manifest"), VALID, ids=[v[0] for v in VALID])
def test_models_accept_valid_edge_case(case_id: str, manifest: dict[str, Any]) -> None:
    parse_object(manifest)


def _rules() -> list[tuple[str, CelRule]]:
    import airt_operator.api as api

    out = []
    for name in api.__all__:
        obj = getattr(api, name)
        if isinstance(obj, type) and issubclass(obj, ApiModel):
            out += [(name, rule) for rule in obj.__dict__.get("cel_rules", ())]
    return out


def test_every_cel_rule_has_an_invalid_case() -> None:
    """Each rule is exercised by the shared table (so the cluster tier checks it on the server)."""
    messages = []
    for case in CASES:
        try:
            parse_object(case.manifest)
        except ApiValidationError as exc:
            messages += [e.message for e in exc.errors]
    rules = _rules()
    assert len(rules) >= 15
    missing = [f"{model}: {rule.message}" for model, rule in rules if rule.message not in messages]
    assert not missing, missing


def test_bases_are_valid() -> None:
    for base in cases.load_bases().values():
        parse_object(base)


def test_bare_spec_and_whole_object_parse_alike() -> None:
    spec = {"model": {"uri": "pvc://models/mlp/model.pt", "format": "torchscript"}}
    whole = {"apiVersion": API_VERSION, "kind": "ModelDeployment", "metadata": {"name": "m"}}
    a = parse_model_deployment(spec)
    b = parse_model_deployment({**whole, "spec": spec})
    assert a.spec == b.spec == parse_model_deployment_spec(spec)
    assert b.metadata.name == "m"
    assert a.spec.replicas == 1


def test_error_of_bare_spec_names_spec_path() -> None:
    with pytest.raises(ApiValidationError) as info:
        parse_model_deployment({"model": {"uri": "ftp://x/y", "format": "torchscript"}})
    assert info.value.paths == ("spec.model.uri",)
    assert "scheme" in str(info.value)


def test_error_lists_every_field() -> None:
    raw = {"model": {"uri": "ftp://x", "format": "ONNX"}, "replicas": -1}
    with pytest.raises(ApiValidationError) as info:
        parse_model_deployment(raw)
    assert set(info.value.paths) >= {"spec.model.format", "spec.replicas"}


def test_wire_round_trip_keeps_camel_case_and_drops_absent() -> None:
    for path in EXAMPLES:
        doc = yaml.safe_load(path.read_text())
        obj = parse_object(doc)
        wire = obj.to_wire()
        assert parse_object(wire) == obj
        if isinstance(obj, ModelDeployment):
            assert "status" not in wire
            gpu = wire["spec"].get("resources", {}).get("gpu")
            if gpu and "minMemoryGiB" in doc["spec"]["resources"]["gpu"]:
                assert "minMemoryGiB" in gpu


def test_python_names_and_wire_names_both_validate() -> None:
    from airt_operator.api import GpuRequest

    assert GpuRequest(min_memory_gib=40).min_memory_gib == 40
    assert GpuRequest.model_validate({"minMemoryGiB": 40}).min_memory_gib == 40


def test_status_parses_conditions_with_timestamps() -> None:
    md = parse_model_deployment(
        {
            "apiVersion": API_VERSION,
            "kind": "ModelDeployment",
            "metadata": {"name": "m", "generation": 3, "managedFields": [{"manager": "x"}]},
            "spec": {"model": {"uri": "pvc://c/p", "format": "torchscript"}},
            "status": {
                "observedGeneration": 3,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Ready",
                        "message": "",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
                "selector": "app=m",
            },
        }
    )
    assert md.status is not None and md.status.conditions
    assert md.status.conditions[0].last_transition_time.year == 2026
    assert md.metadata.generation == 3


def test_runtime_policy_and_defaults_parse() -> None:
    rt = parse_inference_runtime(
        {
            "images": {"worker": "ghcr.io/airt-dev/worker-cuda@sha256:" + "a" * 64},
            "formats": ["torchscript", "torch-export"],
            "accelerator": "nvidia",
            "policy": {"allowedImagePrefixes": ["ghcr.io/airt-dev/"], "maxGpusPerReplica": 8},
        }
    )
    assert isinstance(rt, InferenceRuntime)
    assert rt.spec.priority == 0 and rt.spec.auto_select is True
    assert rt.spec.policy is not None and rt.spec.policy.require_model_sha256 is False


def test_not_an_airt_kind() -> None:
    with pytest.raises(ApiValidationError) as info:
        parse_object({"kind": "Pod", "spec": {}})
    assert info.value.paths == ("kind",)


def _cond(type_: str, status: str, when: datetime, reason: str = "R") -> Condition:
    return Condition(type=type_, status=status, reason=reason, last_transition_time=when)  # type: ignore[arg-type]


def test_set_condition_keeps_transition_time_when_status_unchanged() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    t1 = t0 + timedelta(minutes=5)
    conds = [_cond("Ready", "False", t0), _cond("Scheduled", "True", t0)]
    same = set_condition(conds, _cond("Ready", "False", t1, reason="Other"))
    assert same[0].last_transition_time == t0 and same[0].reason == "Other"
    flipped = set_condition(conds, _cond("Ready", "True", t1))
    assert flipped[0].last_transition_time == t1
    assert [c.type for c in flipped] == ["Ready", "Scheduled"]
    added = set_condition(conds, _cond("Degraded", "False", t1))
    assert [c.type for c in added] == ["Ready", "Scheduled", "Degraded"]


def test_ready_is_the_conjunction() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    ok = [
        _cond(ConditionType.RUNTIME_RESOLVED, "True", t),
        _cond(ConditionType.SCHEDULED, "True", t),
        _cond(ConditionType.AVAILABLE, "True", t),
        _cond(ConditionType.DEGRADED, "False", t),
        _cond(ConditionType.PROGRESSING, "True", t),
    ]
    assert ready_from(ok) == (ConditionStatus.TRUE, "")
    bad = set_condition(ok, _cond(ConditionType.SCHEDULED, "False", t))
    assert ready_from(bad) == (ConditionStatus.FALSE, "Scheduled")
    partial = [c for c in bad if c.type != ConditionType.RUNTIME_RESOLVED]
    assert ready_from(partial) == (ConditionStatus.FALSE, "Scheduled")
    assert ready_from(ok[1:]) == (ConditionStatus.UNKNOWN, "RuntimeResolved")
    assert Reason.NO_MATCHING_GPU_NODES == "NoMatchingGPUNodes"


def test_condition_time_is_whole_seconds_utc_on_the_wire() -> None:
    local = datetime(2026, 1, 1, 12, 30, 15, 987654, tzinfo=UTC)
    cond = _cond("Ready", "True", local)
    wire = cond.to_wire()
    assert wire["lastTransitionTime"] == "2026-01-01T12:30:15Z"
    assert Condition.model_validate(wire) == cond
