"""Turn the benchmark JSON into PNG plots and markdown tables in docs/benchmarks/.

Called at the end of bench/run.py (and by `bench/run.py --report` alone). Reads whichever of
worker.json, worker-gpu.json, operator.json and profile-*.json exist; writes worker-<model>.png,
operator.png and replaces the part of docs/benchmarks/results.md between the
`<!-- results:begin -->` and `<!-- results:end -->` markers with tables built from those files
only, so every number there is one a run wrote. docs/benchmarks/README.md, the report, quotes
the current figures from the same files.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from common import RESULTS, log

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
SERVERS = ("airt", "triton", "mlserver", "kserve")
COLORS = {
    "airt": "tab:blue",
    "triton": "tab:green",
    "mlserver": "tab:orange",
    "kserve": "tab:purple",
}


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def fmt(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def worker_plots(doc: dict[str, Any], stem: str) -> list[str]:
    pts = [p for p in doc["points"] if "requests_per_s" in p]
    files = []
    for model in sorted({p["model"] for p in pts}):
        fig, axes = plt.subplots(2, 2, figsize=(11, 8))
        for row, proto in enumerate(("http", "grpc")):
            for server in SERVERS:
                ps = sorted(
                    (
                        p
                        for p in pts
                        if (p["model"], p["protocol"], p["server"]) == (model, proto, server)
                    ),
                    key=lambda p: p["concurrency"],
                )
                if not ps:
                    continue
                c = [p["concurrency"] for p in ps]
                axes[row][0].plot(
                    c, [p["samples_per_s"] for p in ps], "o-", color=COLORS[server], label=server
                )
                axes[row][1].plot(
                    c, [p["p99_ms"] for p in ps], "o-", color=COLORS[server], label=server
                )
                if server == "airt" and model == "cnn":
                    axes[row][0].plot(
                        c,
                        [p["limit_samples_per_s"] for p in ps],
                        "k--",
                        label="limit (airt's batches)",
                    )
            axes[row][0].set_title(f"{model} over {proto}: samples/s")
            axes[row][1].set_title(f"{model} over {proto}: p99 latency (ms)")
            for ax in axes[row]:
                ax.set_xscale("log", base=2)
                ax.set_xlabel("concurrency")
                ax.grid(alpha=0.3)
                ax.legend()
        fig.suptitle(f"{model} ({doc['settings']['device']}), {doc['started']}")
        fig.tight_layout()
        out = RESULTS / f"{stem}-{model}.png"
        fig.savefig(out, dpi=90)
        plt.close(fig)
        files.append(out.name)
    return files


def worker_table(doc: dict[str, Any]) -> list[str]:
    pts = [p for p in doc["points"] if "requests_per_s" in p]
    idx = {(p["server"], p["model"], p["protocol"], p["concurrency"]): p for p in pts}
    lines = [
        "| model | proto | c | server | req/s | samples/s | p50 ms | p99 ms | mean batch | "
        "limit samples/s | vs limit | model rows/s in server | model busy | server CPU | "
        "main thread CPU | client CPU | airt/this req/s | airt/this p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, proto, conc in sorted({(p["model"], p["protocol"], p["concurrency"]) for p in pts}):
        a = idx.get(("airt", model, proto, conc))
        for server in SERVERS:
            p = idx.get((server, model, proto, conc))
            if p is None:
                continue
            batches = {int(k): v for k, v in p.get("batches", {}).items()}
            nb = sum(batches.values())
            mean_batch = sum(k * v for k, v in batches.items()) / nb if nb else None
            lim = p.get("limit_samples_per_s")
            vs_lim = p["samples_per_s"] / lim if lim else None
            r_rps = a["requests_per_s"] / p["requests_per_s"] if a and server != "airt" else None
            r_p99 = a["p99_ms"] / p["p99_ms"] if a and server != "airt" and p["p99_ms"] else None
            wire = " (JSON)" if p.get("wire") == "http-json" else ""
            lines.append(
                f"| {model} | {proto}{wire} | {conc} | {server} | {fmt(p['requests_per_s'])} | "
                f"{fmt(p['samples_per_s'])} | {fmt(p['p50_ms'], 2)} | {fmt(p['p99_ms'], 2)} | "
                f"{fmt(mean_batch, 1)} | {fmt(lim)} | {fmt(vs_lim, 3)} | "
                f"{fmt(p.get('server_model_rows_per_s'))} | {fmt(p.get('server_model_busy'), 2)} | "
                f"{fmt(p.get('server_cpu_util'), 2)} | "
                f"{fmt(p.get('server_main_thread_cpu_util'), 2)} | "
                f"{fmt(p.get('client_cpu_util'), 2)} | "
                f"{fmt(r_rps, 2)} | "
                f"{fmt(r_p99, 2)} |"
            )
    return lines


def targets_table(doc: dict[str, Any]) -> list[str]:
    lines = ["| target | measured | met |", "|---|---|---|"]
    for t in doc.get("targets", []):
        extra = f", p99 ratio {t['p99_ratio']:.2f}" if t.get("p99_ratio") is not None else ""
        lines.append(
            f"| {t['target']} | {fmt(t['value'], 2)}{extra} | {'yes' if t['met'] else 'no'} |"
        )
    return lines


def operator_plot(doc: dict[str, Any], stem: str) -> str | None:
    runs = doc.get("runs", [])
    if not runs or any(r["baseline"].get("skipped") for r in runs):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ns = [str(r["n"]) for r in runs]
    x = range(len(runs))
    op = [r["operator"]["all_ready_s"] or 0 for r in runs]
    base = [r["baseline"]["all_available_s"] or 0 for r in runs]
    axes[0].bar([i - 0.2 for i in x], base, 0.4, label="no operator: children applied directly")
    axes[0].bar([i + 0.2 for i in x], op, 0.4, label="operator: ModelDeployments")
    axes[0].set_xticks(list(x), ns)
    axes[0].set_xlabel("ModelDeployments")
    axes[0].set_ylabel("seconds until all Ready / Available")
    axes[0].legend()
    axes[1].bar(ns, [r["operator"]["operator_peak_rss_mb"] for r in runs])
    axes[1].axhline(300, color="red", ls="--", label="target 300 MB")
    axes[1].set_ylabel("operator peak RSS (MB)")
    axes[1].set_xlabel("ModelDeployments")
    axes[1].legend()
    fig.suptitle(f"operator scale, {doc['started']}")
    fig.tight_layout()
    out = RESULTS / f"{stem}.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out.name


def operator_table(doc: dict[str, Any]) -> list[str]:
    steady = fmt(doc.get("settings", {}).get("steady_window_s", 60.0))
    lines = [
        "| N | baseline: all Available (s) | operator: all Ready (s) | ratio | operator CPU s "
        "(creation) | peak RSS MB | requests/MD (creation) | writes/MD (creation) | "
        f"steady requests ({steady} s) | steady writes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc.get("runs", []):
        b, o = r["baseline"], r["operator"]
        lines.append(
            f"| {r['n']:,} | {fmt(b['all_available_s'], 1)} | {fmt(o['all_ready_s'], 1)} | "
            f"{fmt(r['ready_over_baseline'], 2)} | {fmt(o['operator_cpu_s_creation'], 1)} | "
            f"{fmt(o['operator_peak_rss_mb'])} | {fmt(o['creation_requests_per_md'], 1)} | "
            f"{fmt(o['creation_writes_per_md'], 1)} | {o['steady_requests']} | "
            f"{o['steady_writes']} |"
        )
    return lines


def census_tables() -> list[str]:
    """Who holds the operator's memory (memcensus-operator-N.json, bench/memprobe)."""
    lines: list[str] = []
    for path in sorted(RESULTS.glob("memcensus-*.json")):
        doc = json.loads(path.read_text())
        holders = sorted(doc.get("holders", []), key=lambda h: -h["mb"])
        cache = doc.get("render_cache", {})
        lines += [
            "",
            f"`{path.name}`: the operator when all {doc['n']:,} ModelDeployments were Ready "
            f"({doc['taken']}): RSS {fmt(doc['rss_mb'])} MB; deep sizes of what holds "
            f"per-object state ({fmt(sum(h['mb'] for h in holders), 1)} MB in all); render "
            f"cache {cache.get('size')} entries, {cache.get('hits')} hits, "
            f"{cache.get('misses')} misses; {doc.get('asyncio_tasks')} asyncio tasks.",
            "",
            "| holder | MB |",
            "|---|---|",
            *[f"| {h['holder']} | {fmt(h['mb'], 1)} |" for h in holders if h["mb"] >= 0.05],
        ]
    return lines


