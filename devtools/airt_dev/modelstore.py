"""The local model store that pods on the real node fetch from: an OCI registry and an https file
server behind one TLS port on the node's address, with a CA made for this machine.

Called by the e2e tier's real-node fixtures and by `make dev` (devjob.py). The server is the
project's `modelstore` binary (tools/registry/modelstore: go-containerregistry's registry handler
plus a file server); this module makes its CA and certificate with openssl, starts it, pushes
models to it with oras (the fetcher's own OCI library) and places files for https://.

Pods trust the CA through the model's credentials Secret (`AIRT_FETCH_CA_BUNDLE`, see
`secret_for`), the same way a platform team hands out a private store's CA.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from airt_dev import procs
from airt_dev.cluster import ClusterError
from airt_dev.ports import free_port
from airt_dev.wait import wait_for


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ClusterError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")


@dataclass
class ModelStore:
    """One running store: https on `host` (port 443), plain HTTP on loopback for pushes."""

    workdir: Path
    binary: Path
    host: str  # the node's IP: what pods dial
    plain_port: int = 0

    @property
    def ca_file(self) -> Path:
        return self.workdir / "ca.crt"

    @property
    def files(self) -> Path:
        return self.workdir / "files"

    @property
    def pidfile(self) -> Path:
        return self.workdir / "modelstore.pid"

    def _certificates(self) -> tuple[Path, Path]:
        """A CA and a server certificate for the node's IP (made once, kept with the store)."""
        d = self.workdir
        key, crt = d / "server.key", d / "server.crt"
        if crt.exists() and key.exists() and self.ca_file.exists():
            return crt, key
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            "-subj", "/CN=airt local model store CA", "-keyout", str(d / "ca.key"),
            "-out", str(self.ca_file),
        )  # fmt: skip
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={self.host}",
                 "-keyout", str(key), "-out", str(d / "server.csr"))  # fmt: skip
        (d / "server.ext").write_text(
            f"subjectAltName = IP:{self.host}\nextendedKeyUsage = serverAuth\n"
        )
        _openssl(
            "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(self.ca_file),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "30",
            "-extfile", str(d / "server.ext"), "-out", str(crt),
        )  # fmt: skip
        return crt, key

    def running(self) -> bool:
        if not procs.alive(self.pidfile):
            return False
        port_file = self.workdir / "plain.port"
        if not port_file.exists():
            return False
        self.plain_port = int(port_file.read_text())
        return True

    def start(self) -> None:
        if self.running():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.files.mkdir(exist_ok=True)
        crt, key = self._certificates()
        self.plain_port = free_port()
        log = (self.workdir / "modelstore.log").open("ab")
        proc = subprocess.Popen(
            [
                str(self.binary),
                f"-tls-addr={self.host}:443",
                f"-plain-addr=127.0.0.1:{self.plain_port}",
                f"-cert={crt}",
                f"-key={key}",
                f"-files={self.files}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pidfile.write_text(str(proc.pid))
        (self.workdir / "plain.port").write_text(str(self.plain_port))

        def up() -> bool:
            if proc.poll() is not None:
                tail = (self.workdir / "modelstore.log").read_text()[-2000:]
                raise ClusterError(f"the model store exited: {tail}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.plain_port)) == 0

        wait_for(up, 30, "the model store", 0.1)

    def stop(self) -> None:
        procs.stop(self.pidfile)

    def push(self, model: Path, repository: str, tag: str = "v1") -> str:
        """Push a model file as an OCI artifact; return its pinned oci:// URI (dialled on 443)."""
        import oras.client

        client = oras.client.OrasClient(hostname=f"127.0.0.1:{self.plain_port}", insecure=True)
        cwd = Path.cwd()
        os.chdir(model.parent)  # oras titles a layer with the path it was given
        try:
            response = client.push(
                target=f"127.0.0.1:{self.plain_port}/{repository}:{tag}",
                files=[model.name],
                quiet=True,
            )
        finally:
            os.chdir(cwd)
        digest = response.headers["Docker-Content-Digest"]
        return f"oci://{self.host}/{repository}@{digest}"

    def publish(self, path: Path, name: str) -> str:
        """Place a file in the https file tree; return its https:// URI."""
        dest = self.files / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        return f"https://{self.host}/files/{name}"

    def secret_for(self, name: str, namespace: str) -> dict[str, object]:
        """The credentials Secret a ModelDeployment names to trust this store's CA."""
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"airt.dev/model-credentials": "true"},
            },
            "type": "Opaque",
            "stringData": {"AIRT_FETCH_CA_BUNDLE": self.ca_file.read_text()},
        }
