"""Plain-text output of `kubectl airt`: kubectl-style tables and the texts of `why` and `plan`.

Pure: summaries, diagnoses and plans in, strings out; the CLI prints them. kubectl's own layout
(upper-case headers, columns padded to the widest cell, three spaces apart) so the output reads
like `kubectl get` and stays easy to grep and cut.
"""

from __future__ import annotations

from collections.abc import Sequence

from airt_kubectl.diagnose import Diagnosis
from airt_kubectl.fit import Plan
from airt_kubectl.objects import SHOWN, Cond, ModelSummary
from airt_kubectl.quantity import show

GAP = "   "


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    cells = [[h.upper() for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        padded = [c.ljust(w) for c, w in zip(r[:-1], widths[:-1], strict=True)] + [r[-1]]
        lines.append(GAP.join(padded).rstrip())
    return "\n".join(lines)


def cond_cell(c: Cond | None) -> str:
    """`True`, or the status with the reason when it says something is wrong:
    `False(Unschedulable)`."""
    if c is None:
        return "-"
    return f"{c.status}({c.reason})" if c.problem and c.reason else c.status


def placement_cell(s: ModelSummary) -> str:
    parts = [",".join(s.nodes)] if s.nodes else []
    if s.pending:
        parts.append(f"{s.pending} pending")
    return " ".join(parts) or "-"


def status_table(summaries: Sequence[ModelSummary], all_namespaces: bool) -> str:
    headers = [*(["namespace"] if all_namespaces else []), "name", *SHOWN]
    headers += ["replicas", "runtime", "gpu", "placement"]
    rows = []
    for s in summaries:
        row = [*([s.namespace] if all_namespaces else []), s.name]
        row += [cond_cell(c) for c in s.conditions]
        row += [f"{s.ready_replicas}/{s.replicas}", s.runtime or "-", s.gpu or "-"]
        row.append(placement_cell(s))
        rows.append(row)
    return table(headers, rows)


def diagnosis_text(d: Diagnosis, verbose: bool = True) -> str:
    """The findings (problems marked `!`), then the fix on its own line."""
    lines = []
    if verbose:
        for f in d.findings:
            mark = "!" if f.problem else " "
            lines.append(f"{mark} {f.source:<9} {f.subject}: {f.text}")
        if lines:
            lines.append("")
    lines.append(f"{'OK' if d.healthy else 'FIX'}: {d.fix}")
    return "\n".join(lines)


def plan_text(p: Plan) -> str:
    lines = [f"runtime: {p.runtime or '-'} ({p.runtime_note})"]
    if p.request is not None:
        asks = ", ".join(f"{res}={show(res, n)}" for res, n in p.request.resources.items())
        lines.append(f"one replica asks: {asks or 'nothing explicit'}; replicas: {p.replicas}")
        if p.request.products:
            lines.append(f"GPU products, preferred first: {', '.join(p.request.products)}")
        rows = [
            [
                n.node,
                "yes" if n.fits else "no",
                "-" if n.free_now is None or not n.fits else str(n.free_now),
                "; ".join(n.why_not) or "-",
            ]
            for n in p.nodes
        ]
        lines += ["", table(["node", "fits", "replicas free now", "why not"], rows), ""]
    lines.append(p.summary())
    return "\n".join(lines)
