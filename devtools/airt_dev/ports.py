"""Free TCP ports on 127.0.0.1 for the processes the tests and benchmarks start: the one helper.

Called by the worker tier (tests/worker/workerproc.py), the operator process (operator_proc.py),
the real-node e2e helpers and the benchmarks. A port is picked at random below the kernel's
ephemeral range and checked by binding it, rather than asking the kernel for port 0: the kernel
hands out ephemeral ports to outgoing connections as well, so on a busy machine (kubectl, load
generators, the control plane's clients) a port chosen by port 0 was taken by some connection
before the server bound it, and the server failed with "address already in use". Below the
ephemeral range only servers bind. Two processes can still pick the same port in the same
moment, rarely: callers that start servers retry on a bind failure (`bind_failed`).
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_FLOOR = 10_000
#: What a server's log says when its port was taken meanwhile (uvicorn, grpc, aiohttp).
BIND_ERRORS = ("address already in use", "Errno 98", "Error in bind")


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port() -> int:
    """A port nothing is bound to now, from below the ephemeral range."""
    ceiling = _ephemeral_floor()
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(_FLOOR, ceiling)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port found in {_FLOOR}-{ceiling}")


def bind_failed(log: str) -> bool:
    """Whether a server's log shows that it lost its port to another process."""
    return any(marker in log for marker in BIND_ERRORS)
