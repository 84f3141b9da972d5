"""The PROXY protocol (HAProxy's doc/proxy-protocol.txt), versions 1 and 2, sans-IO.

Role: a relay or load balancer puts one header in front of a connection that says who the
real client is; the server reads it before anything else. ``ProxyHeaderReader`` parses it
from whatever bytes arrive, ``encode_v1``/``encode_v2`` write one. Nothing here does I/O.
Rules (each from the spec):
- The receiver is configured to expect the header and never guesses: bytes that cannot
  start a header of an accepted version are refused at once, not passed through (§1, §5).
- v1 is one line of at most 107 bytes ending in CRLF (a bare CR or LF is refused as soon
  as it is seen), fields split by single spaces:
  ``PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n`` or ``PROXY UNKNOWN...\\r\\n`` (the rest of an
  UNKNOWN line is ignored, ASCII or not, as nginx does). Addresses must be of the
  family named; ports are 0..65535 in decimal without leading zeros (§2.1).
- v2 is a 16-byte block (12-byte signature, version/command, family/protocol, length)
  and ``length`` more bytes: the addresses (12, 36 or 216 bytes for INET, INET6, UNIX) and
  then TLVs. Version must be 2, the command LOCAL or PROXY, the family and protocol known
  values; anything else is refused as soon as its byte arrives (§2.2). LOCAL (a health
  check from the proxy itself) and UNSPEC carry no client: the connection's own endpoints
  stand (``source`` is None). LOCAL "must" be accepted and its block "including the
  family" is ignored (§2.2, as HAProxy and nginx do): any family byte, addresses or not,
  and TLVs that do not parse or check out are dropped rather than a reason to refuse.
  UNSPEC under PROXY (the family or the protocol nibble 0: "the receiver should ignore
  address information") is accepted as nginx does, its block ignored the same way; only
  a 0x00 block's TLVs are kept (when sound): after any other UNSPEC byte, address bytes
  cannot be told from TLVs.
- TLVs must exactly fill the rest; a CRC32C TLV is checked over the whole header with its
  own 4 bytes zeroed (§2.2.3), UNIQUE_ID holds at most 128 bytes (§2.2.5), and an SSL TLV
  is a client byte, a 32-bit verify and sub-TLVs that exactly fill it (§2.2.6). NOOP is
  dropped; other types, known or not, are kept for the caller and otherwise ignored.
- The encoders write only what a receiver may accept: a port outside 0..65535 is a
  ValueError, never a line that a lax reader (HAProxy) takes as another port.
- ``max_size`` bounds what is buffered: a v2 header announcing more is refused before its
  body is read.
Errors are ``ProxyProtocolError`` (a RemoteProtocolError) with a short message.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ipcnet.errors import RemoteProtocolError

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 line, CRLF included
V2_HEADER = 16
DEFAULT_MAX_SIZE = 4096  # a v2 header with TLVs; the protocol allows 16 + 65535

# v2 TLV types (§2.2)
PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_TYPE_NETNS = 0x30
# sub-TLVs of PP2_TYPE_SSL (§2.2.6) and the bits of its client byte
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_SUBTYPE_SSL_CN = 0x22
PP2_SUBTYPE_SSL_CIPHER = 0x23
PP2_SUBTYPE_SSL_SIG_ALG = 0x24
PP2_SUBTYPE_SSL_KEY_ALG = 0x25
PP2_SUBTYPE_SSL_GROUP = 0x26
PP2_SUBTYPE_SSL_SIG_SCHEME = 0x27
PP2_SUBTYPE_SSL_CLIENT_CERT = 0x28
PP2_CLIENT_SSL = 0x01
PP2_CLIENT_CERT_CONN = 0x02
PP2_CLIENT_CERT_SESS = 0x04

Transport = Literal["TCP4", "TCP6", "UDP4", "UDP6", "UNIX", "UNIXGRAM", "UNKNOWN"]
#: (family, protocol) nibbles of the v2 header -> our transport name
_V2_TRANSPORTS: dict[tuple[int, int], Transport] = {
    (1, 1): "TCP4",
    (1, 2): "UDP4",
    (2, 1): "TCP6",
    (2, 2): "UDP6",
    (3, 1): "UNIX",
    (3, 2): "UNIXGRAM",
}
_V2_CODES = {name: code for code, name in _V2_TRANSPORTS.items()}
_ADDRESS_SIZES = {1: 12, 2: 36, 3: 216}

Endpoint = tuple[str, int] | str  # (host, port) for IP, a path for unix ("@name": abstract)


class ProxyProtocolError(RemoteProtocolError):
    """The PROXY protocol header is missing, malformed or too long."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header. ``source``/``destination`` are None when the header carries no
    client (v1 UNKNOWN, v2 LOCAL or UNSPEC): then the connection's own endpoints stand."""

    version: int
    command: Literal["PROXY", "LOCAL"]
    transport: Transport
    source: Endpoint | None
    destination: Endpoint | None
    tlvs: Mapping[int, bytes] = field(default_factory=dict)
    size: int = 0  # bytes the header took on the wire

    @property
    def local(self) -> bool:
        """True when the header names no client (health checks, UNKNOWN)."""
        return self.source is None

    @property
    def ssl(self) -> SSLInfo | None:
        """The SSL TLV decoded (HAProxy ``send-proxy-v2-ssl``), None when there is none."""
        value = self.tlvs.get(PP2_TYPE_SSL)
        return None if value is None else parse_ssl(value)


