"""The protocols a TLS ClientHello offers (ALPN), read from its bytes before OpenSSL does;
the handshake messages a TLS 1.2 flight carries in the clear.

Role: RFC 7301 §3.2: a server that supports none of the protocols a client offers SHALL
answer with a fatal no_application_protocol alert. Python's ssl cannot (its ALPN callback
goes on without a protocol), so the server's ``TLSLayer`` reads the offer here first and
sends ``NO_APPLICATION_PROTOCOL`` itself. Rules: no I/O; only what ALPN needs is parsed;
bytes that are not a ClientHello raise ValueError (OpenSSL then says what they are).
``clear_messages`` reads the handshake messages before the first record that is not one
(a ChangeCipherSpec, or TLS 1.3's encrypted records): in TLS 1.2 a server's
CertificateRequest and a client's Certificate are among them (RFC 5246 §7.3), which tells
why a handshake_failure alert came.
"""

from __future__ import annotations

HANDSHAKE = 22  # record content type
CLIENT_HELLO = 1  # handshake message types
CERTIFICATE = 11
CERTIFICATE_REQUEST = 13
ALPN = 16  # extension type (RFC 7301 §3.1)
MAX_HELLO = 1 << 16  # bytes read before giving up (OpenSSL decides then)
#: a plaintext alert record: fatal (2), no_application_protocol (120)
NO_APPLICATION_PROTOCOL = b"\x15\x03\x03\x00\x02\x02\x78"


def offered_alpn(data: bytes | bytearray) -> tuple[str, ...] | None:
    """The protocols the ClientHello at the start of ``data`` offers (() if none), or None
    while it is not whole yet."""
    body = _message(data)
    if body is None:
        return None
    view = memoryview(body)
    at = 2 + 32  # legacy_version, random
    at += 1 + view[at]  # legacy_session_id
    at += 2 + _u16(view, at)  # cipher_suites
    at += 1 + view[at]  # legacy_compression_methods
    if at + 2 > len(view):
        return ()  # no extensions
    end = at + 2 + _u16(view, at)
    at += 2
    while at + 4 <= end:
        kind, size = _u16(view, at), _u16(view, at + 2)
        at += 4
        if kind == ALPN:
            names, name_at = [], at + 2  # after the list's own length
            while name_at < at + size:
                n = view[name_at]
                names.append(bytes(view[name_at + 1 : name_at + 1 + n]).decode("latin-1"))
                name_at += 1 + n
            return tuple(names)
        at += size
    return ()


def _message(data: bytes | bytearray) -> bytes | None:
    """The ClientHello's body, joined from its handshake records; None if not all here."""
    body, at = bytearray(), 0
    while True:
        if len(data) < at + 5:
            return None
        if data[at] != HANDSHAKE:
            raise ValueError("not a handshake record")
        size = _u16(data, at + 3)
        if len(data) < at + 5 + size:
            return None
        body += data[at + 5 : at + 5 + size]
        at += 5 + size
        if len(body) >= 4:
            if body[0] != CLIENT_HELLO:
                raise ValueError("not a client hello")
            need = 4 + int.from_bytes(body[1:4])
            if len(body) >= need:
                return bytes(body[4:need])


def clear_messages(data: bytes | bytearray) -> dict[int, bytes]:
    """The whole handshake messages in the handshake records at the start of ``data``, by
    type (the first of each type)."""
    joined, at = bytearray(), 0
    while at + 5 <= len(data) and data[at] == HANDSHAKE:
        joined += data[at + 5 : at + 5 + _u16(data, at + 3)]
        at += 5 + _u16(data, at + 3)
    messages: dict[int, bytes] = {}
    at = 0
    while at + 4 <= len(joined):
        end = at + 4 + int.from_bytes(joined[at + 1 : at + 4])
        if end > len(joined):
            break
        messages.setdefault(joined[at], bytes(joined[at + 4 : end]))
        at = end
    return messages


def _u16(data: bytes | bytearray | memoryview, at: int) -> int:
    if at + 2 > len(data):
        raise ValueError("cut short")
    return data[at] << 8 | data[at + 1]
