"""The relay as a service: what happens to one client, from its first byte to its log line.

Role: ``RelayService`` is a Service of the service/driver contract, so the relay runs
under any concurrency model. A session reads the PROXY header first when the relay
accepts one (sans-IO: bytes in, the header out, with a deadline), then hands the
connection over (``protocols.handover``): the job connects a target, writes the PROXY
header when the relay sends one, and returns the ``pump.Bridge`` the model drives.
Rules:
- the header must be whole within ``connect_timeout`` seconds; missing, malformed or too
  long: the client is refused (reset), counted and logged;
- every target refusing or timing out: the client is reset (a refusal passed on);
- when the bridge ends its counters go to ``RelayStats`` and its line to the log.
"""

from __future__ import annotations

import logging
import time
from typing import cast

from ipcnet.errors import IPCError
from ipcnet.protocols.base import Action, Actions, BaseService, BaseSession, Peer, Session, Timer
from ipcnet.protocols.handover import Handover
from ipcnet.protocols.proxy import Endpoint, ProxyHeaderReader, ProxyProtocolError
from ipcnet.relay import proxyio
from ipcnet.relay.pump import Bridge
from ipcnet.relay.stats import End, RelayStats, log_line
from ipcnet.relay.targets import Targets
from ipcnet.transports import StreamTransport
from ipcnet.transports.splice import RelayEnd

log = logging.getLogger("ipcnet.relay")


class RelayService(BaseService):
    name = "relay"

    def __init__(self, targets: Targets, config: object, stats: RelayStats) -> None:
        from ipcnet.relay.server import RelayConfig

        assert isinstance(config, RelayConfig)
        self.targets = targets
        self.config = config
        self.stats = stats

    def stats_section(self) -> dict[str, object]:
        """The relay's own counters, for the driver's stats socket and status JSON."""
        return {self.name: self.stats.snapshot()}

    def start(self, peer: Peer) -> tuple[Session, Actions]:
        session = RelaySession(self, peer)
        if self.config.accept_proxy:
            return session, Timer(self.config.connect_timeout)  # the header's deadline
        return session, _action(Handover(session.take_over))


class RelaySession(BaseSession):
    def __init__(self, service: RelayService, peer: Peer) -> None:
        self.service = service
        self.started = time.monotonic()
        self.who = str(peer.address) if peer.address else "unnamed peer"
        self.source: Endpoint | None = proxyio.endpoint(peer.address)
        self.destination: Endpoint | None = proxyio.endpoint(peer.local)
        self.first = b""
        self.reader = ProxyHeaderReader() if service.config.accept_proxy else None
        self.open = True
        service.stats.add("total")
        service.stats.add("active")

    def _over(self) -> None:
        """The connection is over (ended, refused or failed): counted once."""
        if self.open:
            self.open = False
            self.service.stats.add("active", -1)

    # --- the PROXY header, when the relay accepts one --------------------------------

    def feed(self, data: bytes) -> Actions:
        assert self.reader is not None
        try:
            header = self.reader.feed(data)
        except ProxyProtocolError as exc:
            return self._refuse(str(exc))
        if header is None:
            return None
        if not header.local:
            self.source, self.destination = header.source, header.destination
            self.who = f"{_show(header.source)} (via {self.who})"
        self.first = self.reader.rest
        self.reader = None
        return [Timer(None), _action(Handover(self.take_over))]

    def feed_eof(self) -> Actions:
        try:
            assert self.reader is not None
            self.reader.feed_eof()
        except ProxyProtocolError as exc:
            return self._refuse(str(exc))
        return None  # pragma: no cover - feed_eof always raises

    def on_timer(self) -> Actions:
        timeout = self.service.config.connect_timeout
        return self._refuse(f"no whole proxy protocol header within {timeout:g} s")

    def _refuse(self, why: str) -> Actions:
        self.service.stats.add("refused")
        self._log([End("client", "refused", time.monotonic(), why)])

        def reset(stream: StreamTransport) -> None:
            self._over()
            RelayEnd(stream).abort()

        return _action(Handover(reset))

    # --- the hand-over: blocking, it connects --------------------------------------

    def take_over(self, stream: StreamTransport) -> Bridge | None:
        service = self.service
        config = service.config
        first = self.first
        if config.send_proxy:
            first = proxyio.header_for(config.send_proxy, self.source, self.destination) + first
        try:
            upstream, target = service.targets.connect()
        except IPCError as exc:
            self._log([End("server", "refused", time.monotonic(), str(exc))])
            self._over()
            RelayEnd(stream).abort()
            return None
        self.target = str(target)
        try:
            client = RelayEnd(stream)
            server = RelayEnd(upstream)
            return Bridge(
                client,
                server,
                splice=config.splice,
                size=config.buffer,
                first=first,
                linger=config.linger,
                idle_timeout=config.idle_timeout,
                on_end=self._ended,
            )
        except IPCError as exc:
            self._log([End("relay", "error", time.monotonic(), str(exc))])
            self._over()
            stream.close()
            upstream.close()
            return None

    def _ended(self, bridge: Bridge) -> None:
        stats = self.service.stats
        stats.add("bytes_up", bridge.bytes_up)
        stats.add("bytes_down", bridge.bytes_down)
        stats.add("spliced", bridge.spliced)
        stats.add("copied", bridge.copied)
        self._over()
        self._log(bridge.ends, bridge.bytes_up, bridge.bytes_down)

    target = "-"

    def _log(self, ends: list[End], up: int = 0, down: int = 0) -> None:
        if log.isEnabledFor(logging.INFO):
            seconds = time.monotonic() - self.started
            log.info(log_line(self.who, self.target, up, down, seconds, ends))


def _action(handover: Handover) -> Action:
    """A Handover as one of the contract's actions (the Action alias predates it)."""
    return cast(Action, handover)


def _show(endpoint: object) -> str:
    if isinstance(endpoint, tuple):
        host, port = endpoint
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(endpoint or "unix peer")
