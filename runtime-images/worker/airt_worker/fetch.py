"""`airt-worker fetch`: the model-fetch init container — download a model, verify it, place it.

Called by the CLI (`airt-worker fetch --uri … --dest …`), which the operator renders as the init
container of every ModelDeployment whose model is remote. It writes the model to `--dest`
atomically (a temporary file in the same directory, renamed when complete and verified), so the
worker never sees half a file, and it refuses a file whose sha256 differs from `--sha256`.

Sources, each through the library that owns the protocol:
- `https://` (and `http://`, for tests and in-cluster mirrors): streamed with urllib;
- `s3://`, `gs://`: fsspec with s3fs / gcsfs, so credentials come the usual way (the
  ModelDeployment's Secret reaches this container as environment variables: AWS_*,
  GOOGLE_APPLICATION_CREDENTIALS; `AWS_ENDPOINT_URL` points at S3-compatible stores);
- `hf://org/repo@revision`: huggingface_hub's snapshot at that revision (HF_TOKEN for private
  repositories); the one TorchScript (.pt) or torch.export (.pt2) file in it is the model;
- `oci://registry/repository@sha256:…`: an OCI artifact through oras-py, checked against the
  pinned manifest digest and its layer digest (oci.py).

Hardening: a redirect from https to anything but https is refused (a downgrade would hand the
model, and any credentials in the URL, to whoever sits on the path); `--max-bytes` caps what is
written, whatever the source claims, so a wrong or hostile URI cannot fill the node's disk.

Exit codes: 0 placed, 1 download or verification failed, 2 bad arguments or unsupported URI.

The termination message (`--termination-log`, default /dev/termination-log, which Kubernetes
copies into the pod's init container status) is how the operator learns the outcome: on success
one JSON line with the digest of the bytes placed, `{"modelDigest":"sha256:<hex>"}`, which becomes
`status.modelDigest`; on failure one line `ModelDigestMismatch: <message>` or
`ModelFetchFailed: <message>` (also printed to stderr), which becomes the condition reason.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    CliApp,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from airt_contract.worker import DEFAULT_TERMINATION_LOG, FETCH_CONFIG_ENV, FetchConfig
from airt_worker.digest import SizeLimitExceededError, stream_sha256
from airt_worker.errors import (
    MODEL_FETCH_FAILED,
    DigestMismatchError,
    termination_line,
    termination_reason,
    write_termination_message,
)
from airt_worker.jsonenv import JsonEnvSource
from airt_worker.oci import OciError, fetch_oci
from airt_worker.trust import TrustError, install_ca_bundle

MODEL_SUFFIXES = (".pt2", ".pt")


class FetchError(Exception):
    """The model could not be fetched or verified; the message says what and where."""


class UnsupportedUri(FetchError):  # noqa: N818 - reads as the condition it reports
    """The URI's scheme is not one this fetcher handles."""


