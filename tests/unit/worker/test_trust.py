"""The fetcher's extra CA: public roots kept, the private CA added, bad input named."""

from __future__ import annotations

import os
from pathlib import Path

import certifi
import pytest

from airt_worker.trust import TrustError, install_ca_bundle

PEM = "-----BEGIN CERTIFICATE-----\nMIIBdGVzdA==\n-----END CERTIFICATE-----\n"


def test_nothing_to_do_without_a_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    assert install_ca_bundle(None) is None
    assert install_ca_bundle("  ") is None
    assert "SSL_CERT_FILE" not in os.environ


def test_the_bundle_holds_the_public_roots_and_the_private_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    bundle = install_ca_bundle(PEM, tmp_path)
    assert bundle is not None and bundle.parent == tmp_path
    text = bundle.read_text()
    assert text.startswith(Path(certifi.where()).read_text().rstrip()[:200])
    assert text.rstrip().endswith(PEM.rstrip())
    assert os.environ["SSL_CERT_FILE"] == os.environ["REQUESTS_CA_BUNDLE"] == str(bundle)


def test_not_pem_is_refused_with_the_variable_named(tmp_path: Path) -> None:
    with pytest.raises(TrustError, match="AIRT_FETCH_CA_BUNDLE"):
        install_ca_bundle("not a certificate", tmp_path)
