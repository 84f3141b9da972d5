"""TLS under every concurrency model: the same TLSService, served for real, real clients."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

from ipcnet.addresses import parse
from ipcnet.channel import Channel
from ipcnet.drivers import MODEL_HELP
from ipcnet.transports import open_stream
from ipcnet.transports.tls import stream
from serverkit import _start
from tlskit import certs, client_options

SCRIPT = textwrap.dedent(
    """
    import sys
    from ipcnet.drivers import ServeConfig, serve
    from ipcnet.drivers.tls import TLSService
    from ipcnet.protocols.simple import Echo
    from ipcnet.transports.tls import ServerContext, TLSOptions

    model, cert, key = sys.argv[1:4]
    service = TLSService(Echo(), ServerContext(TLSOptions(cert=cert, key=key)))
    def ready(core):
        for a in core.bound:
            print(f"echo listening on {a}", file=sys.stderr, flush=True)
    serve(service, sys.argv[4:], ServeConfig(model=model, workers=2), ready)
    """
)


@pytest.fixture(params=list(MODEL_HELP), scope="module")
def server(request):
    pair = certs().server
    srv = _start(
        [sys.executable, "-c", SCRIPT, request.param, pair.cert, pair.key, "tcp://127.0.0.1:0"],
        1,
    )
    yield srv
    assert srv.stop() == 0, "\n".join(srv.log)


def tls_echo(url: str, payload: bytes) -> bytes:
    ch = Channel(stream.client(open_stream(parse(url), 5), client_options(), "localhost"))
    with ch:
        writer = threading.Thread(target=lambda: (ch.write(payload), ch.send_eof()))
        writer.start()
        got = ch.read()
        writer.join(10)
        return got


@pytest.mark.xdist_group("tls-models")
def test_echo_both_ways_with_half_close(server):
    payload = os.urandom(1 << 20)
    assert tls_echo(server.addresses[0], payload) == payload


@pytest.mark.xdist_group("tls-models")
def test_plain_bytes_get_a_clean_close_and_the_server_keeps_serving(server):
    address = parse(server.addresses[0])
    with socket.create_connection((address.host, address.port), timeout=10) as plain:
        plain.sendall(b"hello, no tls here\n")
        assert plain.recv(100) == b""  # a FIN, not an RST
    assert tls_echo(server.addresses[0], b"still serving") == b"still serving"


@pytest.mark.xdist_group("tls-models")
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_s_client(server):
    address = parse(server.addresses[0])
    proc = subprocess.Popen(
        ["openssl", "s_client", "-quiet", "-no_ign_eof", "-verify_return_error",
         "-CAfile", certs().ca, "-verify_hostname", "localhost",
         "-connect", f"{address.host}:{address.port}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b"from openssl\n")
        proc.stdin.flush()
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(20)
        assert line == [b"from openssl\n"], proc.stderr.read() if proc.stderr else ""
        proc.stdin.close()  # s_client sends close_notify and leaves
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
