"""The chart's Grafana dashboard is well formed, and it and the alerts only use documented series.

Whether each query returns data is the worker tier's job (tests/worker/test_metrics_prometheus.py,
against a real Prometheus); here: unique ids, panels on the 24-column grid without overlaps, the
data-source variable everywhere, only known Grafana variables, and every metric name used by the
dashboard or the alert rules listed in docs/metrics.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "charts" / "airt" / "dashboards" / "airt-models.json"
RULES = ROOT / "charts" / "airt" / "alerts" / "airt-rules.yaml"
DOC = ROOT / "docs" / "metrics.md"

KNOWN_VARIABLES = {"$datasource", "$namespace", "$modeldeployment", "$model", "$__rate_interval"}
# PromQL words that look like metric names to the regex below.
PROMQL_WORDS = {
    "sum", "avg", "min", "max", "count", "by", "without", "rate", "increase", "histogram_quantile",
    "label_replace", "le", "bool", "and", "or", "unless", "on", "ignoring", "group_left",
    "group_right", "offset", "namespace", "exported_namespace", "modeldeployment", "model", "pod",
    "gpu_uuid", "reason", "type", "status", "name", "version", "e6",
}  # fmt: skip


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    words = set(re.findall(r"\b[a-zA-Z_][a-zA-Z0-9_]*\b", expr))
    return {w for w in words if w not in PROMQL_WORDS}


def documented(name: str, names: set[str]) -> bool:
    # Histogram series (`x_bucket`, `x_sum`, `x_count`) are documented by their family `x`.
    return name in names or re.sub(r"_(bucket|sum|count)$", "", name) in names


def test_ids_unique_and_grid_without_overlaps() -> None:
    all_panels = dashboard()["panels"]
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in all_panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))


def test_every_query_uses_the_datasource_variable_and_known_variables() -> None:
    for p in panels():
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            used = set(re.findall(r"\$\w+", t["expr"]))
            assert used <= KNOWN_VARIABLES, (p["title"], used - KNOWN_VARIABLES)
    names = {v["name"] for v in dashboard()["templating"]["list"]}
    assert {"datasource", "namespace", "modeldeployment", "model"} <= names


def test_required_panels_are_there() -> None:
    exprs = " ".join(t["expr"] for p in panels() for t in p["targets"])
    for needed in (
        "rate(nv_inference_request_success",  # requests/s
        "histogram_quantile(0.99",  # latency percentiles
        "nv_inference_queue_duration_us",  # queue time
        "airt_batch_size_bucket",  # batch-size distribution
        "nv_gpu_utilization",  # GPU utilization per model
        "nv_gpu_memory_used_bytes",  # GPU memory per model
    ):
        assert needed in exprs, needed


def test_every_metric_used_is_documented() -> None:
    exprs = [t["expr"] for p in panels() for t in p["targets"]]
    rules = yaml.safe_load(RULES.read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    in_doc = set(re.findall(r"`([a-z_]+)`", DOC.read_text()))
    used = set().union(*(metric_names(e) for e in exprs))
    assert "airt_batch_size_bucket" in used
    assert sorted(n for n in used if not documented(n, in_doc)) == []
