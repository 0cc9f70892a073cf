"""The building blocks every airt API model shares: the base class, CEL rules and wire types.

Used by the kind modules of this package (`modeldeployment`, `runtime`, `conditions`) and read by
`airt_operator.crdgen`, which turns the rules declared here into `x-kubernetes-validations`.

A cross-field rule is declared once, next to the model it constrains, with the `@cel` class
decorator: the CEL expression the API server evaluates, the message it returns, the field it
blames, and a Python predicate that enforces the same rule when the operator parses an object
(so unit tests and the operator see exactly what the API server would refuse). The shared table of
invalid manifests in tests/unit/api checks both sides agree.

Nothing here imports kopf or the Kubernetes client: the worker image must be able to import it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

GROUP = "airt.dev"
VERSION = "v1alpha1"
API_VERSION: Final = "airt.dev/v1alpha1"
CATEGORY = "airt"

# Kubernetes' own forms, as regexes that read the same in CEL (RE2) and in Python.
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUANTITY = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)"
    r"|(\.[0-9]+))))?$"
)
# An OCI image reference: registry[:port]/path[:tag][@sha256:digest], lower-case path components.
IMAGE = (
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


@dataclass(frozen=True)
class CelRule:
    """One CEL validation rule, as the API server evaluates it and as Python re-checks it.

    `rule`, `message`, `field_path` and `reason` map one to one onto an entry of
    `x-kubernetes-validations`. `field` (a Python attribute name) attaches the rule to that
    property's schema instead of the object's, so `self` is the field's value there; `each` goes
    one step further, to the items of a list. `check` receives what `self` would be (the model, the
    field's value, or one item) and returns True when the value is valid; it is not called for an
    absent (None) field, matching CEL, where a rule on an absent property does not run.
    """

    rule: str
    message: str
    check: Callable[[Any], bool]
    field: str | None = None
    each: bool = False
    field_path: str | None = None
    reason: str = "FieldValueInvalid"

    def to_schema(self) -> dict[str, str]:
        """The `x-kubernetes-validations` entry, keys in a fixed order."""
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        out["reason"] = self.reason
        return out


ModelT = TypeVar("ModelT", bound="ApiModel")


def cel(
    rule: str,
    message: str,
    check: Callable[[Any], bool],
    *,
    field: str | None = None,
    each: bool = False,
    field_path: str | None = None,
    reason: str = "FieldValueInvalid",
) -> Callable[[type[ModelT]], type[ModelT]]:
    """Class decorator: declare a CEL rule (and its Python twin) on an API model.

    Decorators apply bottom-up; rules are kept in reading order (top to bottom) so the generated
    CRD reads like the source.
    """
    new = CelRule(rule, message, check, field, each, field_path, reason)

    def decorate(cls: type[ModelT]) -> type[ModelT]:
        cls.cel_rules = (new, *cls.__dict__.get("cel_rules", ()))
        return cls

    return decorate


def matcher(pattern: str) -> Callable[[Any], bool]:
    """A Python check for `self.matches(pattern)`: RE2 and Python agree on the forms used here."""
    compiled = re.compile(pattern)
    return lambda value: compiled.search(value) is not None


def cel_str(text: str) -> str:
    """`text` as a CEL string literal (single quotes, backslashes and quotes escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cel_pattern(
    pattern: str,
    message: str,
    *,
    field: str,
    each: bool = False,
    when: str | None = None,
) -> Callable[[type[ModelT]], type[ModelT]]:
    """A `cel` rule saying a string field (or each of its items) matches `pattern`.

    With `when` (a regex) the rule only applies to values matching it, which is how the model URI
    gets one readable message per scheme.
    """
    match = matcher(pattern)
    if when is None:
        return cel(f"self.matches({cel_str(pattern)})", message, match, field=field, each=each)
    applies = matcher(when)
    return cel(
        f"!self.matches({cel_str(when)}) || self.matches({cel_str(pattern)})",
        message,
        lambda value: not applies(value) or match(value),
        field=field,
        each=each,
    )


def _attach_rules(schema: dict[str, Any], cls: type[Any]) -> None:
    """pydantic `json_schema_extra` hook: put a class's CEL rules where the API server wants them.

    Runs once per model class while pydantic builds the JSON schema; crdgen later inlines `$ref`s
    and collapses Optional's `anyOf`, keeping the `x-kubernetes-validations` placed here.
    """
    rules: tuple[CelRule, ...] = cls.__dict__.get("cel_rules", ())
    for rule in rules:
        target = schema
        if rule.field is not None:
            alias = cls.model_fields[rule.field].alias or rule.field
            target = schema["properties"][alias]
            if rule.each:
                target = target.setdefault("x-airt-items", {})
        target.setdefault("x-kubernetes-validations", []).append(rule.to_schema())


class ApiModel(BaseModel):
    """Base of every airt API model: camelCase on the wire, unknown fields refused, strict types.

    Strict mode mirrors the API server, which never turns "3" into 3; enums are `Literal`s so they
    validate from plain strings in strict mode.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        strict=True,
        use_attribute_docstrings=False,
        json_schema_extra=_attach_rules,
    )

    cel_rules: ClassVar[tuple[CelRule, ...]] = ()

    @model_validator(mode="after")
    def _check_lists(self) -> ApiModel:
        """Mirror `x-kubernetes-list-type`: set items and map keys must be unique."""
        for name, info in type(self).model_fields.items():
            extra = info.json_schema_extra
            value = getattr(self, name)
            if not isinstance(extra, dict) or not isinstance(value, list):
                continue
            list_type = extra.get("x-kubernetes-list-type")
            if list_type == "set":
                keys: list[Any] = list(value)
            elif list_type == "map":
                map_keys = extra.get("x-kubernetes-list-map-keys")
                if not isinstance(map_keys, list):
                    raise TypeError(f"{name}: a map list declares x-kubernetes-list-map-keys")
                keys = [tuple(item.to_wire().get(str(k)) for k in map_keys) for item in value]
            else:
                continue
            seen: set[Any] = set()
            for i, key in enumerate(keys):
                if key in seen:
                    raise PydanticCustomError(
                        "cel_rule",
                        "Duplicate value: {value}",
                        {"value": repr(key), "field_path": f".{info.alias or name}[{i}]"},
                    )
                seen.add(key)
        return self

    @model_validator(mode="after")
    def _check_cel_rules(self) -> ApiModel:
        for rule in type(self).__dict__.get("cel_rules", ()):
            if rule.field is None:
                values: list[tuple[str, Any]] = [("", self)]
            else:
                value = getattr(self, rule.field)
                if value is None:
                    continue
                alias = type(self).model_fields[rule.field].alias or rule.field
                if rule.each:
                    values = [(f".{alias}[{i}]", v) for i, v in enumerate(value)]
                else:
                    values = [(f".{alias}", value)]
            for path, value in values:
                if not rule.check(value):
                    raise PydanticCustomError(
                        "cel_rule",
                        "{message}",
                        {"message": rule.message, "field_path": path + (rule.field_path or "")},
                    )
        return self

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, absent fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _quantity_check(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError("quantity_type", "a quantity is an integer or a string")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a quantity must not be negative")
    elif not re.match(QUANTITY, value):
        raise ValueError("must be a Kubernetes quantity such as 500m, 2, 4Gi or 1.5")
    return value


# A Kubernetes resource quantity: an integer or a string such as "500m" or "4Gi" (int-or-string).
Quantity = Annotated[
    int | str,
    PlainValidator(_quantity_check),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY,
            "x-kubernetes-int-or-string": True,
        }
    ),
]


def check_object_name(name: str | None, pattern: str, max_length: int) -> None:
    """Refuse a `metadata.name` the CRD refuses (its schema bounds the name of each kind)."""
    if name is None:
        return
    if len(name) > max_length:
        message = f"Too long: may not be more than {max_length} bytes"
    elif not re.match(pattern, name):
        message = f"should match '{pattern}'"
    else:
        return
    raise PydanticCustomError("object_name", message, {"field_path": "metadata.name"})


class ObjectMeta(BaseModel):
    """The parts of `metadata` airt reads; everything else the API server keeps is ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="ignore"
    )

    name: str | None = Field(default=None, description="The object's name.")
    namespace: str | None = Field(default=None, description="The namespace (namespaced kinds).")
    uid: str | None = Field(default=None, description="The object's UID.")
    generation: int | None = Field(default=None, description="Spec generation, set by the server.")
    resource_version: str | None = Field(default=None, description="For optimistic concurrency.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")


class ApiObject(ApiModel):
    """Base of every kind's root model: apiVersion, kind, metadata and the name rule.

    Each kind's model (`ModelDeployment`, `InferenceRuntime`) narrows `kind` to its own name,
    adds `spec` and `status`, and sets the bounds of its `metadata.name`, which the CRD's schema
    enforces too (`airt_operator.api.kinds` builds both from the same class). Unknown top-level
    fields are ignored: the API server adds its own (managedFields live in metadata, but a
    `kubectl get -o yaml` dump may carry more).
    """

    model_config = ConfigDict(extra="ignore")

    name_pattern: ClassVar[str]
    name_max_length: ClassVar[int]

    api_version: Literal["airt.dev/v1alpha1"] = Field(
        default=API_VERSION, description="airt.dev/v1alpha1"
    )
    kind: str = Field(description="The kind.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard metadata.")

    @model_validator(mode="after")
    def _check_name(self) -> ApiObject:
        cls = type(self)
        check_object_name(self.metadata.name, cls.name_pattern, cls.name_max_length)
        return self