class FetchSettings(FetchConfig, BaseSettings):
    """The contract's FetchConfig as the options of `airt-worker fetch`. Sources, most important
    first: arguments, AIRT_FETCH_* variables (a credentials Secret's AIRT_FETCH_CA_BUNDLE), the
    operator's whole configuration in AIRT_FETCH_CONFIG, the defaults."""

    model_config = SettingsConfigDict(
        env_prefix="AIRT_FETCH_", cli_prog_name="airt-worker fetch", cli_kebab_case=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, JsonEnvSource(settings_cls, FETCH_CONFIG_ENV)


def _copy_hashing(src: BinaryIO, dst: BinaryIO, max_bytes: int | None = None) -> str:
    try:
        return stream_sha256(src, dst, max_bytes)
    except SizeLimitExceededError as e:
        raise FetchError(f"the model is larger than the limit of {e.max_bytes} bytes") from None


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    """Follow redirects, except from https to a scheme that is not https."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if req.full_url.startswith("https://") and not newurl.startswith("https://"):
            raise FetchError(f"refused a redirect from {req.full_url} to {newurl} (not https)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


@contextmanager
def _open_http(uri: str, timeout: float, max_bytes: int | None = None) -> Iterator[BinaryIO]:
    request = urllib.request.Request(uri, headers={"User-Agent": "airt-fetch/0.1"})
    opener = urllib.request.build_opener(_NoDowngrade)
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if max_bytes is not None and length and length.isdigit() and int(length) > max_bytes:
                raise FetchError(
                    f"GET {uri}: {length} bytes is more than the limit of {max_bytes} bytes"
                )
            yield response
    except OSError as exc:
        raise FetchError(f"GET {uri}: {exc}") from exc


@contextmanager
def _open_fsspec(uri: str) -> Iterator[BinaryIO]:
    import fsspec

    try:
        with fsspec.open(uri, "rb") as f:
            yield f
    except (OSError, ValueError) as exc:  # fsspec maps missing objects to FileNotFoundError
        raise FetchError(f"reading {uri}: {exc}") from exc


def _hf_model_file(uri: str, workdir: Path) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    repo, _, revision = uri.removeprefix("hf://").partition("@")
    try:
        local = Path(
            snapshot_download(
                repo_id=repo,
                revision=revision,
                local_dir=workdir,
                allow_patterns=[f"*{s}" for s in MODEL_SUFFIXES] + ["*.json", "*.yaml"],
            )
        )
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise FetchError(f"hf snapshot {repo}@{revision}: {exc}") from exc
    models = sorted(p for p in local.rglob("*") if p.suffix in MODEL_SUFFIXES)
    if len(models) != 1:
        found = ", ".join(str(p.relative_to(local)) for p in models) or "none"
        raise FetchError(f"{uri}: expected exactly one .pt or .pt2 file, found {found}")
    return models[0]


def fetch(settings: FetchSettings) -> str:
    """Place the model at settings.dest; return its sha256 (hex). Raises FetchError, or
    DigestMismatchError when the bytes do not hash to settings.sha256."""
    uri = settings.uri
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    dest = settings.dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        part = Path(tmp) / "model.part"
        cap = settings.max_bytes
        if scheme in ("http", "https"):
            with part.open("wb") as out, _open_http(uri, settings.timeout_seconds, cap) as src:
                actual = _copy_hashing(src, out, cap)
        elif scheme in ("s3", "gs"):
            with part.open("wb") as out, _open_fsspec(uri) as src:
                actual = _copy_hashing(src, out, cap)
        elif scheme == "hf":
            found = _hf_model_file(uri, Path(tmp) / "snapshot")
            with found.open("rb") as src, part.open("wb") as out:
                actual = _copy_hashing(src, out, cap)
        elif scheme == "oci":
            try:
                found = fetch_oci(uri, Path(tmp))
            except OciError as exc:
                raise FetchError(str(exc)) from exc
            with found.open("rb") as src, part.open("wb") as out:
                actual = _copy_hashing(src, out, cap)
        else:
            raise UnsupportedUri(
                f"{scheme or uri}:// models are not supported by airt-worker fetch"
            )
        if settings.sha256 and actual != settings.sha256:
            raise DigestMismatchError(
                f"sha256 mismatch for {uri}: expected {settings.sha256}, got {actual}"
            )
        part.replace(dest)
    return actual


def _fail(path: str, exc: BaseException, code: int) -> int:
    line = termination_line(termination_reason(exc, MODEL_FETCH_FAILED), str(exc))
    write_termination_message(path, line)
    print(line, file=sys.stderr)
    return code


def main(argv: list[str]) -> int:
    # Before the arguments parse, the file comes from the environment (or the default).
    path = os.environ.get("AIRT_FETCH_TERMINATION_LOG", DEFAULT_TERMINATION_LOG)
    try:
        settings = CliApp.run(FetchSettings, cli_args=argv)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors(include_url=False)
        ]
        return _fail(path, FetchError(f"airt-worker fetch: {'; '.join(problems)}"), 2)
    except SystemExit as exc:  # --help, or argparse's own usage errors
        return int(exc.code or 0)
    path = settings.termination_log
    try:
        install_ca_bundle(settings.ca_bundle)
    except TrustError as exc:
        return _fail(path, FetchError(str(exc)), 2)
    try:
        digest = fetch(settings)
    except UnsupportedUri as exc:
        return _fail(path, exc, 2)
    except (FetchError, DigestMismatchError) as exc:
        return _fail(path, exc, 1)
    write_termination_message(
        path, json.dumps({"modelDigest": f"sha256:{digest}"}, separators=(",", ":"))
    )
    print(f"fetched {settings.uri} -> {settings.dest} (sha256 {digest})")
    return 0
