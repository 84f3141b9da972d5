"""Headless Chromium loads the HTTPS demo page (issue 11, item 7).

Chromium keeps its own trust store, so the test pins the server's key instead of adding
the test CA: ``--ignore-certificate-errors-spki-list`` accepts exactly that key, nothing
else (a blanket --ignore-certificate-errors would prove nothing)."""

from __future__ import annotations

import base64
import hashlib
import sys

import pytest

from ipcnet.addresses import parse
from ipcnet.httpd import SITE
from serverkit import _start
from test_http_chromium import CHROMIUM, chromium
from tlskit import certs

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def spki_pin(cert_path: str) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_chromium_loads_the_https_demo_page():
    pair = certs().server
    server = _start(
        [sys.executable, "-m", "ipcnet", "serve", "http", str(SITE), "tls://127.0.0.1:0",
         "--cert", pair.cert, "--key", pair.key, "--quiet"], 1,
    )  # fmt: skip
    try:
        port = parse(server.url("tls")).port
        dom = chromium(
            f"--ignore-certificate-errors-spki-list={spki_pin(pair.cert)}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            f"https://localhost:{port}/",
        )
    finally:
        assert server.stop() == 0
    assert "what just happened to your request" in dom
    assert "HTTP/1.1 200" in dom  # app.js fetched over HTTPS too
