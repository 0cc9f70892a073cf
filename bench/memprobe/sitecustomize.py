"""Memory probe for the operator benchmark (bench/operator_scale.py --memprofile / --memcensus).

Python imports `sitecustomize` at start-up when it is on the path; the benchmark puts this
directory on the operator's PYTHONPATH only when it profiles memory, and sends SIGUSR1 at the
point it wants to look at (all ModelDeployments Ready). Nothing here runs in a normal operator.

- AIRT_BENCH_TRACEMALLOC=<frames>: tracemalloc from the first import; SIGUSR1 dumps a snapshot
  to AIRT_BENCH_TRACEMALLOC_OUT. Exact, but it slows the operator several times over.
- AIRT_BENCH_MEMCENSUS=<path>: no tracing; SIGUSR1 writes a JSON census to <path>: the deep
  size of each holder of per-object state (kopf's indices and per-object memories, the
  reconciler's caches, the metrics registry) and object counts by type. Deep sizes use
  sys.getsizeof over the reachable graph, each object counted once, in the order listed, so
  what two holders share is charged to the first.
"""

import gc
import json
import os
import signal
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

_frames = os.environ.get("AIRT_BENCH_TRACEMALLOC")
_census = os.environ.get("AIRT_BENCH_MEMCENSUS")


def _deep(obj: Any, seen: set[int]) -> int:
    """Bytes reachable from `obj` through containers and instance dicts, not yet in `seen`."""
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, type) or (callable(o) and not hasattr(o, "__dict__")):
            continue
        kind = type(o)
        if kind.__name__ in ("module", "frame") or kind.__name__.endswith("EventLoop"):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, list | tuple | set | frozenset):
            stack.extend(o)
        d = getattr(o, "__dict__", None)
        if isinstance(d, dict):
            stack.append(d)
        for slot in getattr(type(o), "__slots__", ()):
            if isinstance(slot, str) and hasattr(o, slot):
                stack.append(getattr(o, slot))
    return total


def _census_now() -> dict[str, Any]:
    gc.collect()
    objs = gc.get_objects()
    by_type: Counter[str] = Counter(type(o).__qualname__ for o in objs)
    holders: list[tuple[str, Any]] = []
    for o in objs:
        mod, name = type(o).__module__, type(o).__qualname__
        if not isinstance(mod, str):  # some C types answer with a descriptor
            continue
        if mod.startswith("kopf._core.engines.indexing") and name == "OperatorIndexers":
            for hid, indexer in o.items():
                holders.append((f"kopf index {hid}", indexer))
        elif mod.startswith("kopf._core.reactor.inventory") and name == "ResourceMemories":
            holders.append(("kopf per-object memories", o))
        elif mod.startswith("airt_operator.reconciler") and name == "Reconciler":
            for k, v in vars(o).items():
                if k not in ("kube", "metrics", "settings"):
                    holders.append((f"reconciler.{k}", v))
        elif mod.startswith("airt_operator.metrics") and name == "OperatorMetrics":
            holders.append(("operator metrics (prometheus registry)", o))
    try:  # an lru_cache's entries are not reachable from Python; its counters are
        from airt_operator.reconcile import render

        info = render.render_cache_info()
        render_info = {"hits": info.hits, "misses": info.misses, "size": info.currsize}
    except (ImportError, AttributeError):
        render_info = {}
    seen: set[int] = set()
    sizes = [{"holder": k, "mb": _deep(v, seen) / 2**20} for k, v in holders]
    alive_tasks = sum(1 for o in objs if type(o).__name__ == "Task")
    return {
        "holders": sizes,
        "render_cache": render_info,
        "asyncio_tasks": alive_tasks,
        "gc_objects": len(objs),
        "allocated_blocks": sys.getallocatedblocks(),
        "top_types": [{"type": t, "count": c} for t, c in by_type.most_common(30)],
    }


if _frames:
    tracemalloc.start(int(_frames))

    def _dump(_signum: int, _frame: object) -> None:
        out = Path(os.environ.get("AIRT_BENCH_TRACEMALLOC_OUT", "/tmp/airt-operator.tracemalloc"))
        tmp = out.with_suffix(".tmp")
        tracemalloc.take_snapshot().dump(str(tmp))
        tmp.replace(out)

    signal.signal(signal.SIGUSR1, _dump)

elif _census:

    def _write_census(_signum: int, _frame: object) -> None:
        out = Path(str(_census))
        tmp = out.with_suffix(".tmp")
        try:
            doc = _census_now()
        except Exception as exc:  # never let the probe take the operator down
            doc = {"error": repr(exc)}
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(out)

    signal.signal(signal.SIGUSR1, _write_census)
