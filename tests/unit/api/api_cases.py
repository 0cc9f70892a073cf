"""The shared table of invalid manifests (invalid_cases.yaml) and how to build each object.

Loaded by path (importlib) by tests/unit/api (the models refuse each case) and by
tests/cluster/test_api.py (the API server refuses each case): both tiers check one table.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TABLE = Path(__file__).with_name("invalid_cases.yaml")


@dataclass(frozen=True)
class InvalidCase:
    """One invalid manifest and the field its error must name."""

    id: str
    kind: str
    field: str
    manifest: dict[str, Any]
    server_only: bool = False
    python_field: str | None = None
    ssa_field: str | None = None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def load_cases() -> list[InvalidCase]:
    """Every case of the table, its manifest built from the base of its kind."""
    table = yaml.safe_load(TABLE.read_text(encoding="utf-8"))
    return [
        InvalidCase(
            id=c["id"],
            kind=c["kind"],
            field=c["field"],
            manifest=merge_patch(table["bases"][c["kind"]], c["patch"]),
            server_only=bool(c.get("server_only", False)),
            python_field=c.get("python_field"),
            ssa_field=c.get("ssa_field"),
        )
        for c in table["cases"]
    ]


def load_valid() -> list[tuple[str, dict[str, Any]]]:
    """(id, manifest) of every valid edge case, built like the invalid ones."""
    table = yaml.safe_load(TABLE.read_text(encoding="utf-8"))
    return [(c["id"], merge_patch(table["bases"][c["kind"]], c["patch"])) for c in table["valid"]]


def load_bases() -> dict[str, dict[str, Any]]:
    """The valid base object of each kind."""
    bases: dict[str, dict[str, Any]] = yaml.safe_load(TABLE.read_text(encoding="utf-8"))["bases"]
    return bases
