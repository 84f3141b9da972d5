"""The PROXY protocol against HAProxy's doc/proxy-protocol.txt and real peers (audit).

Sans-IO: a header HAProxy 2.6 wrote with every v2 option on (CRC32C, ALPN, AUTHORITY,
UNIQUE_ID, SSL with its sub-TLVs), the v2 head refused at the byte that is wrong, LOCAL
whose family is ignored, the SSL TLV's inner structure. Live: a battery of bad headers,
each followed by a good one, against `ipcnet serve --accept-proxy` under two models and
the relay (the server keeps serving, and nothing after a header is lost); HAProxy's
send-proxy-v2-ssl and health checks (LOCAL) into `ipcnet serve`; the relay's v2 header
for a unix client read by HAProxy `accept-proxy` and nginx `listen ... proxy_protocol`,
and nginx `proxy_protocol on` (v1) into `ipcnet serve`.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import textwrap
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

import ipcnet.relay
from ipcnet.protocols.proxy import (
    PP2_CLIENT_CERT_CONN,
    PP2_CLIENT_CERT_SESS,
    PP2_CLIENT_SSL,
    PP2_SUBTYPE_SSL_CIPHER,
    PP2_SUBTYPE_SSL_CN,
    PP2_SUBTYPE_SSL_VERSION,
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_CRC32C,
    PP2_TYPE_SSL,
    PP2_TYPE_UNIQUE_ID,
    SIGNATURE,
    ProxyHeaderReader,
    ProxyProtocolError,
    encode_v1,
    encode_v2,
)
from ipcnet.testing import free_port
from relay_helpers import relay_process
from serverkit import serving
from tlskit import certs

needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy missing")
NGINX_STREAM = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
needs_nginx = pytest.mark.skipif(
    shutil.which("nginx") is None or not NGINX_STREAM.exists(), reason="nginx stream missing"
)

# HAProxy 2.6, `send-proxy-v2-ssl-cn proxy-v2-options crc32c,unique-id,authority,
# ssl-cipher,cert-sig,cert-key`, a TLS 1.3 client with ALPN h2, SNI example.com and a
# client certificate for CN alice: 127.0.0.1:55768 -> 127.0.0.1:18443
HAPROXY_V2_SSL = bytes.fromhex(
    "0d0a0d0a000d0a515549540a211100a17f0000017f000001d9d8480b0300040b5b57a2010002683202000b"
    "6578616d706c652e636f6d05002937463030303030313a443944385f37463030303030313a343830425f"
    "36423046313136445f3030303320004c0700000000210007544c5376312e33220005616c696365250005"
    "454332353624001165636473612d776974682d534841323536230016544c535f4145535f3235365f4743"
    "4d5f534841333834"
)


def _v2(ver_cmd: int, fam: int, body: bytes) -> bytes:
    return SIGNATURE + bytes((ver_cmd, fam)) + len(body).to_bytes(2, "big") + body


def _ssl(body: bytes) -> bytes:
    return b"\x20" + len(body).to_bytes(2, "big") + body


def test_haproxy_send_proxy_v2_ssl_header_every_tlv() -> None:
    reader = ProxyHeaderReader()
    header = reader.feed(HAPROXY_V2_SSL + b"hello")
    assert header is not None and reader.rest == b"hello"
    assert (header.command, header.source, header.destination, header.size) == (
        "PROXY", ("127.0.0.1", 55768), ("127.0.0.1", 18443), 177)  # fmt: skip
    assert header.tlvs[PP2_TYPE_ALPN] == b"h2"
    assert header.tlvs[PP2_TYPE_AUTHORITY] == b"example.com"
    assert header.tlvs[PP2_TYPE_UNIQUE_ID] == b"7F000001:D9D8_7F000001:480B_6B0F116D_0003"
    assert len(header.tlvs[PP2_TYPE_CRC32C]) == 4  # and it checked out
    info = header.ssl
    assert info is not None and info.verify == 0
    assert info.client == PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
    assert info.fields[PP2_SUBTYPE_SSL_VERSION] == b"TLSv1.3"
    assert info.fields[PP2_SUBTYPE_SSL_CN] == b"alice"
    assert info.fields[PP2_SUBTYPE_SSL_CIPHER] == b"TLS_AES_256_GCM_SHA384"
    forged = HAPROXY_V2_SSL.replace(b"alice", b"mallo")  # the CRC covers the TLVs too
    with pytest.raises(ProxyProtocolError, match="fails its CRC32C check"):
        ProxyHeaderReader().feed(forged)
    plain = ProxyHeaderReader().feed(encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2)))
    assert plain is not None and plain.ssl is None


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (SIGNATURE + b"\x11", "unsupported proxy protocol version 1"),
        (SIGNATURE + b"\x31", "unsupported proxy protocol version 3"),
        (SIGNATURE + b"\x22", "unknown proxy protocol v2 command 0x2"),
        (SIGNATURE + b"\x2f", "unknown proxy protocol v2 command 0xf"),
        (SIGNATURE + b"\x21\x41", "family/protocol byte 0x41"),
        (SIGNATURE + b"\x21\x13", "family/protocol byte 0x13"),
    ],
)
def test_v2_head_is_refused_at_the_byte_that_is_wrong(head: bytes, message: str) -> None:
    """§2.2 "receivers must drop connections presenting unexpected values": at once, not
    after waiting for a body the length field announces."""
    reader = ProxyHeaderReader()
    assert reader.feed(head[:-1]) is None
    with pytest.raises(ProxyProtocolError, match=message):
        reader.feed(head[-1:])


def test_local_ignores_its_family_and_keeps_the_tlvs() -> None:
    """§2.2: LOCAL "must accept this connection as valid ... the family which is ignored"."""
    for fam in (0x11, 0x21, 0x31):
        header = ProxyHeaderReader().feed(_v2(0x20, fam, b""))  # no address block at all
        assert header is not None and header.command == "LOCAL" and header.local
    crc = encode_v2(None, None, checksum=True)  # HAProxy's health check with crc32c
    assert ProxyHeaderReader().feed(crc).tlvs.keys() == {PP2_TYPE_CRC32C}  # type: ignore[union-attr]
    # with addresses and a TLV after them (HAProxy 2.0.14 checks, haproxy #511)
    block = _v2(0x20, 0x11, bytes(range(1, 13)) + b"\x02\x00\x03a.b")
    header = ProxyHeaderReader().feed(block)
    assert header is not None and header.local and header.tlvs == {PP2_TYPE_AUTHORITY: b"a.b"}


@pytest.mark.parametrize(
    ("tlv", "message"),
    [
        (_ssl(b"\x01\x00\x00"), "SSL TLV of the proxy protocol is 3 bytes, under 5"),
        (_ssl(b"\x01" + bytes(4) + b"\x21\x00\x09TLSv1"), "TLV 0x21 runs past the SSL TLV"),
        (_ssl(b"\x01" + bytes(4) + b"\x21\x00"), "truncated TLV in the SSL TLV"),
    ],
)
def test_ssl_tlv_must_hold_client_verify_and_whole_sub_tlvs(tlv: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        ProxyHeaderReader().feed(_v2(0x21, 0x11, bytes(12) + tlv))
    good = _ssl(b"\x01" + bytes(4) + b"\x21\x00\x07TLSv1.2")
    header = ProxyHeaderReader().feed(_v2(0x21, 0x11, bytes(12) + good))
    assert header is not None and header.ssl is not None
    assert header.ssl.fields == {PP2_SUBTYPE_SSL_VERSION: b"TLSv1.2"}
    assert header.tlvs[PP2_TYPE_SSL] == good[3:]


@pytest.mark.parametrize("line", [b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r", b"PROXY UNKNOWN\n"])
def test_v1_bare_cr_or_lf_is_refused_as_soon_as_it_is_seen(line: bytes) -> None:
    """§2.1: "must not tolerate a single CR or LF character to end the line"; a peer that
    sent one and waits is refused now, not when 107 bytes or the deadline have come."""
    reader = ProxyHeaderReader()
    assert reader.feed(line[:-1]) is None
    if line.endswith(b"\r"):
        assert reader.feed(b"\r") is None  # its LF may be in the next read
        line = b"X"
    with pytest.raises(ProxyProtocolError, match="bare CR or LF"):
        reader.feed(line[-1:])


def test_v1_addresses_as_the_spec_writes_them() -> None:
    """§2.1: upper or lower case hex, IPv4-mapped in TCP6, UNKNOWN with or without the
    addresses; anything after the CRLF is the stream's."""
    cases = {
        b"PROXY TCP6 2001:DB8:0:0:0:0:0:A ::FFFF:192.0.2.1 1 65535\r\n": (
            ("2001:db8::a", 1), ("::ffff:192.0.2.1", 65535)),
        b"PROXY TCP4 0.0.0.0 255.255.255.255 0 0\r\n": (("0.0.0.0", 0), ("255.255.255.255", 0)),
        b"PROXY UNKNOWN\r\n": (None, None),
        b"PROXY UNKNOWN ::1 ::1 1 2\r\n": (None, None),
    }  # fmt: skip
    for line, (source, destination) in cases.items():
        reader = ProxyHeaderReader()
        header = reader.feed(line + b"PROXY TCP4 not a header\r\n")
        assert header is not None and (header.source, header.destination) == (source, destination)
        assert reader.rest == b"PROXY TCP4 not a header\r\n"


