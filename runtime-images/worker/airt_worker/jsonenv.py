"""A pydantic-settings source that reads a whole settings document, as JSON, from one
environment variable: how the operator hands the worker (`AIRT_WORKER_CONFIG`) and the model
fetcher (`AIRT_FETCH_CONFIG`) their contract models (airt_contract.worker).

Called by airt_worker.settings and airt_worker.fetch when they build their settings sources.
pydantic-settings reads one variable per field; a document in one variable needs this.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource


class JsonEnvSource(PydanticBaseSettingsSource):
    """Every field at once, from the JSON object in the environment variable `name`."""

    def __init__(self, settings_cls: type[BaseSettings], name: str) -> None:
        super().__init__(settings_cls)
        self.name = name

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # the whole document is returned by __call__

    def __call__(self) -> dict[str, Any]:
        raw = os.environ.get(self.name, "")
        if not raw.strip():
            return {}
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.name} is not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ValueError(f"{self.name} must be a JSON object, not {type(doc).__name__}")
        return doc
