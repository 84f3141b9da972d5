"""``ipcnet serve ... tls://`` under every model, HTTPS, reload, mutual TLS, rpc, real peers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from http_cases.kit import BIG_SIZE, MEDIUM, make_site, remove_site
from ipcnet.addresses import parse
from ipcnet.channel import connect
from ipcnet.drivers import MODEL_HELP
from serverkit import Server, _start
from tlskit import certs, client_options

MODELS = list(MODEL_HELP)
CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")


@contextmanager
def serving(*args: str, model: str = "epoll", pair=None, urls: int = 1) -> Iterator[Server]:
    pair = pair or certs().server
    argv = [sys.executable, "-m", "ipcnet", "serve", *args, "--model", model, "--workers", "2",
            "--cert", pair.cert, "--key", pair.key]  # fmt: skip
    server = _start(argv, urls)
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, "\n".join(server.log)


def port_of(server: Server) -> int:
    return int(parse(server.url("tls")).port)  # type: ignore[arg-type]


def tls_echo(url: str, payload: bytes) -> bytes:
    with connect(url, ca=certs().ca, sni="localhost", close_timeout=0.3) as ch:
        writer = threading.Thread(target=lambda: (ch.write(payload), ch.send_eof()))
        writer.start()
        got = ch.read()
        writer.join(10)
        return got


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    path = make_site()
    yield path
    remove_site(path)


# --- every model ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_echo_under_every_model(model):
    with serving("echo", "tls://127.0.0.1:0", model=model) as server:
        url = server.url("tls")
        payload = os.urandom(1 << 20)
        assert tls_echo(url, payload) == payload  # 1 MiB both ways, half-close
        with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as plain:
            plain.sendall(b"plain bytes, no tls\n")
            assert plain.recv(100) == b""  # a clean close (FIN, not RST)
        assert tls_echo(url, b"still serving") == b"still serving"
    assert any("sent plain text to a tls port (closed)" in line for line in server.log)


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
@pytest.mark.parametrize("model", MODELS)
def test_https_under_every_model(root, model):
    with serving("http", str(root), "tls://127.0.0.1:0", "--quiet", model=model) as server:
        base = f"https://localhost:{port_of(server)}"
        done = subprocess.run(
            [CURL, "-sS", "--cacert", certs().ca, f"{base}/big.bin", f"{base}/medium.bin",
             "-o", "/dev/null", "-o", "-", "-w", "%{http_version} %{size_download}\\n"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        # big.bin to /dev/null (copied through TLS, not sendfile), then medium.bin to stdout
        assert done.stdout == b"1.1 %d\n%s1.1 %d\n" % (BIG_SIZE, MEDIUM, len(MEDIUM))
        with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = plain.recv(4096)
            assert plain.recv(100) == b""
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert answer.endswith(b"400 bad request: plain http was sent to an https port\n")


# --- HTTPS with real clients -------------------------------------------------------------------


@pytest.fixture(scope="module")
def https(root) -> Iterator[str]:
    with serving("http", str(root), "tls://127.0.0.1:0", "--quiet") as server:
        yield f"https://localhost:{port_of(server)}"


def test_httpx_keep_alive_and_status_shows_tls(https):
    import ssl

    import httpx

    with httpx.Client(verify=ssl.create_default_context(cafile=certs().ca), timeout=10) as client:
        for _ in range(3):
            r = client.get(f"{https}/medium.bin")
            assert r.status_code == 200 and r.content == MEDIUM
        status = client.get(f"{https}/_status.json").json()
        page = client.get(f"{https}/_status").text
    tls = status["tls"]
    assert tls["handshakes"] >= 1 and tls["versions"].get("TLSv1.3", 0) >= 1
    assert sum(tls["ciphers"].values()) == tls["handshakes"]
    assert "TLS handshakes" in page


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_openssl_s_client_alpn_http11(https):
    port = https.rpartition(":")[2]
    done = subprocess.run(
        [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
         "-CAfile", certs().ca, "-alpn", "h2,http/1.1", "-verify_return_error"],
        input=b"", capture_output=True, timeout=30,
    )  # fmt: skip
    assert b"ALPN protocol: http/1.1" in done.stdout, done.stdout[-2000:]
    assert b"Verify return code: 0 (ok)" in done.stdout


def test_python_ssl_client_sees_http11_over_tls13(https):
    import ssl

    port = int(https.rpartition(":")[2])
    ctx = ssl.create_default_context(cafile=certs().ca)
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() == "TLSv1.3" and tls.selected_alpn_protocol() == "http/1.1"
            tls.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"hello, world\n")


# --- operations --------------------------------------------------------------------------------


def _issuer_of(port: int) -> str:
    done = subprocess.run(
        [OPENSSL or "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
         "localhost"], input=b"", capture_output=True, timeout=30,
    )  # fmt: skip
    subject = [line for line in done.stdout.decode().splitlines() if "subject=" in line]
    return subject[0] if subject else done.stdout.decode()[-500:]


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_sighup_reloads_for_new_handshakes_and_keeps_the_old_on_a_bad_file(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(certs().server.cert, cert)
    shutil.copy(certs().server.key, key)
    argv = [sys.executable, "-m", "ipcnet", "serve", "echo", "tls://127.0.0.1:0",
            "--cert", str(cert), "--key", str(key)]  # fmt: skip
    server = _start(argv, 1)
    try:
        url = server.url("tls")
        port = int(parse(url).port)  # type: ignore[arg-type]
        before = _issuer_of(port)
        live = connect(url, ca=certs().ca, sni="localhost", close_timeout=0.3)
        shutil.copy(certs().wrong_host.cert, cert)  # the new certificate
        shutil.copy(certs().wrong_host.key, key)
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while _issuer_of(port) == before:
            assert time.monotonic() < deadline, "the new certificate never showed"
            time.sleep(0.1)
        live.write(b"old connection still works")  # live connections keep their session
        live.send_eof()
        assert live.read() == b"old connection still works"
        live.close()
        after = _issuer_of(port)
        cert.write_text("half a file")
        server.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert _issuer_of(port) == after  # a bad file keeps the current certificate
    finally:
        assert server.stop() == 0
    log = "\n".join(server.log)
    assert "tls: reloaded certificate" in log
    assert "tls: reload failed, keeping the current certificate: cannot load" in log


def test_mutual_tls_server():
    with serving("echo", "tls://127.0.0.1:0", "--ca", certs().ca) as server:
        url = server.url("tls")
        pair = certs().client
        with connect(url, ca=certs().ca, sni="localhost", cert=pair.cert, key=pair.key) as ch:
            ch.write(b"with a certificate")
            ch.send_eof()
            assert ch.read() == b"with a certificate"
        done = subprocess.run(
            [sys.executable, "-m", "ipcnet", "connect", "--ca", certs().ca, "--sni", "localhost",
             url], input=b"", capture_output=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 1
        assert b"no client certificate offered" in done.stderr
    assert any("no client certificate: " in line for line in server.log)


def test_tls_unix_and_stats_socket(short_tmp):
    sock = f"tls+unix://{short_tmp}/echo.sock"
    stats = f"unix://{short_tmp}/stats.sock"
    with serving("echo", sock, "--stats", stats) as server:
        assert server.url("tls+unix") == sock
        assert tls_echo(sock, b"over a unix socket") == b"over a unix socket"
        with connect(stats) as ch:
            snapshot = json.loads(ch.read())
    assert snapshot["addresses"] == [sock]
    assert snapshot["tls"]["handshakes"] == 1 and snapshot["tls"]["failed"] == 0


def test_plain_and_tls_addresses_side_by_side():
    with serving("echo", "tcp://127.0.0.1:0", "tls://127.0.0.1:0", urls=2) as server:
        assert tls_echo(server.url("tls"), b"secure") == b"secure"
        with connect(server.url("tcp")) as ch:
            ch.write(b"plain")
            ch.send_eof()
            assert ch.read() == b"plain"


def test_handshake_timeout_frees_the_connection():
    with serving("echo", "tls://127.0.0.1:0", "--tls-handshake-timeout", "0.5") as server:
        with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as silent:
            assert silent.recv(100) == b""  # closed after the deadline, nothing said
        assert tls_echo(server.url("tls"), b"next") == b"next"
    assert any("tls handshake timeout" in line for line in server.log)


def test_rpc_serve_and_call_over_tls(tmp_path):
    (tmp_path / "tlsapi.py").write_text("def add(a, b):\n    return a + b\n")
    pair = certs().server
    argv = [sys.executable, "-m", "ipcnet", "rpc", "serve", "tlsapi", "tls://127.0.0.1:0",
            "--cert", pair.cert, "--key", pair.key]  # fmt: skip
    src = str(Path(__file__).resolve().parent.parent / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(tmp_path)])}
    server = _start(argv, 1, env=env, cwd=str(tmp_path))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ipcnet", "rpc", "call", "--ca", certs().ca, "--sni",
             "localhost", server.url("tls"), "add", "2", "40"],
            capture_output=True, text=True, timeout=30, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "42"
        from ipcnet import rpc

        with rpc.connect(server.url("tls"), ca=certs().ca, sni="localhost") as client:
            assert [client.add(i, 1) for i in range(20)] == list(range(1, 21))
    finally:
        assert server.stop() == 0


def test_serve_refuses_tls_flags_without_a_tls_address_and_a_missing_certificate():
    done = subprocess.run(
        [sys.executable, "-m", "ipcnet", "serve", "echo", "tcp://127.0.0.1:0", "--cert", "x.pem"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1
    assert "tls options given, but no tls:// or tls+unix:// address" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "ipcnet", "serve", "echo", f"tls+unix://@{uuid.uuid4().hex}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1
    assert "a tls server needs a certificate: pass --cert FILE --key FILE" in done.stderr
    assert client_options()  # the helpers load


@pytest.mark.parametrize("model", ["epoll", "thread"])
def test_accept_proxy_reads_the_header_before_the_tls_handshake(model: str) -> None:
    """HAProxy's send-proxy in front of a TLS port: the PROXY header comes first, in clear."""
    import ssl

    with serving("echo", "tls://127.0.0.1:0", "--accept-proxy", model=model) as server:
        context = ssl.create_default_context(cafile=certs().ca)
        with socket.create_connection(("127.0.0.1", port_of(server)), 10) as raw:
            raw.sendall(b"PROXY TCP4 192.0.2.9 127.0.0.1 4242 443\r\n")
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"through proxy and tls\n")
                assert tls.recv(100) == b"through proxy and tls\n"


