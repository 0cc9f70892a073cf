"""The one sha256 helper of the worker package: hash a file, or a stream while copying it.

Called by the model runner (verifying the model file before loading), by `airt fetch` (hashing
what it writes as it streams it) and by the OCI fetcher (checking a downloaded layer against the
digest its manifest names). Reading in 1 MiB chunks keeps memory flat for multi-GB models.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


class SizeLimitExceededError(Exception):
    """The stream held more than the `max_bytes` the caller allows."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"more than {max_bytes} bytes")
        self.max_bytes = max_bytes


def stream_sha256(src: BinaryIO, dst: BinaryIO | None = None, max_bytes: int | None = None) -> str:
    """Hex sha256 of everything read from `src`, written on to `dst` when given.

    Raises SizeLimitExceededError as soon as more than `max_bytes` were read (before writing the
    chunk that crossed the limit), so a hostile source cannot fill the disk.
    """
    digest = hashlib.sha256()
    seen = 0
    while chunk := src.read(CHUNK):
        seen += len(chunk)
        if max_bytes is not None and seen > max_bytes:
            raise SizeLimitExceededError(max_bytes)
        digest.update(chunk)
        if dst is not None:
            dst.write(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """Hex sha256 of the file at `path`."""
    with path.open("rb") as f:
        return stream_sha256(f)
