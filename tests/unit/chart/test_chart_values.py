"""values.yaml and values.schema.json: every value commented, every object closed to typos.

Checks the two files as text and JSON (no helm needed): every key at the first two levels of
values.yaml has a comment right above it; every object in the schema says
`additionalProperties: false`, or gives a schema for its values (free-form maps such as labels),
or is one of the few Kubernetes types left to the API server to validate; and the defaults in
values.yaml are exactly what the schema describes.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from chart_helpers import CHART

VALUES = CHART / "values.yaml"
SCHEMA = CHART / "values.schema.json"
# Kubernetes types inside values, validated by the API server rather than by the chart's schema.
OPAQUE = {
    "/affinity/nodeAffinity",
    "/affinity/podAffinity",
    "/affinity/podAntiAffinity",
    "/operator/extraEnv/items/valueFrom",
    # InferenceRuntime fields, validated by the CRD when the chart applies them.
    "/defaultRuntimes/torchCpu/container",
    "/defaultRuntimes/torchCuda/container",
    "/exampleRuntimes/triton/spec",
    "/exampleRuntimes/mlserver/spec",
    "/exampleRuntimes/vllm/spec",
    # Helm's values shared by an umbrella chart with its subcharts: whatever the parent sets.
    "/global",
}
# Parents whose children are documented by the parent's comment and example.
DOCUMENTED_BY_PARENT = {"resources"}


def _objects(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if node.get("type") == "object":
        out.append((path, node))
    for key, child in (node.get("properties") or {}).items():
        out += _objects(child, f"{path}/{key}")
    if isinstance(node.get("items"), dict):
        out += _objects(node["items"], f"{path}/items")
    if isinstance(node.get("additionalProperties"), dict):
        out += _objects(node["additionalProperties"], f"{path}/*")
    return out


def test_every_schema_object_is_closed() -> None:
    schema = json.loads(SCHEMA.read_text())
    assert schema["additionalProperties"] is False
    for path, node in _objects(schema):
        extra = node.get("additionalProperties")
        if path in OPAQUE:
            assert extra is True, path
            continue
        assert extra is False or isinstance(extra, dict), f"{path or '/'} is open to typos"
        if extra is False:
            assert node.get("properties"), path


def test_every_schema_property_is_described() -> None:
    schema = json.loads(SCHEMA.read_text())
    for path, node in _objects(schema):
        for key, child in (node.get("properties") or {}).items():
            assert child.get("description"), f"{path}/{key} has no description"


def _check(value: Any, node: dict[str, Any], path: str) -> None:
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int}
    if "anyOf" in node:
        return
    expected = node.get("type")
    if expected in types:
        assert isinstance(value, types[expected]), (path, value)
    if isinstance(value, dict):
        props = node.get("properties") or {}
        for key in node.get("required", []):
            assert key in value, f"{path}/{key} is required by the schema"
        for key, child in value.items():
            if key in props:
                _check(child, props[key], f"{path}/{key}")
            else:
                extra = node.get("additionalProperties")
                assert extra not in (False, None), f"{path}/{key} is not in the schema"
                if isinstance(extra, dict):
                    _check(child, extra, f"{path}/{key}")
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            _check(item, node["items"], f"{path}/{i}")
    if isinstance(value, str) and "pattern" in node:
        assert re.search(node["pattern"], value), (path, value)
    if isinstance(value, str) and "enum" in node:
        assert value in node["enum"], (path, value)


def test_defaults_match_the_schema() -> None:
    _check(yaml.safe_load(VALUES.read_text()), json.loads(SCHEMA.read_text()), "")


def test_every_value_is_commented() -> None:
    lines = VALUES.read_text().splitlines()
    parents: list[str] = []
    missing = []
    for i, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][\w]*):", line)
        if not match:
            continue
        depth = len(match.group(1)) // 2
        parents = [*parents[:depth], match.group(2)]
        if depth > 1 or (depth == 1 and parents[0] in DOCUMENTED_BY_PARENT):
            continue
        previous = next((x.strip() for x in reversed(lines[:i]) if x.strip()), "")
        if not previous.startswith("#") and "#" not in line:
            missing.append(".".join(parents))
    assert not missing, f"values without a comment: {missing}"