def test_a_file_that_shrinks_while_it_is_sent_over_tls_ends_the_connection(root):
    """Through TLS a file is read in chunks, not sent with sendfile(2): once it has shrunk
    the Content-Length announced cannot be kept, and only closing tells the client so (as
    without TLS). The client used to wait for ever after the head."""
    import ssl

    path = root / "shrinks-over-tls.bin"
    with open(path, "wb") as f:
        f.truncate(64 << 20)  # sparse: no 64 MiB written
    context = ssl.create_default_context(cafile=certs().ca)
    try:
        with serving("http", str(root), "tls://127.0.0.1:0", "--quiet") as server:
            raw = socket.create_connection(("127.0.0.1", port_of(server)), timeout=20)
            with context.wrap_socket(raw, server_hostname="localhost") as sock:
                sock.sendall(b"GET /shrinks-over-tls.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
                received = len(first := sock.recv(65536))
                assert first.startswith(b"HTTP/1.1 200 ")
                os.truncate(path, 0)
                try:
                    while chunk := sock.recv(1 << 20):  # the end, not the 20 s timeout
                        received += len(chunk)
                except ssl.SSLError:
                    pass  # a close without close_notify: the truncation it is
            assert received < 64 << 20
    finally:
        path.unlink()


@pytest.mark.parametrize("model", ["epoll", "asyncio", "fork", "prefork", "thread", "pool"])
def test_a_graceful_stop_ends_an_idle_tls_connection_with_close_notify(model):
    """RFC 8446 §6.1: close_notify before the write side closes. A SIGTERM that ends an
    idle connection sent only the TCP FIN, which a strict client (suppress_ragged_eofs
    off, as openssl s_client reports it) reads as a truncation. Under thread and pool the
    drain thread sent that FIN itself to wake the reader blocked in recv; now it wakes the
    reader, whose own thread sends close_notify first."""
    import signal
    import socket
    import ssl

    context = ssl.create_default_context(cafile=certs().ca)
    with serving("echo", "tls://127.0.0.1:0", model=model) as server:
        raw = socket.create_connection(("127.0.0.1", port_of(server)), timeout=10)
        with context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as s:
            s.sendall(b"ping")
            assert s.recv(4) == b"ping"  # open and idle now
            server.proc.send_signal(signal.SIGTERM)
            assert s.recv(64) == b""  # close_notify: a clean end (a bare FIN raises SSLEOFError)


@pytest.mark.parametrize("wrapper", ["tls", "accept-proxy"])
def test_a_stop_drains_keep_alive_http_behind_tls_and_the_proxy_protocol(root, wrapper):
    """A stop tells a kept-alive client with ``Connection: close`` on its next answer
    (HttpService.drain, within DRAIN_LINGER) instead of closing under a request that may
    be on its way. The stop looked for ``drain`` on the service it serves, which is the
    TLS or PROXY wrapper when there is one: behind either, idle clients were cut off."""
    import ssl

    get = b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"
    if wrapper == "tls":
        context = ssl.create_default_context(cafile=certs().ca)
        server_cm = serving("http", str(root), "tls://127.0.0.1:0", "--quiet")
    else:
        argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(root), "tcp://127.0.0.1:0",
                "--quiet", "--accept-proxy"]  # fmt: skip
        server_cm = contextmanager(lambda: (yield _start(argv, 1)))()
    with server_cm as server:
        if wrapper == "tls":
            raw = socket.create_connection(("127.0.0.1", port_of(server)), timeout=10)
            sock = context.wrap_socket(raw, server_hostname="localhost")
            first = get
        else:
            port = int(parse(server.url("tcp")).port)  # type: ignore[arg-type]
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            first = b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\n" + get
        with sock:
            sock.sendall(first)
            answer = b""
            while b"hello" not in answer:
                answer += sock.recv(65536)
            assert b"Connection: close" not in answer  # kept alive
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)  # the stop has begun; its drain keeps us for a while
            sock.sendall(get)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in answer
        assert server.proc.wait(10) == 0
