"""A model's fetcher is handed only a Secret its namespace labelled for model credentials.

Cluster tier, against the real control plane and the real `airt-operator run` process. The
operator reads the named Secret's metadata only (a PartialObjectMetadata GET); an unlabelled
Secret refuses the model with RuntimePolicyViolation and the command that fixes it, labelling it
lets the model through without any change to the ModelDeployment (the refusal is retried with
backoff), and a missing Secret is CredentialsNotFound.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from namespaces import fresh_namespace

from airt_dev.cluster import Cluster
from airt_dev.operator_proc import OperatorProcess
from airt_dev.wait import wait_for

LABEL = "airt.dev/model-credentials"
SHA = "9f2c1d6b8e4a7c3f5d0b2e9a8c7f6e5d4c3b2a19f8e7d6c5b4a3928171605f4e"


@pytest.fixture(scope="module")
def env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with fresh_namespace(cluster, "cred") as ns:
        log = tmp_path_factory.mktemp("operator") / "operator.log"
        op = OperatorProcess.start(cluster.kubeconfig, log, namespaces=(ns,))
        try:
            yield {"ns": ns, "op": op}
        finally:
            op.stop()


def _model(name: str, secret: str) -> dict[str, Any]:
    return {
        "apiVersion": "airt.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {
                "uri": "https://models.example.com/mlp.pt",
                "format": "torchscript",
                "sha256": SHA,
                "credentials": {"name": secret},
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [4]}],
            },
            "runtime": {"name": "torch-cpu"},
            "resources": {"cpu": "10m", "memory": "64Mi"},
        },
    }


def _resolved(cluster: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    md = json.loads(cluster.kubectl("get", "md", name, "-n", ns, "-o", "json").stdout)
    for c in (md.get("status") or {}).get("conditions") or []:
        if c["type"] == "RuntimeResolved":
            return dict(c)
    return None


def _secret(cluster: Cluster, ns: str, name: str, labelled: bool) -> None:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labelled:
        meta["labels"] = {LABEL: "true"}
    cluster.apply_objects(
        [{"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": {"K": "v"}}]
    )


def test_an_unlabelled_secret_is_refused_until_it_is_labelled(
    cluster: Cluster, env: dict[str, Any]
) -> None:
    ns = env["ns"]
    _secret(cluster, ns, "db-password", labelled=False)
    cluster.apply_objects([_model("unlabelled", "db-password")], namespace=ns)
    refused = wait_for(
        lambda: (c := _resolved(cluster, ns, "unlabelled")) and c["status"] == "False" and c,
        60,
        "the unlabelled Secret refused",
    )
    assert refused["reason"] == "RuntimePolicyViolation"
    assert f"kubectl label secret db-password -n {ns} {LABEL}=true" in refused["message"]
    # Nothing was rendered for it: no Deployment carries the Secret.
    assert cluster.kubectl("get", "deploy", "unlabelled", "-n", ns, check=False).returncode != 0

    cluster.kubectl("label", "secret", "db-password", "-n", ns, f"{LABEL}=true")
    ok = wait_for(
        lambda: (c := _resolved(cluster, ns, "unlabelled")) and c["status"] == "True" and c,
        120,
        "the model resolved once its Secret is labelled",
    )
    assert ok["reason"] in ("RuntimeFound", "RuntimeAutoSelected"), ok
    dep = json.loads(cluster.kubectl("get", "deploy", "unlabelled", "-n", ns, "-o", "json").stdout)
    init = dep["spec"]["template"]["spec"]["initContainers"][0]
    assert init["envFrom"] == [{"secretRef": {"name": "db-password"}}]


def test_a_labelled_secret_passes_and_a_missing_one_is_named(
    cluster: Cluster, env: dict[str, Any]
) -> None:
    ns = env["ns"]
    _secret(cluster, ns, "store", labelled=True)
    cluster.apply_objects(
        [_model("labelled", "store"), _model("missing", "no-such-secret")], namespace=ns
    )
    ok = wait_for(
        lambda: (c := _resolved(cluster, ns, "labelled")) and c["status"] == "True" and c,
        60,
        "the labelled Secret accepted",
    )
    assert ok["status"] == "True"
    missing = wait_for(
        lambda: (c := _resolved(cluster, ns, "missing")) and c["status"] == "False" and c,
        60,
        "the missing Secret reported",
    )
    assert missing["reason"] == "CredentialsNotFound"
    assert "no-such-secret" in missing["message"]
