"""The PROXY protocol, differentially: ipcnet's reader and writer beside HAProxy and nginx.

HAProxy 2.6 (`bind ... accept-proxy`, http mode, `http-request return` of %[src]...) is the
reference reader: each header goes to it directly and to an ipcnet relay that accepts the
header and names the client it read to that same HAProxy (`--send-proxy v2`), in one write
and byte by byte (HAProxy itself refuses a header split across reads, which §2 allows), so
verdicts and addresses come from one oracle. Asserted are the cases where the spec and
HAProxy agree; where HAProxy is laxer than §2.1 (v1 IPv4 "1.2.3", leading zeros, ports
over 65535) or stricter (v1 UNKNOWN with addresses, v2 UNSPEC, UDP or AF_UNIX under
PROXY), ipcnet follows the spec. The writer: the header the relay sends for inet4, inet6
and unix clients, and for clients an accepted header named, is read by HAProxy and by
nginx's stream `listen ... proxy_protocol` as the same addresses.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

import ipcnet.relay
from ipcnet.protocols.proxy import (
    PP2_TYPE_AUTHORITY,
    SIGNATURE,
    ProxyHeaderReader,
    ProxyProtocolError,
    crc32c,
    encode_v1,
    encode_v2,
)
from ipcnet.testing import free_port
from test_proxy_conformance import NGINX_STREAM, _peer, _wait_port, ask, needs_haproxy, needs_nginx

REQUEST = b"GET / HTTP/1.0\r\n\r\n"
A4 = bytes((192, 0, 2, 1, 198, 51, 100, 2)) + struct.pack("!HH", 1234, 80)


def _v2(ver_cmd: int, fam: int, body: bytes) -> bytes:
    return SIGNATURE + bytes((ver_cmd, fam)) + len(body).to_bytes(2, "big") + body


def _tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


def _crc(ver_cmd: int, fam: int, body: bytes, *, good: bool) -> bytes:
    block = _v2(ver_cmd, fam, body + _tlv(0x03, bytes(4)))
    return block[:-4] + (crc32c(block) ^ (0 if good else 1)).to_bytes(4, "big")


def _seen(answer: bytes, fields: int = 5) -> tuple[str, ...] | None:
    """What the peer's report line says: (src, src port, dst, dst port[, authority])."""
    if not answer:
        return None
    return tuple(answer.rsplit(b"\n", 2)[-2].decode().split("|"))[:fields]


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A HAProxy frontend that requires a PROXY header and answers what it read from it."""
    port = free_port()
    config = tmp_path_factory.mktemp("haproxy") / "haproxy.cfg"
    config.write_text(textwrap.dedent(f"""
        global
            maxconn 200
        defaults
            mode http
            timeout connect 5s
            timeout client 10s
            timeout server 10s
        frontend reader
            bind 127.0.0.1:{port} accept-proxy
            http-request return status 200 content-type text/plain lf-string "%[src]|%[src_port]|%[dst]|%[dst_port]|%[fc_pp_authority]\\n"
    """))  # fmt: skip
    with _peer(["haproxy", "-db", "-f", str(config)], port):
        yield port


def _port(port: int) -> str:
    """A port as HAProxy and nginx print it: 0 as an empty field."""
    return str(port) if port else ""


# --- the reader ----------------------------------------------------------------------

# §2.2 LOCAL: "The receiver must accept this connection as valid and must use the real
# connection endpoints and discard the protocol block including the family which is
# ignored." HAProxy and nginx do; ipcnet refused a family byte it did not know, and a
# block whose TLVs it could not parse. A LOCAL's sound TLVs are still kept.
LOCAL = {
    "unknown family 0x03": (_v2(0x20, 0x03, b""), {}),
    "unknown family 0x45": (_v2(0x20, 0x45, b""), {}),
    "unknown family 0xff, a body": (_v2(0x20, 0xFF, b"anything at all"), {}),
    "UNSPEC protocol, inet addresses": (_v2(0x20, 0x10, A4), {}),
    "wrong CRC32C": (_crc(0x20, 0x00, b"", good=False), {}),
    "truncated TLV": (_v2(0x20, 0x00, _tlv(2, b"a.example") + b"\x04"), {}),
    "TLV past the end": (_v2(0x20, 0x11, A4 + b"\x02\x00\x09abc"), {}),
    "UNIQUE_ID of 129 bytes": (_v2(0x20, 0x00, _tlv(5, b"u" * 129)), {}),
    "SSL TLV of 1 byte": (_v2(0x20, 0x00, _tlv(0x20, b"\x01")), {}),
    "sound TLVs, kept": (
        _v2(0x20, 0x11, A4 + _tlv(2, b"a.example") + _tlv(4, b"")),
        {PP2_TYPE_AUTHORITY: b"a.example"},
    ),
}

# Refused by both, at any split (§2.2, §2.2.3, §2.2.5; §2.1 for v1).
REFUSED = {
    "version 1 in a v2 header": _v2(0x11, 0x11, A4),
    "command 0x2": _v2(0x22, 0x11, A4),
    "PROXY, family 0x41": _v2(0x21, 0x41, A4),
    "PROXY, protocol 0x13": _v2(0x21, 0x13, A4),
    "PROXY, addresses cut short": _v2(0x21, 0x11, A4[:11]),
    "PROXY, wrong CRC32C": _crc(0x21, 0x11, A4, good=False),
    "PROXY, UNIQUE_ID of 129 bytes": _v2(0x21, 0x11, A4 + _tlv(5, b"u" * 129)),
    "PROXY, truncated TLV": _v2(0x21, 0x11, A4 + b"\x02\x00"),
    "PROXY, CRC32C of 3 bytes": _v2(0x21, 0x11, A4 + _tlv(3, b"abc")),
    "v1 LF only": b"PROXY TCP4 192.0.2.1 198.51.100.2 1234 80\n",
    "v1 tcp4 in lower case": b"PROXY tcp4 192.0.2.1 198.51.100.2 1234 80\r\n",
    "v1 IPv6 in TCP4": b"PROXY TCP4 ::1 ::1 1234 80\r\n",
}

# Accepted by both with the same client (and AUTHORITY).
ACCEPTED = {
    "v2 TCP4 CRC32C and AUTHORITY": (
        _crc(0x21, 0x11, A4 + _tlv(2, b"example.com") + _tlv(4, b""), good=True),
        ("192.0.2.1", "1234", "198.51.100.2", "80", "example.com"),
    ),
    "v2 TCP6 v4-mapped": (
        encode_v2(("::ffff:192.0.2.9", 0), ("2001:db8::1", 65535), tlvs={0xE0: b"x"}),
        ("::ffff:192.0.2.9", "", "2001:db8::1", "65535", ""),
    ),
    "v1 upper-case TCP6": (
        b"PROXY TCP6 2001:DB8::A ::FFFF:192.0.2.1 1 65535\r\n",
        ("2001:db8::a", "1", "::ffff:192.0.2.1", "65535", ""),
    ),
}


@pytest.fixture(scope="module")
def reading_relay(haproxy: int) -> Iterator[int]:
    """ipcnet's accept-proxy, reported by HAProxy: the relay names what it read."""
    options = {"accept_proxy": True, "send_proxy": "v2"}
    with ipcnet.relay("tcp://127.0.0.1:0", f"tcp://127.0.0.1:{haproxy}", **options) as relay:
        yield int(relay.address.port or 0)


