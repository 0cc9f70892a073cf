"""The airt inference worker: Open Inference Protocol (v2) over HTTP and gRPC for torch models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("airt-worker")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
