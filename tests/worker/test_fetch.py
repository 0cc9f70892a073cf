"""`airt-worker fetch`, the model-fetch init container, against real servers on localhost.

Worker tier: an HTTP server from the standard library, moto's S3 server and
go-containerregistry's OCI registry (built with the pinned tools) stand in for the model stores
(nothing leaves the machine). The command runs as a process, the way the init
container runs it, and is judged by its exit code, its message and the file it leaves.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from airt_dev.cluster import tool_bin_dir
from airt_dev.ports import free_port
from airt_dev.wait import wait_for

BLOB = os.urandom(3 * (1 << 20) + 123)  # several chunks, not a round size
DIGEST = hashlib.sha256(BLOB).hexdigest()


def airt_fetch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airt_worker.cli", "fetch", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("www")
    (root / "models").mkdir()
    (root / "models" / "mlp.pt").write_bytes(BLOB)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_http_download_is_verified_and_placed(http_root: str, tmp_path: Path) -> None:
    dest = tmp_path / "models" / "model"
    proc = airt_fetch(
        "--uri", f"{http_root}/models/mlp.pt", "--dest", str(dest), "--sha256", DIGEST
    )
    assert proc.returncode == 0, proc.stderr
    assert dest.read_bytes() == BLOB
    assert DIGEST in proc.stdout
    assert [p.name for p in dest.parent.iterdir()] == ["model"]  # no partial files left


def test_digest_mismatch_leaves_nothing(http_root: str, tmp_path: Path) -> None:
    dest = tmp_path / "model"
    wrong = "0" * 64
    proc = airt_fetch("--uri", f"{http_root}/models/mlp.pt", "--dest", str(dest), "--sha256", wrong)
    assert proc.returncode == 1
    assert f"expected {wrong}, got {DIGEST}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_termination_message_records_the_digest_placed(http_root: str, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    proc = airt_fetch(
        "--uri",
        f"{http_root}/models/mlp.pt",
        "--dest",
        str(tmp_path / "m" / "model"),
        env={"AIRT_FETCH_TERMINATION_LOG": str(log)},
    )
    assert proc.returncode == 0, proc.stderr
    text = log.read_text()
    assert text.count("\n") == 1
    assert json.loads(text) == {"modelDigest": f"sha256:{DIGEST}"}


def test_termination_message_names_a_digest_mismatch(http_root: str, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    wrong = "0" * 64
    uri = f"{http_root}/models/mlp.pt"
    proc = airt_fetch(
        *["--uri", uri, "--dest", str(tmp_path / "m" / "model"), "--sha256", wrong],
        env={"AIRT_FETCH_TERMINATION_LOG": str(log)},
    )
    assert proc.returncode == 1
    line = log.read_text().rstrip("\n")
    assert "\n" not in line
    assert line == f"ModelDigestMismatch: sha256 mismatch for {uri}: expected {wrong}, got {DIGEST}"
    assert line in proc.stderr


def test_termination_message_of_a_failed_download(http_root: str, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    proc = airt_fetch(
        *["--uri", f"{http_root}/models/nope.pt", "--dest", str(tmp_path / "m")],
        env={"AIRT_FETCH_TERMINATION_LOG": str(log)},
    )
    assert proc.returncode == 1
    line = log.read_text().rstrip("\n")
    assert line.startswith("ModelFetchFailed: ") and "nope.pt" in line and "404" in line
    assert "\n" not in line and "Traceback" not in line


def test_unwritable_termination_log_is_ignored(http_root: str, tmp_path: Path) -> None:
    proc = airt_fetch(
        *["--uri", f"{http_root}/models/mlp.pt", "--dest", str(tmp_path / "model")],
        env={"AIRT_FETCH_TERMINATION_LOG": str(tmp_path / "no" / "such" / "dir" / "log")},
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "model").read_bytes() == BLOB


def test_missing_object_is_a_clear_error(http_root: str, tmp_path: Path) -> None:
    proc = airt_fetch("--uri", f"{http_root}/models/nope.pt", "--dest", str(tmp_path / "m"))
    assert proc.returncode == 1
    assert "nope.pt" in proc.stderr and "404" in proc.stderr


def test_bad_arguments_and_unsupported_schemes(tmp_path: Path) -> None:
    bad = airt_fetch("--uri", "https://x/m.pt", "--dest", str(tmp_path / "m"), "--sha256", "xyz")
    assert bad.returncode == 2 and "sha256" in bad.stderr
    proc = airt_fetch("--uri", "ftp://host/m.pt", "--dest", str(tmp_path / "m"))
    assert proc.returncode == 2 and "ftp:// models are not supported" in proc.stderr


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_s3_download_with_credentials_from_the_environment(
    s3_endpoint: str, tmp_path: Path
) -> None:
    import boto3

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="airt-models")
    s3.put_object(Bucket="airt-models", Key="cnn/model.pt2", Body=BLOB)
    dest = tmp_path / "model"
    proc = airt_fetch(
        "--uri", "s3://airt-models/cnn/model.pt2", "--dest", str(dest), "--sha256", DIGEST, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert dest.read_bytes() == BLOB
    missing = airt_fetch("--uri", "s3://airt-models/none.pt2", "--dest", str(dest), env=env)
    assert missing.returncode == 1 and "none.pt2" in missing.stderr


@pytest.fixture(scope="module")
def registry() -> Iterator[str]:
    """go-containerregistry's registry (built with the pinned tools), on a free localhost port."""
    port = free_port()
    proc = subprocess.Popen(
        [str(tool_bin_dir() / "registry"), "-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    try:
        wait_for(up, 30, "the OCI registry")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_oci_artifact_pinned_by_digest(registry: str, tmp_path: Path) -> None:
    import oras.client

    model = tmp_path / "src" / "mlp.pt"
    model.parent.mkdir()
    model.write_bytes(BLOB)
    client = oras.client.OrasClient(hostname=registry, insecure=True)
    cwd = Path.cwd()
    os.chdir(model.parent)  # oras titles layers with the path as given
    try:
        response = client.push(target=f"{registry}/models/mlp:v1", files=["mlp.pt"], quiet=True)
    finally:
        os.chdir(cwd)
    digest = response.headers["Docker-Content-Digest"]
    env = {"AIRT_FETCH_INSECURE_REGISTRIES": registry}
    dest = tmp_path / "out" / "model"
    uri = f"oci://{registry}/models/mlp@{digest}"
    proc = airt_fetch("--uri", uri, "--dest", str(dest), "--sha256", DIGEST, env=env)
    assert proc.returncode == 0, proc.stderr
    assert dest.read_bytes() == BLOB
    # A different pin is refused: the manifest must hash to the digest in the URI.
    other = "sha256:" + "1" * 64
    wrong = airt_fetch(
        "--uri", f"oci://{registry}/models/mlp@{other}", "--dest", str(dest), env=env
    )
    assert wrong.returncode == 1 and "models/mlp" in wrong.stderr


def test_a_model_over_the_size_cap_is_refused_and_nothing_is_left(
    http_root: str, tmp_path: Path
) -> None:
    dest = tmp_path / "models" / "model"
    proc = airt_fetch(
        "--uri", f"{http_root}/models/mlp.pt", "--dest", str(dest), "--max-bytes", "1048576"
    )
    assert proc.returncode == 1
    assert "ModelFetchFailed" in proc.stderr and "limit of 1048576 bytes" in proc.stderr
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_a_redirect_from_https_to_http_is_refused() -> None:
    from airt_worker.fetch import FetchError, _NoDowngrade

    handler = _NoDowngrade()
    req = urllib.request.Request("https://models.example/m.pt")
    with pytest.raises(FetchError, match="not https"):
        handler.redirect_request(req, None, 302, "Found", {}, "http://mirror.example/m.pt")
    again = handler.redirect_request(req, None, 302, "Found", {}, "https://cdn.example/m.pt")
    assert again is not None and again.full_url == "https://cdn.example/m.pt"
