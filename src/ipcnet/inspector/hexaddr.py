"""Decode the address forms of /proc/net/{tcp,udp,raw}[6] and of sock_diag.

Role: bytes/hex in, display strings out; no I/O.
Rules (proc(5), net/ipv4/tcp_ipv4.c): an IPv4 address is the ``__be32`` printed with
``%08X`` as a *host-order* integer, so on a little-endian machine 127.0.0.1 reads
``0100007F``; an IPv6 address is four such 32-bit words; a port is printed ``%04X`` from a
host-order number, so it reads naturally (``1F90`` = 8080). IPv4-mapped IPv6 addresses
(``::ffff:a.b.c.d``) are shown as IPv4, like the socket API reports them to the program.
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import Literal

ByteOrder = Literal["little", "big"]
_MAPPED_PREFIX = b"\0" * 10 + b"\xff\xff"
_inet_ntop = socket.inet_ntop
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6


def ipv4_bytes(word_hex: str, byteorder: ByteOrder = sys.byteorder) -> bytes:
    """The 4 network-order bytes behind /proc's ``%08X`` of a ``__be32``."""
    return int(word_hex, 16).to_bytes(4, byteorder)


def ipv6_bytes(hex32: str, byteorder: ByteOrder = sys.byteorder) -> bytes:
    """The 16 network-order bytes behind /proc's four ``%08X`` words."""
    if len(hex32) != 32:
        raise ValueError(f"an IPv6 address in /proc is 32 hex digits, not {len(hex32)}")
    return b"".join(ipv4_bytes(hex32[i : i + 8], byteorder) for i in range(0, 32, 8))


def host_from_bytes(raw: bytes) -> str:
    """Display form of a 4- or 16-byte network-order address; IPv4-mapped shown as IPv4."""
    if len(raw) == 4:
        return _inet_ntop(_AF_INET, raw)
    if raw[:12] == _MAPPED_PREFIX:
        return _inet_ntop(_AF_INET, raw[12:])
    return _inet_ntop(_AF_INET6, raw)


def decode_host(hexaddr: str, byteorder: ByteOrder = sys.byteorder) -> str:
    """``0100007F`` -> ``127.0.0.1``; 32 hex digits -> an IPv6 address (mapped -> IPv4)."""
    if len(hexaddr) == 8:
        return host_from_bytes(ipv4_bytes(hexaddr, byteorder))
    return host_from_bytes(ipv6_bytes(hexaddr, byteorder))


def decode_endpoint(text: str, byteorder: ByteOrder = sys.byteorder) -> tuple[str, int]:
    """``0100007F:1F90`` -> ``("127.0.0.1", 8080)``."""
    hexaddr, sep, hexport = text.partition(":")
    if not sep or len(hexport) != 4 or len(hexaddr) not in (8, 32):
        raise ValueError(f"not a /proc/net endpoint: {text!r}")
    return decode_host(hexaddr, byteorder), int(hexport, 16)


def encode_endpoint(host: str, port: int, byteorder: ByteOrder = sys.byteorder) -> str:
    """The inverse of ``decode_endpoint`` (for tests and for matching /proc text)."""
    if ":" in host:
        raw = socket.inet_pton(_AF_INET6, host)
        words = struct.unpack("!4I", raw)
        text = "".join(f"{int.from_bytes(w.to_bytes(4, 'big'), byteorder):08X}" for w in words)
    else:
        raw = socket.inet_pton(_AF_INET, host)
        text = f"{int.from_bytes(raw, byteorder):08X}"
    return f"{text}:{port:04X}"


def format_endpoint(
    host: str | None, port: int | None, service: str | None = None, device: str | None = None
) -> str:
    """``127.0.0.1:8080``, ``[::1]:8080``, ``0.0.0.0:*``; a service name replaces the port;
    a device is ss's ``[fe80::1]%eth0:8080``."""
    h = "*" if host is None else (f"[{host}]" if ":" in host else host)
    p = "*" if not port else (service or str(port))
    return f"{h}%{device}:{p}" if device else f"{h}:{p}"


__all__ = [
    "decode_endpoint",
    "decode_host",
    "encode_endpoint",
    "format_endpoint",
    "host_from_bytes",
    "ipv4_bytes",
    "ipv6_bytes",
]
