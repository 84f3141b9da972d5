"""``ipcnet relay`` terminating and originating TLS, with real peers (openssl, socat, curl).

Terminating: clients speak TLS to the relay, the backend gets plaintext. Originating:
plain clients, TLS (verified) to the backend. Both: TLS in and out. Half-close over TLS is
close_notify then FIN (``transports.tls``), passed on exactly as a TCP FIN is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ipcnet.addresses import parse
from ipcnet.errors import IPCError
from ipcnet.relay import Relay, RelayConfig
from ipcnet.transports import open_listener, open_stream
from ipcnet.transports.base import StreamTransport
from relay_helpers import echo, env, recv_all, relay_process, server
from serverkit import _start
from tlskit import CLOSE, certs


def _tls_client(port: int, **tls: object) -> StreamTransport:
    tls.setdefault("ca", certs().ca)
    tls.setdefault("close_timeout", CLOSE)
    return open_stream(parse(f"tls://127.0.0.1:{port}"), 5, **tls)


def _read_all(stream: StreamTransport) -> bytes:
    got = bytearray()
    buf = memoryview(bytearray(1 << 20))
    while n := stream.read_into(buf):
        got += buf[:n]
    return bytes(got)


def _terminating(*extra: str) -> list[str]:
    pair = certs().server
    return ["tls://127.0.0.1:0", "--cert", pair.cert, "--key", pair.key, *extra]


@pytest.mark.parametrize("model", ["epoll", "thread", "asyncio"])
def test_terminating_8_mib_each_way_under_models(model: str) -> None:
    """TLS from the client, plaintext to an echo backend: 8 MiB each way, byte-exact."""
    data = os.urandom(8 << 20)
    with server(echo) as backend, relay_process(*_terminating(backend.url, "-m", model)) as r:
        assert r.address.startswith("tls://127.0.0.1:")
        stream = _tls_client(r.port)

        def writer() -> None:
            stream.write(data)
            stream.send_eof()  # close_notify, then FIN: the backend reads EOF

        t = threading.Thread(target=writer)
        t.start()
        got = _read_all(stream)  # 0 only at the relay's close_notify: the echo's FIN
        t.join()
        stream.close()
        lines = r.wait_lines(1)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert "up 8388608 B, down 8388608 B" in lines[0]
    assert "client eof first, then server eof" in lines[0]


@contextmanager
def _late_tls_backend(seen: list[bytes]) -> Iterator[str]:
    """A TLS server that reads to the client's close_notify, waits 2 s, then answers."""
    pair = certs().server
    listener = open_listener(
        parse("tls://127.0.0.1:0"), 16, 0o600, False, cert=pair.cert, key=pair.key,
        close_timeout=CLOSE,
    )  # fmt: skip

    def run() -> None:
        try:
            conn = listener.accept()
        except IPCError:
            return
        seen.append(_read_all(conn))  # b"" for a clean close_notify; UncleanEOF raises
        time.sleep(2)
        conn.write(b"late reply\n")
        conn.close()  # close_notify, then FIN

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield str(listener.address)
    finally:
        listener.close()
        thread.join(5)


def test_tls_in_and_out_half_close_and_a_reply_two_seconds_late() -> None:
    """Both sides TLS: the client's close_notify reaches the backend as one (its read
    returns EOF cleanly), and the backend's answer 2 s later still comes back, then the
    backend's close_notify reaches the client."""
    seen: list[bytes] = []
    with _late_tls_backend(seen) as target:
        with relay_process(*_terminating(target, "--target-ca", certs().ca)) as r:
            stream = _tls_client(r.port)
            stream.write(b"question\n")
            stream.send_eof()
            assert _read_all(stream) == b"late reply\n"
            stream.close()
            lines = r.wait_lines(1)
    assert seen == [b"question\n"]
    assert "up 9 B, down 11 B" in lines[0]
    assert "client eof first, then server eof" in lines[0]