@dataclass(frozen=True, slots=True)
class SSLInfo:
    """The PP2_TYPE_SSL TLV: what the proxy saw of the client's TLS (§2.2.6)."""

    client: int  # PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
    verify: int  # 0: the client presented a certificate and it was verified
    fields: Mapping[int, bytes]  # sub-TLVs: PP2_SUBTYPE_SSL_VERSION, _CN, _CIPHER, ...


class ProxyHeaderReader:
    """Feed bytes until ``feed`` returns the header; what followed it is in ``rest``.

    ``versions`` are the ones accepted (both by default, as HAProxy's ``accept-proxy``).
    """

    __slots__ = ("_buf", "max_size", "rest", "versions")

    def __init__(self, versions: tuple[int, ...] = (1, 2), max_size: int = DEFAULT_MAX_SIZE):
        if not versions or any(v not in (1, 2) for v in versions):
            raise ValueError(f"PROXY protocol versions are 1 and 2, not {versions!r}")
        self.versions = versions
        self.max_size = max(max_size, V1_MAX, V2_HEADER + 216)
        self._buf = bytearray()
        self.rest = b""

    def feed(self, data: bytes) -> ProxyHeader | None:
        """The header once it is whole (None: more bytes needed); raises ProxyProtocolError."""
        self._buf += data
        buf = self._buf
        if 2 in self.versions and _starts(buf, SIGNATURE):
            if len(buf) > len(SIGNATURE):  # a wrong version, command or family: refused now
                _check_head(buf[12], buf[13] if len(buf) > 13 else None)
            if len(buf) < V2_HEADER:
                return None
            size = V2_HEADER + int.from_bytes(buf[14:16], "big")
            if size > self.max_size:
                raise ProxyProtocolError(
                    f"proxy protocol v2 header of {size} bytes is over the limit of {self.max_size}"
                )
            if len(buf) < size:
                return None
            header = parse_v2(bytes(buf[:size]))
        elif 1 in self.versions and _starts(buf, V1_PREFIX):
            end = buf.find(b"\r\n", 0, V1_MAX)
            line = buf[:end] if end >= 0 else buf[:V1_MAX]
            if b"\n" in line or b"\r" in (line if end >= 0 else line[:-1]):  # a last CR
                raise ProxyProtocolError(  # may still get its LF
                    "proxy protocol v1 header ends in a bare CR or LF, without CRLF"
                )
            if end < 0:
                if len(buf) >= V1_MAX:
                    raise ProxyProtocolError(
                        f"proxy protocol v1 header without CRLF in its first {V1_MAX} bytes"
                    )
                return None
            size = end + 2
            header = parse_v1(bytes(buf[:size]))
        else:
            wanted = " or ".join(f"v{v}" for v in self.versions)
            raise ProxyProtocolError(f"expected a proxy protocol {wanted} header, got {_show(buf)}")
        self.rest = bytes(buf[size:])
        self._buf = bytearray()
        return header

    def feed_eof(self) -> None:
        """The peer ended the stream: raises, since no header is whole yet."""
        got = len(self._buf)
        raise ProxyProtocolError(f"connection ended after {got} bytes of a proxy protocol header")


