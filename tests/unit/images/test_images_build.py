"""`make images` (tools/images/build.sh) and the build args it relies on, checked without building.

The worker-cpu Dockerfile's torch source is a set of ARGs whose defaults keep PyTorch's CPU index
(torch==X+cpu, no CUDA wheels); the builder here passes values that install torch from PyPI as
uv.lock pins it. Every Dockerfile leaves no uv cache in a layer unless a builder asks for one.
The cache key of each image covers its Dockerfile and everything it COPYs: its product's
folders (the inputs column of tools/images/images.txt) and what every image shares
(tools/images/inputs.txt), both read by the script and by these tests.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from dockerfiles import Stage, parse
from test_images_dockerfiles import EXPECTED

ROOT = Path(__file__).resolve().parents[3]
IMAGES = ROOT / "runtime-images"
TOOLS = ROOT / "tools" / "images"
SCRIPT = TOOLS / "build.sh"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
SAMPLE_REQUIREMENTS = """\
numpy==2.3.4
nvidia-cublas-cu12==12.8.4.1 ; platform_machine == 'x86_64' and sys_platform == 'linux'
nvidia-cudnn-cu12==9.10.2.21 ; platform_machine == 'x86_64' and sys_platform == 'linux'
cuda-bindings==12.9.4 ; platform_machine == 'x86_64'
torch==2.15.0
triton==3.5.1 ; platform_machine == 'x86_64' and sys_platform == 'linux'
"""


def _stage_args(stage: Stage) -> dict[str, str]:
    out: dict[str, str] = {}
    for args in stage.all("ARG"):
        name, _, default = args.partition("=")
        out[name] = default
    return out


def _lines(path: Path) -> list[list[str]]:
    rows = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            rows.append(line.split())
    return rows


def _inputs() -> list[str]:
    return [row[0] for row in _lines(TOOLS / "inputs.txt")]


def _images() -> dict[str, tuple[str, str, str, str]]:
    """key → (Dockerfile, repository, product inputs, when)."""
    return {row[0]: (row[1], row[2], row[6], row[7]) for row in _lines(TOOLS / "images.txt")}


def _torch_run() -> str:
    build = parse(IMAGES / "worker/Dockerfile.cpu").stages[0]
    (run,) = [r for r in build.all("RUN") if "-r /tmp/req.txt" in r]
    return run


def _torch_steps(req: Path, env: dict[str, str]) -> tuple[str, list[str]]:
    """Run the RUN step's own shell (sed and the install flags) on a sample requirements file."""
    steps = [s.strip() for s in _torch_run().split(" && ")]
    edits = [s for s in steps if "sed " in s]
    (install,) = [s for s in steps if s.startswith("uv pip install")]
    flags = install.split("-r /tmp/req.txt", 1)[1]
    script = " && ".join(edits).replace("/tmp/req.txt", shlex.quote(str(req)))
    script += f' && for a in {flags}; do echo "$a"; done'
    proc = subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, check=True, timeout=30
    )
    return req.read_text(), proc.stdout.split()


@pytest.fixture
def defaults() -> dict[str, str]:
    return _stage_args(parse(IMAGES / "worker/Dockerfile.cpu").stages[0])


def test_torch_args_default_to_the_cpu_index(defaults: dict[str, str]) -> None:
    assert defaults["TORCH_INDEX_URL"] == CPU_INDEX
    assert defaults["TORCH_LOCAL_VERSION"] == "+cpu"
    assert defaults["TORCH_DROP_CUDA_WHEELS"] == "1"
    run = _torch_run()
    for name in ("TORCH_INDEX_URL", "TORCH_LOCAL_VERSION", "TORCH_DROP_CUDA_WHEELS"):
        assert name in run, name


def test_each_image_installs_its_products_locked_requirements() -> None:
    # What `make generate` exports from uv.lock for each product (CI fails on drift), so every
    # image gets the versions the tests ran with, and only its product's.
    for product, package in (
        ("runtime-images/worker", "airt-worker"),
        ("runtime-images/metrics", "airt-metrics"),
        ("operator", "airt-operator"),
    ):
        text = (ROOT / product / "requirements.txt").read_text()
        assert f"--package {package} --no-emit-workspace" in text.splitlines()[1], product
        pins = [ln for ln in text.splitlines() if ln and not ln.startswith((" ", "#"))]
        assert pins and all("==" in ln for ln in pins), product
        assert not any(ln.startswith("airt") for ln in pins), "the products install from source"
    worker = (ROOT / "runtime-images/worker/requirements.txt").read_text()
    operator = (ROOT / "operator/requirements.txt").read_text()
    assert "\ntorch==" in worker and "\nkopf==" not in worker
    assert "\nkopf==" in operator and "\ntorch==" not in operator