def test_a_link_local_clients_zone_is_left_out_of_the_header() -> None:
    """getpeername() names a link-local client ``fe80::1%eth0``; §2.1 has no zone in its
    address syntax (HAProxy's inet_pton refuses one), and v2 has 16 bytes for it."""
    line = encode_v1(("fe80::1%eth0", 50000), ("fe80::2%eth0", 443))
    assert line == b"PROXY TCP6 fe80::1 fe80::2 50000 443\r\n"
    assert ProxyHeaderReader().feed(line) is not None
    header = ProxyHeaderReader().feed(encode_v2(("fe80::1%eth0", 1), ("fe80::2%2", 2)))
    assert header is not None and header.source == ("fe80::1", 1)


def test_an_unnamed_unix_endpoint_is_empty_not_abstract() -> None:
    header = ProxyHeaderReader().feed(encode_v2("", "/run/app.sock"))
    assert header is not None and (header.source, header.destination) == ("", "/run/app.sock")
    header = ProxyHeaderReader().feed(encode_v2("@x", "@"))
    assert header is not None and header.source == "@x"


# --- live: the server keeps serving after every bad header --------------------------

BAD = [
    b"GET / HTTP/1.0\r\n\r\n",  # no header: never guessed at
    b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n",  # LF without CR
    b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n",  # 108 bytes
    b"PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n",  # two spaces
    b"PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n",
    b"PROXY TCP4 192.0.2.1 192.0.2.2 080 2\r\n",
    b"PROXY TCP4 192.0.2.01 192.0.2.2 1 2\r\n",
    b"PROXY TCP4 ::1 192.0.2.2 1 2\r\n",
    _v2(0x11, 0x11, bytes(12)),
    _v2(0x22, 0x11, bytes(12)),
    _v2(0x21, 0x41, bytes(12)),
    _v2(0x21, 0x11, bytes(11)),
    _v2(0x21, 0x11, bytes(12) + b"\x01\x00\x09h2"),
    _v2(0x21, 0x11, bytes(12) + b"\x03\x00\x04abcd"),  # wrong CRC32C
    _v2(0x21, 0x11, bytes(12) + b"\x05\x00\x81" + bytes(129)),  # UNIQUE_ID over 128
    _v2(0x21, 0x11, bytes(12) + _ssl(b"\x01" + bytes(4) + b"\x22\x00\x09ab")),
    SIGNATURE + b"\x21\x11\xff\xff",  # 65551 bytes announced: refused before the body
    b"PROXY TCP4 192.0.2.1",  # EOF inside the header
]
GOOD = [
    encode_v1(("192.0.2.1", 1), ("192.0.2.2", 2)),
    b"PROXY TCP6 2001:DB8::1 2001:db8::2 1 2\r\n",
    b"PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n",
    _v2(0x20, 0x11, b""),  # LOCAL, no addresses
    HAPROXY_V2_SSL,
    encode_v2(("2001:db8::1", 1), ("2001:db8::2", 2), tlvs={0xE0: b"custom"}, checksum=True),
]


