"""Create each peer's own virtual environment (outside the repository), idempotently.

Called by bench/run.py before the worker benchmark, or by hand:
`uv run python bench/peers/venvs.py`. Each peer gets `uv venv` + `uv pip install` of pinned
versions, with the same torch as the project so the model code is identical; nothing is
installed into the project environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import VENVS, log

TORCH = "torch==2.15.0"
PEERS: dict[str, list[str]] = {
    "triton": ["nvidia-pytriton==0.7.0", TORCH, "numpy"],
    "mlserver": ["mlserver==1.7.1", TORCH],
    "kserve": ["kserve==0.21.0", TORCH],
    "tools": ["py-spy==0.4.3"],
}


def ensure(peer: str) -> Path:
    """The peer's venv directory, created and installed on first use."""
    venv = VENVS / peer
    marker = venv / ".airt-bench-installed"
    want = " ".join(PEERS[peer])
    if marker.exists() and marker.read_text() == want:
        return venv
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("uv is needed to create the peer environments")
    log(f"creating {venv} with {want}")
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    env.pop("UV_PROJECT_ENVIRONMENT", None)
    subprocess.run(
        [uv, "pip", "install", "-q", "--link-mode", "hardlink", *PEERS[peer]], check=True, env=env
    )
    marker.write_text(want)
    return venv


def main() -> int:
    for peer in PEERS:
        print(ensure(peer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
