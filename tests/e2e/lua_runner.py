"""Run an Argo CD health script (Lua) against an object, with Debian's Lua interpreter.

Imported by tests/e2e/test_e2e_argocd_health.py. Argo CD hands its health scripts the live
object as the global `obj` and reads back the table they return; here the object (a Python
dict) is written out as a Lua table constructor, the script runs inside a function, and the
result's status and message come back on stdout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

INTERPRETERS = ("lua5.4", "lua5.3", "lua")


def lua_interpreter() -> str | None:
    for name in INTERPRETERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def to_lua(value: Any) -> str:
    """A Lua expression for a JSON-like value (None fields are left out, as JSON null is)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid Lua escapes for this data
    if isinstance(value, list):
        return "{" + ", ".join(to_lua(v) for v in value) + "}"
    if isinstance(value, dict):
        items = [f"[{json.dumps(str(k))}] = {to_lua(v)}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot express {type(value).__name__} in Lua")


def run_health(script: Path, obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) as the script reports them for `obj`."""
    lua = lua_interpreter()
    assert lua, "no Lua interpreter: install Debian's lua5.4 (`make system-deps`)"
    program = (
        f"obj = {to_lua(obj)}\n"
        f"local hs = (function()\n{script.read_text()}\nend)()\n"
        'io.write(hs.status, "\\n", hs.message or "", "\\n")\n'
    )
    proc = subprocess.run(
        [lua, "-"], input=program, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    status, _, message = proc.stdout.partition("\n")
    return status, message.rstrip("\n")