def ask(
    family: socket.AddressFamily, where: object, data: bytes, *, bytewise: bool = False
) -> tuple[bytes, object]:
    """Send ``data`` (one write, or one byte per write) and EOF; (all the answer, our own
    address). b"" when the peer closed or reset the connection: it refused."""
    with socket.socket(family) as s:
        s.settimeout(20)
        s.connect(where)
        if family != socket.AF_UNIX:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ours = s.getsockname()
        out = b""
        try:
            for i in range(0, len(data), 1 if bytewise else max(len(data), 1)):
                s.sendall(data[i : i + 1] if bytewise else data)
            s.shutdown(socket.SHUT_WR)
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            raise
        except OSError:  # reset, broken pipe, not connected: the server refused it
            return b"", ours
        return out, ours


def _exchange(port: int | Path, data: bytes, *, bytewise: bool = False) -> bytes:
    """``ask`` a tcp port on 127.0.0.1 or a unix socket path; only the answer."""
    if isinstance(port, Path):
        return ask(socket.AF_UNIX, str(port), data, bytewise=bytewise)[0]
    return ask(socket.AF_INET, ("127.0.0.1", port), data, bytewise=bytewise)[0]


@pytest.fixture(params=["serve-epoll", "serve-thread", "relay"])
def accepting(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """(kind, port) of an echo server that requires a PROXY header, or of `ipcnet relay`
    requiring one in front of it (it sends its own v2 header on)."""
    kind: str = request.param
    port = free_port()
    with ExitStack() as stack:
        stack.enter_context(serving("echo", f"tcp://127.0.0.1:{port}", model=kind[6:] or "epoll",
                                    extra=("--accept-proxy",)))  # fmt: skip
        if kind == "relay":  # the command, under its default model (the engine's epoll)
            target = f"tcp://127.0.0.1:{port}"
            args = ("--accept-proxy", "--send-proxy", "v2", "-q")
            port = stack.enter_context(relay_process("tcp://127.0.0.1:0", target, *args)).port
        yield kind, port


def test_every_bad_header_is_refused_and_the_next_client_served(
    accepting: tuple[str, int],
) -> None:
    kind, port = accepting
    with socket.create_connection(("127.0.0.1", port), 10) as silent:
        for bad in BAD:
            assert _exchange(port, bad + b"payload") == b"", bad
            good = GOOD[len(bad) % len(GOOD)]
            assert _exchange(port, good + b"next " + bad) == b"next " + bad
        for good in GOOD:  # split into one-byte reads; what follows the header is whole
            assert _exchange(port, good + b"x" * 70_000) == b"x" * 70_000
            assert _exchange(port, good + b"after", bytewise=True) == b"after"
        if kind == "serve-epoll":  # §2: a peer that sends no header is closed in the end
            silent.settimeout(30)  # (HEADER_TIMEOUT, 5 s); the others were served meanwhile
            try:
                assert silent.recv(100) == b""
            except ConnectionResetError:
                pass


# --- live: HAProxy and nginx ------------------------------------------------------


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on port {port}") from None
            time.sleep(0.02)


@contextmanager
def _peer(argv: list[str], port: int) -> Iterator[int]:
    """A peer server (nginx, HAProxy, http.server) for a test: ready on ``port``, then
    stopped; its output dropped."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _stats(path: Path) -> dict[str, int]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    result: dict[str, int] = json.loads(out)
    return result


@needs_haproxy
def test_haproxy_ssl_tlvs_and_health_checks_into_serve_and_the_relays_headers_into_haproxy(
    short_tmp: Path,
) -> None:
    """HAProxy's richest v2 header (TLS frontend) and its LOCAL health checks into
    `ipcnet serve --accept-proxy`; `ipcnet relay unix://... --send-proxy v2` in front of
    HAProxy `accept-proxy` (HAProxy refuses an AF_UNIX block, so the relay says LOCAL);
    and the relay's header to a tls:// target, in the clear before the handshake, read by
    HAProxy `bind ... ssl accept-proxy`."""
    tls = certs()
    pem = short_tmp / "haproxy.pem"
    pem.write_text(Path(tls.server.cert).read_text() + Path(tls.server.key).read_text())
    echo, front, accept, secure = free_port(), free_port(), free_port(), free_port()
    config = short_tmp / "haproxy.cfg"
    config.write_text(textwrap.dedent(f"""
        global
            maxconn 100
        defaults
            mode tcp
            timeout connect 5s
            timeout client 10s
            timeout server 10s
        frontend tls
            bind 127.0.0.1:{front} ssl crt {pem} ca-file {tls.ca} verify optional alpn h2
            unique-id-format %ci:%cp_%fi:%fp_%Ts_%rt
            default_backend ssl_out
        backend ssl_out
            server e 127.0.0.1:{echo} send-proxy-v2-ssl-cn check check-send-proxy inter 50 proxy-v2-options crc32c,unique-id,authority,ssl-cipher,cert-sig,cert-key
        frontend accepting
            bind 127.0.0.1:{accept} accept-proxy
            bind 127.0.0.1:{secure} ssl crt {pem} accept-proxy
            default_backend v2_out
        backend v2_out
            server e 127.0.0.1:{echo} send-proxy-v2
    """))  # fmt: skip
    stats = short_tmp / "stats.sock"
    extra = ("--accept-proxy", "--stats", f"unix://{stats}")
    with serving("echo", f"tcp://127.0.0.1:{echo}", extra=extra):
        proc = subprocess.Popen(["haproxy", "-db", "-f", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            _wait_port(front, proc)
            context = ssl.create_default_context(cafile=tls.ca)
            context.load_cert_chain(tls.client.cert, tls.client.key)
            context.set_alpn_protocols(["h2"])
            with socket.create_connection(("127.0.0.1", front), 10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as c:
                    c.sendall(b"through tls\n")
                    got = b""
                    while len(got) < 12 and (chunk := c.recv(100)):
                        got += chunk
            assert got == b"through tls\n"
            path = short_tmp / "relay.sock"
            with ipcnet.relay(f"unix://{path}", f"tcp://127.0.0.1:{accept}", send_proxy="v2"):
                assert _exchange(path, b"from a unix client") == b"from a unix client"
            target = f"tls://localhost:{secure}"
            for version in ("v1", "v2"):
                with ipcnet.relay("tcp://127.0.0.1:0", target, send_proxy=version,
                                  target_tls={"ca": tls.ca}) as relay:  # fmt: skip
                    port = int(relay.address.port or 0)
                    assert _exchange(port, b"then tls") == b"then tls"
            # a few health checks too: LOCAL + CRC32C, each then reset by HAProxy (its
            # checks close without lingering): neither is a refusal
            deadline = time.monotonic() + 10
            while _stats(stats)["accepted"] < 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            counters = _stats(stats)
            assert counters["accepted"] >= 5 and counters["refused"] == 0, counters
        finally:
            proc.terminate()
            proc.wait(10)


@needs_nginx
def test_nginx_stream_sends_v1_to_serve_and_reads_the_relays_v2(short_tmp: Path) -> None:
    """nginx `proxy_protocol on` in front of `ipcnet serve --accept-proxy`; and the relay's
    v2 header (a TCP client, and a unix client sent as LOCAL) read by nginx's
    `listen ... proxy_protocol`, which refuses a v2 AF_UNIX block as too large."""
    echo, plain, front, back = free_port(), free_port(), free_port(), free_port()
    (short_tmp / "nginx.conf").write_text(textwrap.dedent(f"""
        load_module {NGINX_STREAM};
        daemon off;
        master_process off;
        pid {short_tmp}/nginx.pid;
        error_log {short_tmp}/error.log info;
        events {{ worker_connections 64; }}
        stream {{
            server {{ listen 127.0.0.1:{front}; proxy_protocol on;
                     proxy_pass 127.0.0.1:{echo}; proxy_half_close on; }}
            server {{ listen 127.0.0.1:{back} proxy_protocol;
                     proxy_pass 127.0.0.1:{plain}; proxy_half_close on; }}
        }}
    """))  # fmt: skip
    with ExitStack() as stack:
        stack.enter_context(serving("echo", f"tcp://127.0.0.1:{echo}", extra=("--accept-proxy",)))
        stack.enter_context(serving("echo", f"tcp://127.0.0.1:{plain}"))
        proc = subprocess.Popen(
            ["nginx", "-p", str(short_tmp), "-e", f"{short_tmp}/error.log", "-c",
             str(short_tmp / "nginx.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_port(front, proc)
            assert _exchange(front, b"nginx v1 header first") == b"nginx v1 header first"
            tcp = stack.enter_context(
                ipcnet.relay("tcp://127.0.0.1:0", f"tcp://127.0.0.1:{back}", send_proxy="v2")
            )
            assert _exchange(int(tcp.address.port or 0), b"tcp client") == b"tcp client"
            path = short_tmp / "relay.sock"
            stack.enter_context(
                ipcnet.relay(f"unix://{path}", f"tcp://127.0.0.1:{back}", send_proxy="v2")
            )
            assert _exchange(path, b"unix client") == b"unix client"
        finally:
            proc.terminate()
            proc.wait(10)