@needs_haproxy
def test_local_is_accepted_whatever_its_family_and_block(haproxy: int, reading_relay: int) -> None:
    for name, (header, tlvs) in LOCAL.items():
        answer, ours = ask(socket.AF_INET, ("127.0.0.1", haproxy), header + REQUEST)
        assert _seen(answer) == (ours[0], str(ours[1]), "127.0.0.1", str(haproxy), ""), name
        for bytewise in (False, True):
            data = header + REQUEST
            answer, ours = ask(socket.AF_INET, ("127.0.0.1", reading_relay), data,
                                bytewise=bytewise)  # fmt: skip
            seen = _seen(answer)
            assert seen is not None and seen[:2] == (ours[0], str(ours[1])), (name, bytewise)
        reader = ProxyHeaderReader()
        parsed = reader.feed(header + b"rest")
        assert parsed is not None and parsed.local and parsed.command == "LOCAL", name
        assert (dict(parsed.tlvs), reader.rest) == (tlvs, b"rest"), name


@needs_haproxy
def test_haproxy_and_ipcnet_refuse_and_accept_the_same_headers(
    haproxy: int, reading_relay: int
) -> None:
    for name, header in REFUSED.items():
        assert ask(socket.AF_INET, ("127.0.0.1", haproxy), header + REQUEST)[0] == b"", name
        for bytewise in (False, True):
            answer, _ = ask(socket.AF_INET, ("127.0.0.1", reading_relay), header + REQUEST,
                             bytewise=bytewise)  # fmt: skip
            assert answer == b"", (name, bytewise)
    for name, (header, seen) in ACCEPTED.items():
        answer, _ = ask(socket.AF_INET, ("127.0.0.1", haproxy), header + REQUEST)
        assert _seen(answer) == seen, name
        for bytewise in (False, True):  # the relay passes on the client, not the TLVs
            answer, _ = ask(socket.AF_INET, ("127.0.0.1", reading_relay), header + REQUEST,
                             bytewise=bytewise)  # fmt: skip
            assert _seen(answer) == (*seen[:4], ""), (name, bytewise)


BARE = [  # §2.1: "must not tolerate a single CR or LF character to end the line"
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1234 80\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1234 80\r\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1234 80\n\r",
    b"PROXY UNKNOWN\n",
    b"PROXY UNKNOWN \r 1 2\r\n",
]


def _verdict(data: bytes, bytewise: bool) -> tuple[object, ...]:
    """(header, what follows it) or ("refused", why), reading ``data`` whole or a byte at
    a time."""
    reader = ProxyHeaderReader()
    try:
        for at in range(len(data)) if bytewise else [0]:
            piece = data[at : at + 1] if bytewise else data
            if (header := reader.feed(piece)) is not None:
                return header, reader.rest + data[at + len(piece) :]
        reader.feed_eof()
    except ProxyProtocolError as exc:
        return "refused", str(exc)
    raise AssertionError("unreachable")  # pragma: no cover


