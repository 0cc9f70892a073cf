"""Parse, relabel and write the Prometheus text format (0.0.4) with the series' exact names.

Called by `airt_metrics.collector` (parse, relabel) and `airt_metrics.server` (render). Triton's
counters are named without `_total` (`nv_inference_request_success`), and existing dashboards
query those exact names. prometheus_client munges counters both ways: its parser renames a counter
`x` to samples `x_total`, and its writer (`generate_latest`) declares every counter family as
`x_total`. So parsing goes through `text_string_to_metric_families` and then puts each counter's
declared name back, and writing is done here, family by family, exactly as named.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The only types the 0.0.4 text format knows; anything else is written as untyped.
_TEXT_TYPES = {"counter", "gauge", "histogram", "summary"}


class ExpositionError(ValueError):
    """The worker's page is not valid Prometheus text format."""


def _declared_types(text: str) -> dict[str, str]:
    """Family name → type, as the `# TYPE` lines of the page spell them."""
    declared: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                declared[parts[2]] = parts[3]
    return declared


def _restore_counter_name(family: Metric, declared: Mapping[str, str]) -> Metric:
    """Undo the parser's `_total` munging so the counter keeps the name the worker gave it."""
    if family.type != "counter":
        return family
    total = family.name + "_total"
    if declared.get(family.name) == "counter":
        # Declared `x`: the parser renamed its samples to `x_total`; rename them back.
        restored = Metric(family.name, family.documentation, "counter")
        restored.samples = [
            s._replace(name=family.name) if s.name == total else s for s in family.samples
        ]
        return restored
    if declared.get(total) == "counter":
        # Declared `x_total`: the samples kept their name, only the family lost its suffix.
        restored = Metric(total, family.documentation, "counter")
        restored.samples = list(family.samples)
        return restored
    return family


def parse_families(text: str) -> list[Metric]:
    """The metric families of a text-format page, with exact names, one family per name.

    Raises ExpositionError when the page cannot be parsed.
    """
    declared = _declared_types(text)
    merged: dict[str, Metric] = {}
    try:
        parsed = list(text_string_to_metric_families(text))
    except Exception as exc:
        # The parser signals bad input with ValueError, but also lets IndexError and friends out
        # on some malformed lines; whatever the worker wrote, the sidecar must answer its scrape.
        raise ExpositionError(f"worker metrics are not valid text format: {exc!r}") from exc
    for family in parsed:
        family = _restore_counter_name(family, declared)
        existing = merged.get(family.name)
        if existing is None:
            merged[family.name] = family
        else:
            # The parser yields stray samples (such as `x_created`) as singleton families; the
            # text format allows one TYPE line per name, so they are written as one family.
            existing.samples.extend(family.samples)
    _adopt_stray_counter_samples(merged)
    return [family for family in merged.values() if family.samples]


def _adopt_stray_counter_samples(merged: dict[str, Metric]) -> None:
    """Retype samples `x` that follow an empty `# TYPE x_total counter` as the counter `x`.

    prometheus_client's `generate_latest` writes a custom counter family named `x` (the way to
    keep a Triton name) as `# TYPE x_total counter` followed by samples named `x`; its own parser
    then reads those samples as an untyped `x`. The page still means "counter x", so it is
    exposed as such rather than losing its type.
    """
    for name, family in list(merged.items()):
        if family.type != "counter" or family.samples or not name.endswith("_total"):
            continue
        base = name.removesuffix("_total")
        stray = merged.get(base)
        if stray is not None and stray.type == "unknown":
            counter = Metric(base, family.documentation, "counter")
            counter.samples = stray.samples
            merged[base] = counter
            del merged[name]


def relabel(families: Iterable[Metric], labels: Mapping[str, str]) -> list[Metric]:
    """Copies of `families` whose samples carry `labels` too; `labels` win over the worker's."""
    out: list[Metric] = []
    for family in families:
        copy = Metric(family.name, family.documentation, family.type)
        copy.samples = [s._replace(labels={**s.labels, **labels}) for s in family.samples]
        out.append(copy)
    return out


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _sample_line(sample: Sample) -> str:
    labels = ""
    if sample.labels:
        pairs = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in sample.labels.items())
        labels = "{" + pairs + "}"
    line = f"{sample.name}{labels} {_format_value(sample.value)}"
    if sample.timestamp is not None:
        line += f" {int(float(sample.timestamp) * 1000)}"
    return line + "\n"


def render(families: Iterable[Metric]) -> bytes:
    """The text-format page of `families`, each written under its own name."""
    lines: list[str] = []
    for family in families:
        typ = family.type if family.type in _TEXT_TYPES else "untyped"
        if family.documentation:
            lines.append(f"# HELP {family.name} {_escape_help(family.documentation)}\n")
        lines.append(f"# TYPE {family.name} {typ}\n")
        lines.extend(_sample_line(s) for s in family.samples)
    return "".join(lines).encode("utf-8")
