"""`kubectl-airt`'s command line without a cluster: --version, and bad options refused in one
line before kubectl is run."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from airt_kubectl.cli import app


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == "kubectl-airt 0.1.0"


def test_a_missing_kubectl_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECTL", "/nonexistent/kubectl")
    result = CliRunner().invoke(app, ["status", "-n", "x"])
    assert result.exit_code == 2
    assert "kubectl not found: install kubectl, or set KUBECTL" in result.output


def test_bad_input_is_refused_before_any_kubectl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECTL", "/nonexistent/kubectl")
    result = CliRunner().invoke(app, ["infer", "m", "-n", "x", "--input", "x"])
    assert result.exit_code == 2
    assert "write name=json-array" in result.output
