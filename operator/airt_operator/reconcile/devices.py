"""DRA observation: the devices that exist, the devices each replica got, and why none fit.

Two callers. world.py keeps, per ResourceSlice and per ResourceClaim, the little read here
(`slice_facts`, `claim_facts`). reconcile/observe.py asks `device_fit` whether any alternative
of a DRA placement could ever be allocated (the selectors of reconcile/placement.py evaluated in
Python against the ResourceSlices: `NoMatchingDevices`, naming the selector no device meets),
and `replica_devices` what each pod's claim was allocated (status). Pure.

The scheduler's own message for a pod it cannot place ("0/6 nodes are available: 6 cannot
allocate all claims") does not tell "no such device" from "all taken"; evaluating the
selectors against the slices does: a request some node could hold with every device free is
`DevicesBusy`, one that no node could hold is `NoMatchingDevices`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airt_operator.reconcile.placement import (
    DRIVER,
    DeviceChoice,
    GpuPlacement,
    alternative_of,
    memory_selector,
    product_selector,
    profile_selector,
)

Obj = Mapping[str, Any]

_BYTES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}  # fmt: skip
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(k|M|G|T|Ki|Mi|Gi|Ti)?$")


def _mib(quantity: Any) -> float | None:
    m = _QUANTITY.match(str(quantity))
    if not m:
        return None
    return float(m.group(1)) * _BYTES[m.group(2) or ""] / 2**20


def _value(attr: Mapping[str, Any]) -> Any:
    for key in ("string", "int", "bool", "version"):
        if key in attr:
            return attr[key]
    return None


def _local(name: str, driver: str) -> str:
    """An attribute or capacity name without the driver's own domain (the API allows both)."""
    return name.removeprefix(f"{driver}/")


