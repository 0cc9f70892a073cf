"""`airt-operator`'s command line: --version, and a start without credentials that says the fix
in one line instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from airt_operator.cli import app
from airt_operator.kube.client import NoCredentialsError, login
from airt_operator.main import main
from airt_operator.settings import OperatorSettings


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == "airt-operator 0.1.0"


def test_login_names_a_missing_kubeconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    with pytest.raises(NoCredentialsError, match="KUBECONFIG names /nonexistent/kubeconfig"):
        login()


def test_login_without_any_kubeconfig(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(NoCredentialsError, match="no Kubernetes credentials"):
        login()


def test_run_without_credentials_prints_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("clusters: [\n")
    monkeypatch.setenv("KUBECONFIG", str(broken))
    assert main(OperatorSettings(standalone=True, health_port=0)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("airt-operator: cannot start: the kubeconfig cannot be read")
    assert "set KUBECONFIG to a kubeconfig file" in err
    assert "Traceback" not in err
