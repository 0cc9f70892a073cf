"""A stand-in for the GPU machine's Python: a CPython 3.12 virtual environment holding only the
machine's own packages that the worker touches (bench/gpu/device-packages.txt), never the kit's.

Used by tests/worker/test_gpu_kit.py and `make gpu-kit-env`, so that bench/gpu/run.py can be
proven to install the kit and run offline before a GPU is lent:

    python bench/gpu/standin.py            # prints the environment's python

The environment lives under ~/.cache/airt/gpu-kit/venv-<hash> (`AIRT_CACHE` moves ~/.cache/airt),
the hash covering the package list and the interpreter, so a warm run reuses it and a changed list
makes a new one. Packages come from PyPI through uv (its cache makes a rebuild a copy); torch is
PyPI's 2.11.0, the CUDA 13 build the machine has, with its nvidia-* wheels (about 5 GB on disk).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGES = HERE / "device-packages.txt"
#: Where a CPython 3.12 may be found here (the GPU machine runs 3.12.3).
PYTHONS = ("python3.12", "/root/.pyenv/versions/3.12.1/bin/python3.12")
#: Never let the environment's ~5 GB take the shared disk below this.
MIN_FREE_BYTES = 12 * 2**30 + 6 * 2**30


def cache_dir() -> Path:
    return Path(os.environ.get("AIRT_CACHE", Path.home() / ".cache" / "airt")) / "gpu-kit"


def find_python() -> str:
    for candidate in PYTHONS:
        path = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if path is None:
            continue
        probe = subprocess.run(
            [path, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
            capture_output=True,
            text=True,
        )
        if probe.stdout.strip() == "True":
            return path
    raise RuntimeError(f"no CPython 3.12 found (tried {', '.join(PYTHONS)})")


def uv() -> str:
    return shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")


def ensure() -> Path:
    """The environment's python, created unless a complete one for this hash exists."""
    python = find_python()
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True
    ).stdout
    key = hashlib.sha256(PACKAGES.read_bytes() + version.encode()).hexdigest()[:16]
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"venv-{key}"
    done = venv / ".complete"
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once build it once
        if done.exists():
            return venv / "bin" / "python"
        free = shutil.disk_usage(root).free
        if free < MIN_FREE_BYTES:
            raise RuntimeError(
                f"{free / 2**30:.1f} GiB free: too little for the stand-in environment (~5 GB)"
            )
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run(
            [uv(), "venv", "--quiet", "--seed", "--python", python, str(venv)], check=True
        )
        subprocess.run(
            [
                uv(),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(venv / "bin" / "python"),
                "-r",
                str(PACKAGES),
            ],
            check=True,
        )
        for stale in root.glob("venv-*"):  # an older list's environment: gigabytes for nothing
            if stale != venv:
                shutil.rmtree(stale, ignore_errors=True)
        done.write_text(key)
    return venv / "bin" / "python"


def main() -> int:
    print(ensure())
    return 0


if __name__ == "__main__":
    sys.exit(main())
