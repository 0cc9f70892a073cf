"""Extra certificate authorities for the model fetcher: a private model store's CA, given as PEM.

Called by fetch.py before any download. A platform's private store (an in-cluster registry, an
https mirror) is signed by its own CA; the ModelDeployment's credentials Secret carries that CA
as `AIRT_FETCH_CA_BUNDLE` (PEM text, because a Secret reaches the init container as environment
variables, not files). This writes the public roots (certifi's, the bundle requests already
uses) plus the given CA to one file under the writable temporary directory and points OpenSSL's
default (`SSL_CERT_FILE`, used by urllib, fsspec's aiohttp) and requests (`REQUESTS_CA_BUNDLE`,
used by oras) at it, so public stores keep working and the private one verifies.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

BEGIN = "-----BEGIN CERTIFICATE-----"


class TrustError(ValueError):
    """The CA bundle is not PEM certificates; the message says what was wrong."""


def install_ca_bundle(pem: str | None, directory: Path | None = None) -> Path | None:
    """Trust `pem` in addition to the public roots; return the bundle written (None: nothing)."""
    if not pem or not pem.strip():
        return None
    if BEGIN not in pem:
        raise TrustError(
            "AIRT_FETCH_CA_BUNDLE holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )
    import certifi

    roots = Path(certifi.where()).read_text()
    folder = directory or Path(tempfile.gettempdir())
    fd, name = tempfile.mkstemp(prefix="airt-ca-", suffix=".pem", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(roots.rstrip() + "\n" + pem.strip() + "\n")
    os.environ["SSL_CERT_FILE"] = name
    os.environ["REQUESTS_CA_BUNDLE"] = name
    return Path(name)
