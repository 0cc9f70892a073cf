"""Runtime resolution: which InferenceRuntime runs a ModelDeployment, and may it?

Called by the reconciler with the parsed ModelDeployment and the runtimes kopf has indexed.
Pure: the answer is a resolved runtime, or a ResolutionFailure carrying the condition reason
and a message that names what did not fit. A named runtime must exist and fit; without a name
the best fit is chosen by format, accelerator (GPU request or not) and priority, ties broken
by name so the choice is stable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from airt_operator.api import InferenceRuntime, ModelDeployment, Reason


@dataclass(frozen=True)
class ResolvedRuntime:
    runtime: InferenceRuntime
    worker_image: str
    reason: Reason  # RuntimeFound or RuntimeAutoSelected
    message: str

    @property
    def name(self) -> str:
        return self.runtime.metadata.name or ""


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
    md: ModelDeployment, rt: InferenceRuntime, namespace_labels: Mapping[str, str] | None = None
) -> str | None:
    """Why this runtime cannot run this model, or None when it can.

    `namespace_labels` are the labels of the model's namespace (for the runtime's namespace
    selector); unknown, only the name label every namespace carries is assumed."""
    spec, name = rt.spec, rt.metadata.name
    model = md.spec.model
    if model.format not in spec.formats:
        return f"runtime {name} loads {', '.join(spec.formats)}, not {model.format}"
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
        if gpu and not gpu.mig and limit is not None and gpu.count > limit:
            return f"runtime {name} allows at most {limit} GPUs per replica, not {gpu.count}"
        remote = _scheme(model.uri) != "pvc"
        if policy.require_model_sha256 and remote and not model.sha256 and not _pinned(model.uri):
            return (
                f"runtime {name} requires a pinned model: spec.model.sha256, an oci:// URI "
                "pinned by @sha256, or an hf:// revision that is a full commit id"
            )
        namespace = md.metadata.namespace or ""
        selector = policy.namespace_selector
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


def _image(md: ModelDeployment, rt: InferenceRuntime) -> str:
    override = md.spec.runtime.image if md.spec.runtime else None
    if not override:
        return rt.spec.images.worker
    prefixes = (rt.spec.policy.allowed_image_prefixes if rt.spec.policy else None) or []
    if not any(override.startswith(p) for p in prefixes):
        allowed = ", ".join(prefixes) if prefixes else "none"
        raise ResolutionFailure(
            Reason.IMAGE_OVERRIDE_NOT_ALLOWED,
            f"spec.runtime.image {override} is not allowed by runtime {rt.metadata.name} "
            f"(allowed prefixes: {allowed})",
        )
    return override


def resolve(
    md: ModelDeployment,
    runtimes: Iterable[InferenceRuntime],
    namespace_labels: Mapping[str, str] | None = None,
) -> ResolvedRuntime:
    """The runtime for this model, or ResolutionFailure with the reason and a clear message."""
    catalog = {rt.metadata.name: rt for rt in runtimes if rt.metadata.name}
    named = md.spec.runtime.name if md.spec.runtime else None
    if named:
        rt = catalog.get(named)
        if rt is None:
            raise ResolutionFailure(
                Reason.RUNTIME_NOT_FOUND, f"InferenceRuntime {named} (spec.runtime.name) not found"
            )
        why = incompatibility(md, rt, namespace_labels)
        if why:
            reason = (
                Reason.RUNTIME_POLICY_VIOLATION
                if "allows" in why or "accepts" in why or "requires" in why
                else Reason.RUNTIME_INCOMPATIBLE
            )
            raise ResolutionFailure(reason, why)
        return ResolvedRuntime(rt, _image(md, rt), Reason.RUNTIME_FOUND, f"using runtime {named}")
    fits: list[InferenceRuntime] = []
    reasons: list[str] = []
    for rt in sorted(catalog.values(), key=lambda r: r.metadata.name or ""):
        if not rt.spec.auto_select:
            continue
        why = incompatibility(md, rt, namespace_labels)
        if why:
            reasons.append(why)
        else:
            fits.append(rt)
    if not fits:
        detail = "; ".join(reasons) if reasons else "no InferenceRuntime allows auto-selection"
        raise ResolutionFailure(
            Reason.NO_MATCHING_RUNTIME,
            f"no runtime fits format {md.spec.model.format} "
            f"on {'nvidia' if wants_gpu(md) else 'cpu'}: {detail}",
        )
    best = max(fits, key=lambda r: (r.spec.priority, [-ord(c) for c in r.metadata.name or ""]))
    return ResolvedRuntime(
        best,
        _image(md, best),
        Reason.RUNTIME_AUTO_SELECTED,
        f"auto-selected runtime {best.metadata.name} (priority {best.spec.priority})",
    )
