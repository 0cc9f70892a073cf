"""`airt-dev --version`."""

from __future__ import annotations

from typer.testing import CliRunner

from airt_dev.cli import app


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == "airt-dev 0.1.0"
