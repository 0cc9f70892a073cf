"""Third-party CRDs for the test cluster, taken from their Go modules at pinned versions.

Called by the cluster tier (and usable from `make dev`): `go mod download -json` fetches the
module zip through the Go module proxy (cached in the module cache), and its `Dir` holds the
project's own CRD files — the real schemas the API server then validates our objects against.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

# The only prometheus-operator version the module proxy serves here (v0.85.0).
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
PROMETHEUS_CRD_DIR = "example/prometheus-operator-crd"


def module_dir(module_at_version: str) -> Path:
    proc = subprocess.run(
        ["go", "mod", "download", "-json", module_at_version],
        capture_output=True,
        text=True,
        check=False,
    )
    info = json.loads(proc.stdout or "{}")
    if proc.returncode != 0 or "Dir" not in info:
        raise RuntimeError(f"go mod download {module_at_version}: {info.get('Error', proc.stderr)}")
    return Path(info["Dir"])


def prometheus_operator_crd(kind_plural: str) -> Path:
    """e.g. prometheus_operator_crd("servicemonitors") → the real ServiceMonitor CRD file."""
    path = module_dir(PROMETHEUS_OPERATOR) / PROMETHEUS_CRD_DIR
    return path / f"monitoring.coreos.com_{kind_plural}.yaml"
