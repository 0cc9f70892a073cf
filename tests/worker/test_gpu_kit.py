"""The GPU check, proven offline before a GPU is lent: kit built, installed without a network
into a stand-in for the GPU machine's Python, and every step run on the CPU.

The stand-in (bench/gpu/standin.py) is a CPython 3.12 environment holding only the machine's
own packages that the worker touches — torch 2.11.0 as there, grpcio, numpy, prometheus-client,
uvloop... — and none of the kit's; it is cached under ~/.cache/airt/gpu-kit/, so a warm run
does not rebuild it. The entry script (bench/gpu/run.py) runs in a network namespace of its own
with only loopback, so neither its install (`pip --no-index`) nor anything after it can reach
out; the workers it starts listen on 127.0.0.1 there. Skipped only when the kit cannot be built
(no PyPI, no uv).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "bench" / "gpu"
#: The budget given to the entry script; every step must still run inside it on 2 cores.
BUDGET_S = 60
WORKERS = {"mlp.pt2", "halves.pt", "halves.pt2", "cnn.pt", "cnn.pt-x2"}
CHECKS = {
    "ready, metadata, config",
    "http binary",
    "http json",
    "grpc",
    "batching: 64 concurrent requests (grpc aio)",
}


def _import(name: str) -> Any:
    sys.path.insert(0, str(GPU))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def _cache() -> Path:
    return Path(os.environ.get("AIRT_CACHE", Path.home() / ".cache" / "airt")) / "gpu-kit"


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kit")
    try:
        _import("kit").build(out, cache=_cache() / "wheels")
    except (subprocess.CalledProcessError, OSError, RuntimeError) as e:
        pytest.skip(f"the GPU kit cannot be built here: {e}")
    return out


def _offline(argv: list[str]) -> tuple[list[str], str]:
    """`argv` in a network namespace with only loopback up where this process may make one;
    else with every proxy and index pointed at a closed port, so a download would fail."""
    probe = (
        subprocess.run(["unshare", "--net", "sh", "-c", "ip link set lo up"], capture_output=True)
        if shutil.which("unshare") and shutil.which("ip")
        else None
    )
    if probe is not None and probe.returncode == 0:
        script = 'ip link set lo up && exec "$@"'
        return ["unshare", "--net", "sh", "-c", script, "sh", *argv], "network namespace, lo only"
    return argv, "proxies and pip index pointed at 127.0.0.1:9"


def test_gpu_check_runs_offline_on_cpu(kit: Path, tmp_path: Path) -> None:
    manifest = json.loads((kit / "manifest.json").read_text())
    assert manifest["bytes"] < 64 * 2**20
    names = {f["file"].split("/")[1].split("-")[0].lower() for f in manifest["files"]}
    assert {"airt_worker", "airt_contract", "pydantic", "uvicorn", "tritonclient"} <= names
    assert "grpcio" in names
    assert not {"airt_operator", "airt_metrics", "airt_dev"} & names, "the worker's alone"

    python = _import("standin").ensure()
    out, site = tmp_path / "out", tmp_path / "site"
    argv, how = _offline(
        [
            str(python),
            str(GPU / "run.py"),
            "--device", "cpu",
            "--budget-s", str(BUDGET_S),
            "--out", str(out),
            "--kit", str(kit),
            "--site", str(site),
            "--models-cache", str(_cache() / "models"),
            # start-up is not budgeted work: on a busy shared machine five workers importing
            # torch can take minutes, which must not kill the run
            "--grace-s", "400",
        ]
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"})
    env.update({"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "NO_PROXY": "127.0.0.1,localhost"})
    env["no_proxy"] = env["NO_PROXY"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    doc = json.loads((out / "gpu-check.json").read_text())
    context = f"offline by {how}; rc {done.returncode}\n{done.stdout}\n{done.stderr[-6000:]}"
    steps = doc["steps"]

    assert steps["install"]["status"] == "PASS", context
    assert "--no-index" in steps["install"]["command"]
    # the stand-in's typing-extensions is older than pydantic needs: the kit's goes in
    fallback = {n: f["installed_from_kit"] for n, f in steps["install"]["fallback"].items()}
    assert fallback == {"grpcio": False, "protobuf": False, "typing-extensions": True}
    env_step = steps["environment"]
    assert env_step["status"] == "PASS", context
    assert env_step["torch"].startswith("2.11.0")
    for module in ("pydantic", "uvicorn", "tritonclient", "airt_worker"):
        assert env_step["modules"][module]["from"] == "kit", (module, env_step["modules"])
    for module in ("torch", "grpc", "numpy"):
        assert env_step["modules"].get(module, {"from": "machine"})["from"] == "machine"
    assert steps["models"]["status"] == "PASS"
    assert {"mlp.pt2", "cnn.pt", "halves.pt", "halves.pt2"} <= set(steps["models"]["files"])
    assert steps["workers"]["status"] == "PASS", context
    assert set(steps["workers"]["ready_after_s"]) == WORKERS

    conformance = steps["conformance"]
    failed = [c for c in conformance["checks"] if c["status"] != "PASS"]
    assert not failed, context
    assert {(c["worker"], c["check"]) for c in conformance["checks"]} == {
        (w, c) for w in WORKERS for c in CHECKS
    }

    assert steps["nvml"]["status"] == "unavailable"
    throughput = steps["throughput"]
    assert throughput["status"] == "ran", context
    points = throughput["points"]
    assert {(p["model"], p["protocol"], p["concurrency"]) for p in points} == {
        (m, proto, c) for m in ("mlp", "cnn") for proto in ("http", "grpc") for c in (1, 8, 32, 128)
    }
    for p in points:
        assert p["requests"] > 0 and p["errors"] == 0, p
        assert p["p50_ms"] is not None and p["p99_ms"] >= p["p50_ms"], p
        assert p["limit_samples_per_s"] and p["limit_samples_per_s"] > 0, p
        assert p["ratio_to_limit"] and p["ratio_to_limit"] > 0, p
        assert p["gpu"]["status"] == "unavailable", p
    # 128 clients against a max batch of 64: the worker formed batches of more than one row
    assert any(int(k) > 1 for p in points if p["concurrency"] == 128 for k in p["batches"])

    multi = steps["multi_instance"]
    assert multi["status"] == "ran", context
    assert [r["concurrency"] for r in multi["points"]] == [32, 128]
    assert all(r["ratio_two_to_one"] and r["ratio_two_to_one"] > 0 for r in multi["points"])
    assert multi["conformance_of_two_instances"] == f"{len(CHECKS)}/{len(CHECKS)} PASS"

    assert doc["ok"] is True, context
    assert done.returncode == 0, context
    assert set(doc["worker_exit_codes"].values()) == {0}
    summary = (out / "gpu-check.txt").read_text()
    assert "airt GPU check (cpu)" in summary and ": OK" in summary
