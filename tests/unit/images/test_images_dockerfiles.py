"""The runtime images' Dockerfiles follow the project's rules, checked without building them.

Multi-stage; every base pinned by digest; a numeric non-root user; no build tools in the final
stage; each image installs and copies only its own product (and the contract it reads), and its
build fails if another product or a forbidden dependency can be imported; the
org.opencontainers.image.* labels; and an entry point that is its product's command, which the
tests run (test_images_entrypoints.py). The operator's rendered pods pass ["serve"] or
["fetch", ...] as args to the worker's `airt-worker`; the sidecar's `airt-metrics` takes none.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dockerfiles import Dockerfile, parse

ROOT = Path(__file__).resolve().parents[3]
IMAGES = ROOT / "runtime-images"

# Dockerfile → (the command it runs, the workspace package it installs)
EXPECTED: dict[str, tuple[list[str], str]] = {
    "operator/Dockerfile": (["airt-operator", "run"], "airt-operator"),
    "worker/Dockerfile.cpu": (["airt-worker", "serve"], "airt-worker"),
    "worker/Dockerfile.cuda": (["airt-worker", "serve"], "airt-worker"),
    "metrics/Dockerfile": (["airt-metrics"], "airt-metrics"),
    # Seldon MLServer (from PyPI) with airt's runtime for the example MLP: the bring-your-own
    # runtime that the e2e tier serves on the real node.
    "mlserver/Dockerfile": (["mlserver", "start", "/mnt/models"], "airt-mlserver"),
}
# Dockerfiles whose command is a third-party server, not in the project environment: the image
# build's smoke check (tools/images/build.sh) runs it in the built image instead.
THIRD_PARTY_COMMANDS = {"mlserver/Dockerfile"}
# Dockerfile → the source folders it may copy (its product and the contract), and the modules
# its build must fail to import.
PRODUCT_SOURCES: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "operator/Dockerfile": ({"contract", "operator"}, ("torch", "airt_worker", "airt_metrics")),
    "worker/Dockerfile.cpu": ({"contract", "runtime-images/worker"}, ("kopf", "airt_operator")),
    "worker/Dockerfile.cuda": (
        {"contract", "runtime-images/worker"},
        ("kopf", "airt_operator", "airt_metrics"),
    ),
    "metrics/Dockerfile": (
        {"runtime-images/metrics"},
        ("torch", "kopf", "airt_operator", "airt_worker"),
    ),
    "mlserver/Dockerfile": (
        {"runtime-images/mlserver"},
        ("torch", "kopf", "airt_operator", "airt_worker", "airt_metrics"),
    ),
}
REQUIRED_LABELS = (
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.source",
    "org.opencontainers.image.licenses",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
)
PINNED = re.compile(r"^[a-z0-9./_-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}$")
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|cc|make|build-essential|cmake|apt-get\s+install|apk\s+add|pip\s+install|"
    r"uv\s+(pip|sync)|curl|wget|git)\b"
)


@pytest.fixture(params=sorted(EXPECTED), ids=lambda p: p)
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, Dockerfile]:
    name: str = request.param
    return name, parse(IMAGES / name)


def test_every_image_has_a_dockerfile() -> None:
    for name in EXPECTED:
        assert (IMAGES / name).is_file(), name


def test_multi_stage_with_every_base_pinned_by_digest(dockerfile: tuple[str, Dockerfile]) -> None:
    _, df = dockerfile
    assert len(df.stages) >= 2, "multi-stage: build, then a clean final stage"
    aliases = {s.alias for s in df.stages if s.alias}
    for stage in df.stages:
        assert stage.base in aliases or PINNED.match(stage.base), f"unpinned base {stage.base}"
    assert df.final.alias is None or df.final.alias not in {"build", "builder"}


def test_final_stage_runs_as_numeric_non_root(dockerfile: tuple[str, Dockerfile]) -> None:
    _, df = dockerfile
    users = df.final.all("USER")
    assert users, "the final stage must set USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0, users[-1]
    assert not group or (group.isdigit() and int(group) != 0), users[-1]


def test_final_stage_has_no_build_tools(dockerfile: tuple[str, Dockerfile]) -> None:
    _, df = dockerfile
    for args in df.final.all("RUN"):
        # The one allowed RUN removes pip and setuptools from the final image.
        cleaned = args.replace("pip uninstall", "")
        assert not BUILD_TOOLS.search(cleaned), f"build tool in the final stage: {args}"
    for args in df.final.all("COPY"):
        assert "--from=" in args, f"the final stage copies only from the build stage: {args}"
        assert "uv" not in args.split()[-2:][0].split("/"), args
    assert not df.final.all("ADD")


def test_oci_labels(dockerfile: tuple[str, Dockerfile]) -> None:
    _, df = dockerfile
    labels = df.final.labels()
    missing = [k for k in REQUIRED_LABELS if not labels.get(k)]
    assert not missing, missing
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_entrypoint_is_the_cli_command(dockerfile: tuple[str, Dockerfile]) -> None:
    name, df = dockerfile
    command, _ = EXPECTED[name]
    assert df.final.exec_form("ENTRYPOINT") == command[:1]
    cmd = df.final.exec_form("CMD") if df.final.all("CMD") else []
    assert df.final.exec_form("ENTRYPOINT") + cmd == command


def test_installs_only_its_own_requirements(dockerfile: tuple[str, Dockerfile]) -> None:
    name, df = dockerfile
    allowed, _ = PRODUCT_SOURCES[name]
    (product,) = allowed - {"contract"}  # the product's folder, besides the contract it reads
    copies = [c for s in df.stages[:-1] for c in s.all("COPY")]
    assert f"{product}/requirements.txt /tmp/req.txt" in copies, copies
    build_runs = " ".join(a for s in df.stages[:-1] for a in s.all("RUN"))
    assert "-r /tmp/req.txt" in build_runs
    assert "uv.lock" not in " ".join(copies) and "pyproject.toml" not in " ".join(copies)
    # The product itself goes in without dependencies: they are exactly the locked ones above.
    assert "--no-deps" in build_runs


def test_copies_only_its_own_product(dockerfile: tuple[str, Dockerfile]) -> None:
    name, df = dockerfile
    allowed, _ = PRODUCT_SOURCES[name]
    copied = set()
    for stage in df.stages[:-1]:
        for copy in stage.all("COPY"):
            words = [w for w in copy.split() if not w.startswith("--")]
            copied |= {w.rstrip("/") for w in words[:-1] if not w.endswith("requirements.txt")}
    assert copied == allowed, copied


def test_the_build_fails_if_another_product_is_inside(dockerfile: tuple[str, Dockerfile]) -> None:
    name, df = dockerfile
    _, forbidden = PRODUCT_SOURCES[name]
    runs = " ".join(a for s in df.stages for a in s.all("RUN"))
    for module in forbidden:
        assert re.search(
            rf'! (PYTHONPATH=/opt/airt )?/opt/venv/bin/python -c "import {module}"', runs
        ), (
            name,
            module,
        )