def test_mlserver_requirements_are_pinned_and_match_its_pyproject() -> None:
    # MLServer is no workspace member (its pins would constrain the products' lock): its image
    # installs a requirements file compiled from runtime-images/mlserver/pyproject.toml with a
    # fixed --exclude-newer, so the same command gives the same pins (`make
    # mlserver-requirements`).
    folder = ROOT / "runtime-images" / "mlserver"
    text = (folder / "requirements.txt").read_text()
    command = text.splitlines()[1]
    assert "uv pip compile runtime-images/mlserver/pyproject.toml" in command
    assert "--exclude-newer" in command and "--universal" in command
    makefile = (ROOT / "Makefile").read_text()
    assert "$(UV) " + command.removeprefix("#    uv ").split(" -o ")[0] in makefile
    pins = [ln.split(" ;")[0] for ln in text.splitlines() if ln and not ln.startswith((" ", "#"))]
    assert pins and all(re.fullmatch(r"[a-z0-9._-]+==[\w.+-]+", p) for p in pins), pins
    declared = tomllib.loads((folder / "pyproject.toml").read_text())["project"]["dependencies"]
    (mlserver,) = [d for d in declared if d.startswith("mlserver")]
    assert mlserver in pins, "the image installs the MLServer its pyproject pins"
    assert not any(p.startswith(("torch==", "kopf==", "airt")) for p in pins)


def test_torch_defaults_install_the_cpu_build(defaults: dict[str, str], tmp_path: Path) -> None:
    req = tmp_path / "req.txt"
    req.write_text(SAMPLE_REQUIREMENTS)
    env = {"PATH": "/usr/bin:/bin", **defaults}
    text, flags = _torch_steps(req, env)
    assert "torch==2.15.0+cpu" in text.splitlines()
    assert not re.search(r"^(nvidia-|cuda-|triton==)", text, re.M), text
    assert "numpy==2.3.4" in text
    assert flags == ["--extra-index-url", CPU_INDEX, "--index-strategy", "unsafe-best-match"]


def test_torch_build_here_installs_the_locked_pypi_build(tmp_path: Path) -> None:
    # The values tools/images/build.sh passes: no index, no local version, CUDA wheels kept.
    script = SCRIPT.read_text()
    passed = dict(re.findall(r"--build-arg (TORCH_\w+)=([^\s)]*)", script))
    here = {"TORCH_INDEX_URL": "", "TORCH_LOCAL_VERSION": "", "TORCH_DROP_CUDA_WHEELS": "0"}
    assert passed == here
    req = tmp_path / "req.txt"
    req.write_text(SAMPLE_REQUIREMENTS)
    text, flags = _torch_steps(req, {"PATH": "/usr/bin:/bin", **passed})
    assert text == SAMPLE_REQUIREMENTS  # exactly what uv.lock pins
    assert flags == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_uv_cache_in_a_layer_by_default(name: str) -> None:
    df = parse(IMAGES / name)
    build = df.stages[0]
    assert _stage_args(build).get("UV_NO_CACHE") == "1", "UV_NO_CACHE defaults to 1"
    env = " ".join(build.all("ENV"))
    assert "UV_NO_CACHE=${UV_NO_CACHE}" in env
    assert "PIP_NO_CACHE_DIR=1" in env
    for stage in df.stages:
        for run in stage.all("RUN"):
            assert "UV_NO_CACHE=0" not in run and "--cache-dir" not in run, run


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_python_image_default_is_the_pinned_slim_image(name: str) -> None:
    default = parse(IMAGES / name).global_args["PYTHON_IMAGE"]
    assert default.startswith("python:3.11-slim-bookworm@sha256:"), default


