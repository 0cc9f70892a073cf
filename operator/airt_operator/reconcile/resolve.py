"""Runtime resolution: which runtime runs a ModelDeployment, and may it?

Called by the reconciler with the parsed ModelDeployment and the runtimes kopf has indexed (both
kinds). Pure: the answer is a resolved runtime, or a ResolutionFailure carrying the condition
reason and a message that names what did not fit. The model's own namespace comes first: its
NamespacedInferenceRuntimes are looked at before the cluster's InferenceRuntimes, for a named
runtime and for auto-selection alike (a team's runtime wins over the catalog). A named runtime
must exist and fit; without a name the best fit is chosen by format, accelerator (GPU request or
not) and priority, ties broken by name so the choice is stable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from airt_operator.api import (
    MODEL_FORMATS,
    AnyRuntime,
    GpuRequest,
    ModelDeployment,
    NamespacedInferenceRuntime,
    Reason,
)
from airt_operator.reconcile.runtime_template import container_of


@dataclass(frozen=True)
class ResolvedRuntime:
    runtime: AnyRuntime
    worker_image: str
    reason: Reason  # RuntimeFound or RuntimeAutoSelected
    message: str

    @property
    def name(self) -> str:
        return self.runtime.metadata.name or ""

    @property
    def kind(self) -> str:
        return self.runtime.kind


def _label(rt: AnyRuntime) -> str:
    """How a message names a runtime: the namespaced kind says so."""
    if isinstance(rt, NamespacedInferenceRuntime):
        return f"{rt.metadata.name} (NamespacedInferenceRuntime in {rt.metadata.namespace})"
    return str(rt.metadata.name)


class ResolutionFailure(Exception):  # noqa: N818 - a result, raised to short-circuit
    """No runtime can run this model as specified; `reason` is the condition reason."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0]


def wants_gpu(md: ModelDeployment) -> bool:
    res = md.spec.resources
    return bool(res and res.gpu)


def _most_gpus(gpu: GpuRequest) -> int:
    """The most whole GPUs one replica may get (a MIG slice counts as none)."""
    if gpu.alternatives:
        return max((a.count for a in gpu.alternatives if not a.mig), default=0)
    return 0 if gpu.mig else gpu.count


_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _pinned(uri: str) -> bool:
    """Whether a remote URI names immutable content without a separate sha256: an OCI digest,
    or a Hugging Face revision that is a full commit id (branches and tags move)."""
    scheme = _scheme(uri)
    if scheme == "oci":
        return "@sha256:" in uri
    if scheme == "hf":
        return bool(_COMMIT.match(uri.rpartition("@")[2])) if "@" in uri else False
    return False


def incompatibility(
    md: ModelDeployment, rt: AnyRuntime, namespace_labels: Mapping[str, str] | None = None
) -> str | None:
    """Why this runtime cannot run this model, or None when it can.

    `namespace_labels` are the labels of the model's namespace (for the runtime's namespace
    selector); unknown, only the name label every namespace carries is assumed."""
    spec, name = rt.spec, _label(rt)
    model = md.spec.model
    if model.format not in spec.formats:
        return f"runtime {name} loads {', '.join(spec.formats)}, not {model.format}"
    if container_of(spec).airt_worker_config and model.format not in MODEL_FORMATS:
        return (
            f"runtime {name} is the airt worker, which loads {', '.join(MODEL_FORMATS)}, "
            f"not {model.format}"
        )
    gpu = md.spec.resources.gpu if md.spec.resources else None
    if gpu and spec.accelerator != "nvidia":
        return f"runtime {name} is for {spec.accelerator}, and the model asks for GPUs"
    if not gpu and spec.accelerator != "cpu":
        return f"runtime {name} is for {spec.accelerator} GPUs, and the model asks for none"
    policy = spec.policy
    if policy:
        schemes = policy.allowed_uri_schemes
        if schemes and _scheme(model.uri) not in schemes:
            return (
                f"runtime {name} accepts model URIs {', '.join(s + '://' for s in schemes)}, "
                f"not {_scheme(model.uri)}://"
            )
        limit = policy.max_gpus_per_replica
        most = _most_gpus(gpu) if gpu else 0
        if limit is not None and most > limit:
            return f"runtime {name} allows at most {limit} GPUs per replica, not {most}"
        remote = _scheme(model.uri) != "pvc"
        if policy.require_model_sha256 and remote and not model.sha256 and not _pinned(model.uri):
            return (
                f"runtime {name} requires a pinned model: spec.model.sha256, an oci:// URI "
                "pinned by @sha256, or an hf:// revision that is a full commit id"
            )
        namespace = md.metadata.namespace or ""
        selector = None if isinstance(rt, NamespacedInferenceRuntime) else policy.namespace_selector
        labels = dict(namespace_labels or {"kubernetes.io/metadata.name": namespace})
        if selector is not None and not selector.matches(labels):
            return (
                f"runtime {name} allows only the namespaces its namespaceSelector selects, "
                f"not {namespace}"
            )
        allowed = policy.allowed_credential_secrets
        secret = model.credentials.name if model.credentials else None
        if secret and allowed is not None and secret not in allowed:
            return (
                f"runtime {name} allows credentials Secrets {', '.join(allowed) or '(none)'}, "
                f"not {secret}"
            )
    return None


