"""The PROXY protocol parser and encoders against a real HAProxy, in both roles.

HAProxy (`mode tcp`) sits between a client and a backend that reads the header with
ipcnet's parser. With `send-proxy-v2`/`send-proxy` HAProxy writes headers we parse; with
`accept-proxy` it reads a header we encoded and passes the client it names on, so a
header that HAProxy misread would show up as a wrong address at the backend.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipcnet.protocols.proxy import (
    PP2_TYPE_AUTHORITY,
    ProxyHeader,
    ProxyHeaderReader,
    encode_v1,
    encode_v2,
)
from ipcnet.testing import free_port

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")


class Backend:
    """Accepts connections, parses the PROXY header, answers with what it saw."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.headers: list[ProxyHeader] = []
        threading.Thread(target=self._loop, daemon=True).start()

    def header_from(self, source: object) -> ProxyHeader:
        """The header naming ``source``: not simply the last one, since the fixture's
        readiness probes pass through HAProxy too and may arrive after a test's own."""
        found = [h for h in self.headers if str(h.source) == str(source)]
        assert found, (source, self.headers)
        return found[-1]

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            reader = ProxyHeaderReader()
            header = None
            try:
                while header is None:
                    data = conn.recv(4096)
                    if not data:
                        return  # a probe that went away before sending anything
                    header = reader.feed(data)
                self.headers.append(header)
                rest = reader.rest
                while chunk := conn.recv(4096):
                    rest += chunk
                conn.sendall(f"{header.source}\n".encode() + rest)
            except OSError:
                return  # the probe of the fixture: closed while we answered


@pytest.fixture(scope="module")
def haproxy() -> Iterator[tuple[Backend, dict[str, int]]]:
    backend = Backend()
    ports = {name: free_port() for name in ("plain_v2", "v1_in_v1_out", "v2_in_v2_out")}
    config = f"""
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend plain_v2
    bind 127.0.0.1:{ports["plain_v2"]}
    default_backend to_v2
frontend v1_in_v1_out
    bind 127.0.0.1:{ports["v1_in_v1_out"]} accept-proxy
    default_backend to_v1
frontend v2_in_v2_out
    bind 127.0.0.1:{ports["v2_in_v2_out"]} accept-proxy
    default_backend to_v2
backend to_v2
    server ipcnet 127.0.0.1:{backend.port} send-proxy-v2
backend to_v1
    server ipcnet 127.0.0.1:{backend.port} send-proxy
"""
    tmp = Path(tempfile.mkdtemp(prefix="ipch"))
    (tmp / "haproxy.cfg").write_text(config)
    proc = subprocess.Popen(
        ["haproxy", "-db", "-f", str(tmp / "haproxy.cfg")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", ports["plain_v2"]), 1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    pytest.fail(f"haproxy did not start: {out}")
                time.sleep(0.05)
        yield backend, ports
    finally:
        proc.terminate()
        proc.wait(10)
        backend.sock.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _exchange(port: int, data: bytes) -> tuple[bytes, tuple[str, int]]:
    """Send data and EOF, read to the end; b"" when HAProxy closed or reset the connection."""
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.settimeout(10)
        ours = s.getsockname()
        chunks = []
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while chunk := s.recv(4096):
                chunks.append(chunk)
        except OSError as exc:  # reset or not connected: HAProxy closed it
            if isinstance(exc, TimeoutError):
                raise
        return b"".join(chunks), ours


def test_we_parse_haproxy_send_proxy_v2(haproxy: tuple[Backend, dict[str, int]]) -> None:
    backend, ports = haproxy
    answer, ours = _exchange(ports["plain_v2"], b"payload")
    assert answer == f"{ours}\n".encode() + b"payload"
    header = backend.header_from(ours)
    assert (header.version, header.command, header.transport) == (2, "PROXY", "TCP4")


def test_haproxy_reads_our_v1_and_passes_it_on(haproxy: tuple[Backend, dict[str, int]]) -> None:
    backend, ports = haproxy
    line = encode_v1(("192.0.2.7", 4242), ("192.0.2.8", 80))
    answer, _ = _exchange(ports["v1_in_v1_out"], line + b"after the header")
    assert answer == b"('192.0.2.7', 4242)\nafter the header"
    assert backend.header_from(("192.0.2.7", 4242)).version == 1


@pytest.mark.parametrize("checksum", [False, True])
def test_haproxy_reads_our_v2_and_passes_it_on(
    haproxy: tuple[Backend, dict[str, int]], checksum: bool
) -> None:
    backend, ports = haproxy
    block = encode_v2(
        ("2001:db8::7", 4242),
        ("2001:db8::8", 443),
        tlvs={PP2_TYPE_AUTHORITY: b"example.com"},
        checksum=checksum,
    )
    answer, _ = _exchange(ports["v2_in_v2_out"], block + b"tail")
    assert answer == b"('2001:db8::7', 4242)\ntail"
    assert backend.header_from(("2001:db8::7", 4242)).transport == "TCP6"


def test_haproxy_refuses_what_our_parser_refuses(haproxy: tuple[Backend, dict[str, int]]) -> None:
    backend, ports = haproxy
    answer, _ = _exchange(ports["v1_in_v1_out"], b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n")
    assert answer == b""  # closed, nothing passed on:
    assert not [h for h in backend.headers if str(h.source).startswith("('1.2.3.4'")]