def _starts(buf: bytearray, prefix: bytes) -> bool:
    """True if ``buf`` is a prefix of ``prefix`` or starts with it (not decidable yet: True)."""
    n = min(len(buf), len(prefix))
    return buf[:n] == prefix[:n]


def _show(buf: bytearray) -> str:
    return repr(bytes(buf[:24])) + ("..." if len(buf) > 24 else "")


# --- version 1 -------------------------------------------------------------------------


def parse_v1(line: bytes) -> ProxyHeader:
    """One whole v1 line, CRLF included."""
    if not line.startswith(V1_PREFIX) or not line.endswith(b"\r\n") or len(line) > V1_MAX:
        raise ProxyProtocolError("malformed proxy protocol v1 header")
    if line[6:14] in (b"UNKNOWN\r", b"UNKNOWN "):  # the rest is ignored, ASCII or not (§2.1)
        return ProxyHeader(1, "PROXY", "UNKNOWN", None, None, size=len(line))
    try:
        text = line[:-2].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError("proxy protocol v1 header is not ASCII") from None
    fields = text.split(" ")
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(f"malformed proxy protocol v1 header {text!r}")
    _, proto, src, dst, sport, dport = fields
    version = 4 if proto == "TCP4" else 6
    source = (_ip(src, version, text), _port(sport, text))
    destination = (_ip(dst, version, text), _port(dport, text))
    return ProxyHeader(1, "PROXY", "TCP4" if version == 4 else "TCP6", source, destination,
                       size=len(line))  # fmt: skip


def _ip(text: str, version: int, line: str) -> str:
    try:
        if "%" in text:  # a zone index is no part of the protocol's address syntax
            raise ValueError(text)
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(
            f"bad address {text!r} in proxy protocol header {line!r}"
        ) from None
    if address.version != version:
        raise ProxyProtocolError(f"{text!r} is not an IPv{version} address in {line!r}")
    return _text(address)


def _text(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """RFC 5952 text; a v4-mapped address as ``::ffff:1.2.3.4`` on every Python."""
    mapped = getattr(address, "ipv4_mapped", None)
    return f"::ffff:{mapped}" if mapped is not None else str(address)


def _port(text: str, line: str) -> int:
    if not text.isdigit() or not text.isascii() or (text[0] == "0" and text != "0"):
        raise ProxyProtocolError(f"bad port {text!r} in proxy protocol header {line!r}")
    port = int(text)
    if port > 65535:
        raise ProxyProtocolError(f"port {port} out of range in proxy protocol header {line!r}")
    return port


def encode_v1(source: Endpoint | None, destination: Endpoint | None) -> bytes:
    """The v1 line for a TCP connection between two IP endpoints; UNKNOWN for anything else."""
    if not (isinstance(source, tuple) and isinstance(destination, tuple)):
        return b"PROXY UNKNOWN\r\n"
    src, dst = _sent(source[0]), _sent(destination[0])
    if src.version != dst.version:  # a v4 client on a dual-stack socket: say it in v6
        src, dst = _as_v6(src), _as_v6(dst)
    proto = "TCP4" if src.version == 4 else "TCP6"
    _check_ports(source[1], destination[1])
    line = f"PROXY {proto} {_text(src)} {_text(dst)} {source[1]} {destination[1]}\r\n"
    return line.encode("ascii")


def _check_ports(*ports: int) -> None:
    for port in ports:
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} out of range 0..65535 for the proxy protocol")


