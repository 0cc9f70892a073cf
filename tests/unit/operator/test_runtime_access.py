"""Runtime access and model-fetch policy: who may use a runtime, which credentials, which
models count as pinned, and what the fetcher's pod is allowed (size caps, egress).

Unit tier: resolution (airt_operator.reconcile.resolve) and rendering of the examples with
runtimes whose policy says so.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from opbuild import context, example, fetch_config, model

from airt_operator.api import InferenceRuntime, Reason, parse_inference_runtime
from airt_operator.reconcile.build import BuildSettings, build_context
from airt_operator.reconcile.render import render
from airt_operator.reconcile.resolve import ResolutionFailure, resolve

COMMIT = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "a" * 64


def md(uri: str, **model_extra: Any) -> Any:
    return model(
        {
            "apiVersion": "airt.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "m"},
            "spec": {
                "model": {"uri": uri, "format": "torchscript", **model_extra},
                "runtime": {"name": "rt"},
            },
        },
        namespace="team-a",
    )


def rt(**policy: Any) -> InferenceRuntime:
    return parse_inference_runtime(
        {
            "apiVersion": "airt.dev/v1alpha1",
            "kind": "InferenceRuntime",
            "metadata": {"name": "rt"},
            "spec": {
                "images": {"worker": "ghcr.io/x/w:1"},
                "formats": ["torchscript"],
                "accelerator": "cpu",
                "policy": policy,
            },
        }
    )


def refused(m: Any, runtime: InferenceRuntime, labels: dict[str, str] | None = None) -> str:
    with pytest.raises(ResolutionFailure) as e:
        resolve(m, [runtime], labels)
    assert e.value.reason == Reason.RUNTIME_POLICY_VIOLATION
    return e.value.message


@pytest.mark.parametrize(
    "uri,extra,ok",
    [
        ("s3://bucket/models/m.pt", {}, False),
        ("s3://bucket/models/m.pt", {"sha256": DIGEST}, True),
        (f"oci://r.example/m@sha256:{DIGEST}", {}, True),
        (f"hf://org/repo@{COMMIT}", {}, True),
        ("hf://org/repo@main", {}, False),  # a branch moves
        ("pvc://claim/m.pt", {}, True),  # not downloaded
    ],
)
def test_a_runtime_that_requires_pinning_accepts_only_immutable_models(
    uri: str, extra: dict[str, Any], ok: bool
) -> None:
    runtime = rt(requireModelSha256=True)
    if ok:
        resolve(md(uri, **extra), [runtime])
    else:
        assert "requires a pinned model" in refused(md(uri, **extra), runtime)


def test_a_namespace_selector_decides_who_may_use_a_runtime() -> None:
    runtime = rt(namespaceSelector={"matchLabels": {"airt.dev/tier": "gold"}})
    m = md("pvc://claim/m.pt")
    assert "not team-a" in refused(m, runtime, {"airt.dev/tier": "bronze"})
    assert "not team-a" in refused(m, runtime)  # labels unknown: only the name label
    resolve(m, [runtime], {"airt.dev/tier": "gold"})
    by_name = rt(
        namespaceSelector={
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a"]}
            ]
        }
    )
    resolve(m, [by_name])


def test_credentials_must_be_a_secret_the_runtime_lists() -> None:
    runtime = rt(allowedCredentialSecrets=["s3-models"])
    msg = refused(md("s3://bucket/models/m.pt", credentials={"name": "db-password"}), runtime)
    assert "allows credentials Secrets s3-models, not db-password" in msg
    resolve(md("s3://bucket/models/m.pt", credentials={"name": "s3-models"}), [runtime])


def test_every_emptydir_has_a_size_limit_and_the_fetcher_a_byte_cap() -> None:
    for name in ("mlp-cpu", "cnn-gpu"):
        children = render(context(example(name)))
        pod = next(c for c in children if c["kind"] == "Deployment")["spec"]["template"]["spec"]
        for v in pod["volumes"]:
            if "emptyDir" in v:
                assert v["emptyDir"].get("sizeLimit"), (name, v)
    assert fetch_config(render(context(example("cnn-gpu")))).max_bytes == 20 * 2**30


def test_fetch_egress_excludes_cluster_ranges_unless_the_store_is_in_cluster() -> None:
    m = example("cnn-gpu")
    settings = BuildSettings.defaults(egress_except=("10.0.0.0/8", "169.254.0.0/16"))
    resolved = resolve(m, [r for r in _runtimes() if r.spec.accelerator == "nvidia"])
    ctx = build_context(m, resolved, settings, "uid", 1, False)
    policy = next(c for c in render(ctx) if c["kind"] == "NetworkPolicy")["spec"]
    fetch = policy["egress"][1]
    assert fetch["to"] == [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.0.0/16"]}}
    ]
    in_cluster = dataclasses.replace(ctx, egress_except=())
    policy = next(c for c in render(in_cluster) if c["kind"] == "NetworkPolicy")["spec"]
    assert "to" not in policy["egress"][1]


def _runtimes() -> list[InferenceRuntime]:
    from opbuild import runtimes

    return runtimes()
