"""--accept-proxy: every connection opens with a PROXY protocol header (v1 or v2).

Role: admission's step for connections that come through a load balancer or relay
(HAProxy ``send-proxy``/``send-proxy-v2``): ``ProxiedService`` wraps the service, so every
model gets it by the same path; its session reads the header with the shared sans-IO
``protocols.proxy.ProxyHeaderReader`` and only then starts the real session, with the
client the header names as its peer (the access log and the status page show it).
Rules (HAProxy's doc/proxy-protocol.txt):
- the header is required, never guessed: bytes that are not a header, a malformed or
  too long one, EOF before it ends, or no complete header within HEADER_TIMEOUT seconds
  close the connection (counted as refused, logged at info level, so by default, as
  nginx logs "broken header" and HAProxy its PROXY errors) before any byte of the
  service is sent;
- LOCAL (a balancer's own health check) and UNKNOWN keep the connection's own endpoints;
- the bytes after the header are the session's first bytes;
- ``stats_section`` says who is behind each live connection (``"proxied"``: the
  balancer-side ``host:port``, as the status page shows a socket's remote end -> the
  client the header named), so the status page shows real clients; a session is listed
  while it lives (a weak reference), never after.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

from ipcnet.addresses import Address, parse
from ipcnet.errors import AddressError
from ipcnet.protocols.base import (
    CLOSE,
    Actions,
    Outcome,
    Peer,
    Run,
    Service,
    Session,
    Timer,
    as_list,
)
from ipcnet.protocols.proxy import Endpoint, ProxyHeader, ProxyHeaderReader, ProxyProtocolError

log = logging.getLogger("ipcnet.serve")

HEADER_TIMEOUT = 5.0


def endpoint_address(endpoint: Endpoint | None, transport: str) -> Address | None:
    """A PROXY header's endpoint as an Address (tcp://, udp://, unix://)."""
    if endpoint is None:
        return None
    try:
        if isinstance(endpoint, str):
            return parse(f"unix://{endpoint}" if endpoint.startswith("@") else f"unix:{endpoint}")
        host, port = endpoint
        scheme = "udp" if transport.startswith("UDP") else "tcp"
        return parse(f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}")
    except AddressError:
        return None


def shown(address: Address | None) -> str | None:
    """``host:port`` (``[v6]:port``) of an inet address, as the status page shows one."""
    if address is None or address.host is None or address.port is None:
        return None
    host = address.host
    return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"


class ProxiedSession:
    """Before the header: collect it; after: the real session, untouched."""

    __slots__ = ("__weakref__", "client", "inner", "outer", "peer", "reader")

    def __init__(self, outer: ProxiedService, peer: Peer) -> None:
        self.outer = outer
        self.peer = peer
        self.reader: ProxyHeaderReader | None = ProxyHeaderReader()
        self.inner: Session | None = None
        self.client: Address | None = None  # the header's source, once read

    def _refuse(self, why: str) -> Actions:
        self.reader = None
        self.outer.refused()
        log.info("refusing %s: %s", self.peer.address, why)
        return CLOSE

    def feed(self, data: bytes) -> Actions:
        if self.inner is not None:
            return self.inner.feed(data)
        assert self.reader is not None
        try:
            header = self.reader.feed(data)
        except ProxyProtocolError as exc:
            return self._refuse(str(exc))
        if header is None:
            return None
        return self._begin(header, self.reader.rest)

    def _begin(self, header: ProxyHeader, rest: bytes) -> Actions:
        peer = self.peer
        if not header.local and header.source is not None:
            peer = Peer(
                endpoint_address(header.source, header.transport) or peer.address,
                endpoint_address(header.destination, header.transport) or peer.local,
            )
            key = shown(self.peer.address)
            if key is not None and peer.address is not None:
                self.client = peer.address
                self.outer.clients[key] = self
        self.reader = None
        self.inner, first = self.outer.service.start(peer)
        actions: list[Any] = [Timer(None), *as_list(first)]
        if rest:
            actions += as_list(self.inner.feed(rest))
        return actions

    def feed_eof(self) -> Actions:
        if self.inner is not None:
            return self.inner.feed_eof()
        assert self.reader is not None
        try:
            self.reader.feed_eof()
        except ProxyProtocolError as exc:
            return self._refuse(str(exc))
        return CLOSE

    def resume(self, job: Run, outcome: Outcome) -> Actions:
        assert self.inner is not None  # no job runs before the session starts
        return self.inner.resume(job, outcome)

    def on_timer(self) -> Actions:
        if self.inner is not None:
            return self.inner.on_timer()
        return self._refuse(f"no proxy protocol header within {HEADER_TIMEOUT:g} s")


class ProxiedService:
    """A service whose connections open with a PROXY header; the rest is ``service``'s."""

    def __init__(self, service: Service, refused: Callable[[], None]) -> None:
        self.service = service
        self.name = service.name
        self.refusal = service.refusal
        self.refused = refused
        self.clients: weakref.WeakValueDictionary[str, ProxiedSession] = (
            weakref.WeakValueDictionary()
        )

    def start(self, peer: Peer) -> tuple[Session, Actions]:
        return ProxiedSession(self, peer), Timer(HEADER_TIMEOUT)

    def datagram(self, data: bytes, peer: Peer) -> Actions:
        return self.service.datagram(data, peer)

    def stats_section(self) -> dict[str, Any]:
        inner = getattr(self.service, "stats_section", None)
        clients = {k: shown(s.client) or str(s.client) for k, s in list(self.clients.items())}
        return {**(inner() if inner is not None else {}), "proxied": clients}

    def __getattr__(self, name: str) -> Any:  # attach() and whatever else the service offers
        return getattr(self.service, name)