def test_cache_key_covers_what_the_dockerfiles_copy() -> None:
    images = {v[0]: v[2].split(",") for v in _images().values()}
    for name in EXPECTED:
        inputs = _inputs() + images[f"runtime-images/{name}"]
        for stage in parse(IMAGES / name).stages:
            for copy in stage.all("COPY"):
                words = [w for w in copy.split() if not w.startswith("--")]
                if "--from=" in copy:
                    continue
                for source in words[:-1]:
                    source = source.rstrip("/")
                    assert any(source == p or source.startswith(p + "/") for p in inputs), (
                        f"{name} copies {source}, which neither tools/images/inputs.txt nor "
                        "its inputs in tools/images/images.txt list"
                    )
        for path in inputs:
            assert (ROOT / path).exists(), path
    inputs = _inputs()
    assert "tools/images" in inputs, "the script and the base recipe are inputs too"


def test_script_hashes_the_dockerfile_and_the_inputs() -> None:
    script = SCRIPT.read_text()
    assert "inputs.txt" in script
    assert 'inputs=("$dockerfile" "${shared_inputs[@]}" "${own_inputs[@]}")' in script
    assert re.search(r'hash_files "\$\{inputs\[@\]\}"', script)
    assert 'revision="$(revision_of "${inputs[@]}")"' in script
    assert 'base_hash="$(cat "$here/base.sh"' in script


def test_images_list_matches_the_dockerfiles_and_the_runtimes() -> None:
    images = _images()
    assert {v[0] for v in images.values()} == {f"runtime-images/{n}" for n in EXPECTED}
    always = [k for k, v in images.items() if v[3] == "always"]
    assert always == ["worker-cpu", "metrics", "operator", "mlserver"]
    assert images["worker-cuda"][3] == "cuda"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    refs = {f"{v[1]}:{version}" for v in images.values()}
    for runtime in (ROOT / "examples" / "runtimes").rglob("*.yaml"):
        spec = yaml.safe_load(runtime.read_text())["spec"]
        ours = [spec["container"]["image"], *(spec.get("images") or {}).values()]
        # The bring-your-own examples may name other vendors' images; the project's own must
        # be ones this script builds.
        for ref in (r for r in ours if r.startswith("ghcr.io/airt-dev/")):
            assert ref in refs, f"{runtime.name}: {ref} is not built by make images"
    for key, (_, repo, _, _) in images.items():
        assert repo.rsplit("/", 1)[1] == key, key


def test_script_shape() -> None:
    script = SCRIPT.read_text()
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert "flock 9" in script
    assert lines[-1] == 'echo "$out"', "the last stdout line is the images directory"
    assert "apt-get install" in script and "buildah mmdebstrap skopeo" in script
    assert "--dest-oci-accept-uncompressed-layers" in script and "oci-archive:" in script
    # Nothing from a container registry: the base comes from mmdebstrap, never a pull.
    assert "--pull=never" in script
    assert "PYTHON_IMAGE=$base_ref" in script
    assert "mmdebstrap" in (TOOLS / "base.sh").read_text()


def test_makefile_images_target() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^images: .*## ", makefile, re.M)
    assert "bash tools/images/build.sh" in makefile


def test_smoke_check_proves_each_image_holds_only_its_product() -> None:
    # The built image itself, not only its Dockerfile: build.sh's smoke step fails the build when
    # a module listed as absent imports in the image as its user.
    rows = {row[0]: row for row in _lines(TOOLS / "images.txt")}
    absent = {key: set(row[5].split(",")) for key, row in rows.items()}
    for key in ("worker-cpu", "worker-cuda"):
        assert {"airt_operator", "kopf"} <= absent[key], key
    assert {"torch", "airt_worker"} <= absent["operator"]
    assert {"torch", "kopf", "airt_operator", "airt_worker"} <= absent["metrics"]
    script = SCRIPT.read_text()
    assert "for module in ${absent//,/ }; do" in script
    assert 'smoke "$ref" "$command" "$imports" "$absent" || die' in script


def test_each_product_builds_outside_the_workspace() -> None:
    # The images copy a product's folder without the workspace root; a `workspace = true`
    # source in the product's own pyproject would make its build fail there. The root declares
    # the workspace's sources for every member.
    products = ("contract", "operator", "runtime-images/worker", "runtime-images/metrics",
                "runtime-images/mlserver")  # fmt: skip
    for product in products:
        doc = tomllib.loads((ROOT / product / "pyproject.toml").read_text())
        assert "sources" not in doc.get("tool", {}).get("uv", {}), product
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert {"airt-contract", "airt-operator", "airt-worker"} <= set(root["tool"]["uv"]["sources"])
