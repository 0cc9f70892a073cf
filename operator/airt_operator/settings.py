"""The operator's settings, from the environment (prefix AIRT_OPERATOR_) and `airt-operator run`.

Read once by the composition root (main.py) and passed down explicitly.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """Everything the operator process can be told."""

    model_config = SettingsConfigDict(
        env_prefix="AIRT_OPERATOR_", extra="ignore", populate_by_name=True
    )

    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch; all (cluster-wide) when empty."
    )
    monitoring_namespace: str = Field(
        default="monitoring", description="The namespace allowed to scrape port 8002."
    )
    metrics_image: str = Field(
        default="ghcr.io/airt-dev/metrics:0.1.0", description="Default metrics sidecar image."
    )
    fetcher_image: str = Field(
        default="ghcr.io/airt-dev/worker-cpu:0.1.0", description="Default model-fetch image."
    )
    drain_seconds: int = Field(default=30, ge=0, le=3600, description="Worker drain budget.")
    egress_except_cidrs: list[str] = Field(
        default_factory=lambda: ["169.254.0.0/16"],
        description="IPv4 ranges a model fetcher may not reach: the cluster's pod and service "
        "ranges, and link-local metadata endpoints (unless a runtime declares its model store "
        "in-cluster).",
    )
    default_model_size: str = Field(
        default="20Gi",
        pattern=r"^[0-9]+(Ki|Mi|Gi|Ti)?$",
        description="Largest model a fetcher downloads when the runtime sets no maxModelSize.",
    )
    gpu_placement: str = Field(
        default="auto",
        pattern="^(auto|dra|devicePlugin)$",
        description="How GPU pods get their GPUs when neither the model nor its runtime says: "
        "dra (a ResourceClaimTemplate per model), devicePlugin (nvidia.com/gpu extended "
        "resources) or auto (DRA where the cluster has the NVIDIA DeviceClasses).",
    )
    standalone: bool = Field(default=False, description="Run without kopf peering.")
    peering_name: str = Field(default="airt", description="The ClusterKopfPeering to join.")
    health_port: int = Field(default=8080, description="Port of /metrics and /healthz.")
    resync_seconds: float = Field(
        default=300.0, gt=0, description="Safety-net re-check of every ModelDeployment."
    )
    retry_base_seconds: float = Field(
        default=0.5, gt=0, description="First delay before a failed reconcile is tried again."
    )
    retry_max_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Cap of the doubling delay between attempts of a reconcile that keeps failing.",
    )
    max_concurrent_reconciles: int = Field(
        default=32,
        ge=1,
        le=1024,
        description="Reconciles in flight at once (memory and API connections scale with it).",
    )
    log_format: str = Field(
        default="json",
        pattern="^(json|plain)$",
        # AIRT_LOG_FORMAT is the one switch the worker and the metrics sidecar read too; the
        # operator's own variable wins where both are set.
        validation_alias=AliasChoices("AIRT_OPERATOR_LOG_FORMAT", "AIRT_LOG_FORMAT"),
        description="`json` (one object per line: time, level, logger, message) or `plain`.",
    )

    @field_validator("namespaces", "egress_except_cidrs", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        # The chart passes lists as JSON strings; pydantic-settings decodes them from the
        # environment, but not when the same strings are given as arguments.
        if isinstance(value, str) and value.startswith("["):
            return json.loads(value)
        return value
