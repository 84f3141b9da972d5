"""The PROXY protocol header a relay writes upstream (reading one is the session's).

Role: glue between ``protocols.proxy`` (sans-IO) and the relay (the reading side is the
session's, in ``service``). Rules (HAProxy's ``send-proxy``):
- ``header_for``: the client's own addresses as the relay saw them (or as an accepted
  header named them) when both ends are IP; any other client (unix, or an IP client on a
  unix listener) is sent as v1 UNKNOWN or v2 LOCAL with no addresses, as HAProxy's own
  send-proxy does: HAProxy's accept-proxy and nginx stream refuse a v2 AF_UNIX block (its
  216 address bytes), and the receiver keeps the connection's own endpoints either way.
"""

from __future__ import annotations

from ipcnet.addresses import Address
from ipcnet.protocols.proxy import Endpoint, ProxyProtocolError, encode_v1, encode_v2

VERSIONS = ("v1", "v2")
READ_PIECE = 256  # a v1 line fits; a v2 header takes a few reads


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
    if not (isinstance(source, tuple) and isinstance(destination, tuple)):
        source = destination = None  # no IP client to name: LOCAL
    return encode_v2(source, destination)


__all__ = ["VERSIONS", "ProxyProtocolError", "endpoint", "header_for"]