def slice_facts(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a ResourceSlice tells: its driver, node and devices with attributes and capacity."""
    spec = body.get("spec") or {}
    driver = str(spec.get("driver") or "")
    devices = []
    for d in spec.get("devices") or []:
        devices.append(
            {
                "name": d.get("name"),
                "attributes": {
                    _local(k, driver): _value(v) for k, v in (d.get("attributes") or {}).items()
                },
                "capacity": {
                    _local(k, driver): str((v or {}).get("value"))
                    for k, v in (d.get("capacity") or {}).items()
                },
            }
        )
    return {
        "driver": driver,
        "node": spec.get("nodeName"),
        "pool": (spec.get("pool") or {}).get("name"),
        "devices": devices,
    }


def claim_facts(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a pod's ResourceClaim tells: the pod it was made for and what it was allocated."""
    meta = body.get("metadata") or {}
    pod = next(
        (r.get("name") for r in meta.get("ownerReferences") or [] if r.get("kind") == "Pod"),
        None,
    )
    allocation = (body.get("status") or {}).get("allocation") or {}
    results = [
        {k: r.get(k) for k in ("request", "driver", "pool", "device")}
        for r in (allocation.get("devices") or {}).get("results") or []
    ]
    return {"name": meta.get("name"), "pod": pod, "results": results}


def product_label(name: Any) -> str:
    """A product name as the node label spells it: spaces become dashes."""
    return str(name or "").strip().replace(" ", "-")


@dataclass(frozen=True)
class _Device:
    node: str | None
    attributes: Mapping[str, Any]
    capacity: Mapping[str, str]


def _devices(slices: Iterable[Obj]) -> list[_Device]:
    return [
        _Device(s.get("node"), d.get("attributes") or {}, d.get("capacity") or {})
        for s in slices
        if s.get("driver") == DRIVER
        for d in s.get("devices") or []
    ]


def _checks(choice: DeviceChoice) -> list[tuple[str, Any]]:
    """The alternative's selectors, each with its Python twin, in the order placement writes
    them; the DeviceClass's own selector (the device type) first."""
    kind = "mig" if choice.mig else "gpu"
    out: list[tuple[str, Any]] = [
        (
            f"DeviceClass {choice.device_class} (type {kind})",
            lambda d, k=kind: d.attributes.get("type") == k,
        )
    ]
    if choice.product:
        want = product_label(choice.product).lower()
        out.append(
            (
                product_selector(choice.product),
                lambda d: product_label(d.attributes.get("productName")).lower() == want,
            )
        )
    if choice.min_memory_mib:
        floor = choice.min_memory_mib
        out.append(
            (
                memory_selector(floor),
                lambda d: (_mib(d.capacity.get("memory")) or 0) >= floor,
            )
        )
    if choice.mig:
        out.append(
            (profile_selector(choice.mig), lambda d, p=choice.mig: d.attributes.get("profile") == p)
        )
    return out


def _why_not(choice: DeviceChoice, devices: Sequence[_Device]) -> str | None:
    """None when some node has `count` devices meeting every selector; else the first selector
    no device meets, or how many one node has against the count asked for."""
    left = list(devices)
    for text, check in _checks(choice):
        left = [d for d in left if check(d)]
        if not left:
            return f"no device meets {text}"
    per_node = Counter(d.node for d in left)
    most = max(per_node.values())
    if most >= choice.count:
        return None
    return f"at most {most} matching device(s) on one node, {choice.count} asked for"


def device_fit(gpu: GpuPlacement, slices: Iterable[Obj]) -> str | None:
    """None when some alternative could be allocated on some node with every device free;
    else why none can, alternative by alternative, naming the unmet selector."""
    devices = _devices(slices)
    reasons = []
    for i, choice in enumerate(gpu.choices):
        why = _why_not(choice, devices)
        if why is None:
            return None
        reasons.append(f"alternative {i + 1} ({choice.describe()}): {why}")
    return "no device in the cluster can satisfy any alternative: " + "; ".join(reasons)


def _by_device(slices: Iterable[Obj]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    return {
        (str(s.get("driver")), str(s.get("pool")), str(d.get("name"))): d.get("attributes") or {}
        for s in slices
        for d in s.get("devices") or []
    }


def replica_devices(
    pods: Sequence[Obj], claims: Sequence[Obj], slices: Iterable[Obj], limit: int = 64
) -> list[dict[str, Any]]:
    """Per pod with an allocated claim (by pod name, at most `limit`): its node, the devices,
    their product and MIG profile, and the alternative chosen; in wire (camelCase) form."""
    attrs = _by_device(slices)
    by_pod = {c.get("pod"): c for c in claims if c.get("results")}
    out: list[dict[str, Any]] = []
    for pod in sorted(pods, key=lambda p: str(p.get("metadata", {}).get("name", ""))):
        name = str(pod.get("metadata", {}).get("name", ""))
        claim = by_pod.get(name)
        if claim is None:
            continue
        results = [r for r in claim["results"] if r.get("driver") == DRIVER]
        if not results:
            continue
        first = attrs.get((DRIVER, str(results[0].get("pool")), str(results[0].get("device"))))
        entry: dict[str, Any] = {"pod": name}
        node = pod.get("spec", {}).get("nodeName")
        if node:
            entry["node"] = node
        entry["devices"] = [str(r.get("device")) for r in results]
        if first and first.get("productName"):
            entry["product"] = product_label(first["productName"])
        if first and first.get("type") == "mig" and first.get("profile"):
            entry["mig"] = str(first["profile"])
        alternative = alternative_of(str(results[0].get("request") or ""))
        if alternative is not None:
            entry["alternative"] = alternative
        out.append(entry)
        if len(out) >= limit:
            break
    return out


def products_summary(replicas: Sequence[Mapping[str, Any]]) -> str | None:
    """`status.gpuProduct`: the products allocated, most replicas first, e.g. `NVIDIA-L4` or
    `NVIDIA-H100-80GB-HBM3 (2), NVIDIA-L4 (1)`; a MIG slice reads `<product> mig-<profile>`."""
    names = Counter(
        " ".join(
            x
            for x in (r.get("product") or "unknown", f"mig-{r['mig']}" if r.get("mig") else "")
            if x
        )
        for r in replicas
    )
    if not names:
        return None
    if len(names) == 1:
        return next(iter(names))
    ordered = sorted(names.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n} ({c})" for n, c in ordered)[:256]
