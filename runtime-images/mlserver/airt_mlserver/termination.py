"""The termination message a model that cannot load leaves for the operator.

Called by airt_mlserver.runtime when MLServer asks it to load a model and the weights cannot be
served. Kubernetes copies the file named by the container's `terminationMessagePath` (default
/dev/termination-log) into the pod's status, and the operator shows a `<Reason>: <message>` line
from it as the ModelDeployment's condition, as it does for the airt worker's (see
airt_worker.errors). Pure apart from the one write, and without MLServer, so that it is
unit-tested in the project's environment.
"""

from __future__ import annotations

import os
from pathlib import Path

MODEL_LOAD_FAILED = "ModelLoadFailed"  # the operator's condition reason, spelled the same
# Kubernetes keeps at most 4096 bytes of a message; one line of 1 KiB says enough.
MAX_BYTES = 1024
DEFAULT_PATH = Path(os.environ.get("AIRT_TERMINATION_LOG", "/dev/termination-log"))


def load_failure_message(model: str, exc: BaseException) -> str:
    """`ModelLoadFailed: <model>: <error>` on one line, at most MAX_BYTES of UTF-8."""
    detail = " ".join(str(exc).split()) or type(exc).__name__
    line = f"{MODEL_LOAD_FAILED}: model {model!r} cannot be loaded: {detail}"
    return line.encode()[:MAX_BYTES].decode(errors="ignore")


def write_termination_message(message: str, path: Path = DEFAULT_PATH) -> bool:
    """Write `message` where the kubelet reads it; False when that file cannot be written (a
    process run outside a pod), which is not an error of its own."""
    try:
        path.write_text(message)
    except OSError:
        return False
    return True
