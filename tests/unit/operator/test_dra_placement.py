"""DRA placement: the mode chosen, the ResourceClaimTemplate rendered, the pod's claim, and
what the worker is told; the selectors checked against the fake pool's ResourceSlices."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from opbuild import context, example, model, runtimes, worker_config

from airt_dev.nodes import NodePool, render_resource_slices
from airt_operator.api import ApiValidationError
from airt_operator.reconcile.build import BuildSettings, build_context
from airt_operator.reconcile.devices import (
    claim_facts,
    device_fit,
    products_summary,
    replica_devices,
    slice_facts,
)
from airt_operator.reconcile.placement import (
    PlacementError,
    alternative_of,
    memory_selector,
    placement_mode,
    product_selector,
)
from airt_operator.reconcile.render import render
from airt_operator.reconcile.resolve import resolve

GPU_MD: dict[str, Any] = {
    "apiVersion": "airt.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "pref"},
    "spec": {
        "model": {"uri": "pvc://airt-models/mlp/model.pt", "format": "torchscript"},
        "runtime": {"name": "torch-cuda"},
        "resources": {"gpu": {}},
    },
}


def gpu_model(**gpu: Any) -> Any:
    raw = copy.deepcopy(GPU_MD)
    raw["spec"]["resources"]["gpu"] = gpu
    return model(raw)


def children(md: Any, dra: bool = True) -> dict[str, dict[str, Any]]:
    return {c["kind"]: c for c in render(context(md, dra_available=dra))}


def test_auto_is_dra_where_the_device_classes_exist_and_the_device_plugin_elsewhere() -> None:
    md = example("cnn-gpu")
    assert "ResourceClaimTemplate" in children(md, dra=True)
    assert "ResourceClaimTemplate" not in children(md, dra=False)
    gpu = md.spec.resources.gpu  # type: ignore[union-attr]
    assert gpu is not None
    assert placement_mode(gpu, None, "auto", True) == "dra"
    assert placement_mode(gpu, "devicePlugin", "auto", True) == "devicePlugin"  # the runtime's
    assert placement_mode(gpu, None, "dra", False) == "dra"  # the operator's setting
    pinned = gpu.model_copy(update={"placement": "devicePlugin"})
    assert placement_mode(pinned, "dra", "dra", True) == "devicePlugin"  # the model's wins


def test_ordered_products_become_first_available_subrequests_in_order() -> None:
    kids = children(example("cnn-gpu"))
    tpl = kids["ResourceClaimTemplate"]
    assert tpl["apiVersion"] == "resource.k8s.io/v1"
    assert tpl["metadata"]["name"] == "cnn-gpu"
    assert tpl["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    assert tpl["spec"]["metadata"]["labels"]["airt.dev/modeldeployment"] == "cnn-gpu"
    (request,) = tpl["spec"]["spec"]["devices"]["requests"]
    assert request["name"] == "gpu"
    subs = request["firstAvailable"]
    assert [s["name"] for s in subs] == ["alt-0", "alt-1"]
    assert [s["deviceClassName"] for s in subs] == ["gpu.nvidia.com"] * 2
    assert [s["count"] for s in subs] == [1, 1]
    assert subs[0]["selectors"] == [
        {"cel": {"expression": product_selector("NVIDIA-H100-80GB-HBM3")}}
    ]
    assert "productName" in subs[1]["selectors"][0]["cel"]["expression"]
    assert "nvidia-a100-sxm4-40gb" in subs[1]["selectors"][0]["cel"]["expression"]


def test_the_pod_uses_its_claim_instead_of_extended_resources() -> None:
    kids = children(example("cnn-gpu"))
    pod = kids["Deployment"]["spec"]["template"]["spec"]
    assert pod["resourceClaims"] == [{"name": "gpu", "resourceClaimTemplateName": "cnn-gpu"}]
    resources = pod["containers"][0]["resources"]
    assert resources["claims"] == [{"name": "gpu"}]
    assert not any(k.startswith("nvidia.com/") for k in resources["limits"])
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    # firstAvailable orders alternatives within a node; across nodes, preferred affinity.
    preferred = pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred[0]["preference"]["matchExpressions"][0]["values"] == ["NVIDIA-H100-80GB-HBM3"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in pod["affinity"]["nodeAffinity"]
    # The worker is told the same in both modes.
    assert worker_config(list(kids.values())) == worker_config(
        list(children(example("cnn-gpu"), dra=False).values())
    )


def test_memory_floor_becomes_a_capacity_selector() -> None:
    tpl = children(example("cnn-4xh100"))["ResourceClaimTemplate"]
    exact = tpl["spec"]["spec"]["devices"]["requests"][0]["exactly"]
    assert exact["count"] == 4 and exact["allocationMode"] == "ExactCount"
    exprs = [s["cel"]["expression"] for s in exact["selectors"]]
    assert memory_selector(79 * 1024) in exprs
    assert "capacity['gpu.nvidia.com'].memory.compareTo(quantity('79Gi')) >= 0" in exprs[1]


def test_mig_profile_asks_the_mig_device_class() -> None:
    tpl = children(example("mlp-mig"))["ResourceClaimTemplate"]
    exact = tpl["spec"]["spec"]["devices"]["requests"][0]["exactly"]
    assert exact["deviceClassName"] == "mig.nvidia.com"
    exprs = [s["cel"]["expression"] for s in exact["selectors"]]
    assert exprs[-1] == "device.attributes['gpu.nvidia.com'].profile == '1g.5gb'"


def test_alternatives_of_different_counts_render_and_let_the_worker_use_what_it_sees() -> None:
    md = gpu_model(
        alternatives=[{"count": 2, "product": "NVIDIA-L4"}, {"product": "NVIDIA-H100-80GB-HBM3"}]
    )
    kids = children(md)
    subs = kids["ResourceClaimTemplate"]["spec"]["spec"]["devices"]["requests"][0]
    assert [(s["count"], s["name"]) for s in subs["firstAvailable"]] == [(2, "alt-0"), (1, "alt-1")]
    config = worker_config(list(kids.values()))
    assert config.device == "cuda"
    assert config.device_count is None  # every GPU the claim gave it
    assert config.instance_count == 2


def test_alternatives_cannot_be_placed_by_the_device_plugin() -> None:
    md = gpu_model(alternatives=[{"count": 2, "product": "NVIDIA-L4"}])
    with pytest.raises(PlacementError, match="alternatives needs DRA"):
        context(md, dra_available=False)
    with pytest.raises(ApiValidationError, match="alternatives"):
        gpu_model(alternatives=[{"count": 2}], placement="devicePlugin")


def test_the_runtime_can_choose_the_device_plugin() -> None:
    md = example("cnn-gpu")
    resolved = resolve(md, runtimes())
    rt = resolved.runtime.model_copy(deep=True)
    rt.spec.gpu_placement = "devicePlugin"
    ctx = build_context(
        md,
        type(resolved)(rt, resolved.worker_image, resolved.reason, resolved.message),
        BuildSettings.defaults(),
        "uid-1",
        1,
        False,
        dra_available=True,
    )
    assert ctx.gpu is not None and not ctx.gpu.dra


def test_allocation_requests_map_back_to_alternatives() -> None:
    assert alternative_of("gpu") == 0
    assert alternative_of("gpu/alt-2") == 2
    assert alternative_of("other/alt-1") is None


def _pool_slices() -> list[dict[str, Any]]:
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[3] / "tools" / "cluster" / "nodepool.yaml"
    pools = [NodePool.model_validate(p) for p in yaml.safe_load(path.read_text())["pools"]]
    return [slice_facts(s) for s in render_resource_slices(pools)]


@pytest.mark.parametrize(
    ("gpu", "unmet"),
    [
        ({"products": ["NVIDIA-B200"]}, "productName"),
        ({"minMemoryGiB": 200}, "compareTo(quantity('200Gi'))"),
        ({"count": 3, "products": ["NVIDIA-L4"]}, "at most 2 matching"),
        ({"mig": "7g.40gb"}, "profile == '7g.40gb'"),
    ],
)
def test_no_device_can_ever_satisfy_names_the_unmet_selector(
    gpu: dict[str, Any], unmet: str
) -> None:
    ctx = context(gpu_model(**gpu), dra_available=True)
    assert ctx.gpu is not None
    why = device_fit(ctx.gpu, _pool_slices())
    assert why is not None and unmet in why, why


@pytest.mark.parametrize(
    "gpu",
    [
        {"products": ["NVIDIA-H100-80GB-HBM3"], "count": 8, "minMemoryGiB": 79},
        {"mig": "1g.5gb", "products": ["NVIDIA-A100-SXM4-40GB"]},
        {"mig": "3g.20gb"},
        {"products": ["NVIDIA-A100-SXM4-40GB"]},  # the A100 node's one whole GPU
        {
            "alternatives": [
                {"count": 4, "product": "NVIDIA-L4"},
                {"count": 2, "product": "NVIDIA-L4"},
            ]
        },
    ],
)
def test_requests_the_pool_can_hold_fit(gpu: dict[str, Any]) -> None:
    ctx = context(gpu_model(**gpu), dra_available=True)
    assert ctx.gpu is not None
    assert device_fit(ctx.gpu, _pool_slices()) is None


def test_status_tells_what_each_replica_got() -> None:
    slices = _pool_slices()
    pods = [
        {"metadata": {"name": "m-b"}, "spec": {"nodeName": "l4-0"}},
        {"metadata": {"name": "m-a"}, "spec": {"nodeName": "a100-mig-0"}},
        {"metadata": {"name": "m-c"}, "spec": {"nodeName": None}},
    ]
    claims = [
        claim_facts(
            {
                "metadata": {
                    "name": "m-b-gpu-x",
                    "ownerReferences": [{"kind": "Pod", "name": "m-b"}],
                },
                "status": {
                    "allocation": {
                        "devices": {
                            "results": [
                                {
                                    "request": "gpu/alt-1",
                                    "driver": "gpu.nvidia.com",
                                    "pool": "l4-0",
                                    "device": d,
                                }
                                for d in ("gpu-0", "gpu-1")
                            ]
                        }
                    }
                },
            }
        ),
        claim_facts(
            {
                "metadata": {
                    "name": "m-a-gpu-y",
                    "ownerReferences": [{"kind": "Pod", "name": "m-a"}],
                },
                "status": {
                    "allocation": {
                        "devices": {
                            "results": [
                                {
                                    "request": "gpu",
                                    "driver": "gpu.nvidia.com",
                                    "pool": "a100-mig-0",
                                    "device": "gpu-0-mig-3g20gb-0",
                                }
                            ]
                        }
                    }
                },
            }
        ),
        claim_facts(
            {"metadata": {"name": "m-c-gpu-z", "ownerReferences": [{"kind": "Pod", "name": "m-c"}]}}
        ),
    ]
    got = replica_devices(pods, claims, slices)
    assert got == [
        {
            "pod": "m-a",
            "node": "a100-mig-0",
            "devices": ["gpu-0-mig-3g20gb-0"],
            "product": "NVIDIA-A100-SXM4-40GB",
            "mig": "3g.20gb",
            "alternative": 0,
        },
        {
            "pod": "m-b",
            "node": "l4-0",
            "devices": ["gpu-0", "gpu-1"],
            "product": "NVIDIA-L4",
            "alternative": 1,
        },
    ]
    assert products_summary(got) == "NVIDIA-A100-SXM4-40GB mig-3g.20gb (1), NVIDIA-L4 (1)"
    assert products_summary(got[1:]) == "NVIDIA-L4"
    assert products_summary([]) is None


def test_a_changed_request_changes_the_pod_template() -> None:
    def annotations(gpu: dict[str, Any]) -> dict[str, str]:
        dep = children(gpu_model(**gpu))["Deployment"]
        return dep["spec"]["template"]["metadata"]["annotations"]  # type: ignore[no-any-return]

    l4 = annotations({"products": ["NVIDIA-L4"]})["airt.dev/gpu-claim"]
    assert l4 == annotations({"products": ["NVIDIA-L4"]})["airt.dev/gpu-claim"]
    assert l4 != annotations({"products": ["NVIDIA-H100-80GB-HBM3"]})["airt.dev/gpu-claim"]
