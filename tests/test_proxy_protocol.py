"""The PROXY protocol parser and encoders, sans-IO, against HAProxy's spec."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipcnet.errors import RemoteProtocolError
from ipcnet.protocols.proxy import (
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_CRC32C,
    PP2_TYPE_NOOP,
    SIGNATURE,
    ProxyHeader,
    ProxyHeaderReader,
    ProxyProtocolError,
    crc32c,
    encode_v1,
    encode_v2,
)

# a header HAProxy wrote with send-proxy-v2 (TCP4 172.19.0.1:42578 -> 172.19.0.3:80)
HAPROXY_V2 = bytes.fromhex("0d0a0d0a000d0a515549540a2111000cac130001ac130003a6520050")


def feed_bytewise(reader: ProxyHeaderReader, data: bytes) -> ProxyHeader:
    for i in range(len(data)):
        header = reader.feed(data[i : i + 1])
        if header is not None:
            return header
    raise AssertionError("no header after all bytes")


def test_haproxy_v2_header_bytewise_with_the_request_after_it() -> None:
    reader = ProxyHeaderReader()
    header = feed_bytewise(reader, HAPROXY_V2)
    assert header == ProxyHeader(
        2, "PROXY", "TCP4", ("172.19.0.1", 42578), ("172.19.0.3", 80), {}, 28
    )
    reader = ProxyHeaderReader()
    assert reader.feed(HAPROXY_V2 + b"GET / HTTP/1.1\r\n") == header
    assert reader.rest == b"GET / HTTP/1.1\r\n"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
         ("TCP4", ("192.168.0.1", 56324), ("192.168.0.11", 443))),
        (b"PROXY TCP6 ffff:f::1 2001:db8::2 0 65535\r\n",
         ("TCP6", ("ffff:f::1", 0), ("2001:db8::2", 65535))),
        (b"PROXY UNKNOWN\r\n", ("UNKNOWN", None, None)),
        (b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
         ("UNKNOWN", None, None)),
    ],
)  # fmt: skip
def test_v1_lines(line: bytes, expected: tuple[object, ...]) -> None:
    reader = ProxyHeaderReader()
    header = feed_bytewise(reader, line)
    assert (header.transport, header.source, header.destination) == expected
    assert header.version == 1 and header.size == len(line)
    assert header.local == (expected[1] is None)


def test_v1_longest_line_is_accepted_and_one_more_byte_refused() -> None:
    six = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    longest = f"PROXY TCP6 {six} {six} 65535 65535\r\n".encode()
    assert len(longest) == 104  # the spec's worst case with real addresses
    unknown = b"PROXY UNKNOWN " + b"x" * (107 - 16) + b"\r\n"
    assert len(unknown) == 107
    assert ProxyHeaderReader().feed(unknown) is not None
    too_long = b"PROXY UNKNOWN " + b"x" * (108 - 16) + b"\r\n"
    with pytest.raises(ProxyProtocolError, match="without CRLF in its first 107 bytes"):
        ProxyHeaderReader().feed(too_long)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "without CRLF"),
        (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "malformed"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "malformed"),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
        (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "not an IPv4 address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "not an IPv6 address"),
        (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "bad address"),
        (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "bad address"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "bad address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "out of range"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 \xd9\xa1 2\r\n", "not ASCII"),
    ],
)
def test_v1_malformed(line: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        ProxyHeaderReader().feed(line)


@pytest.mark.parametrize(
    "start",
    [b"GET / HTTP/1.1\r\n", b"\x16\x03\x01\x02\x00", b"PROXX", b"\r\n\r\n\x00\r\nQUIT\r"],
)
def test_no_header_is_refused_at_once_never_guessed(start: bytes) -> None:
    reader = ProxyHeaderReader()
    with pytest.raises(ProxyProtocolError, match="expected a proxy protocol v1 or v2 header"):
        for i in range(len(start)):
            reader.feed(start[i : i + 1])


def test_only_the_versions_asked_for() -> None:
    with pytest.raises(ProxyProtocolError, match="expected a proxy protocol v2 header"):
        ProxyHeaderReader(versions=(2,)).feed(b"PROXY UNKNOWN\r\n")
    with pytest.raises(ProxyProtocolError, match="expected a proxy protocol v1 header"):
        ProxyHeaderReader(versions=(1,)).feed(HAPROXY_V2)
    with pytest.raises(ValueError):
        ProxyHeaderReader(versions=(3,))


def test_eof_inside_a_header() -> None:
    reader = ProxyHeaderReader()
    assert reader.feed(HAPROXY_V2[:20]) is None
    with pytest.raises(ProxyProtocolError, match="ended after 20 bytes"):
        reader.feed_eof()


def _v2(ver_cmd: int, fam: int, body: bytes) -> bytes:
    return SIGNATURE + bytes((ver_cmd, fam)) + len(body).to_bytes(2, "big") + body


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (_v2(0x11, 0x11, bytes(12)), "unsupported proxy protocol version 1"),
        (_v2(0x22, 0x11, bytes(12)), "unknown proxy protocol v2 command"),
        (_v2(0x21, 0x41, bytes(12)), "unknown proxy protocol v2 family"),
        (_v2(0x21, 0x13, bytes(12)), "unknown proxy protocol v2 family"),
        (_v2(0x21, 0x11, bytes(11)), "too short for its addresses"),
        (_v2(0x21, 0x21, bytes(35)), "too short for its addresses"),
        (_v2(0x21, 0x31, bytes(215)), "too short for its addresses"),
        (_v2(0x21, 0x11, bytes(12) + b"\x01\x00"), "truncated TLV"),
        (_v2(0x21, 0x11, bytes(12) + b"\x01\x00\x05abc"), "runs past"),
        (_v2(0x21, 0x11, bytes(12) + b"\x03\x00\x02ab"), "CRC32C TLV"),
        (_v2(0x21, 0x11, bytes(12) + b"\x05\x00\x81" + bytes(129)), "UNIQUE_ID"),
    ],
)
def test_v2_malformed(block: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        ProxyHeaderReader().feed(block)


def test_v2_over_the_size_limit_is_refused_before_its_body() -> None:
    reader = ProxyHeaderReader(max_size=512)
    head = SIGNATURE + b"\x21\x11" + (1000).to_bytes(2, "big")
    with pytest.raises(ProxyProtocolError, match="1016 bytes is over the limit of 512"):
        reader.feed(head)  # nothing of the body has been sent


def test_v2_local_unspec_and_tlvs() -> None:
    local = _v2(0x20, 0x00, b"")
    header = ProxyHeaderReader().feed(local)
    assert header is not None and header.command == "LOCAL" and header.local
    # LOCAL with addresses: they are ignored, the real endpoints stand
    assert ProxyHeaderReader().feed(_v2(0x20, 0x11, bytes(12))).local  # type: ignore[union-attr]
    unspec = ProxyHeaderReader().feed(_v2(0x21, 0x00, b"\x04\x00\x02ab"))
    assert unspec is not None and unspec.transport == "UNKNOWN" and unspec.local
    assert unspec.tlvs == {}  # NOOP is dropped
    tlv = encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2), tlvs={PP2_TYPE_ALPN: b"h2",
                    PP2_TYPE_AUTHORITY: b"example.com"})  # fmt: skip
    got = ProxyHeaderReader().feed(tlv)
    assert got is not None
    assert got.tlvs == {PP2_TYPE_ALPN: b"h2", PP2_TYPE_AUTHORITY: b"example.com"}
    assert PP2_TYPE_NOOP not in got.tlvs


def test_crc32c_known_value_and_checked_header() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    block = encode_v2(("192.0.2.1", 4000), ("192.0.2.2", 443), checksum=True)
    header = ProxyHeaderReader().feed(block)
    assert header is not None and PP2_TYPE_CRC32C in header.tlvs
    broken = bytearray(block)
    broken[20] ^= 1  # one bit of the destination address
    with pytest.raises(ProxyProtocolError, match="CRC32C check"):
        ProxyHeaderReader().feed(bytes(broken))


@pytest.mark.parametrize(
    ("source", "destination", "transport"),
    [
        (("127.0.0.1", 5000), ("127.0.0.2", 80), "TCP4"),
        (("::1", 5000), ("2001:db8::1", 443), "TCP6"),
        (("127.0.0.1", 5000), ("::1", 443), "TCP6"),  # mixed: written as v4-mapped v6
        ("/run/client.sock", "/run/server.sock", "UNIX"),
        ("@abstract-client", "@abstract-server", "UNIX"),
    ],
)
def test_encode_parse_round_trip(
    source: tuple[str, int] | str, destination: tuple[str, int] | str, transport: str
) -> None:
    header = ProxyHeaderReader().feed(encode_v2(source, destination))
    assert header is not None and header.transport == transport
    if transport == "TCP6" and source == ("127.0.0.1", 5000):
        assert header.source == ("::ffff:127.0.0.1", 5000)
    else:
        assert (header.source, header.destination) == (source, destination)
    if not isinstance(source, str):
        v1 = ProxyHeaderReader().feed(encode_v1(source, destination))  # type: ignore[arg-type]
        assert v1 is not None and v1.transport == transport
        assert v1.source == header.source and v1.destination == header.destination
    else:
        assert encode_v1(source, destination) == b"PROXY UNKNOWN\r\n"  # v1 has no UNIX


def test_udp_in_v2() -> None:
    header = ProxyHeaderReader().feed(encode_v2(("::1", 53), ("::1", 5353), datagram=True))
    assert header is not None and header.transport == "UDP6"


@given(st.binary(max_size=300), st.sampled_from([(1,), (2,), (1, 2)]))
def test_garbage_raises_only_proxy_protocol_errors(data: bytes, versions: tuple[int, ...]) -> None:
    reader = ProxyHeaderReader(versions=versions)
    try:
        for i in range(0, len(data), 7):
            if reader.feed(data[i : i + 7]) is not None:
                break
    except ProxyProtocolError as exc:
        assert isinstance(exc, RemoteProtocolError)


@given(st.binary(min_size=0, max_size=200))
def test_v2_with_arbitrary_body_raises_only_proxy_protocol_errors(body: bytes) -> None:
    for ver_cmd in (0x20, 0x21):
        for fam in (0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32):
            try:
                ProxyHeaderReader(max_size=1024).feed(_v2(ver_cmd, fam, body))
            except ProxyProtocolError:
                pass