def test_a_header_read_whole_or_a_byte_at_a_time_gets_the_same_verdict() -> None:
    """Whatever the reads, the same header and rest, or the same refusal; a bare CR or LF
    is named as such even when a CRLF comes later in the same read (it was 'bad port
    "80\\r"' or 'malformed ... "80\\nGET / HTTP/1.0"' in one read)."""
    cases = [*BARE, *REFUSED.values(), *(h for h, _ in LOCAL.values()),
             *(h for h, _ in ACCEPTED.values())]  # fmt: skip
    for header in cases:
        data = header + REQUEST
        whole, split = _verdict(data, False), _verdict(data, True)
        if header.startswith(SIGNATURE) and whole[0] == "refused":
            whole, split = whole[:1], split[:1]  # a v2 error may be seen at an earlier byte
        assert whole == split, header
    for header in BARE:
        assert "bare CR or LF" in str(_verdict(header + REQUEST, False)[1]), header


# --- the writer -----------------------------------------------------------------------

NAMED = [  # clients an accepted header named, for the relay to name upstream in turn
    (("192.0.2.1", 1), ("198.51.100.2", 65535)),
    (("0.0.0.0", 0), ("255.255.255.255", 0)),
    (("2001:db8::1", 4242), ("2001:db8::2", 443)),
    (("::ffff:192.0.2.1", 7), ("::1", 8)),
    (("::", 1), ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535)),
    (("fe80::1", 5), ("::ffff:192.0.2.2", 6)),
]


def _relayed(stack: ExitStack, target: str, version: str, tmp: Path, data: bytes) -> None:
    """A relay's header for its own inet4, inet6 and unix clients, and for the clients of
    NAMED, reaches the peer at ``target`` as those clients (the peer's line says)."""
    peer = target.rsplit(":", 1)[1]
    clients = {
        "inet4": ("tcp://127.0.0.1:0", socket.AF_INET),
        "inet6": ("tcp://[::1]:0", socket.AF_INET6),
        "unix": (f"unix://{tmp}/{version}-{peer}.sock", socket.AF_UNIX),
    }
    for kind, (listen, family) in clients.items():
        relay = stack.enter_context(ipcnet.relay(listen, target, send_proxy=version))
        address = relay.address
        if family == socket.AF_UNIX:
            seen = _seen(ask(family, address.path, data)[0])
            # no IP client: UNKNOWN / LOCAL, so nginx names none, HAProxy the relay itself
            assert seen is not None and seen[0] in ("", "127.0.0.1"), (version, kind)
            continue
        where = (address.host or "", int(address.port or 0))
        answer, ours = ask(family, where, data)
        expected = (ours[0], str(ours[1]), where[0], str(where[1]))
        assert _seen(answer, 4) == expected, (version, target, kind)
    options = {"send_proxy": version, "accept_proxy": True}
    relay = stack.enter_context(ipcnet.relay("tcp://127.0.0.1:0", target, **options))
    port = int(relay.address.port or 0)
    for n, (source, destination) in enumerate(NAMED):
        first = (encode_v2 if n % 2 else encode_v1)(source, destination) + data
        expected = (source[0], _port(source[1]), destination[0], _port(destination[1]))
        answer, _ = ask(socket.AF_INET, ("127.0.0.1", port), first)
        assert _seen(answer, 4) == expected, (version, target, source)


@needs_haproxy
@needs_nginx
def test_the_relays_headers_name_the_same_client_to_haproxy_and_nginx(
    haproxy: int, short_tmp: Path
) -> None:
    nginx = free_port()
    (short_tmp / "nginx.conf").write_text(textwrap.dedent(f"""
        load_module {NGINX_STREAM};
        daemon off;
        master_process off;
        pid {short_tmp}/nginx.pid;
        error_log {short_tmp}/error.log;
        events {{ worker_connections 64; }}
        stream {{
            server {{ listen 127.0.0.1:{nginx} proxy_protocol;
                     return "$proxy_protocol_addr|$proxy_protocol_port|$proxy_protocol_server_addr|$proxy_protocol_server_port\\n"; }}
        }}
    """))  # fmt: skip
    proc = subprocess.Popen(
        ["nginx", "-p", str(short_tmp), "-e", f"{short_tmp}/error.log",
         "-c", str(short_tmp / "nginx.conf")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_port(nginx, proc)
        with ExitStack() as stack:
            for version in ("v1", "v2"):
                # HAProxy reads an HTTP request after the header; nginx just answers (sent
                # nothing, it has no unread bytes that would make its close a reset)
                _relayed(stack, f"tcp://127.0.0.1:{haproxy}", version, short_tmp, REQUEST)
                _relayed(stack, f"tcp://127.0.0.1:{nginx}", version, short_tmp, b"")
    finally:
        proc.terminate()
        proc.wait(10)
