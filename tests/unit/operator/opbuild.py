"""Shared builders for the operator's unit tests: the examples, parsed and resolved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from airt_contract.worker import FETCH_CONFIG_ENV, WORKER_CONFIG_ENV, FetchConfig, WorkerConfig
from airt_operator.api import (
    InferenceRuntime,
    ModelDeployment,
    parse_inference_runtime,
    parse_model_deployment,
)
from airt_operator.reconcile.build import BuildSettings, build_context
from airt_operator.reconcile.context import RenderContext
from airt_operator.reconcile.resolve import resolve

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_FILES = sorted((ROOT / "examples" / "deployments").glob("*.yaml"))


def runtimes() -> list[InferenceRuntime]:
    return [
        parse_inference_runtime(yaml.safe_load(p.read_text()))
        for p in sorted((ROOT / "examples" / "runtimes").glob("*.yaml"))
    ]


def model(raw: dict[str, Any], namespace: str = "ns") -> ModelDeployment:
    raw = {**raw, "metadata": {**raw.get("metadata", {}), "namespace": namespace}}
    return parse_model_deployment(raw)


def example(name: str) -> ModelDeployment:
    for p in EXAMPLE_FILES:
        raw = yaml.safe_load(p.read_text())
        if raw["metadata"]["name"] == name:
            return model(raw)
    raise KeyError(name)


def context(
    md: ModelDeployment, service_monitor: bool = False, dra_available: bool = False
) -> RenderContext:
    return build_context(
        md,
        resolve(md, runtimes()),
        BuildSettings.defaults(),
        "uid-1",
        1,
        service_monitor,
        dra_available=dra_available,
    )


def worker_config(children: list[dict[str, Any]]) -> WorkerConfig:
    """The WorkerConfig the rendered Deployment hands its worker container (AIRT_WORKER_CONFIG)."""
    dep = next(c for c in children if c["kind"] == "Deployment")
    worker = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    return WorkerConfig.model_validate_json(env[WORKER_CONFIG_ENV])


def fetch_config(children: list[dict[str, Any]]) -> FetchConfig:
    """The FetchConfig the rendered Deployment hands its model-fetch container."""
    dep = next(c for c in children if c["kind"] == "Deployment")
    init = dep["spec"]["template"]["spec"]["initContainers"][0]
    env = {e["name"]: e.get("value") for e in init["env"]}
    return FetchConfig.model_validate_json(env[FETCH_CONFIG_ENV])
