"""The real node's pause (sandbox) image, made here: a static C program in a one-layer OCI archive.

Called by realnode.py before the kubelet starts: containerd needs a sandbox image for every pod,
and registry.k8s.io cannot be reached from this machine. The program does what the upstream
pause does (sleep until a signal, reap children, exit 0 on SIGINT/SIGTERM); it is compiled with
the machine's gcc and the archive is written directly (a tar of a rootfs plus an OCI config,
manifest and index), which needs no builder. The archive is cached under a key of its inputs.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

PAUSE_C = r"""
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction s = {0}, r = {0};
  s.sa_handler = stop; sigaction(SIGINT, &s, NULL); sigaction(SIGTERM, &s, NULL);
  r.sa_handler = reap; r.sa_flags = SA_NOCLDSTOP; sigaction(SIGCHLD, &r, NULL);
  for (;;) pause();
  return 0;
}
"""


@dataclass(frozen=True)
class PauseImage:
    archive: Path
    digest: str  # the manifest digest, sha256:<hex>


def _blob(data: bytes) -> tuple[str, int]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), len(data)


def _layer(binary: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("pause")
        info.size, info.mode, info.mtime = len(binary), 0o755, 0
        tar.addfile(info, io.BytesIO(binary))
    return buf.getvalue()


def oci_archive(binary: bytes, ref: str) -> tuple[bytes, str]:
    """An OCI image layout tar holding one image named `ref`; returns it and the manifest digest."""
    layer = _layer(binary)
    layer_digest, layer_size = _blob(layer)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        },
        sort_keys=True,
    ).encode()
    config_digest, config_size = _blob(config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": layer_size,
                }
            ],
        },
        sort_keys=True,
    ).encode()
    manifest_digest, manifest_size = _blob(manifest)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "annotations": {
                        "io.containerd.image.name": ref,
                        "org.opencontainers.image.ref.name": ref,
                    },
                }
            ],
        },
        sort_keys=True,
    ).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", index)
        for digest, data in (
            (layer_digest, layer),
            (config_digest, config),
            (manifest_digest, manifest),
        ):
            add(f"blobs/sha256/{digest.split(':', 1)[1]}", data)
    return out.getvalue(), manifest_digest


def ensure_pause_archive(cache: Path, ref: str) -> PauseImage:
    """Compile and package the pause image once per (source, reference); reuse it afterwards."""
    key = hashlib.sha256((PAUSE_C + ref).encode()).hexdigest()[:16]
    archive = cache / f"pause-{key}.tar"
    digest_file = archive.with_suffix(".digest")
    if archive.exists() and digest_file.exists():
        return PauseImage(archive, digest_file.read_text().strip())
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "pause.c", Path(tmp) / "pause"
        src.write_text(PAUSE_C)
        proc = subprocess.run(
            ["gcc", "-static", "-Os", "-s", "-o", str(out), str(src)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"compiling the pause program failed: {proc.stderr.strip()}")
        data, digest = oci_archive(out.read_bytes(), ref)
    tmp_archive = archive.with_suffix(".tmp")
    tmp_archive.write_bytes(data)
    tmp_archive.rename(archive)
    digest_file.write_text(digest)
    return PauseImage(archive, digest)
