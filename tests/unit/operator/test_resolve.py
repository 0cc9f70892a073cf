"""Runtime resolution: named, auto-selected by format/accelerator/priority, policy, overrides."""

from __future__ import annotations

from typing import Any

import pytest
from opbuild import example, model, runtimes

from airt_operator.api import InferenceRuntime, Reason, parse_inference_runtime
from airt_operator.reconcile.resolve import ResolutionFailure, resolve


def md(spec: dict[str, Any]) -> Any:
    return model(
        {
            "apiVersion": "airt.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "m"},
            "spec": spec,
        }
    )


def rt(name: str, **spec: Any) -> InferenceRuntime:
    base = {"images": {"worker": "ghcr.io/x/w:1"}, "formats": ["torchscript"], "accelerator": "cpu"}
    return parse_inference_runtime(
        {
            "apiVersion": "airt.dev/v1alpha1",
            "kind": "InferenceRuntime",
            "metadata": {"name": name},
            "spec": {**base, **spec},
        }
    )


CPU_MODEL = {"model": {"uri": "pvc://c/m.pt", "format": "torchscript"}}


def test_named_runtime_is_used() -> None:
    r = resolve(example("mlp-cpu"), runtimes())
    assert r.name == "torch-cpu" and r.reason == Reason.RUNTIME_FOUND


def test_auto_selection_by_accelerator() -> None:
    r = resolve(example("cnn-gpu"), runtimes())
    assert r.name == "torch-cuda" and r.reason == Reason.RUNTIME_AUTO_SELECTED


def test_auto_selection_prefers_priority_then_name() -> None:
    cat = [rt("b-low", priority=1), rt("a-high", priority=5), rt("c-high", priority=5)]
    assert resolve(md(CPU_MODEL), cat).name == "a-high"


def test_auto_selection_skips_runtimes_that_opt_out() -> None:
    cat = [rt("only-by-name", priority=100, autoSelect=False), rt("general")]
    assert resolve(md(CPU_MODEL), cat).name == "general"


@pytest.mark.parametrize(
    ("spec", "catalog", "reason", "words"),
    [
        ({**CPU_MODEL, "runtime": {"name": "nope"}}, [rt("x")], Reason.RUNTIME_NOT_FOUND, "nope"),
        (
            {"model": {"uri": "pvc://c/m.pt2", "format": "torch-export"}},
            [rt("x")],
            Reason.NO_MATCHING_RUNTIME,
            "torch-export",
        ),
        (
            {**CPU_MODEL, "runtime": {"name": "x"}, "resources": {"gpu": {"count": 1}}},
            [rt("x")],
            Reason.RUNTIME_INCOMPATIBLE,
            "asks for GPUs",
        ),
        (
            {
                "model": {"uri": "s3://bucket/m.pt", "format": "torchscript"},
                "runtime": {"name": "x"},
            },
            [rt("x", policy={"allowedUriSchemes": ["pvc"]})],
            Reason.RUNTIME_POLICY_VIOLATION,
            "s3://",
        ),
        (
            {**CPU_MODEL, "runtime": {"name": "x", "image": "docker.io/evil/w:1"}},
            [rt("x", policy={"allowedImagePrefixes": ["ghcr.io/x/"]})],
            Reason.IMAGE_OVERRIDE_NOT_ALLOWED,
            "docker.io/evil/w:1",
        ),
    ],
)
def test_failures_carry_a_reason_and_name_the_problem(
    spec: dict[str, Any], catalog: list[InferenceRuntime], reason: Reason, words: str
) -> None:
    with pytest.raises(ResolutionFailure) as err:
        resolve(md(spec), catalog)
    assert err.value.reason == reason
    assert words in err.value.message


def test_allowed_image_override_is_used() -> None:
    spec = {**CPU_MODEL, "runtime": {"name": "x", "image": "ghcr.io/x/custom:2"}}
    r = resolve(md(spec), [rt("x", policy={"allowedImagePrefixes": ["ghcr.io/x/"]})])
    assert r.worker_image == "ghcr.io/x/custom:2"
