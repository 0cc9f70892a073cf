"""Fixtures for the chart unit tests: the pinned helm binary and a `render` helper.

`helm template` runs locally (no cluster, no network), so rendering the chart is a pure function
of its values and is tested here, in the unit tier. Used by tests/unit/chart/test_chart_*.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import SERVED, Render, helm_template


@pytest.fixture(scope="session")
def helm() -> Path:
    from airt_dev.cluster import ClusterError, tool_bin_dir

    try:
        path = tool_bin_dir() / "helm"
    except ClusterError as exc:  # pragma: no cover - a machine without the pinned tools
        pytest.skip(f"the pinned helm is not built (make tools): {exc}")
    if not path.exists():  # pragma: no cover
        pytest.skip(f"no helm at {path} (make tools)")
    return path


@pytest.fixture(scope="session")
def render(helm: Path) -> Render:
    """Render the chart with extra helm arguments (--set ...); the objects, parsed."""

    def _render(*args: str, release: str = "airt", served: Sequence[str] = SERVED) -> list[Any]:
        proc = helm_template(helm, *args, release=release, served=served)
        assert proc.returncode == 0, proc.stderr
        return [d for d in yaml.safe_load_all(proc.stdout) if d]

    return _render
