"""`airt-worker`'s command line: --version, and `serve` without a model naming the missing
setting and how to give it, in one line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from airt_worker.cli import app
from airt_worker.main import main


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == "airt-worker 0.1.0"


def test_serve_without_a_model_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AIRT_WORKER_CONFIG", "AIRT_MODEL_PATH", "AIRT_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "airt-worker serve: missing setting model_path: give --model-path or AIRT_MODEL_PATH, "
        "or set model_path in AIRT_WORKER_CONFIG or a --config-file"
    ]
    assert "_Settings" not in err and "pydantic" not in err


def test_serve_names_each_bad_value_on_its_own_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AIRT_WORKER_CONFIG", raising=False)
    assert main(["--model-path", "/m.pt", "--batching.max-batch-size", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "airt-worker serve: batching.max_batch_size: Input should be greater than or equal to 0"
    ]
