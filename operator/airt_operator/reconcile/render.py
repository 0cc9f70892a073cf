"""Render a ModelDeployment's children: jinja2 templates in, validated plain dicts out.

Called by the reconciler with a RenderContext (reconcile/context.py); pure and deterministic,
so every example is rendered and checked in unit tests without a cluster. Templates write YAML
whose every interpolated value passes through `tojson` (JSON is YAML), so no value from a spec
can change the structure of a manifest.
"""

from __future__ import annotations

import functools
import marshal
import math
from importlib import resources
from typing import Any

import jinja2
import yaml

from airt_operator.reconcile.context import RenderContext
from airt_operator.reconcile.diff import with_hash
from airt_operator.reconcile.placement import CLAIM_REQUEST, claim_digest, claim_request
from airt_operator.reconcile.runtime_template import POD_SECURITY_CONTEXT
from airt_operator.reconcile.worker_config import pvc_parts

# The pods reference the claim template: it is applied before the Deployment.
TEMPLATES = ("identity", "network", "claims", "deployment", "scaling", "monitoring")
MANAGED_BY = "airt-operator"


class RenderError(Exception):
    """A rendered child is not a valid manifest: a bug, or a spec the templates cannot express."""


def _labels(ctx: RenderContext) -> dict[str, str]:
    return {
        **dict(ctx.labels),
        **ctx.selector,
        "app.kubernetes.io/instance": ctx.name,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "airt.dev/runtime": ctx.runtime_name,
    }


def _meta(ctx: RenderContext) -> str:
    import json

    return json.dumps(
        {
            "name": ctx.child_name,
            "namespace": ctx.namespace,
            "labels": _labels(ctx),
            "ownerReferences": [
                {
                    "apiVersion": "airt.dev/v1alpha1",
                    "kind": "ModelDeployment",
                    "name": ctx.name,
                    "uid": ctx.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }
    )


def _pod_labels(ctx: RenderContext) -> dict[str, str]:
    return {**_labels(ctx), "airt.dev/model": ctx.served_name[:63].rstrip("-_.")}


def _product_weight(index: int, total: int) -> int:
    """Preferred-affinity weights in order of preference: 100 for the first, falling to >= 1."""
    if total <= 1:
        return 100
    return max(1, 100 - math.floor(index * 99 / (total - 1)))


def _worker_resources(ctx: RenderContext) -> dict[str, Any]:
    requests: dict[str, Any] = {"cpu": ctx.cpu_request, "memory": ctx.memory_request}
    limits: dict[str, Any] = {"cpu": ctx.cpu_limit, "memory": ctx.memory_limit}
    if ctx.gpu and ctx.gpu.dra:
        return {"requests": requests, "limits": limits, "claims": [{"name": CLAIM_REQUEST}]}
    if ctx.gpu:
        # Extended resources must have request == limit; setting the limit implies it.
        limits[ctx.gpu.resource] = str(ctx.gpu.count)
        requests[ctx.gpu.resource] = str(ctx.gpu.count)
    return {"requests": requests, "limits": limits}


def _claim_labels(ctx: RenderContext) -> dict[str, str]:
    """Labels of the pods' ResourceClaims: the owner's selector, so the operator watches them."""
    return {**ctx.selector, "app.kubernetes.io/managed-by": MANAGED_BY}


def _serving_ports(ctx: RenderContext) -> list[dict[str, Any]]:
    """The pod ports callers reach (NetworkPolicy ingress): the runtime's http and grpc."""
    ports = [{"port": ctx.serving.http_port, "protocol": "TCP"}]
    if ctx.serving.grpc_port:
        ports.append({"port": ctx.serving.grpc_port, "protocol": "TCP"})
    return ports


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("airt_operator", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # YAML, not HTML; values are escaped by tojson
        keep_trailing_newline=True,
    )
    env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    env.globals.update(
        meta=_meta,
        pod_labels=_pod_labels,
        product_weight=_product_weight,
        worker_resources=_worker_resources,
        claim_labels=_claim_labels,
        claim_request=claim_request,
        claim_digest=claim_digest,
        claim_name=CLAIM_REQUEST,
        serving_ports=_serving_ports,
        pod_security_context=POD_SECURITY_CONTEXT,
        pvc_claim=lambda ctx: pvc_parts(ctx.model_uri)[0],
        dict=dict,
    )
    return env


_ENV = _environment()
# libyaml's loader when PyYAML has it (the wheels do): parsing the rendered YAML was most of a
# reconcile's CPU with the pure-Python one (bench/: operator profile).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _validate(obj: Any, template: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise RenderError(f"template {template} produced {type(obj).__name__}, not a manifest")
    for key in ("apiVersion", "kind", "metadata"):
        if key not in obj:
            raise RenderError(f"template {template} produced a manifest without {key}")
    meta = obj["metadata"]
    if not meta.get("name") or len(meta["name"]) > 253:
        raise RenderError(f"template {template}: invalid metadata.name {meta.get('name')!r}")
    for k, v in meta.get("labels", {}).items():
        if len(v) > 63:
            raise RenderError(f"template {template}: label {k} value longer than 63 characters")
    return obj


def render(ctx: RenderContext) -> list[dict[str, Any]]:
    """Every child manifest of one ModelDeployment, in apply order."""
    out: list[dict[str, Any]] = []
    for name in TEMPLATES:
        text = _ENV.get_template(f"{name}.yaml.j2").render(ctx=ctx)
        try:
            docs = list(yaml.load_all(text, Loader=_LOADER))
        except yaml.YAMLError as exc:
            raise RenderError(f"template {name} rendered invalid YAML: {exc}") from exc
        out.extend(_validate(d, name) for d in docs if d is not None)
    return out


@functools.lru_cache(maxsize=1024)
def _stamped_blob(ctx: RenderContext) -> bytes:
    return marshal.dumps(tuple(with_hash(m) for m in render(ctx)))


def render_stamped(ctx: RenderContext) -> tuple[dict[str, Any], ...]:
    """`render` stamped with each manifest's hash, memoized by the (frozen) context.

    Most reconciles are triggered by a child's or a pod's status and render exactly what the
    last one did; the context holds every input of rendering, so equal contexts give equal
    manifests. The cache keeps each result marshalled: ~8 KB an entry instead of ~70 KB of live
    dicts (measured for the CPU example), and loading one takes ~0.2 ms against ~7 ms to
    render, so 1,024 recent contexts cost ~10 MB. Every caller gets its own copy.
    """
    result: tuple[dict[str, Any], ...] = marshal.loads(_stamped_blob(ctx))
    return result


#: Hits, misses and size of the render cache (the operator benchmark's memory census reads it).
render_cache_info = _stamped_blob.cache_info


def template_names() -> list[str]:
    """The template files shipped in the package (for packaging checks)."""
    files = resources.files("airt_operator") / "templates"
    return sorted(p.name for p in files.iterdir() if p.name.endswith(".j2"))
