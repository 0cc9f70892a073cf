"""Each image's entry-point command runs in the project environment (`<command> --help`).

Each product's console script (its pyproject's [project.scripts]) is its image's ENTRYPOINT;
the commands come from test_images_dockerfiles.EXPECTED, so an image cannot point at a command
that does not exist. A third-party server's command (MLServer's) is not in the project
environment; the image build's smoke check runs it in the image. The model-fetch init container
(`airt-worker fetch`, run from the worker image) is checked too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_images_dockerfiles import EXPECTED, THIRD_PARTY_COMMANDS

BIN = str(Path(sys.executable).parent)


def _command(name: str) -> str:
    return shutil.which(name, path=BIN) or name


COMMANDS = sorted(
    {tuple(cmd) for name, (cmd, _) in EXPECTED.items() if name not in THIRD_PARTY_COMMANDS}
)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_entrypoint_command_runs(command: tuple[str, ...]) -> None:
    proc = subprocess.run(
        [_command(command[0]), *command[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "usage" in (proc.stdout + proc.stderr).lower()


def test_model_fetch_command_runs() -> None:
    # The operator renders `fetch --uri ... --dest ... [--sha256 ...]` for remote models.
    proc = subprocess.run(
        [_command("airt-worker"), "fetch", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for option in ("--uri", "--dest", "--sha256"):
        assert option in proc.stdout
