"""The PROXY protocol, audit 9: what the earlier audits left, beside nginx and curl.

- §2.1 "For UNKNOWN ... the receiver must ignore anything presented before the CRLF":
  an UNKNOWN line whose rest is not ASCII was refused ("not ASCII"); nginx accepts it.
- §2.2 UNSPEC (the family or the protocol nibble 0) under the PROXY command: "the
  receiver should ignore address information". ipcnet read the address bytes as TLVs:
  it refused what nginx accepts ("TLV 0x33 runs past ...") and, worse, reported address
  bytes as TLVs (an AUTHORITY the sender never sent). The block is now ignored as a
  LOCAL's is: no client, sound TLVs of a 0x00 block kept, nothing else.
- A refused header is logged by `ipcnet serve` by default, as nginx logs "broken header"
  at its default error level and HAProxy logs its PROXY errors; it was logged only
  under -v (debug), so a balancer sending no header (or the wrong one) left no trace.
- The encoders: a port outside 0..65535 is a ValueError (encode_v1 wrote it, and HAProxy
  reads 70000 as 4464); a unix path read from a header is written back as its bytes.
- curl `--haproxy-protocol` (v1) into `ipcnet serve http --accept-proxy` on tcp, tcp6,
  tls and unix listeners: the access log names the client curl's header named.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipcnet.protocols.proxy import (
    PP2_TYPE_AUTHORITY,
    SIGNATURE,
    ProxyHeaderReader,
    encode_v1,
    encode_v2,
)
from ipcnet.testing import free_port
from serverkit import _start, serving
from test_proxy_conformance import NGINX_STREAM, _exchange, needs_nginx
from test_relay_audit8 import _nginx_reader
from tlskit import certs

A4 = bytes((192, 0, 2, 1, 198, 51, 100, 2)) + struct.pack("!HH", 1234, 80)


def _v2(ver_cmd: int, fam: int, body: bytes) -> bytes:
    return SIGNATURE + bytes((ver_cmd, fam)) + len(body).to_bytes(2, "big") + body


def _tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


# headers nginx's `listen ... proxy_protocol` accepts naming no client (it answers with
# the connection's own address), each with the TLVs ipcnet must report for it
NO_CLIENT = {
    "v1 UNKNOWN, a rest not ASCII": (b"PROXY UNKNOWN \xff\xfe caf\xc3\xa9\r\n", {}),
    "v1 UNKNOWN, a NUL in the rest": (b"PROXY UNKNOWN \x00 1 2\r\n", {}),
    "v2 PROXY, INET/UNSPEC with addresses": (_v2(0x21, 0x10, A4), {}),
    "v2 PROXY, INET6/UNSPEC with addresses": (_v2(0x21, 0x20, A4 * 3), {}),
    "v2 PROXY, UNIX/UNSPEC with addresses": (_v2(0x21, 0x30, bytes(216)), {}),
    "v2 PROXY, UNSPEC/STREAM with addresses": (_v2(0x21, 0x01, A4), {}),
    "v2 PROXY, UNSPEC with addresses": (_v2(0x21, 0x00, A4), {}),
    # address bytes that look like an AUTHORITY TLV are address bytes, not a TLV
    "v2 PROXY, INET/UNSPEC, TLV-like addresses": (_v2(0x21, 0x10, _tlv(2, b"evil!")), {}),
    "v2 PROXY, UNSPEC, sound TLVs": (
        _v2(0x21, 0x00, _tlv(2, b"a.example") + _tlv(4, b"")),
        {PP2_TYPE_AUTHORITY: b"a.example"},
    ),
}


def test_unknown_lines_and_unspec_blocks_name_no_client_and_no_invented_tlvs() -> None:
    for name, (header, tlvs) in NO_CLIENT.items():
        for split in (len(header), 1):
            reader = ProxyHeaderReader()
            parsed = None
            for at in range(0, len(header), split):
                parsed = reader.feed(header[at : at + split])
            assert parsed is not None and parsed.local and parsed.source is None, name
            assert parsed.destination is None and parsed.size == len(header), name
            assert (dict(parsed.tlvs), reader.rest) == (tlvs, b""), name


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """nginx stream `listen ... proxy_protocol` answering the client it read."""
    if shutil.which("nginx") is None or not NGINX_STREAM.exists():
        pytest.skip("nginx stream missing")
    with _nginx_reader(
        tmp_path_factory.mktemp("nginx"), "$proxy_protocol_addr|$remote_addr"
    ) as port:
        yield port


@needs_nginx
def test_nginx_accepts_the_same_headers_naming_no_client(nginx: int) -> None:
    for name, (header, _) in NO_CLIENT.items():
        if len(header) <= 107:  # nginx 1.22: a longer one is "header is too large"
            assert _exchange(nginx, header) == b"|127.0.0.1\n", name
    port = free_port()
    with serving("echo", f"tcp://127.0.0.1:{port}", extra=("--accept-proxy",)):
        for name, (header, _) in NO_CLIENT.items():
            assert _exchange(port, header + b"after") == b"after", name


def test_serve_logs_a_refused_header_without_verbose() -> None:
    """nginx: `[error] ... broken header: "GET / HTTP/1.0" while reading PROXY protocol`,
    at its default log level; `ipcnet serve` said nothing unless -v."""
    port = free_port()
    with serving("echo", f"tcp://127.0.0.1:{port}", extra=("--accept-proxy",)) as server:
        assert _exchange(port, b"GET / HTTP/1.0\r\n\r\n") == b""
        assert _exchange(port, b"PROXY TCP4 192.0.2.1 192.0.2.2 1 080\r\n") == b""
        assert _exchange(port, b"PROXY TCP4 192.0.2.1") == b""
        assert _exchange(port, b"PROXY UNKNOWN\r\nserved") == b"served"
    log = "\n".join(server.log)
    assert "INFO refusing tcp://127.0.0.1:" in log, log
    assert "expected a proxy protocol v1 or v2 header, got b'GET / HTTP/1.0" in log, log
    assert "bad port '080'" in log, log
    assert "connection ended after 20 bytes of a proxy protocol header" in log, log
    assert log.count("refusing") == 3, log


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl missing")
def test_curl_haproxy_protocol_into_serve_http_names_the_client_in_the_access_log(
    short_tmp: Path, tmp_path: Path
) -> None:
    root = tmp_path
    (root / "hi.txt").write_text("hi\n")
    tls = certs()
    port, secure = free_port(), free_port()
    sock = short_tmp / "h.sock"
    addresses = (f"tcp://127.0.0.1:{port}", f"tcp://[::1]:{port}",
                 f"tls://127.0.0.1:{secure}", f"unix://{sock}")  # fmt: skip
    extra = ("--accept-proxy", "--cert", tls.server.cert, "--key", tls.server.key)
    curl = ["curl", "-sS", "--max-time", "10", "--haproxy-protocol"]
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(root), *addresses, *extra]
    server = _start(argv, len(addresses))  # serving() would count ROOT as an address
    try:
        for args in (
            [f"http://127.0.0.1:{port}/hi.txt"],
            ["-g", f"http://[::1]:{port}/hi.txt"],
            ["--cacert", tls.ca, f"https://localhost:{secure}/hi.txt",
             "--resolve", f"localhost:{secure}:127.0.0.1"],
            ["--unix-socket", str(sock), "http://localhost/hi.txt"],
        ):  # fmt: skip
            done = subprocess.run([*curl, *args], capture_output=True, timeout=20)
            assert done.stdout == b"hi\n", (args, done.stderr)
    finally:
        assert server.stop() == 0, server.log
    hits = [line.split(" ", 1)[0] for line in server.log if '"GET /hi.txt' in line]
    # curl's v1 line names its own end: 127.0.0.1, ::1; "PROXY UNKNOWN" on a unix socket
    assert hits == ["127.0.0.1", "::1", "127.0.0.1", "unix:"], server.log


def test_encoders_refuse_out_of_range_ports_and_write_back_any_unix_path() -> None:
    """§2.1/§2.2: ports are 0..65535. encode_v1 wrote "PROXY TCP4 ... 70000 1" (which
    HAProxy reads as port 4464) and encode_v2 raised struct.error; now both a ValueError.
    A unix path that is not UTF-8 is read with surrogateescape: the encoder writes back
    the same bytes (it raised UnicodeEncodeError)."""
    for source, destination in [(("192.0.2.1", 70000), ("192.0.2.2", 1)),
                                (("192.0.2.1", 1), ("192.0.2.2", -1)),
                                (("::1", 65536), ("::1", 0))]:  # fmt: skip
        for encode in (encode_v1, encode_v2):
            with pytest.raises(ValueError, match="port"):
                encode(source, destination)
    raw = b"/tmp/\xff.sock".ljust(108, b"\0") + b"\0abstract \xfe".ljust(108, b"\0")
    block = _v2(0x21, 0x31, raw)
    header = ProxyHeaderReader().feed(block)
    assert header is not None and header.source == "/tmp/\udcff.sock"
    assert encode_v2(header.source, header.destination) == block
