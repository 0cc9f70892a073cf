"""The examples' model digests are what `make example-models` publishes, and they can be pulled.

Worker tier: the example models are built (examples/model_cache.py), pushed as OCI artifacts to
the pinned local registry the way `make example-models` does (airt_dev.example_models), and
every oci:// model in examples/deployments/*.yaml must name the digest that push produced: the
build is reproducible, so a digest in an example is never invented and never stale. Each pinned
reference is then pulled by the worker's own fetcher (`airt-worker fetch`), which checks the
manifest digest and, where the example gives one, the file's sha256. The digests hold on any
machine only if no built file records where this checkout or its environment lives, which is
checked file by file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from airt_dev import example_models as em
from airt_dev.cluster import tool_bin_dir
from airt_dev.oci_registry import local_registry

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "deployments").glob("*.yaml"))


@pytest.fixture(scope="module")
def pushed(models: Path) -> Iterator[tuple[str, dict[str, em.Artifact]]]:
    with local_registry(tool_bin_dir()) as host:
        artifacts = em.push(models, f"{host}/models", plain_http=True)
        yield host, {a.name: a for a in artifacts}


def test_no_built_model_records_a_path_of_this_machine(models: Path) -> None:
    # TorchScript and torch.export record the source files of what they compile; an absolute
    # path there would make every digest depend on where the checkout and its venv live.
    local = {str(ROOT), sys.prefix, sys.base_prefix, *sysconfig.get_paths().values()}
    needles = {p.encode() for p in local if p and p != "/"}
    archives = sorted([*models.glob("*.pt"), *models.glob("*.pt2")])
    assert {p.name for p in archives} >= set(em.ARTIFACTS.values())
    found = []
    for archive in archives:
        with zipfile.ZipFile(archive) as zf:
            for entry in zf.infolist():
                data = zf.read(entry)
                found += [
                    f"{archive.name}:{entry.filename} holds {n.decode()}"
                    for n in needles
                    if n in data
                ]
    assert not found, "\n".join(found)


def test_examples_pin_the_digests_the_build_publishes(
    pushed: tuple[str, dict[str, em.Artifact]],
) -> None:
    _, artifacts = pushed
    pins = [(p.name, name, digest) for p in EXAMPLES for name, digest in em.pinned(p)]
    assert {name for _, name, _ in pins} == set(em.ARTIFACTS), pins
    stale = [
        f"{file}: {name}@{digest}, published {artifacts[name].digest}"
        for file, name, digest in pins
        if digest != artifacts[name].digest
    ]
    assert not stale, (
        "example digests differ from the reproducible build: run `make example-models "
        f"MODEL_REGISTRY=<registry> WRITE=1 PIN_AS={em.DEFAULT_REGISTRY}`\n" + "\n".join(stale)
    )


def test_no_example_needs_a_volume_or_bucket_nobody_creates() -> None:
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            uri = doc["spec"]["model"]["uri"]
            assert uri.startswith("oci://") and "@sha256:" in uri, f"{path.name}: {uri}"
            assert "credentials" not in doc["spec"]["model"], path.name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_model_is_pulled_by_its_pinned_digest(
    path: Path, pushed: tuple[str, dict[str, em.Artifact]], tmp_path: Path
) -> None:
    host, artifacts = pushed
    (doc,) = list(yaml.safe_load_all(path.read_text()))
    model = doc["spec"]["model"]
    name, digest = em.pinned(path)[0]
    uri = f"oci://{host}/models/{name}@{digest}"  # the example's pin, in the local registry
    args = ["--uri", uri, "--dest", str(tmp_path / "model")]
    if model.get("sha256"):
        args += ["--sha256", model["sha256"]]
    proc = subprocess.run(
        [sys.executable, "-m", "airt_worker.cli", "fetch", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "AIRT_FETCH_INSECURE_REGISTRIES": host},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "model").read_bytes() == artifacts[name].file.read_bytes()
