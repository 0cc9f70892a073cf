"""Fetch a model stored as an OCI artifact (`oci://registry/repository@sha256:…`).

Called by fetch.py for `oci://` URIs. The registry protocol (tokens, redirects, Docker config
credentials) is oras-py's; what oras-py does not do — check content against its digests — is
done here: the manifest's bytes must hash to the pinned digest, and the chosen layer's bytes to
the digest the manifest names, so the pin in the ModelDeployment covers the model itself.

The model is the layer titled `*.pt2` or `*.pt` (`org.opencontainers.image.title`, as `oras
push` writes it); a lone `.tar`/`.tar.gz` layer holding exactly one such file works too.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path
from typing import Any

from airt_worker.digest import file_sha256

TITLE = "org.opencontainers.image.title"
MODEL_SUFFIXES = (".pt2", ".pt")
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


class OciError(Exception):
    """The artifact could not be fetched or did not match its digests."""


def insecure_hosts() -> set[str]:
    """Registries reached over plain HTTP (AIRT_FETCH_INSECURE_REGISTRIES, comma-separated)."""
    raw = os.environ.get("AIRT_FETCH_INSECURE_REGISTRIES", "")
    return {h.strip() for h in raw.split(",") if h.strip()}


def _pick_layer(manifest: dict[str, Any], uri: str) -> dict[str, Any]:
    layers: list[dict[str, Any]] = list(manifest.get("layers") or [])
    titled = [
        layer
        for layer in layers
        if str((layer.get("annotations") or {}).get(TITLE, "")).endswith(MODEL_SUFFIXES)
    ]
    if len(titled) == 1:
        return titled[0]
    if len(titled) > 1:
        names = ", ".join(layer["annotations"][TITLE] for layer in titled)
        raise OciError(f"{uri}: more than one model layer ({names})")
    if len(layers) == 1 and "tar" in str(layers[0].get("mediaType", "")):
        return layers[0]
    raise OciError(f"{uri}: no layer titled *.pt or *.pt2, and not a single tar layer")


def _extract_model(tar_path: Path, out: Path, uri: str) -> None:
    with tarfile.open(tar_path) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(MODEL_SUFFIXES)]
        if len(members) != 1:
            raise OciError(f"{uri}: the tar layer holds {len(members)} .pt/.pt2 files, not 1")
        src = tar.extractfile(members[0])
        if src is None:
            raise OciError(f"{uri}: cannot read {members[0].name} from the tar layer")
        with src, out.open("wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)


def fetch_oci(uri: str, workdir: Path) -> Path:
    """Download the model of `uri` into `workdir`; return the model file's path."""
    import oras.client
    import requests

    target = uri.removeprefix("oci://")
    name, _, pinned = target.partition("@")
    host = name.split("/", 1)[0]
    client = oras.client.OrasClient(hostname=host, insecure=host in insecure_hosts())
    try:
        container = client.get_container(target)
        client.auth.load_configs(container)
        url = f"{client.prefix}://{container.manifest_url()}"
        response = client.do_request(url, "GET", headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if response.status_code != 200:
            raise OciError(f"{uri}: manifest: HTTP {response.status_code} {response.text[:200]}")
        actual = "sha256:" + hashlib.sha256(response.content).hexdigest()
        if actual != pinned:
            raise OciError(f"{uri}: the manifest's digest is {actual}, not the pinned {pinned}")
        layer = _pick_layer(response.json(), uri)
        blob = workdir / "layer.blob"
        client.download_blob(container, layer["digest"], str(blob))
    except (requests.RequestException, ValueError) as exc:
        raise OciError(f"{uri}: {exc}") from exc
    got = "sha256:" + file_sha256(blob)
    if got != layer["digest"]:
        raise OciError(f"{uri}: layer digest is {got}, the manifest says {layer['digest']}")
    if str((layer.get("annotations") or {}).get(TITLE, "")).endswith(MODEL_SUFFIXES):
        return blob
    model = workdir / "model.extracted"
    _extract_model(blob, model, uri)
    return model
