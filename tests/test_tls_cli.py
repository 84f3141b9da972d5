"""``ipcnet connect tls://`` and ``connect --listen tls://`` against real TLS peers, and every
client-side failure as one line naming its cause."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import uuid

import pytest

from ipcnet.addresses import parse
from ipcnet.channel import connect, listen
from ipcnet.errors import TLSConfigError, Unsupported
from ipcnet.testing.pairs import free_port
from tlskit import certs, server_options, tls_server

IPCNET = [sys.executable, "-m", "ipcnet", "connect"]
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
needs_socat = pytest.mark.skipif(shutil.which("socat") is None, reason="no socat")


def ipcnet_connect(*args: str, stdin: bytes = b"", timeout: float = 30):
    return subprocess.run([*IPCNET, *args], input=stdin, capture_output=True, timeout=timeout)


@pytest.mark.parametrize(
    "url", ["tls://localhost:443", "tls://[::1]:8443", "tls+unix:///run/x.sock", "tls+unix://@x"]
)
def test_addresses_round_trip(url):
    assert str(parse(url)) == url
    assert parse(str(parse(url))) == parse(url)
    assert parse(url).kind == "stream"


def test_library_keywords_are_the_option_names(short_tmp):
    path = short_tmp / "s"
    pair = certs().server
    with listen(f"tls+unix://{path}", cert=pair.cert, key=pair.key) as listener:
        assert str(listener.address) == f"tls+unix://{path}"
        got: list[bytes] = []
        t = threading.Thread(target=lambda: got.append(listener.accept().read(2)))
        t.start()
        with connect(listener.address, ca=certs().ca, alpn="x,y", close_timeout=0.2) as ch:
            ch.write(b"ok")
            t.join(10)
    assert got == [b"ok"]
    with pytest.raises(Unsupported, match="tls options given for tcp://127.0.0.1:9"):
        connect("tcp://127.0.0.1:9", ca=certs().ca)
    with pytest.raises(TLSConfigError, match="unknown tls option 'cafile'"):
        connect("tls://127.0.0.1:9", cafile="x")
    with pytest.raises(TLSConfigError, match="a tls server needs a certificate"):
        listen("tls://127.0.0.1:0")


def test_connect_half_closes_with_close_notify_and_waits_for_the_reply():
    """stdin's EOF sends close_notify; the server answers after it (TLS 1.3 half-close)."""

    def late_reply(ch):
        data = ch.read()  # until our close_notify
        ch.write(b"got " + data)
        ch.send_eof()

    with tls_server(handler=late_reply) as url:
        done = ipcnet_connect("--ca", certs().ca, "--sni", "localhost",
                              url.replace("tcp4://", "tls://"), stdin=b"question")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"got question"


