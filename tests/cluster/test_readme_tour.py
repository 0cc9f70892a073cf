"""The README's five-minute tour, run as written against the session cluster.

Cluster tier. The fixture does what `make dev` does for the tour, without the real node: the
CRDs and default runtimes, the `airt-demo` namespace with its fixtures, the operator scoped to
it, and every example Ready. Then each command of the tour's shell block runs, in order, in one
bash with `set -e`, so an export carries over and the first failing command fails the test with
its output. Skipped, and said so in the README: `make dev` and `make dev-down` (the fixture's
work) and the lines about `mlp-local` (served by the real node, which the e2e tier covers).
The namespace and its model volume are deleted afterwards; a cluster where `airt-demo` already
exists (a running `make dev`) is left alone and the test skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from airt_dev import devjob
from airt_dev.cluster import Cluster
from airt_dev.operator_proc import OperatorProcess

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = devjob.NAMESPACE
TOUR_DEADLINE_S = 300

#: Why a command of the tour is not run here (matched on the command, comments stripped).
SKIPPED = {
    r"^make dev$": "the fixture installs the API, starts the operator and applies the examples",
    r"^make dev-down$": "the fixture stops the operator and deletes the namespace",
    r"mlp-local|localhost:8000": "served by the real node that make dev starts (e2e tier)",
}


def tour_commands(readme: str) -> list[str]:
    """The tour's shell block as commands: one per line, a heredoc kept with its command."""
    section = readme.split("## A five-minute tour", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands: list[str] = []
    lines = iter(block.splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        command = line
        heredoc = re.search(r"<<-?'?(\w+)'?", line)
        if heredoc:
            end = heredoc.group(1)
            for body in lines:
                command += "\n" + body
                if body.strip() == end:
                    break
        commands.append(command)
    return commands


def skip_reason(command: str) -> str | None:
    code = command.split("\n", 1)[0].split(" #", 1)[0].strip()
    for pattern, why in SKIPPED.items():
        if re.search(pattern, code):
            return why
    return None


def test_the_tour_parses() -> None:
    commands = tour_commands((ROOT / "README.md").read_text())
    assert commands[0].startswith("make dev")
    assert any("<<'EOF'" in c and c.endswith("EOF") for c in commands)
    run = [c for c in commands if skip_reason(c) is None]
    assert len(run) >= 2 * (len(commands) - len(run)), "most of the tour must really run"


@pytest.fixture(scope="module")
def demo(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    exists = cluster.kubectl("get", "namespace", NAMESPACE, check=False)
    if exists.returncode == 0:
        pytest.skip(f"namespace {NAMESPACE} exists (make dev running?): the tour would change it")
    # The namespace's model volume outlives it (Retain) bound to the old claim: a new claim
    # could not bind to it, so it goes before and after.
    volume = f"airt-models-{NAMESPACE}"
    cluster.kubectl("delete", "pv", volume, "--ignore-not-found", "--timeout=60s")
    say = print
    devjob.install(cluster, say)
    op = OperatorProcess.start(
        cluster.kubeconfig,
        tmp_path_factory.mktemp("operator") / "operator.log",
        namespaces=(NAMESPACE,),
    )
    try:
        devjob.apply_examples(cluster, say)
        yield cluster
    finally:
        op.stop()
        cluster.kubectl("delete", "namespace", NAMESPACE, "--timeout=120s", check=False)
        cluster.kubectl("delete", "pv", volume, "--ignore-not-found", "--wait=false", check=False)


def test_the_tour_runs(demo: Cluster, tmp_path: Path) -> None:
    script = ["set -euo pipefail"]
    for i, command in enumerate(tour_commands((ROOT / "README.md").read_text())):
        if skip_reason(command) is None:
            script += [f"echo '>>> command {i}' >&2", command]
    env = {**demo.env(), "AIRT_CLUSTER_NAME": demo.name}
    # The tour calls `uv`, which the reader has on PATH; `uv run` names itself in UV.
    uv = os.environ.get("UV") or shutil.which("uv") or str(Path.home() / ".local/bin/uv")
    env["PATH"] = f"{Path(uv).parent}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TOUR_DEADLINE_S,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"the tour failed:\n{proc.stderr[-4000:]}\n{out[-4000:]}"
    assert "torch-cpu" in out  # kubectl get irt
    assert "mlp-cpu" in out  # kubectl get md
    assert re.search(r'"reason":"(NoMatchingGPUNodes|NoMatchingDevices|Unschedulable)"', out), out
    assert "modeldeployment.airt.dev/too-big created" in out
    assert "scaled" in out
    assert "usage: airt-worker serve" in out  # airt-worker serve --help
