"""Worker settings: the contract's `WorkerConfig`, read from CLI args, `AIRT_*` env, the
operator's `AIRT_WORKER_CONFIG` and a config file.

Called by `main` (the `airt-worker serve` entry point) before anything else is built. The fields,
their defaults and their validation are the contract's (airt_contract.worker), written once;
this module adds only where values come from. Precedence, most important first: command-line
arguments, environment (`AIRT_MODEL_PATH`, nested fields with `__`, e.g.
`AIRT_BATCHING__MAX_BATCH_SIZE`), the whole configuration the operator renders as JSON in
`AIRT_WORKER_CONFIG`, the YAML or JSON config file (`--config-file` / `AIRT_CONFIG_FILE`), then
the defaults. docs/worker-protocol.md lists every field.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    CliSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from airt_contract.worker import (
    WORKER_CONFIG_ENV,
    BatchingConfig,
    ModelFormat,
    TensorConfig,
    WorkerConfig,
)
from airt_worker.jsonenv import JsonEnvSource

__all__ = [
    "BatchingConfig",
    "ModelFormat",
    "TensorConfig",
    "WorkerSettings",
    "cgroup_cpu_limit",
    "load_settings",
]


class WorkerSettings(WorkerConfig, BaseSettings):
    """The contract's WorkerConfig as settings; see the module docstring for the sources."""

    model_config = SettingsConfigDict(
        env_prefix="AIRT_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    config_file: Path | None = Field(
        default=None, description="YAML or JSON file with any of these settings."
    )

    def effective_threads(self) -> int:
        return self.threads or cgroup_cpu_limit()


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this container may use: the cgroup quota (v2 `cpu.max`, v1 cfs), else the affinity."""
    available = len(os.sched_getaffinity(0))
    quota: float | None = None
    try:
        fields = (root / "cpu.max").read_text().split()
        if fields and fields[0] != "max":
            quota = int(fields[0]) / int(fields[1])
    except (OSError, ValueError, IndexError):
        try:
            q = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
            p = int((root / "cpu" / "cpu.cfs_period_us").read_text())
            if q > 0 and p > 0:
                quota = q / p
        except (OSError, ValueError):
            quota = None
    if quota is None:
        return max(available, 1)
    return max(1, min(available, math.ceil(quota)))


def _config_file_from(argv: list[str]) -> Path | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config-file", "--config_file", dest="config_file", default=None)
    known, _ = pre.parse_known_args(argv)
    value = known.config_file or os.environ.get("AIRT_CONFIG_FILE")
    return Path(value) if value else None


def load_settings(argv: list[str]) -> WorkerSettings:
    """Build the settings from `argv`, the environment and the config file; `--help` exits."""
    config_file = _config_file_from(argv)
    if config_file is not None and not config_file.is_file():
        raise ValueError(f"config file {config_file} does not exist")

    class _Settings(WorkerSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [
                init_settings,
                env_settings,
                JsonEnvSource(settings_cls, WORKER_CONFIG_ENV),
            ]
            if config_file is not None:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
            return tuple(sources)

    cli: CliSettingsSource[Any] = CliSettingsSource(
        _Settings,
        cli_prog_name="airt-worker serve",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_parse_args=argv,
    )
    settings = _Settings(_cli_settings_source=cli)
    return WorkerSettings.model_validate(settings.model_dump())
