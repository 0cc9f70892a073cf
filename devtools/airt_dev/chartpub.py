"""Package the Helm chart and push it to an OCI registry, so that a platform team installs airt in
one step: `helm install airt oci://<registry>/airt --version <chart version>`.

Called by `make chart` (`python -m airt_dev.chartpub --registry oci://host/path`) and by the e2e
test that installs the pushed chart into an empty cluster (tests/e2e/test_e2e_chart_oci.py). Both
use the pinned helm (tools/build.sh); a registry that needs a login wants `helm registry login`
first, a local one without TLS wants `--plain-http`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from airt_dev.cluster import ClusterError, tool_bin_dir

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "airt"
DIST = ROOT / "dist"


@dataclass(frozen=True)
class Published:
    """A chart in a registry: what `helm install` and `helm pull` take."""

    ref: str  # oci://host/path/airt
    version: str
    digest: str  # the manifest's sha256:..., as the registry reported it
    plain_http: bool = False  # the registry speaks HTTP: helm needs --plain-http to pull

    def install_command(self, release: str = "airt", namespace: str = "airt-system") -> str:
        plain = " --plain-http" if self.plain_http else ""
        return (
            f"helm install {release} {self.ref} --version {self.version}{plain} "
            f"--namespace {namespace} --create-namespace"
        )


def _helm(helm: Path, *args: str) -> str:
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ClusterError(f"helm {' '.join(args[:2])} failed: {proc.stderr.strip()}")
    return proc.stdout + proc.stderr


def chart_version(chart: Path = CHART) -> str:
    return str(yaml.safe_load((chart / "Chart.yaml").read_text())["version"])


def package(helm: Path, out: Path = DIST, chart: Path = CHART) -> Path:
    """`helm package` the chart into `out`; return the .tgz."""
    out.mkdir(parents=True, exist_ok=True)
    _helm(helm, "package", str(chart), "--destination", str(out))
    return out / f"{chart.name}-{chart_version(chart)}.tgz"


def push(helm: Path, tgz: Path, registry: str, *, plain_http: bool = False) -> Published:
    """`helm push` a packaged chart to `registry` (oci://host[:port]/path)."""
    if not registry.startswith("oci://"):
        raise ClusterError(f"the registry must be an oci:// URL, got {registry!r}")
    args = ["push", str(tgz), registry.rstrip("/")]
    if plain_http:
        args.append("--plain-http")
    out = _helm(helm, *args)
    digest = re.search(r"Digest:\s*(sha256:[0-9a-f]{64})", out)
    if digest is None:
        raise ClusterError(f"helm push reported no digest: {out.strip()}")
    name, version = tgz.name.removesuffix(".tgz").rsplit("-", 1)
    return Published(f"{registry.rstrip('/')}/{name}", version, digest.group(1), plain_http)


def main() -> None:
    parser = argparse.ArgumentParser(description="Package charts/airt and push it to a registry.")
    parser.add_argument(
        "--registry",
        required=True,
        help="where to push, oci://host[:port]/path (the chart lands at <registry>/airt)",
    )
    parser.add_argument(
        "--plain-http", action="store_true", help="the registry speaks HTTP, not HTTPS"
    )
    parser.add_argument("--out", type=Path, default=DIST, help="where the .tgz is written")
    args = parser.parse_args()
    helm = tool_bin_dir() / "helm"
    try:
        published = push(helm, package(helm, args.out), args.registry, plain_http=args.plain_http)
    except ClusterError as exc:
        raise SystemExit(f"make chart: {exc}") from None
    print(f"pushed {published.ref}:{published.version} ({published.digest})")
    print(f"install: {published.install_command()}")


if __name__ == "__main__":
    main()
