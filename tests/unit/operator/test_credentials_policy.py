"""The credentials policy: which Secret a model's fetcher may be handed (reconcile/credentials)."""

from __future__ import annotations

from typing import Any

from opbuild import example, model, runtimes

from airt_operator.api import Reason, parse_inference_runtime
from airt_operator.reconcile.credentials import CREDENTIALS_LABEL, credentials_refusal
from airt_operator.reconcile.resolve import resolve


def _with_credentials(secret: str = "store") -> Any:
    md = example("cnn-gpu")  # a remote model: credentials are for its fetcher
    raw = md.model_dump(by_alias=True, exclude_none=True, mode="json")
    raw["spec"]["model"]["credentials"] = {"name": secret}
    raw["metadata"] = {"name": "m"}
    return model(raw, namespace="team")


def _resolved(md: Any, allowed: list[str] | None = None) -> Any:
    chosen = resolve(md, runtimes())
    if allowed is None:
        return chosen
    raw = chosen.runtime.model_dump(by_alias=True, exclude_none=True, mode="json")
    raw["spec"].setdefault("policy", {})["allowedCredentialSecrets"] = allowed
    return resolve(md, [parse_inference_runtime(raw)])


def test_no_credentials_nothing_to_check() -> None:
    md = example("mlp-cpu")
    assert credentials_refusal(md, resolve(md, runtimes()), None) is None


def test_a_labelled_secret_may_be_used() -> None:
    md = _with_credentials()
    meta = {"name": "store", "labels": {CREDENTIALS_LABEL: "true"}}
    assert credentials_refusal(md, _resolved(md), meta) is None


def test_an_unlabelled_secret_is_refused_with_the_fix() -> None:
    md = _with_credentials("db-password")
    refusal = credentials_refusal(md, _resolved(md), {"name": "db-password", "labels": {}})
    assert refusal is not None
    reason, message = refusal
    assert reason == Reason.RUNTIME_POLICY_VIOLATION
    assert "db-password" in message and f"{CREDENTIALS_LABEL}=true" in message
    assert "kubectl label secret db-password -n team" in message
    # A label with another value is no consent either.
    wrong = {"name": "db-password", "labels": {CREDENTIALS_LABEL: "yes"}}
    assert credentials_refusal(md, _resolved(md), wrong) is not None


def test_a_secret_the_runtime_lists_needs_no_label() -> None:
    md = _with_credentials("store")
    assert credentials_refusal(md, _resolved(md, ["store"]), {"name": "store"}) is None


def test_a_missing_secret_is_its_own_reason() -> None:
    md = _with_credentials("gone")
    refusal = credentials_refusal(md, _resolved(md), None)
    assert refusal is not None and refusal[0] == Reason.CREDENTIALS_NOT_FOUND
    assert "gone" in refusal[1] and "team" in refusal[1]
