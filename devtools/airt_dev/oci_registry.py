"""A throwaway OCI registry on localhost: go-containerregistry's `registry`, built at its pinned
version by tools/build.sh, in memory, plain HTTP, on a free port.

Used where something is pushed and pulled again without a registry of the user's: the e2e test
that installs the chart from an OCI registry (`make chart`), the example-model digests test
(`make example-models`) and the fetcher tests of the worker tier.
"""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airt_dev.ports import free_port
from airt_dev.wait import wait_for


def _answers(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}/v2/", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@contextmanager
def local_registry(bin_dir: Path) -> Iterator[str]:
    """Run the registry for the duration of the block; yield its `127.0.0.1:<port>`."""
    port = free_port()
    host = f"127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(bin_dir / "registry"), "-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"the OCI registry exited with {proc.returncode}")
            return _answers(host)

        wait_for(up, 30, "the local OCI registry")
        yield host
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
