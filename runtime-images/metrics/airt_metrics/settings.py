"""Settings of the metrics sidecar: where it listens, which worker it reads, which labels it adds.

Called by `airt_metrics.main` (the `airt-metrics` command), which builds one `SidecarSettings` from
the command line and the environment; nothing else reads the environment. Every field can be set
with `--kebab-case` options or `AIRT_METRICS_<FIELD>` variables; the pod identity also comes from
the variables the operator fills from the downward API (POD_NAME, POD_NAMESPACE) and from
AIRT_MODELDEPLOYMENT, so the rendered pod spec needs no sidecar-specific wiring.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Prometheus's default scrape timeout is 10 s; the sidecar must answer well inside it even when it
# waits the whole bound for a stuck worker.
MAX_SCRAPE_TIMEOUT_SECONDS = 5.0


class SidecarSettings(BaseSettings):
    """The airt metrics sidecar: serves the worker's metrics on /metrics, with pod labels.

    Every option can also be set as an environment variable AIRT_METRICS_<OPTION>.
    """

    model_config = SettingsConfigDict(
        env_prefix="AIRT_METRICS_",
        cli_prog_name="airt-metrics",
        cli_kebab_case=True,
        populate_by_name=True,
        extra="ignore",
    )

    host: str = Field(
        "0.0.0.0",
        description="Address the /metrics and /healthz endpoints listen on; 0.0.0.0 so that "
        "Prometheus reaches the pod IP.",
    )
    port: int = Field(
        8002, ge=1, le=65535, description="Port of /metrics and /healthz (Triton's metrics port)."
    )
    worker_url: str = Field(
        "http://127.0.0.1:8082/metrics",
        description="The worker's own metrics endpoint (plain http, normally on localhost).",
    )
    scrape_timeout: float = Field(
        0.5,
        gt=0,
        le=MAX_SCRAPE_TIMEOUT_SECONDS,
        description="Seconds one read of the worker may take in total (connect, headers, body); "
        "past it the scrape answers airt_worker_up 0.",
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Largest worker response accepted, in bytes; a bigger one counts as an error.",
    )
    namespace: str = Field(
        "",
        validation_alias=AliasChoices("namespace", "AIRT_METRICS_NAMESPACE", "POD_NAMESPACE"),
        description="Value of the `namespace` label (downward API: POD_NAMESPACE); empty: none.",
    )
    modeldeployment: str = Field(
        "",
        validation_alias=AliasChoices(
            "modeldeployment", "AIRT_METRICS_MODELDEPLOYMENT", "AIRT_MODELDEPLOYMENT"
        ),
        description="Value of the `modeldeployment` label (AIRT_MODELDEPLOYMENT); empty: none.",
    )
    pod: str = Field(
        "",
        validation_alias=AliasChoices("pod", "AIRT_METRICS_POD", "POD_NAME"),
        description="Value of the `pod` label (downward API: POD_NAME); empty: none.",
    )

    log_format: Literal["plain", "json"] = Field(
        "plain",
        validation_alias=AliasChoices("log_format", "AIRT_METRICS_LOG_FORMAT", "AIRT_LOG_FORMAT"),
        description="`json`: one JSON object per log line (time, level, logger, message), as "
        "the worker writes with the same AIRT_LOG_FORMAT; `plain`: text.",
    )

    @field_validator("worker_url")
    @classmethod
    def _plain_http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"must be an http:// URL with a host, got {value!r}")
        return value

    def target_labels(self) -> dict[str, str]:
        """The labels added to every series, without the empty ones (empty means absent)."""
        labels = {
            "namespace": self.namespace,
            "modeldeployment": self.modeldeployment,
            "pod": self.pod,
        }
        return {name: value for name, value in labels.items() if value}
