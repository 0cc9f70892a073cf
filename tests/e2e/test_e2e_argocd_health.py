"""The Argo CD health checks (charts/airt/argocd/*.lua) run by Debian's Lua interpreter.

A Ready ModelDeployment is Healthy, one still rolling out is Progressing, one that can never be
scheduled is Degraded; the same for InferenceRuntimes. Every fixture is first validated by the
API models (parse_model_deployment / parse_inference_runtime), so the scripts are tested on
objects the operator can actually write.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from lua_runner import run_health

from airt_operator.api import parse_inference_runtime, parse_model_deployment

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "charts" / "airt" / "argocd"
MD_SCRIPT = ARGOCD / "health-modeldeployment.lua"
IRT_SCRIPT = ARGOCD / "health-inferenceruntime.lua"
T = "2026-01-01T00:00:00Z"


def _cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": T,
        "observedGeneration": 3,
    }


def _md(*conditions: dict[str, Any], observed: int | None = 3) -> dict[str, Any]:
    md = yaml.safe_load((ROOT / "examples" / "deployments" / "cpu-mlp.yaml").read_text())
    md["metadata"].update({"namespace": "team-a", "generation": 3})
    status: dict[str, Any] = {"conditions": list(conditions)}
    if observed is not None:
        status["observedGeneration"] = observed
    md["status"] = status
    parse_model_deployment(copy.deepcopy(md))  # a status the operator can write
    return md


READY = _md(
    _cond("Ready", "True", "Ready", "2/2 replicas serving mlp"),
    _cond("RuntimeResolved", "True", "RuntimeFound"),
    _cond("Scheduled", "True", "PodsScheduled"),
    _cond("Available", "True", "MinimumReplicasAvailable"),
    _cond("Progressing", "False", "RolloutComplete"),
    _cond("Degraded", "False", "AsExpected"),
)
ROLLING_OUT = _md(
    _cond("Ready", "False", "NotReady", "Available is False"),
    _cond("RuntimeResolved", "True", "RuntimeFound"),
    _cond("Scheduled", "True", "PodsScheduled"),
    _cond("Available", "False", "ModelLoading", "0/2 replicas ready: loading the model"),
    _cond("Progressing", "True", "RolloutInProgress", "1 of 2 updated"),
    _cond("Degraded", "False", "AsExpected"),
)
PENDING = _md(
    _cond("Ready", "False", "NotReady", "Scheduled is False"),
    _cond("RuntimeResolved", "True", "RuntimeFound"),
    _cond("Scheduled", "False", "PendingScheduling", "waiting for the scheduler"),
)
UNSCHEDULABLE = _md(
    _cond("Ready", "False", "NotReady", "Scheduled is False"),
    _cond("RuntimeResolved", "True", "RuntimeFound"),
    _cond(
        "Scheduled",
        "False",
        "Unschedulable",
        "no node has 8 nvidia.com/gpu of NVIDIA-H100-80GB-HBM3",
    ),
    _cond("Available", "False", "MinimumReplicasUnavailable"),
    _cond("Degraded", "False", "AsExpected"),
)
NO_RUNTIME = _md(
    _cond("Ready", "False", "NotReady", "RuntimeResolved is False"),
    _cond("RuntimeResolved", "False", "RuntimeNotFound", "InferenceRuntime torch-cpu not found"),
)
CRASHING = _md(
    _cond("Ready", "False", "NotReady"),
    _cond("Degraded", "True", "CrashLoop", "worker restarted 5 times"),
)
STALE = _md(_cond("Ready", "True", "Ready"), observed=2)
NEW = _md(observed=None)
NEW["status"] = None


@pytest.mark.parametrize(
    ("obj", "status", "words"),
    [
        (READY, "Healthy", "2/2 replicas"),
        (ROLLING_OUT, "Progressing", "Available is False"),
        (PENDING, "Progressing", ""),
        (UNSCHEDULABLE, "Degraded", "Unschedulable"),
        (NO_RUNTIME, "Degraded", "RuntimeNotFound"),
        (CRASHING, "Degraded", "CrashLoop"),
        (STALE, "Progressing", "generation 3"),
        (NEW, "Progressing", "Waiting"),
    ],
    ids=["ready", "rolling-out", "pending", "unschedulable", "no-runtime", "crash", "stale", "new"],
)
def test_modeldeployment_health(obj: dict[str, Any], status: str, words: str) -> None:
    got, message = run_health(MD_SCRIPT, obj)
    assert got == status, message
    assert words in message


def _irt(*conditions: dict[str, Any], observed: int = 1) -> dict[str, Any]:
    irt = yaml.safe_load((ROOT / "examples" / "runtimes" / "torch-cpu.yaml").read_text())
    irt["metadata"]["generation"] = 1
    irt["status"] = {"observedGeneration": observed, "conditions": list(conditions)}
    parse_inference_runtime(copy.deepcopy(irt))
    return irt


@pytest.mark.parametrize(
    ("obj", "status"),
    [
        (_irt(_cond("Ready", "True", "Ready", "usable")), "Healthy"),
        (_irt(_cond("Ready", "False", "RuntimeIncompatible", "bad policy")), "Degraded"),
        (_irt(_cond("Ready", "True", "Ready"), observed=0), "Progressing"),
        (_irt(), "Progressing"),
    ],
    ids=["ready", "invalid", "stale", "no-conditions"],
)
def test_inferenceruntime_health(obj: dict[str, Any], status: str) -> None:
    got, message = run_health(IRT_SCRIPT, obj)
    assert got == status, message


def test_scripts_are_lua_5_1_compatible() -> None:
    """Argo CD runs gopher-lua (Lua 5.1): no goto, integer division or bitwise operators."""
    for script in (MD_SCRIPT, IRT_SCRIPT):
        text = script.read_text()
        for token in ("goto ", "//", " & ", " | ", "<<", ">>", "::"):
            assert token not in text.replace("--", ""), (script.name, token)
