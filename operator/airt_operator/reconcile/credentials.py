"""May this model's fetcher use the credentials Secret it names? The policy, as a pure function.

Called by the reconciler after the runtime is resolved, with the Secret's metadata (read by
name, metadata only: Kube.get_metadata) or None when it does not exist. A Secret is usable when
the runtime's `policy.allowedCredentialSecrets` lists it, or, when the runtime lists none, when
the Secret carries the label `airt.dev/model-credentials: "true"`. The label is the namespace
owner's consent: without it, anyone allowed to create a ModelDeployment could hand any Secret of
the namespace (a database password, a registry token) to a fetcher that sends it to a URL of
their choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airt_operator.api import ModelDeployment, Reason
from airt_operator.reconcile.resolve import ResolvedRuntime

CREDENTIALS_LABEL = "airt.dev/model-credentials"


def credentials_refusal(
    md: ModelDeployment, resolved: ResolvedRuntime, secret_meta: Mapping[str, Any] | None
) -> tuple[Reason, str] | None:
    """Why the model's credentials Secret may not be used, or None when it may (or none is
    named). `secret_meta` is the Secret's metadata; None: the Secret does not exist."""
    ref = md.spec.model.credentials
    if ref is None:
        return None
    name, namespace = ref.name, md.metadata.namespace
    if secret_meta is None:
        return (
            Reason.CREDENTIALS_NOT_FOUND,
            f"Secret {name} (spec.model.credentials) does not exist in namespace {namespace}",
        )
    policy = resolved.runtime.spec.policy
    listed = policy.allowed_credential_secrets if policy else None
    if listed is not None:
        return None  # resolution already refused a Secret the runtime does not list
    labels = secret_meta.get("labels") or {}
    if labels.get(CREDENTIALS_LABEL) == "true":
        return None
    return (
        Reason.RUNTIME_POLICY_VIOLATION,
        f"Secret {name} (spec.model.credentials) is not labelled {CREDENTIALS_LABEL}=true and "
        f"runtime {resolved.name} lists no allowedCredentialSecrets: label it "
        f"(kubectl label secret {name} -n {namespace} {CREDENTIALS_LABEL}=true) if it holds "
        "model-store credentials",
    )
