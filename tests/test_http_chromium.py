"""A real browser: headless Chromium loads the demo page, a listing and /_status.

Chromium comes from Debian (``scripts/system-deps chromium``, which the test setup runs);
without it these tests skip and say why."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from http_cases.kit import http_server
from ipcnet.httpd import SITE

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (scripts/system-deps chromium needs root or sudo)",
)


def chromium(*args: str) -> str:
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="ipcnet-chromium-")
    try:
        done = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=50,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with http_server(SITE) as (_, host, port):
        yield f"http://{host}:{port}"


def test_demo_page_renders_its_journey_and_live_status(base: str) -> None:
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", f"{base}/")
    assert "what just happened to your request" in dom
    assert '<dd id="st-model">epoll</dd>' in dom  # app.js fetched /_status.json and filled it
    assert "HTTP/1.1 200" in dom and "etag:" in dom  # the HEAD request's headers, shown
    assert "LISTEN" in dom  # the socket table


def test_directory_listing_renders(base: str) -> None:
    dom = chromium("--dump-dom", f"{base}/files/")
    assert "<h1>Index of /files/</h1>" in dom
    assert 'href="hello.txt"' in dom and 'href="notes.txt.gz"' in dom


def test_status_page_renders(base: str) -> None:
    dom = chromium("--dump-dom", f"{base}/_status")
    assert "ipcnet http — status" in dom
    assert 'id="model">epoll<' in dom
    assert "connections now" in dom and "LISTEN" in dom
