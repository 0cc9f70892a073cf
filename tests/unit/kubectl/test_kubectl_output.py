"""The plugin's pure output and input parts: status rows and tables, quantities, the plan's
node fit, and the v2 request built from `--input` options."""

from __future__ import annotations

import pytest
from kubectl_bundles import AVAILABLE, NOT_DEGRADED, READY, md, node, pod

from airt_kubectl import fit, v2
from airt_kubectl.diagnose import Diagnosis, Finding
from airt_kubectl.objects import summarize
from airt_kubectl.quantity import QuantityError, show, units
from airt_kubectl.tables import diagnosis_text, plan_text, status_table, table


def test_table_pads_columns_like_kubectl() -> None:
    out = table(["name", "ready"], [["a-long-name", "True"], ["b", "False(X)"]])
    assert out.splitlines() == [
        "NAME          READY",
        "a-long-name   True",
        "b             False(X)",
    ]


def test_status_table_shows_reasons_only_where_wrong_and_placement() -> None:
    good = md("good", READY, AVAILABLE, NOT_DEGRADED, readyReplicas=2, runtimeName="torch-cpu")
    bad = md(
        "bad",
        ("Ready", "False", "NotReady", ""),
        ("Available", "False", "MinimumReplicasUnavailable", ""),
        ("Degraded", "True", "ImagePullFailed", ""),
        gpu="1x gpu (NVIDIA-L4)",
    )
    pods = [pod("good-1", "cpu-0", owner="good"), pod("good-2", "cpu-1", owner="good")]
    pods += [pod("bad-1", None, owner="bad")]
    rows = [summarize(good, pods), summarize(bad, pods)]
    lines = status_table(rows, all_namespaces=True).splitlines()
    assert lines[0].split() == [
        "NAMESPACE", "NAME", "READY", "AVAILABLE", "DEGRADED",
        "REPLICAS", "RUNTIME", "GPU", "PLACEMENT",
    ]  # fmt: skip
    assert lines[1].split() == [
        "team", "good", "True", "True", "False", "2/2", "torch-cpu", "-", "cpu-0,cpu-1",
    ]  # fmt: skip
    # Ready shows what blocks it rather than its generic NotReady.
    assert lines[2].split()[2] == "False(ImagePullFailed)"
    assert "False(MinimumReplicasUnavailable)" in lines[2]
    assert "True(ImagePullFailed)" in lines[2]
    assert lines[2].endswith("1 pending")
    assert "1x gpu (NVIDIA-L4)" in lines[2]


def test_status_shows_the_allocated_product_under_dra() -> None:
    dra = md("dra", READY, gpu="2x gpu (NVIDIA-L4 > NVIDIA-H100)", gpuProduct="1x NVIDIA-H100")
    line = status_table([summarize(dra, [])], all_namespaces=False).splitlines()[1]
    assert "1x NVIDIA-H100" in line and "NVIDIA-L4" not in line


def test_diagnosis_text_ends_with_the_fix() -> None:
    d = Diagnosis(False, "X: y -> do z", [Finding("condition", "Ready", "False X: y")])
    text = diagnosis_text(d)
    assert text.splitlines()[0] == "! condition Ready: False X: y"
    assert text.splitlines()[-1] == "FIX: X: y -> do z"
    assert diagnosis_text(d, verbose=False) == "FIX: X: y -> do z"


@pytest.mark.parametrize(
    ("resource", "value", "n"),
    [("cpu", "500m", 500), ("cpu", "2", 2000), ("memory", "16Gi", 16 * 2**30),
     ("memory", "1e9", 10**9), ("memory", "1G", 10**9), ("nvidia.com/gpu", "8", 8)],
)  # fmt: skip
def test_quantities(resource: str, value: str, n: int) -> None:
    assert units(resource, value) == n


def test_quantity_display_and_errors() -> None:
    assert show("cpu", 1500) == "1500m" and show("cpu", 2000) == "2"
    assert show("memory", 16 * 2**30) == "16Gi"
    with pytest.raises(QuantityError):
        units("cpu", "two")


RUNTIMES = [
    {"metadata": {"name": "torch-cpu"}, "spec": {
        "formats": ["torchscript"], "accelerator": "cpu", "priority": 100,
        "defaults": {"resources": {"cpu": "1", "memory": "1Gi"}},
        "policy": {"allowedUriSchemes": ["pvc"], "maxGpusPerReplica": 0}}},
    {"metadata": {"name": "torch-cuda"}, "spec": {
        "formats": ["torchscript"], "accelerator": "nvidia", "priority": 100,
        "policy": {"maxGpusPerReplica": 4}}},
]  # fmt: skip
NODES = [
    node("cpu-0", {"cpu": "16", "memory": "64Gi"}),
    node("h100-0", {"cpu": "96", "memory": "1Ti", "nvidia.com/gpu": "8"},
         {"nvidia.com/gpu.product": "H100", "nvidia.com/gpu.memory": "81559"}, gpu_taint=True),
    node("l4-0", {"cpu": "32", "memory": "128Gi", "nvidia.com/gpu": "2"},
         {"nvidia.com/gpu.product": "L4", "nvidia.com/gpu.memory": "23034"}, gpu_taint=True),
]  # fmt: skip


