"""What airt_mlserver leaves for the operator when weights cannot load: one `ModelLoadFailed`
line, the form the operator reads back as a condition's reason and message (that it does is
proven on the real node: tests/e2e/realnode/test_e2e_realnode_mlserver.py)."""

from __future__ import annotations

from pathlib import Path

from airt_mlserver.mlp import WeightsError
from airt_mlserver.termination import (
    MAX_BYTES,
    load_failure_message,
    write_termination_message,
)


def test_the_message_is_one_line_naming_the_model_and_the_error() -> None:
    exc = WeightsError("/mnt/models/mlp.npz: not a NumPy .npz file of arrays\n(bad zip)")
    message = load_failure_message("mlp", exc)
    assert message.startswith("ModelLoadFailed: model 'mlp' cannot be loaded: /mnt/models/mlp.npz")
    assert "\n" not in message and "(bad zip)" in message


def test_a_long_error_is_cut_to_what_kubernetes_keeps() -> None:
    message = load_failure_message("mlp", ValueError("é" * 5000))
    assert len(message.encode()) <= MAX_BYTES and message.startswith("ModelLoadFailed: ")


def test_an_error_without_words_is_named_by_its_type() -> None:
    assert load_failure_message("mlp", KeyError()).endswith("cannot be loaded: KeyError")


def test_it_is_written_where_the_kubelet_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "termination-log"
    message = load_failure_message("mlp", WeightsError("w0 (3,) and b0 (4,) are no layer"))
    assert write_termination_message(message, path)
    assert path.read_text() == message


def test_no_writable_termination_log_is_not_an_error(tmp_path: Path) -> None:
    assert not write_termination_message("ModelLoadFailed: x", tmp_path / "missing" / "log")
