"""The per-kind table (airt_operator.api.kinds): one descriptor drives parsing, the root model's
name rule and the CRD, so the three cannot disagree."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from airt_operator import crdgen
from airt_operator.api import (
    INFERENCE_RUNTIME,
    KINDS,
    MODEL_DEPLOYMENT,
    NAMESPACED_INFERENCE_RUNTIME,
    ApiValidationError,
    InferenceRuntime,
    ModelDeployment,
    NamespacedInferenceRuntime,
    parse_object,
)
from airt_operator.api.kinds import BY_KIND

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = {
    "ModelDeployment": ROOT / "examples/deployments/cpu-mlp.yaml",
    "InferenceRuntime": ROOT / "examples/runtimes/torch-cpu.yaml",
    "NamespacedInferenceRuntime": ROOT / "examples/runtimes/byo/team-mlserver.yaml",
}


def test_the_table_names_each_kind_once() -> None:
    assert [k.kind for k in KINDS] == [
        "ModelDeployment",
        "InferenceRuntime",
        "NamespacedInferenceRuntime",
    ]
    assert BY_KIND == {
        "ModelDeployment": MODEL_DEPLOYMENT,
        "InferenceRuntime": INFERENCE_RUNTIME,
        "NamespacedInferenceRuntime": NAMESPACED_INFERENCE_RUNTIME,
    }
    assert MODEL_DEPLOYMENT.model is ModelDeployment and INFERENCE_RUNTIME.model is InferenceRuntime
    assert NAMESPACED_INFERENCE_RUNTIME.model is NamespacedInferenceRuntime
    assert (MODEL_DEPLOYMENT.scope, INFERENCE_RUNTIME.scope) == ("Namespaced", "Cluster")
    # The team's kind shares the catalog's spec, and is namespaced.
    assert NAMESPACED_INFERENCE_RUNTIME.spec is INFERENCE_RUNTIME.spec
    assert NAMESPACED_INFERENCE_RUNTIME.scope == "Namespaced"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_the_crd_is_built_from_the_descriptor(kind: crdgen.ApiKind) -> None:  # type: ignore[type-arg]
    crd = crdgen.all_crds()[f"airt.dev_{kind.plural}.yaml"]
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        kind.kind,
        kind.plural,
        [kind.short_name],
    )
    version = crd["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        c.name for c in kind.columns
    ]
    assert ("scale" in version["subresources"]) is kind.scale
    name = version["schema"]["openAPIV3Schema"]["properties"]["metadata"]["properties"]["name"]
    assert (name["pattern"], name["maxLength"]) == (kind.name_pattern, kind.name_max_length)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_the_root_model_enforces_the_name_bounds_the_crd_declares(kind: crdgen.ApiKind) -> None:  # type: ignore[type-arg]
    example = EXAMPLES[kind.kind]
    raw = yaml.safe_load(example.read_text())
    assert kind.parse(raw).metadata.name == raw["metadata"]["name"]
    raw["metadata"]["name"] = "a" * (kind.name_max_length + 1)
    with pytest.raises(ApiValidationError) as err:
        kind.parse(raw)
    assert err.value.paths == ("metadata.name",)


def test_a_bare_spec_and_parse_object_go_through_the_descriptor() -> None:
    spec = {"model": {"uri": "pvc://models/m.pt", "format": "torchscript"}}
    md = MODEL_DEPLOYMENT.parse(spec)
    assert isinstance(md, ModelDeployment) and md.metadata.name is None
    assert md.spec == MODEL_DEPLOYMENT.parse_spec(spec)
    again = parse_object({"kind": "ModelDeployment", "metadata": {"name": "m"}, "spec": spec})
    assert isinstance(again, ModelDeployment) and again.spec == md.spec
    with pytest.raises(ApiValidationError):
        INFERENCE_RUNTIME.parse("not an object")  # type: ignore[arg-type]