def _gpu_md(**gpu: object) -> dict[str, object]:
    obj = md("g")
    obj["spec"]["resources"] = {"cpu": "4", "memory": "16Gi", "gpu": {"count": 1, **gpu}}
    return obj


def test_plan_places_a_cpu_model_on_cpu_nodes_with_runtime_defaults() -> None:
    p = fit.plan(md("c"), RUNTIMES, NODES, pods=[])
    assert p.runtime == "torch-cpu" and "auto-selected" in p.runtime_note
    assert p.request is not None and p.request.resources == {"cpu": 1000, "memory": 2**30}
    assert [n.node for n in p.fitting] == ["cpu-0"]
    h100 = next(n for n in p.nodes if n.node == "h100-0")
    assert any("taint nvidia.com/gpu" in w for w in h100.why_not)
    assert p.fitting[0].free_now == 16
    assert "would land on cpu-0; 2 replica(s) fit now" in plan_text(p)


def test_plan_follows_products_memory_and_counts_free_room() -> None:
    p = fit.plan(_gpu_md(products=["L4", "H100"], minMemoryGiB=20), RUNTIMES, NODES, pods=None)
    assert p.runtime == "torch-cuda"
    assert [n.node for n in p.fitting] == ["l4-0", "h100-0"]  # the preferred product first
    big = fit.plan(_gpu_md(minMemoryGiB=40), RUNTIMES, NODES, pods=None)
    l4 = next(n for n in big.nodes if n.node == "l4-0")
    assert l4.why_not == ("GPU memory 23034 MiB < 40960 MiB",)
    # Pods already on the L4 node take its two GPUs: it fits ever, not now.
    busy = pod("other", "l4-0")
    busy["spec"]["containers"] = [{"resources": {"requests": {"nvidia.com/gpu": "2"}}}]
    now = fit.plan(_gpu_md(products=["L4"]), RUNTIMES, NODES, pods=[busy])
    assert [(n.node, n.free_now) for n in now.fitting] == [("l4-0", 0)]
    assert "only 0 of 2 replica(s) fit" in now.summary()


def test_plan_says_why_no_runtime_fits() -> None:
    obj = _gpu_md(count=8)
    obj["spec"]["resources"]["gpu"]["count"] = 8
    p = fit.plan(obj, RUNTIMES, NODES, pods=None)
    assert p.runtime is None
    assert "allows at most 4 GPUs per replica, not 8" in p.summary()
    named = md("n")
    named["spec"]["runtime"] = {"name": "nope"}
    assert (
        "InferenceRuntime nope (spec.runtime.name) not found"
        in fit.plan(named, RUNTIMES, NODES, None).summary()
    )


def test_v2_inputs_take_datatype_and_batch_from_the_metadata() -> None:
    meta = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]}
    body = v2.request_body([v2.parse_input("x=[1, 2]")], meta)
    assert body == {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
    plain = v2.request_body([v2.parse_input("y:INT32=[[1],[2]]")], None)
    assert plain["inputs"][0] == {"name": "y", "datatype": "INT32", "shape": [2, 1], "data": [1, 2]}
    assert v2.request_body([v2.parse_input("z=[1.5]")], None)["inputs"][0]["datatype"] == "FP32"


@pytest.mark.parametrize(
    ("option", "says"),
    [("x", "write name=json-array"), ("x=[1,", "not JSON"), ("x=[[1],[2,3]]", "not rectangular"),
     ("x:FLOAT=[1]", "unknown datatype")],
)  # fmt: skip
def test_v2_input_errors_name_the_option(option: str, says: str) -> None:
    with pytest.raises(v2.InputError, match=says):
        v2.parse_input(option)


def test_v2_unknown_input_and_outputs_text() -> None:
    with pytest.raises(v2.InputError, match="has no input 'q'; it has x"):
        v2.request_body([v2.parse_input("q=[1]")], {"inputs": [{"name": "x"}]})
    text = v2.outputs_text(
        {"outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 40], "data": list(range(40))}]}
    )
    assert text.startswith("y FP32 [1, 40]: [0, 1, 2") and text.endswith("... (40 values)]")