def _image(md: ModelDeployment, rt: AnyRuntime) -> str:
    override = md.spec.runtime.image if md.spec.runtime else None
    if not override:
        return rt.spec.image
    prefixes = (rt.spec.policy.allowed_image_prefixes if rt.spec.policy else None) or []
    if not any(override.startswith(p) for p in prefixes):
        allowed = ", ".join(prefixes) if prefixes else "none"
        raise ResolutionFailure(
            Reason.IMAGE_OVERRIDE_NOT_ALLOWED,
            f"spec.runtime.image {override} is not allowed by runtime {rt.metadata.name} "
            f"(allowed prefixes: {allowed})",
        )
    return override


def _formats_available(runtimes: Iterable[AnyRuntime]) -> str:
    formats = sorted({f for rt in runtimes for f in rt.spec.formats})
    return ", ".join(formats) if formats else "none"


def _named(md: ModelDeployment, runtimes: list[AnyRuntime], named: str) -> AnyRuntime | None:
    for rt in runtimes:  # the namespace's own first (the list is in that order)
        if rt.metadata.name == named:
            return rt
    return None


def _best(fits: list[AnyRuntime]) -> AnyRuntime:
    """Highest priority, then the name (alphabetically); a namespaced fit beats any cluster one."""
    own = [rt for rt in fits if isinstance(rt, NamespacedInferenceRuntime)]
    pool = own or fits
    return max(pool, key=lambda r: (r.spec.priority, [-ord(c) for c in r.metadata.name or ""]))


def resolve(
    md: ModelDeployment,
    runtimes: Iterable[AnyRuntime],
    namespace_labels: Mapping[str, str] | None = None,
) -> ResolvedRuntime:
    """The runtime for this model, or ResolutionFailure with the reason and a clear message."""
    namespace = md.metadata.namespace
    own = sorted(
        (
            rt
            for rt in runtimes
            if isinstance(rt, NamespacedInferenceRuntime)
            and rt.metadata.name
            and rt.metadata.namespace == namespace
        ),
        key=lambda r: r.metadata.name or "",
    )
    catalog = sorted(
        (rt for rt in runtimes if not isinstance(rt, NamespacedInferenceRuntime)),
        key=lambda r: r.metadata.name or "",
    )
    candidates: list[AnyRuntime] = [*own, *(rt for rt in catalog if rt.metadata.name)]
    named = md.spec.runtime.name if md.spec.runtime else None
    if named:
        rt = _named(md, candidates, named)
        if rt is None:
            raise ResolutionFailure(
                Reason.RUNTIME_NOT_FOUND,
                f"InferenceRuntime {named} (spec.runtime.name) not found, nor a "
                f"NamespacedInferenceRuntime of that name in {namespace}",
            )
        why = incompatibility(md, rt, namespace_labels)
        if why:
            reason = (
                Reason.RUNTIME_POLICY_VIOLATION
                if "allows" in why or "accepts" in why or "requires" in why
                else Reason.RUNTIME_INCOMPATIBLE
            )
            raise ResolutionFailure(reason, why)
        return ResolvedRuntime(
            rt, _image(md, rt), Reason.RUNTIME_FOUND, f"using runtime {_label(rt)}"
        )
    fits: list[AnyRuntime] = []
    reasons: list[str] = []
    selectable = [rt for rt in candidates if rt.spec.auto_select]
    for rt in selectable:
        why = incompatibility(md, rt, namespace_labels)
        if why:
            reasons.append(why)
        else:
            fits.append(rt)
    if not fits:
        fmt = md.spec.model.format
        if not any(fmt in rt.spec.formats for rt in selectable):
            named_only = [_label(rt) for rt in candidates if fmt in rt.spec.formats]
            hint = (
                f" (runtimes that load it when named in spec.runtime.name: {', '.join(named_only)})"
                if named_only
                else ""
            )
            raise ResolutionFailure(
                Reason.NO_MATCHING_RUNTIME,
                f"no runtime accepts format {fmt}; formats available: "
                f"{_formats_available(selectable)}{hint}",
            )
        detail = "; ".join(reasons) if reasons else "no runtime allows auto-selection"
        raise ResolutionFailure(
            Reason.NO_MATCHING_RUNTIME,
            f"no runtime fits format {fmt} on {'nvidia' if wants_gpu(md) else 'cpu'}: {detail}",
        )
    best = _best(fits)
    return ResolvedRuntime(
        best,
        _image(md, best),
        Reason.RUNTIME_AUTO_SELECTED,
        f"auto-selected runtime {_label(best)} (priority {best.spec.priority})",
    )
