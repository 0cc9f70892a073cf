"""Unit tests of the CRD generator: no drift from the committed files, structural schemas, CEL
rules where they belong, and the CRD niceties (subresources, printer columns, names).

The drift test is the `make`-independent CI check: it regenerates into a temporary directory and
compares byte for byte with crds/ and docs/api.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from airt_operator import crdgen

ROOT = Path(__file__).resolve().parents[3]
CRDS = crdgen.all_crds()
MD = CRDS["airt.dev_modeldeployments.yaml"]
IRT = CRDS["airt.dev_inferenceruntimes.yaml"]

# Type keys a structural schema may not carry inside anyOf/allOf/oneOf/not.
FORBIDDEN_IN_JUNCTORS = {"type", "description", "default", "properties", "items", "nullable"}


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def _node(crd: dict[str, Any], path: str) -> dict[str, Any]:
    return dict(_walk(_schema(crd)))[path]


def test_no_drift_from_committed_files(tmp_path: Path) -> None:
    written = crdgen.write_all(tmp_path / "crds", tmp_path / "docs" / "api.md")
    assert len(written) == 4  # three CRDs and the API reference
    for path in written:
        committed = ROOT / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} missing: run `airt-operator crds`"
        assert path.read_text() == committed.read_text(), (
            f"{committed.relative_to(ROOT)} differs from what the models generate: "
            "run `airt-operator crds`"
        )


def test_output_is_deterministic() -> None:
    assert crdgen.render_all() == crdgen.render_all()


def test_committed_crds_are_plain_yaml() -> None:
    for name in CRDS:
        text = (ROOT / "crds" / name).read_text()
        assert "&id" not in text and "*id" not in text
        assert yaml.safe_load(text) == CRDS[name]


@pytest.mark.parametrize("crd", [MD, IRT], ids=["md", "irt"])
def test_schema_is_structural(crd: dict[str, Any]) -> None:
    for path, node in _walk(_schema(crd)):
        assert "$ref" not in node and "allOf" not in node and "oneOf" not in node, path
        assert "nullable" not in node and "title" not in node, path
        assert node.get("additionalProperties") is not False, path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
            for branch in node["anyOf"]:
                assert set(branch) <= {"type"} and branch["type"] in ("integer", "string"), path
                assert not (set(branch) & (FORBIDDEN_IN_JUNCTORS - {"type"})), path
        else:
            assert node.get("type") in {"object", "array", "string", "integer", "boolean"}, path
        if "default" in node:
            assert node["default"] is not None, path


@pytest.mark.parametrize("crd", [MD, IRT], ids=["md", "irt"])
def test_every_field_is_described(crd: dict[str, Any]) -> None:
    for path, node in _walk(_schema(crd)):
        if path.startswith(".metadata") or path.endswith("[]") or path.endswith("{}"):
            continue
        assert node.get("description"), f"{path} has no description"


@pytest.mark.parametrize("crd", [MD, IRT], ids=["md", "irt"])
def test_cel_cost_bounds(crd: dict[str, Any]) -> None:
    """Strings and lists that CEL rules read carry maxLength / maxItems (cost estimation)."""
    for path, node in _walk(_schema(crd)):
        if not path.startswith((".spec", ".status")):
            continue
        if node.get("type") == "string":
            assert "maxLength" in node or "enum" in node or "format" in node, path
        if node.get("type") == "array":
            assert "maxItems" in node, path
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, path


def _rules(crd: dict[str, Any], path: str) -> list[dict[str, str]]:
    rules: list[dict[str, str]] = _node(crd, path).get("x-kubernetes-validations", [])
    return rules


def test_cel_rules_are_where_they_belong() -> None:
    gpu = _rules(MD, ".spec.resources.gpu")
    assert {r["fieldPath"] for r in gpu} == {
        ".minMemoryGiB",
        ".count",
        ".products",
        ".mig",
        ".alternatives",
    }
    assert any("self.mig" in r["rule"] for r in gpu)
    assert any(
        "minReplicas <= self.maxReplicas" in r["rule"] for r in _rules(MD, ".spec.autoscaling")
    )
    batching = _rules(MD, ".spec.batching")
    assert batching[0]["fieldPath"] == ".preferredBatchSizes"
    uri = _rules(MD, ".spec.model.uri")
    assert len(uri) >= 5 and all(r["message"] for r in uri)
    assert any("hf://" in r["rule"] for r in uri) and any("oci://" in r["rule"] for r in uri)
    assert _rules(MD, ".spec.resources.gpu.products[]")
    assert _rules(MD, ".spec.resources.gpu.mig")
    assert _rules(MD, ".spec.access")[0]["reason"] == "FieldValueForbidden"
    assert _rules(IRT, ".spec")[0]["fieldPath"] == ".policy.maxGpusPerReplica"
    for crd in (MD, IRT):
        for path, node in _walk(_schema(crd)):
            for rule in node.get("x-kubernetes-validations", []):
                assert list(rule)[:2] == ["rule", "message"], path
                assert rule["reason"].startswith("FieldValue"), path


def test_metadata_name_is_bounded() -> None:
    assert _node(MD, ".metadata.name")["maxLength"] == crdgen.MODEL_DEPLOYMENT_NAME_MAX
    assert _node(IRT, ".metadata.name")["maxLength"] == 63


def test_names_scope_and_category() -> None:
    assert MD["metadata"]["name"] == "modeldeployments.airt.dev"
    assert MD["spec"]["scope"] == "Namespaced" and IRT["spec"]["scope"] == "Cluster"
    assert MD["spec"]["names"]["shortNames"] == ["md"]
    assert IRT["spec"]["names"]["shortNames"] == ["irt"]
    for crd in (MD, IRT):
        assert crd["spec"]["names"]["categories"] == ["airt"]
        version = crd["spec"]["versions"][0]
        assert version["name"] == "v1alpha1" and version["served"] and version["storage"]


def test_subresources_and_printer_columns() -> None:
    version = MD["spec"]["versions"][0]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = {c["name"]: c for c in version["additionalPrinterColumns"] if "priority" not in c}
    assert list(columns) == [
        "Model",
        "Runtime",
        "GPU",
        "Allocated",
        "Ready",
        "Replicas",
        "URL",
        "Age",
    ]
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert "scale" not in IRT["spec"]["versions"][0]["subresources"]


def test_conditions_are_a_list_map_keyed_by_type() -> None:
    for crd in (MD, IRT):
        conditions = _node(crd, ".status.conditions")
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        assert "type" in conditions["items"]["required"]


def test_api_doc_lists_every_spec_field() -> None:
    doc = crdgen.render_all()["api.md"]
    for crd in (MD, IRT):
        for path, _ in _walk(_schema(crd)):
            if path.startswith(".spec.") and not path.endswith(("[]", "{}")):
                assert f"`{path.rsplit('.', 1)[-1]}`" in doc, path
    assert "minReplicas must be less than or equal to maxReplicas" in doc
    assert "## Design notes" in doc
