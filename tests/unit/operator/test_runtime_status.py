"""InferenceRuntime status: Ready when valid, the count of models using it, no needless writes."""

from __future__ import annotations

from typing import Any

import yaml
from opbuild import ROOT

from airt_operator.reconcile.runtime_status import needs_write, runtime_status


def cpu_runtime() -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((ROOT / "examples/runtimes/torch-cpu.yaml").read_text())
    body["metadata"]["generation"] = 3
    return body


def md(runtime: str) -> dict[str, Any]:
    return {"status": {"runtimeName": runtime}}


def test_valid_runtime_is_ready_and_counts_its_models() -> None:
    status = runtime_status(cpu_runtime(), [md("torch-cpu"), md("torch-cuda"), md("torch-cpu")])
    assert status["observedGeneration"] == 3
    assert status["modelDeployments"] == 2
    (ready,) = status["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Ready")
    assert "2 ModelDeployment(s)" in ready["message"]


def test_count_is_left_out_when_the_operator_sees_only_some_namespaces() -> None:
    assert "modelDeployments" not in runtime_status(cpu_runtime(), None)


def test_invalid_runtime_is_not_ready_and_names_the_field() -> None:
    body = cpu_runtime()
    body["spec"]["accelerator"] = "tpu"
    (ready,) = runtime_status(body, [])["conditions"]
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "spec.accelerator" in ready["message"]


def test_unchanged_status_is_not_written_again() -> None:
    body = cpu_runtime()
    status = runtime_status(body, [md("torch-cpu")])
    body["status"] = status
    again = runtime_status(body, [md("torch-cpu")])
    assert again == status  # transition time kept
    assert not needs_write(body, again)
    assert needs_write(body, runtime_status(body, []))
