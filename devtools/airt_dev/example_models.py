"""Publish the example models as OCI artifacts, and pin the examples to what was published.

Called by `make example-models MODEL_REGISTRY=host[:port]/path` (`python -m
airt_dev.example_models`) and by the worker-tier test that checks the examples' digests
(tests/worker/test_example_models.py). The models are built by examples/build_models.py (fixed
seeds, nothing downloaded; cached by examples/model_cache.py) and the build is byte-for-byte
reproducible for a given torch version, and an artifact pushed with oras carries no timestamp, so
the manifest digest of each model is the same in every registry. The digests in
examples/deployments/*.yaml are therefore written by this module (`--write`), never by hand, and
the test rebuilds, pushes to a local registry and pulls each example by its pinned digest.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from airt_dev.cluster import REPO_ROOT
from airt_dev.fixtures import example_models

EXAMPLES = REPO_ROOT / "examples" / "deployments"
# The registry path the committed examples name; `--write` with another registry rewrites it.
DEFAULT_REGISTRY = "ghcr.io/airt-dev/models"
# Artifact (repository) name -> the built file it carries. The tag is informational: the
# examples pin the manifest digest.
ARTIFACTS = {"mlp": "mlp.pt", "cnn": "cnn.pt2"}
TAG = "v1"
_OCI_URI = re.compile(r"oci://(?P<registry>[^\s@]+)/(?P<name>[a-z0-9-]+)@sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Artifact:
    name: str
    file: Path
    digest: str  # the manifest digest, sha256:...
    file_sha256: str  # the model file's own sha256 (model.sha256 in a ModelDeployment)

    def uri(self, registry: str) -> str:
        return f"oci://{registry}/{self.name}@{self.digest}"


def push(models: Path, registry: str, *, plain_http: bool = False) -> list[Artifact]:
    """Push every example artifact to `registry` (host[:port]/path); what was pushed."""
    import oras.client

    host = registry.split("/", 1)[0]
    client = oras.client.OrasClient(hostname=host, insecure=plain_http)
    out = []
    cwd = Path.cwd()
    for name, filename in ARTIFACTS.items():
        file = models / filename
        target = f"{registry}/{name}:{TAG}"
        os.chdir(file.parent)  # oras titles the layer with the path as given: the bare name
        try:
            response = client.push(target=target, files=[file.name], quiet=True)
        finally:
            os.chdir(cwd)
        digest = response.headers["Docker-Content-Digest"]
        out.append(Artifact(name, file, digest, hashlib.sha256(file.read_bytes()).hexdigest()))
    return out


def pinned(path: Path) -> list[tuple[str, str]]:
    """(artifact name, manifest digest) of every oci:// example model in one manifest file."""
    found = []
    for doc in yaml.safe_load_all(path.read_text()):
        uri = ((doc or {}).get("spec") or {}).get("model", {}).get("uri", "")
        match = _OCI_URI.fullmatch(uri)
        if match:
            found.append((match.group("name"), uri.rsplit("@", 1)[1]))
    return found


def write_examples(artifacts: list[Artifact], registry: str, examples: Path = EXAMPLES) -> None:
    """Pin every example that names an artifact to `registry` and the artifact's digests."""
    by_name = {a.name: a for a in artifacts}
    for path in sorted(examples.glob("*.yaml")):
        text = path.read_text()
        names = [m.group("name") for m in _OCI_URI.finditer(text)]
        text = _OCI_URI.sub(
            lambda m: by_name[m.group("name")].uri(registry) if m.group("name") in by_name
            else m.group(0),
            text,
        )  # fmt: skip
        # A model.sha256 beside an artifact's URI is that artifact's file hash.
        for name in names:
            if name in by_name:
                text = re.sub(
                    r"(?m)^(\s+sha256: )[0-9a-f]{64}$", rf"\g<1>{by_name[name].file_sha256}", text
                )
        path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description="Build, push and pin the example models.")
    parser.add_argument(
        "--registry", required=True, help="host[:port]/path the artifacts are pushed under"
    )
    parser.add_argument("--plain-http", action="store_true", help="the registry has no TLS")
    parser.add_argument(
        "--write", action="store_true", help="pin examples/deployments/*.yaml to what was pushed"
    )
    parser.add_argument(
        "--pin-as",
        help="with --write: the registry path the examples name, if not the one pushed to (the "
        f"committed examples name {DEFAULT_REGISTRY}; the digests are the same everywhere)",
    )
    args = parser.parse_args()
    registry = args.registry.removeprefix("oci://").rstrip("/")
    if not registry or "/" not in registry:
        raise SystemExit("make example-models: set MODEL_REGISTRY=host[:port]/path")
    artifacts = push(example_models(), registry, plain_http=args.plain_http)
    for a in artifacts:
        print(f"{a.uri(registry)}  (file {a.file.name}, sha256 {a.file_sha256})")
    if args.write:
        named = (args.pin_as or registry).removeprefix("oci://").rstrip("/")
        write_examples(artifacts, named)
        print(f"pinned {EXAMPLES.relative_to(REPO_ROOT)}/*.yaml to {named}")


if __name__ == "__main__":
    main()
