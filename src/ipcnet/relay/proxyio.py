"""The PROXY protocol at a relay's two edges: read it from a client, write it upstream.

Role: glue between ``protocols.proxy`` (sans-IO) and the relay's streams. Rules (HAProxy's
``accept-proxy`` and ``send-proxy``):
- ``accept``: the header must come first and whole within ``timeout`` seconds; it is read
  in small pieces and never guessed at; bytes that follow it are handed back to be relayed;
  a missing, malformed or too long header raises ``ProxyProtocolError``;
- ``header_for``: the client's own addresses as the relay saw them (or as an accepted
  header named them); a client the protocol cannot name (an unnamed unix socket, mixed
  families) is sent as v1 UNKNOWN or v2 LOCAL, as the spec says.
"""

from __future__ import annotations

import time

from ipcnet.addresses import Address
from ipcnet.errors import Timeout
from ipcnet.protocols.proxy import (
    Endpoint,
    ProxyHeader,
    ProxyHeaderReader,
    ProxyProtocolError,
    encode_v1,
    encode_v2,
)
from ipcnet.transports import StreamTransport

VERSIONS = ("v1", "v2")
READ_PIECE = 256  # a v1 line fits; a v2 header takes a few reads


def accept(stream: StreamTransport, timeout: float | None) -> tuple[ProxyHeader, bytes]:
    """Read and check the header the client sent first; (header, bytes after it)."""
    reader = ProxyHeaderReader()
    deadline = None if timeout is None else time.monotonic() + timeout
    saved = stream.timeout
    try:
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout("timed out")
                stream.timeout = left
            try:
                data = stream.read(READ_PIECE)
            except Timeout:
                raise ProxyProtocolError(
                    f"no whole proxy protocol header from {stream.where} within {timeout:g} s"
                ) from None
            if not data:
                reader.feed_eof()
            header = reader.feed(data)
            if header is not None:
                return header, reader.rest
    finally:
        stream.timeout = saved


def endpoint(address: Address | None) -> Endpoint | None:
    """An Address as the PROXY protocol names it: (host, port) or a unix path."""
    if address is None:
        return None
    if address.is_inet and isinstance(address.port, int):
        return (address.host or "0.0.0.0", address.port)
    if address.is_unix and address.path is not None:
        return ("@" if address.abstract else "") + address.path
    return None


def header_for(version: str, source: Endpoint | None, destination: Endpoint | None) -> bytes:
    """The header that names this client to a server behind the relay."""
    if version == "v1":
        return encode_v1(source, destination)
    if isinstance(source, str) != isinstance(destination, str):
        source = destination = None  # an IP client on a unix listener or the reverse: LOCAL
    if isinstance(destination, str) and source is None:
        source = ""  # an unnamed unix client: its path is empty
    return encode_v2(source, destination)


__all__ = ["VERSIONS", "ProxyProtocolError", "accept", "endpoint", "header_for"]
