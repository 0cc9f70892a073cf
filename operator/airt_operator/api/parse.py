"""Parse raw objects (dicts from kopf, YAML files, the API server) into the API models.

`parse_model` is the one parser; each kind's descriptor (kinds.py) calls it for its models, and
the operator and tests call those (`parse_model_deployment`, `parse_object`, ...). Errors come
back as one domain exception, `ApiValidationError`, whose message names each offending field by
its wire path (`spec.resources.gpu.count`), the way the API server would, so a condition message
or an Event can quote it unchanged. No pydantic type leaks out of the error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class FieldError:
    """One problem: the wire path of the field (e.g. `spec.model.uri`) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ApiValidationError(ValueError):
    """A raw object does not satisfy the airt API; `errors` lists every offending field."""

    def __init__(self, kind: str, errors: Sequence[FieldError]) -> None:
        self.kind = kind
        self.errors = tuple(errors)
        super().__init__(f"invalid {kind}: " + "; ".join(str(e) for e in self.errors))

    @property
    def paths(self) -> tuple[str, ...]:
        """The offending field paths, in the order found."""
        return tuple(e.path for e in self.errors)


def format_path(loc: Sequence[int | str]) -> str:
    """`("spec", "gpu", "products", 1)` → `spec.gpu.products[1]`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _field_errors(exc: ValidationError, prefix: str) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        path = format_path(err["loc"])
        ctx = err.get("ctx") or {}
        if "field_path" in ctx:
            path += str(ctx["field_path"])
        if prefix:
            path = f"{prefix}.{path}" if path and not path.startswith("[") else prefix + path
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "field not declared in schema"
        errors.append(FieldError(path, message))
    return errors


def parse_model(model: type[T], raw: Mapping[str, Any], kind: str, prefix: str = "") -> T:
    """Validate `raw` as `model`; errors name their fields by wire path, under `prefix`."""
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise ApiValidationError(kind, _field_errors(exc, prefix)) from None
