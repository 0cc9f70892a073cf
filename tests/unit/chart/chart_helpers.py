"""Helpers for the chart unit tests: paths, `helm template`, and picking objects by kind.

Imported by tests/unit/chart/conftest.py (fixtures) and the test_chart_*.py modules.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "airt"
# Kinds the cluster serves once the chart's CRDs exist: pass them so the custom resources render.
SERVED = (
    "airt.dev/v1alpha1/ModelDeployment",
    "airt.dev/v1alpha1/InferenceRuntime",
    "kopf.dev/v1/ClusterKopfPeering",
    "kopf.dev/v1/KopfPeering",
)

Render = Callable[..., list[dict[str, Any]]]


def helm_template(
    helm: Path, *args: str, release: str = "airt", served: Sequence[str] = SERVED
) -> subprocess.CompletedProcess[str]:
    cmd = [str(helm), "template", release, str(CHART), "--namespace", "airt-system"]
    cmd += ["--kube-version", "1.34.4"]
    for api in served:
        cmd += ["--api-versions", api]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, check=False)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]