@needs_openssl
def test_connect_to_openssl_s_server():
    port = free_port()
    server = subprocess.Popen(
        ["openssl", "s_server", "-rev", "-naccept", "1", "-accept", f"127.0.0.1:{port}",
         "-cert", certs().server.cert, "-key", certs().server.key],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        while b"ACCEPT" not in server.stdout.readline():
            pass
        done = ipcnet_connect("--ca", certs().ca, f"tls://localhost:{port}", stdin=b"hello\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout == b"olleh\n"  # s_server -rev answered after our close_notify
    finally:
        server.kill()
        server.wait()


def finish(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """Wait for a process whose stdin we closed already; its stdout and stderr."""
    proc.wait(30)
    assert proc.stdout is not None and proc.stderr is not None
    return proc.stdout.read(), proc.stderr.read()


@needs_socat
def test_socat_openssl_to_connect_listen():
    port = free_port()
    pair = certs().server
    proc = subprocess.Popen(
        [*IPCNET, "--listen", "--cert", pair.cert, "--key", pair.key, f"tls://127.0.0.1:{port}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(b"from ipcnet\n")  # read once the peer is accepted
    proc.stdin.close()
    try:
        socat = None
        for _ in range(100):
            socat = subprocess.run(
                ["socat", "-", f"OPENSSL:localhost:{port},cafile={certs().ca}"],
                input=b"from socat\n", capture_output=True, timeout=30,
            )  # fmt: skip
            if b"Connection refused" not in socat.stderr:
                break
            threading.Event().wait(0.1)
        assert socat is not None
        out, err = finish(proc)
        assert socat.returncode == 0, socat.stderr
        assert socat.stdout == b"from ipcnet\n"
        assert out == b"from socat\n" and proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@needs_openssl
def test_openssl_s_client_to_connect_listen():
    port = free_port()
    pair = certs().server
    proc = subprocess.Popen(
        [*IPCNET, "--listen", "--cert", pair.cert, "--key", pair.key, f"tls://127.0.0.1:{port}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(b"to s_client\n")
    proc.stdin.close()
    try:
        client = None
        for _ in range(100):
            client = subprocess.run(
                ["openssl", "s_client", "-quiet", "-verify_return_error", "-CAfile", certs().ca,
                 "-verify_hostname", "localhost", "-connect", f"127.0.0.1:{port}"],
                input=b"", capture_output=True, timeout=30,
            )  # fmt: skip
            if b"Connection refused" not in client.stderr:
                break
            threading.Event().wait(0.1)
        _, err = finish(proc)
        assert client is not None and client.stdout == b"to s_client\n", client.stderr
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_unix_listen_and_connect_both_ipcnet():
    name = f"tls+unix://@ipcnet-{uuid.uuid4().hex}"
    pair = certs().server
    proc = subprocess.Popen(
        [*IPCNET, "--listen", "--cert", pair.cert, "--key", pair.key, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(b"pong")
    proc.stdin.close()
    try:
        for _ in range(100):
            done = ipcnet_connect("--ca", certs().ca, "--sni", "localhost", name, stdin=b"ping")
            if b"refused" not in done.stderr and b"no socket" not in done.stderr:
                break
            threading.Event().wait(0.1)
        out, err = finish(proc)
        assert done.returncode == 0 and done.stdout == b"pong", done.stderr
        assert out == b"ping" and proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- every client-side failure: one line naming its cause, exit status 1 -------------------


def _fails(url: str, *flags: str) -> str:
    done = ipcnet_connect(*flags, url)
    assert done.returncode == 1, done
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def tls_url(raw: str, host: str = "localhost") -> str:
    return f"tls://{host}:{parse(raw).port}"


def test_untrusted_certificate_line():
    with tls_server() as url:
        line = _fails(tls_url(url))  # the system store does not know the test CA
    assert line.startswith("ipcnet connect: untrusted certificate: the certificate of tls://")
    assert line.endswith("; pass --ca FILE to trust its ca)")


def test_expired_line():
    with tls_server(server_options(certs().expired)) as url:
        line = _fails(tls_url(url), "--ca", certs().ca)
    assert (
        line
        == f"ipcnet connect: expired certificate: the certificate of {tls_url(url)} has expired"
        " (valid until 2021-01-01 00:00:00 UTC)"
    )


def test_wrong_host_line_lists_the_names():
    with tls_server(server_options(certs().wrong_host)) as url:
        line = _fails(tls_url(url), "--ca", certs().ca)
    assert line == (
        f"ipcnet connect: wrong host name: the certificate of {tls_url(url)} is not valid for "
        "'localhost' (it names: example.test, www.example.test)"
    )


def test_no_client_certificate_line():
    with tls_server(server_options(ca=certs().ca)) as url:
        line = _fails(tls_url(url), "--ca", certs().ca)
    assert line == (
        f"ipcnet connect: no client certificate offered: {tls_url(url)} requires one "
        "(pass --cert and --key)"
    )
    pair = certs().client
    with tls_server(server_options(ca=certs().ca)) as url:
        done = ipcnet_connect("--ca", certs().ca, "--cert", pair.cert, "--key", pair.key,
                              tls_url(url), stdin=b"mutual")  # fmt: skip
    assert done.returncode == 0 and done.stdout == b"mutual", done.stderr


def test_protocol_too_old_line():
    with tls_server(server_options(tls_min="1.3")) as url:
        import ssl

        ctx = ssl.create_default_context(cafile=certs().ca)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(Exception) as caught:
            connect(tls_url(url), tls=ctx)
    assert str(caught.value).startswith("protocol too old: ")


def test_handshake_timeout_line():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"tls://127.0.0.1:{silent.getsockname()[1]}"
        line = _fails(url, "--tls-handshake-timeout", "0.5")
    assert (
        line
        == f"ipcnet connect: tls handshake timeout: {url} did not finish the handshake in 0.5 s"
        " (it answered nothing: is it a tls server?)"
    )


def test_plain_server_line():
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        url = f"tls://127.0.0.1:{plain.getsockname()[1]}"

        def answer() -> None:
            conn, _ = plain.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                conn.recv(4096)

        threading.Thread(target=answer, daemon=True).start()
        line = _fails(url)
    assert line == f"ipcnet connect: not tls: {url} did not answer in tls (is it a tls server?)"


def test_insecure_warns_and_connects():
    with tls_server(server_options(certs().other_server)) as url:
        done = ipcnet_connect("--insecure", tls_url(url), stdin=b"anyway")
    assert done.returncode == 0 and done.stdout == b"anyway"
    assert b"--insecure: the server's certificate is not checked" in done.stderr
