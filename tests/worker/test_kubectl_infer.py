"""`kubectl airt infer --url` against a real worker: the plugin's v2 request (datatype from the
model's metadata, a batch dimension added) is answered, and its printout matches the worker's own
answer to the same request.

Worker tier: one `airt-worker serve` process with the example MLP; the plugin is run as the
`kubectl-airt` command, so these tests import nothing of it. (On kwok nodes no pod serves, so
the cluster tier checks `infer` only up to its port-forward; this is its answer path.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from workerproc import Worker, spawn

PLUGIN = Path(sys.executable).parent / "kubectl-airt"


@pytest.fixture(scope="module")
def mlp(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = spawn("mlp", models / "mlp.pt", tmp_path_factory.mktemp("logs"), config=models / "mlp.yaml")
    try:
        w.wait_ready()
        yield w
    finally:
        w.stop()


def _direct(w: Worker, values: list[float]) -> dict[str, object]:
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 64], "data": values}]}
    req = urllib.request.Request(
        f"{w.base}/v2/models/mlp/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        answer: dict[str, object] = json.loads(r.read())
    return answer


def test_infer_prints_the_workers_answer(mlp: Worker) -> None:
    values = [round(0.01 * i, 2) for i in range(64)]
    proc = subprocess.run(
        [str(PLUGIN), "infer", "mlp", "--url", mlp.base, "--input", f"features={values}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    expected = []
    for out in _direct(mlp, values)["outputs"]:  # type: ignore[attr-defined]
        shown = ", ".join(json.dumps(x) for x in out["data"][:32])
        more = f", ... ({len(out['data'])} values)" if len(out["data"]) > 32 else ""
        expected.append(f"{out['name']} {out['datatype']} {out['shape']}: [{shown}{more}]")
    assert proc.stdout.strip().splitlines() == expected


def test_infer_reports_the_workers_refusal_in_one_line(mlp: Worker) -> None:
    proc = subprocess.run(
        [str(PLUGIN), "infer", "mlp", "--url", mlp.base, "--input", "features=[1.0, 2.0]"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "HTTP 400" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
