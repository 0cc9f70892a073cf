"""Summarise py-spy's collapsed stacks: self and inclusive shares per function, per thread.

Used by bench/profile_worker.py (the worker under load) and bench/operator_scale.py (the
operator while it creates N ModelDeployments); the summaries go into the profile-*.json files
and the README's profile tables.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

#: Frames every sample of a thread passes through (interpreter entry, event loop, CLI, thread
#: bootstrap): their inclusive share is ~100 % and says nothing, so the inclusive list skips them.
BOILERPLATE = (
    "_run_code ",
    "_run_module_as_main ",
    "<module> (airt_worker/__main__.py",
    "main (airt_worker/main.py",
    "Runner.run (asyncio/runners.py",
    "run (asyncio/runners.py",
    "BaseEventLoop.run_",
    "BaseEventLoop._run_once",
    "Handle._run (asyncio/events.py",
    "<module> (airt_operator/",
    "run (kopf/",
    "_main (typer/",
    "Typer",
    "Command.",
    "Context.invoke (typer/",
    "get_callback.<locals>.wrapper (typer/",
    "main (airt_operator/main.py",
    "operator_run (airt_operator/cli.py",
    "run (uvloop/__init__.py",
    "Thread._bootstrap",
    "Thread.run (threading.py",
    "_worker (concurrent/futures/thread.py",
    "_WorkItem.run (concurrent/futures/thread.py",
    "_start (",
    "__libc_start",
    "start_thread (",
    "clone",
)


def top_frames(collapsed: Path, n: int = 25) -> dict[str, Any]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        total += count
        frames = [f for f in stack.split(";") if f]
        if frames and frames[0].startswith(("thread ", "process ")):
            # --threads puts "thread (0x…)" first; name a thread by its outermost Python frame
            frames = frames[1:]
            threads[_thread_kind(frames)] += count
        # py-spy names frames "function (file:line)"; drop the line so a function counts once
        names = [f.rsplit(":", 1)[0] + ")" if ":" in f else f for f in frames]
        if names:
            own[names[-1]] += count
        for name in set(names):
            incl[name] += count

    def share(c: Counter[str]) -> list[dict[str, Any]]:
        return [{"frame": k, "share": v / total} for k, v in c.most_common(n)] if total else []

    # Entry frames every sample passes through say nothing about where the time goes.
    for name in list(incl):
        if name.startswith(BOILERPLATE):
            del incl[name]
    return {
        "samples": total,
        "threads": share(threads),
        "self": share(own),
        "inclusive": share(incl),
    }


def _thread_kind(frames: list[str]) -> str:
    text = ";".join(frames)
    if "Runner.run" in text:
        return "event loop (transports, data plane, batcher)"
    if "ModelRunner" in text or "Module._call_impl" in text:
        return "model instance thread"
    if "_worker (concurrent/futures/thread.py" in text:
        return "executor thread, idle or other work"
    return "other thread (gRPC poller, ...)"
