"""The ASGI type aliases the worker's HTTP apps share.

Imported by the REST adapter (`rest`) and the metrics endpoint (`metrics`), so that neither
depends on the other for a type: metrics imports no transport.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