@contextmanager
def _socat_tls_backend(cert: str, key: str) -> Iterator[int]:
    """socat OPENSSL-LISTEN answering each connection with its bytes upper-cased."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen(
        ["socat", f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={cert},"
         f"key={key},verify=0", "SYSTEM:tr a-z A-Z"],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, "socat did not start"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def _listening(port: int) -> bool:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            return True
    return False


def _plain_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return recv_all(sock)


needs_socat = pytest.mark.skipif(not shutil.which("socat"), reason="needs socat")


@needs_socat
@pytest.mark.parametrize(
    ("pair", "host", "flags"),
    [
        ("server", "127.0.0.1", ["--ca", "CA"]),  # verified, the name is the address
        ("server", "127.0.0.1", ["--ca", "CA", "--sni", "localhost"]),  # sent and checked
        ("other_server", "localhost", ["--insecure"]),  # no verification at all
    ],
)
def test_originating_to_socat_openssl_listen(pair: str, host: str, flags: list[str]) -> None:
    c = certs()
    issued = getattr(c, pair)
    flags = [c.ca if f == "CA" else f for f in flags]
    with _socat_tls_backend(issued.cert, issued.key) as port:
        with relay_process("tcp://127.0.0.1:0", f"tls://{host}:{port}", *flags) as r:
            assert _plain_exchange(r.port, b"hello over tls\n") == b"HELLO OVER TLS\n"
            lines = r.wait_lines(2 if "--insecure" in flags else 1)
    assert "--insecure: the server's certificate is not checked" in lines[0] or pair == "server"
    assert "up 15 B, down 15 B" in lines[-1]


@needs_socat
def test_untrusted_backend_certificate_is_a_connect_failure() -> None:
    c = certs()
    with _socat_tls_backend(c.other_server.cert, c.other_server.key) as port:
        target = f"tls://127.0.0.1:{port}"
        with relay_process("tcp://127.0.0.1:0", target, "--ca", c.ca) as r:
            try:
                assert _plain_exchange(r.port, b"hello\n") == b""
            except ConnectionResetError:
                pass  # the refusal passed on as a reset
            lines = r.wait_lines(1)
        with Relay("tcp://127.0.0.1:0", [target], RelayConfig(target_tls={"ca": c.ca})) as relay:
            relay.start()
            port_ = relay.address.port
            assert port_ is not None
            with pytest.raises(ConnectionResetError):
                _plain_exchange(int(port_), b"hello\n")
            failures = relay.stats.snapshot()["connect_failures"]
    assert "server refused" in lines[0] and "certificate" in lines[0], lines
    assert failures == {target: 1}


def _refused(port: int, **tls: object) -> IPCError:
    try:
        stream = _tls_client(port, **tls)
        stream.write(b"x")
        _read_all(stream)
    except IPCError as exc:
        return exc
    raise AssertionError("the relay let the client through")


def test_plaintext_and_bad_client_certificates_are_refused_while_serving() -> None:
    c = certs()
    with server(echo) as backend, relay_process(*_terminating("--ca", c.ca, backend.url)) as r:
        with socket.create_connection(("127.0.0.1", r.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            try:
                assert sock.recv(100) == b""
            except ConnectionResetError:
                pass
        _refused(r.port, cert=c.other_client.cert, key=c.other_client.key)  # unknown CA
        _refused(r.port)  # no client certificate at all
        good = _tls_client(r.port, cert=c.client.cert, key=c.client.key)
        good.write(b"still serving\n")
        good.send_eof()
        assert _read_all(good) == b"still serving\n"
        good.close()
        lines = r.wait_lines(4)
    refused = [line for line in lines if "client refused" in line]
    assert len(refused) == 3, lines
    assert "not tls" in refused[0]
    assert backend.accepted == 1  # refused clients never reach the backend


needs_openssl = pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl")


def _upper_line(conn: socket.socket) -> None:
    line = b""
    while not line.endswith(b"\n") and (data := conn.recv(100)):
        line += data
    conn.sendall(line.upper())


@needs_openssl
def test_openssl_s_client_through_a_terminating_relay() -> None:
    with server(_upper_line) as backend, relay_process(*_terminating(backend.url)) as r:
        done = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{r.port}", "-CAfile", certs().ca,
             "-verify_return_error", "-servername", "localhost", "-quiet"],
            input=b"hello from s_client\n", capture_output=True, timeout=20,
        )  # fmt: skip
        lines = r.wait_lines(1)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"HELLO FROM S_CLIENT\n"
    assert "server eof first" in lines[0]


@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")
def test_curl_https_through_a_terminating_relay_to_ipcnet_http(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("relayed over tls\n")
    http = _start(
        [sys.executable, "-m", "ipcnet", "serve", "http", str(tmp_path), "tcp://127.0.0.1:0",
         "--quiet"], 1, env=env(),
    )  # fmt: skip
    try:
        with relay_process(*_terminating(http.url("tcp"))) as r:
            done = subprocess.run(
                ["curl", "-sS", "--cacert", certs().ca, f"https://localhost:{r.port}/index.html",
                 "--resolve", f"localhost:{r.port}:127.0.0.1"],
                capture_output=True, text=True, timeout=20,
            )  # fmt: skip
    finally:
        assert http.stop() == 0
    assert done.returncode == 0, done.stderr
    assert done.stdout == "relayed over tls\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tcp://127.0.0.1:0", "tcp://127.0.0.1:9", "--cert", "c.pem"], "no tls:// address"),
        (["tls://127.0.0.1:0", "tcp://127.0.0.1:9", "--insecure"], "are for a tls:// target"),
        (["tcp://127.0.0.1:0", "tls://127.0.0.1:9", "--tls-tickets", "2"], "tls:// listen"),
        (["tls://127.0.0.1:0", "tcp://127.0.0.1:9"], "certificate"),
    ],
)
def test_tls_flags_that_do_not_fit_are_one_clear_line(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ipcnet", "relay", *args],
        capture_output=True, text=True, timeout=20, env=env(),
    )  # fmt: skip
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("both", [False, True])
def test_client_certificate_towards_a_backend_that_requires_one(both: bool) -> None:
    """--cert/--key are the target's when only it is TLS; --target-cert/--target-key when
    the listen side is TLS too. The backend (ipcnet serve echo) requires a client cert."""
    c = certs()
    backend = _start(
        [sys.executable, "-m", "ipcnet", "serve", "echo", "tls://127.0.0.1:0", "--cert",
         c.server.cert, "--key", c.server.key, "--ca", c.ca], 1, env=env(),
    )  # fmt: skip
    target = backend.url("tls")
    try:
        if both:
            args = [*_terminating(target), "--target-ca", c.ca, "--target-cert", c.client.cert,
                    "--target-key", c.client.key, "--once"]  # fmt: skip
        else:
            args = ["tcp://127.0.0.1:0", target, "--ca", c.ca, "--cert", c.client.cert,
                    "--key", c.client.key, "--once"]  # fmt: skip
        with relay_process(*args) as r:
            if both:
                stream = _tls_client(r.port)
                stream.write(b"with a client certificate\n")
                stream.send_eof()
                got = _read_all(stream)
                stream.close()
            else:
                got = _plain_exchange(r.port, b"with a client certificate\n")
            assert r.proc.wait(10) == 0  # --once: one connection, then exit
    finally:
        assert backend.stop() == 0
    assert got == b"with a client certificate\n"
