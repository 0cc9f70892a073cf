"""The example models, built once per builder and torch version, and reused from a cache.

Called by the worker-tier and e2e fixtures, `make dev` (devtools/airt_dev/devjob.py)
and the benchmarks, which all serve the models that build_models.py writes. Building them
imports torch and runs torch.export, tens of seconds on a small machine, and the result depends
only on build_models.py (fixed seeds) and the torch it runs under, so the folder is keyed by
those two and built at most once:

    python examples/model_cache.py            # prints the folder (building it if missing)

This module does not import torch: a cache hit costs no torch import. The build runs
build_models.py in a subprocess into a temporary folder that is renamed into place, so a
killed build never leaves a half-written folder and concurrent callers agree on the result.

The files are byte-for-byte the same on every machine with the same torch, which is what lets
the examples pin the models' OCI digests (`make example-models`): TorchScript and torch.export
record the source file of the modules they compile, so the builder is run from the examples
folder under its bare name, never under the checkout's absolute path, records torch's own files
relative to its site-packages, and runs with a fixed PYTHONHASHSEED.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

BUILDER = Path(__file__).resolve().parent / "build_models.py"
DEFAULT_ROOT = Path(os.environ.get("AIRT_CACHE_DIR", Path.home() / ".cache" / "airt")) / "models"


# Bumped when the way the builder is run changes what it writes.
RECIPE = b"run_path(build_models.py) from examples/, PYTHONHASHSEED=0"


def key() -> str:
    """What the built files depend on: the builder's source and torch's version."""
    h = hashlib.sha256(BUILDER.read_bytes())
    h.update(metadata.version("torch").encode())
    h.update(RECIPE)
    return h.hexdigest()[:16]


def example_models(root: Path = DEFAULT_ROOT) -> Path:
    """The folder holding every example model and its config, built here if missing."""
    final = root / key()
    if (final / "complete").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=root))
    try:
        run = (
            "import runpy, sys; sys.argv = [sys.argv[1], *sys.argv[2:]]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')"
        )
        proc = subprocess.run(
            [sys.executable, "-c", run, BUILDER.name, str(work)],
            cwd=BUILDER.parent,
            # TorchScript's output follows the iteration order of sets of names.
            env={**os.environ, "PYTHONHASHSEED": "0"},
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{BUILDER.name} failed:\n{proc.stdout}{proc.stderr}")
        (work / "complete").write_text("")
        try:
            work.rename(final)
        except OSError:
            # Another caller finished first; its folder is the same build.
            if not (final / "complete").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


if __name__ == "__main__":
    print(example_models())