def profile_tables() -> list[str]:
    lines: list[str] = []
    for path in sorted(RESULTS.glob("profile-*.json")):
        doc = json.loads(path.read_text())
        if "what" in doc:
            title = (
                f"**the operator while creating {doc['n']:,} ModelDeployments** "
                f"({doc['samples']} on-CPU samples at 100 Hz, {doc['taken']})"
            )
        else:
            title = (
                f"**{doc['model']} over {doc['protocol']}, c={doc['concurrency']}** "
                f"({doc['samples']} on-CPU samples, "
                f"{fmt(doc['requests_per_s_while_profiled'])} req/s while sampled, {doc['taken']})"
            )
        lines += [
            "",
            f"`{path.name}`: {title} — top frames by self time and by inclusive time:",
            "",
            *(
                [
                    "On-CPU samples by thread: "
                    + "; ".join(f"{t['frame']} {t['share']:.0%}" for t in doc["threads"]),
                    "",
                ]
                if doc.get("threads")
                else []
            ),
            "| self | frame | | inclusive | frame |",
            "|---|---|---|---|---|",
        ]
        for s, i in zip(doc["self"][:15], doc["inclusive"][:15], strict=False):
            lines.append(
                f"| {s['share']:.1%} | `{s['frame']}` | | {i['share']:.1%} | `{i['frame']}` |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    section: list[str] = [BEGIN, ""]
    stems = ["worker", "worker-gpu", "worker-quick"]
    stems += sorted({p.stem for p in RESULTS.glob("worker-*.json")} - set(stems))
    for stem in stems:
        doc = load(stem)
        if doc is None:
            continue
        pngs = worker_plots(doc, stem)
        s = doc["settings"]
        section += [
            f"### {stem}.json — {doc['started']} to {doc['finished']}",
            "",
            f"Device {s['device']}; server cores {s['server_cores']}, load generator cores "
            f"{s['client_cores']}; {s['threads']} torch thread(s); max batch "
            f"{s['max_batch_size']}, queue delay {s['max_queue_delay_us']} µs; "
            f"{s['duration_s']} s measured per point after {s['warmup_s']} s warm-up, "
            f"best of {s.get('rounds', 1)} alternating round(s); "
            f"{s.get('rows_per_request', 1)} row(s) per request. "
            f"Idle CPU share of each server while the others ran: "
            f"{json.dumps(s.get('idle_server_cpu_util', {}))}.",
            "",
            "Targets:",
            "",
            *targets_table(doc),
            "",
            *worker_table(doc),
            "",
            *[f"![{p}]({p})" for p in pngs],
            "",
        ]
    op_stems = ["operator", *sorted(p.stem for p in RESULTS.glob("operator-*.json"))]
    for stem in op_stems:
        op = load(stem)
        if op is None:
            continue
        png = operator_plot(op, stem)
        commit = op.get("machine", {}).get("commit", "not recorded")
        section += [
            f"### {stem}.json — {op['started']} to {op['finished']} (code: {commit})",
            "",
            *operator_table(op),
            "",
            *([f"![{png}]({png})", ""] if png else []),
        ]
    census = census_tables()
    if census:
        section += ["### operator memory census", *census, ""]
    prof = profile_tables()
    if prof:
        section += ["### profiles (py-spy)", *prof, ""]
    section.append(END)

    readme = RESULTS / "results.md"
    text = readme.read_text() if readme.exists() else f"# Benchmark results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1] if END in rest else ""
    readme.write_text(head + "\n".join(section) + tail)
    log(f"wrote {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
