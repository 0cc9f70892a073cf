"""The chart's alerting rules: `promtool check rules` passes, and each alert fires when it should.

promtool (Debian's `prometheus` package, installed by tools/install-prometheus.sh) evaluates each
alert's expression over synthetic series (`promtool test rules`, no server, no network). An
expression test ignores annotations, so each expression is wrapped as `(expr) * 0 + 1`: the test
then checks exactly which label sets fire.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "charts" / "airt" / "alerts" / "airt-rules.yaml"

MD = 'namespace="team-a",modeldeployment="simple"'
OTHER = 'namespace="team-a",modeldeployment="other"'


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: run tools/install-prometheus.sh (Debian's prometheus)")
    return path


def alert_exprs() -> dict[str, str]:
    doc = yaml.safe_load(RULES.read_text())
    return {
        rule["alert"]: rule["expr"]
        for group in doc["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def firing(expr: str, eval_time: str, labels: list[str]) -> dict[str, Any]:
    return {
        "expr": f"({expr.strip()}) * 0 + 1",
        "eval_time": eval_time,
        "exp_samples": [{"labels": "{" + lab + "}", "value": 1} for lab in labels],
    }


def test_promtool_check_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_exprs())} rules found" in result.stdout


def test_each_alert_fires_on_its_condition(tmp_path: Path) -> None:
    exprs = alert_exprs()
    assert set(exprs) == {
        "AirtModelDeploymentNotReady",
        "AirtModelWorkersAllDown",
        "AirtModelWorkerDown",
        "AirtModelHighErrorRatio",
        "AirtModelHighQueueTime",
        "AirtGPUMemoryNearLimit",
    }
    model = f'{MD},model="simple",version="1"'
    other_model = f'{OTHER},model="other",version="1"'
    series = [
        # Ready=False for one ModelDeployment, True for another.
        (
            'airt_modeldeployment_condition{namespace="team-a",name="simple",'
            'type="Ready",status="False"}',
            "1x10",
        ),
        (
            'airt_modeldeployment_condition{namespace="team-a",name="other",'
            'type="Ready",status="True"}',
            "1x10",
        ),
        # Scraped without honorLabels: the operator's namespace took the `namespace` label.
        (
            'airt_modeldeployment_condition{namespace="airt-system",exported_namespace="team-b",'
            'name="third",type="Ready",status="Unknown"}',
            "1x10",
        ),
        # simple: one of two pods down; other: every pod down.
        (f'airt_worker_up{{{MD},pod="simple-0"}}', "0x10"),
        (f'airt_worker_up{{{MD},pod="simple-1"}}', "1x10"),
        (f'airt_worker_up{{{OTHER},pod="other-0"}}', "0x10"),
        # simple: 10% of requests fail, 200 ms average queue time; other: healthy.
        (f"nv_inference_request_success{{{model}}}", "0+90x10"),
        (f'nv_inference_request_failure{{{model},reason="BACKEND"}}', "0+10x10"),
        (f"nv_inference_queue_duration_us{{{model}}}", "0+18000000x10"),
        (f"nv_inference_request_success{{{other_model}}}", "0+100x10"),
        (f'nv_inference_request_failure{{{other_model},reason="BACKEND"}}', "0+1x10"),
        (f"nv_inference_queue_duration_us{{{other_model}}}", "0+100000x10"),
        # simple's GPU is 95% full, other's 50%.
        (f'nv_gpu_memory_used_bytes{{{MD},pod="simple-0",gpu_uuid="GPU-a"}}', "95x10"),
        (f'nv_gpu_memory_total_bytes{{{MD},pod="simple-0",gpu_uuid="GPU-a"}}', "100x10"),
        (f'nv_gpu_memory_used_bytes{{{OTHER},pod="other-0",gpu_uuid="GPU-b"}}', "50x10"),
        (f'nv_gpu_memory_total_bytes{{{OTHER},pod="other-0",gpu_uuid="GPU-b"}}', "100x10"),
    ]
    at = "8m"
    tests = [
        firing(
            exprs["AirtModelDeploymentNotReady"],
            at,
            ['namespace="team-a",name="simple"', 'namespace="team-b",name="third"'],
        ),
        firing(exprs["AirtModelWorkersAllDown"], at, [OTHER]),
        firing(
            exprs["AirtModelWorkerDown"],
            at,
            [f'{MD},pod="simple-0"', f'{OTHER},pod="other-0"'],
        ),
        firing(exprs["AirtModelHighErrorRatio"], at, [f'{MD},model="simple"']),
        firing(exprs["AirtModelHighQueueTime"], at, [f'{MD},model="simple"']),
        firing(exprs["AirtGPUMemoryNearLimit"], at, [f'{MD},pod="simple-0",gpu_uuid="GPU-a"']),
    ]
    spec = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "promql_expr_test": tests,
            }
        ],
    }
    test_file = tmp_path / "airt-rules.test.yaml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = subprocess.run(
        [promtool(), "test", "rules", str(test_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    heads = [line.lstrip("#").strip() for line in markdown.splitlines() if line.startswith("#")]
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in heads}


def test_every_alert_links_a_runbook_section_that_exists() -> None:
    doc = yaml.safe_load(RULES.read_text())
    anchors = _anchors((ROOT / "docs" / "operating.md").read_text())
    prefix = "https://github.com/airt-dev/airt/blob/main/docs/operating.md#"
    for group in doc["groups"]:
        for rule in group["rules"]:
            url = rule["annotations"].get("runbook_url", "")
            assert url.startswith(prefix), (rule["alert"], url)
            assert url.removeprefix(prefix) in anchors, (rule["alert"], url)
            assert url.removeprefix(prefix) == rule["alert"].lower()