def _sent(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An endpoint's host as the header carries it: a zone (``fe80::1%eth0``) has no place."""
    return ipaddress.ip_address(host.split("%", 1)[0])


def _as_v6(a: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    return a if isinstance(a, ipaddress.IPv6Address) else ipaddress.IPv6Address(f"::ffff:{a}")


# --- version 2 -------------------------------------------------------------------------


def parse_v2(block: bytes) -> ProxyHeader:
    """One whole v2 header (signature, 4 bytes, ``length`` bytes)."""
    if len(block) < V2_HEADER or not block.startswith(SIGNATURE):
        raise ProxyProtocolError("malformed proxy protocol v2 header")
    ver_cmd, fam, length = block[12], block[13], int.from_bytes(block[14:16], "big")
    if len(block) != V2_HEADER + length:
        raise ProxyProtocolError("proxy protocol v2 header length does not match its bytes")
    _check_head(ver_cmd, fam)
    command, family, protocol = ver_cmd & 0x0F, fam >> 4, fam & 0x0F
    body = memoryview(block)[V2_HEADER:]
    need = _ADDRESS_SIZES.get(family, 0) if protocol else 0
    name: Transport = _V2_TRANSPORTS.get((family, protocol), "UNKNOWN")
    if command == 0 or name == "UNKNOWN":
        # LOCAL, or UNSPEC under PROXY: the block is ignored ("the receiver should ignore
        # address information", §2.2); TLVs are kept when they are sound and can be told
        # from address bytes: not after an UNSPEC protocol whose family has addresses
        if command == 1 and (family or protocol):
            return ProxyHeader(2, "PROXY", name, None, None, {}, len(block))
        try:
            tlvs = _tlvs(body[need:] if len(body) >= need else body, block)
        except ProxyProtocolError:
            tlvs = {}
        verb: Literal["PROXY", "LOCAL"] = "LOCAL" if command == 0 else "PROXY"
        return ProxyHeader(2, verb, name, None, None, tlvs, len(block))
    if len(body) < need:
        raise ProxyProtocolError(
            f"proxy protocol v2 header too short for its addresses ({len(body)} < {need} bytes)"
        )
    tlvs = _tlvs(body[need:], block)
    source, destination = _addresses(family, body[:need])
    return ProxyHeader(2, "PROXY", name, source, destination, tlvs, len(block))


def _check_head(ver_cmd: int, fam: int | None) -> None:
    """The 13th and 14th bytes of a v2 header: version 2, LOCAL or PROXY, known values
    (LOCAL's family byte is ignored)."""
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError(f"unsupported proxy protocol version {ver_cmd >> 4} in v2 header")
    if ver_cmd & 0x0F not in (0, 1):
        raise ProxyProtocolError(f"unknown proxy protocol v2 command {ver_cmd & 0x0F:#x}")
    if fam is not None and ver_cmd & 0x0F == 1 and (fam >> 4 > 3 or fam & 0x0F > 2):
        raise ProxyProtocolError(f"unknown proxy protocol v2 family/protocol byte {fam:#04x}")


def _addresses(family: int, raw: memoryview) -> tuple[Endpoint, Endpoint]:
    if family == 1:
        s, d, sp, dp = struct.unpack("!4s4sHH", raw)
        return (str(ipaddress.IPv4Address(s)), sp), (str(ipaddress.IPv4Address(d)), dp)
    if family == 2:
        s, d, sp, dp = struct.unpack("!16s16sHH", raw)
        return (_text(ipaddress.IPv6Address(s)), sp), (_text(ipaddress.IPv6Address(d)), dp)
    return _unix_path(bytes(raw[:108])), _unix_path(bytes(raw[108:216]))


def _unix_path(raw: bytes) -> str:
    if raw[:1] == b"\0" and raw.strip(b"\0"):  # abstract: to the end of the field, NULs trimmed
        return "@" + raw[1:].rstrip(b"\0").decode("utf-8", "surrogateescape")
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _items(raw: memoryview, where: str) -> Iterator[tuple[int, int, bytes]]:
    """(offset of the value, type, value) of each TLV; they must exactly fill ``raw``."""
    at = 0
    while at < len(raw):
        if len(raw) - at < 3:
            raise ProxyProtocolError(f"truncated TLV in {where}")
        kind, size = raw[at], int.from_bytes(raw[at + 1 : at + 3], "big")
        if at + 3 + size > len(raw):
            raise ProxyProtocolError(f"TLV {kind:#04x} runs past {where}")
        yield at + 3, kind, bytes(raw[at + 3 : at + 3 + size])
        at += 3 + size


def _tlvs(raw: memoryview, block: bytes) -> dict[int, bytes]:
    tlvs: dict[int, bytes] = {}
    for at, kind, value in _items(raw, "the proxy protocol v2 header"):
        if kind == PP2_TYPE_CRC32C:
            if len(value) != 4:
                raise ProxyProtocolError("CRC32C TLV of the proxy protocol is not 4 bytes")
            start = len(block) - len(raw) + at
            zeroed = block[:start] + b"\0\0\0\0" + block[start + 4 :]
            if crc32c(zeroed) != int.from_bytes(value, "big"):
                raise ProxyProtocolError("proxy protocol v2 header fails its CRC32C check")
        elif kind == PP2_TYPE_UNIQUE_ID and len(value) > 128:
            raise ProxyProtocolError("proxy protocol UNIQUE_ID TLV is over 128 bytes")
        elif kind == PP2_TYPE_SSL:
            parse_ssl(value)
        if kind != PP2_TYPE_NOOP:
            tlvs[kind] = value
    return tlvs


def parse_ssl(value: bytes) -> SSLInfo:
    """The value of an SSL TLV: client (1 byte), verify (4 bytes), then sub-TLVs."""
    if len(value) < 5:
        raise ProxyProtocolError(f"SSL TLV of the proxy protocol is {len(value)} bytes, under 5")
    where = "the SSL TLV of the proxy protocol v2 header"
    fields = {kind: sub for _, kind, sub in _items(memoryview(value)[5:], where)}
    return SSLInfo(value[0], int.from_bytes(value[1:5], "big"), fields)


def encode_v2(
    source: Endpoint | None,
    destination: Endpoint | None,
    *,
    datagram: bool = False,
    tlvs: Mapping[int, bytes] | None = None,
    checksum: bool = False,
) -> bytes:
    """A v2 header: PROXY with the two endpoints, or LOCAL when either is None.

    IP endpoints of mixed families are written as IPv6 (v4-mapped). ``checksum`` adds a
    CRC32C TLV over the whole header.
    """
    items = dict(tlvs or {})
    if source is None or destination is None:
        ver_cmd, fam, addresses = 0x20, 0x00, b""
    elif isinstance(source, str) and isinstance(destination, str):
        ver_cmd, fam = 0x21, 0x30 | (2 if datagram else 1)
        addresses = _unix_field(source) + _unix_field(destination)
    elif isinstance(source, tuple) and isinstance(destination, tuple):
        src, dst = _sent(source[0]), _sent(destination[0])
        if src.version != dst.version:
            src, dst = _as_v6(src), _as_v6(dst)
        ver_cmd, fam = 0x21, (0x10 if src.version == 4 else 0x20) | (2 if datagram else 1)
        _check_ports(source[1], destination[1])
        addresses = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    else:
        raise ValueError("the PROXY protocol cannot say an IP and a unix endpoint together")
    body = addresses + b"".join(
        struct.pack("!BH", kind, len(value)) + value for kind, value in items.items()
    )
    if checksum:
        body += struct.pack("!BH", PP2_TYPE_CRC32C, 4) + b"\0\0\0\0"
    if len(body) > 0xFFFF:
        raise ValueError("a proxy protocol v2 header holds at most 65535 bytes after its head")
    header = SIGNATURE + bytes((ver_cmd, fam)) + len(body).to_bytes(2, "big") + body
    if checksum:
        header = header[:-4] + crc32c(header).to_bytes(4, "big")
    return header


def _unix_field(path: str) -> bytes:
    # surrogateescape: a path read from a header (``_unix_path``) is written back as it was
    name = path[1:] if path.startswith("@") else path
    raw = (b"\0" if path.startswith("@") else b"") + name.encode("utf-8", "surrogateescape")
    if len(raw) > 108:
        raise ValueError(f"unix path too long for the proxy protocol: {path!r}")
    return raw.ljust(108, b"\0")


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as the CRC32C TLV uses; headers are small, so Python will do."""
    crc = 0xFFFFFFFF
    table = _CRC32C
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


__all__ = [
    "DEFAULT_MAX_SIZE",
    "SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderReader",
    "ProxyProtocolError",
    "SSLInfo",
    "crc32c",
    "encode_v1",
    "encode_v2",
    "parse_ssl",
    "parse_v1",
    "parse_v2",
]
