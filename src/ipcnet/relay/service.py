"""The relay as a service: what happens to one client, from its first byte to its log line.

Role: ``RelayService`` is a Service of the service/driver contract, so the relay runs
under any concurrency model. A session reads the PROXY header first when the relay
accepts one (sans-IO: bytes in, the header out, with a deadline), then hands the
connection over (``protocols.handover``): the job connects a target, writes the PROXY
header when the relay sends one, and returns the ``pump.Bridge`` the model drives.
Rules:
- the header must be whole within ``connect_timeout`` seconds; missing, malformed or too
  long: the client is refused (reset), counted and logged;
- a tls:// (tls+unix://) listen address is terminated here: the socket is accepted plain,
  the session reads the client's first TLS record (after the PROXY header, if any) within
  the handshake deadline, and the job runs the rest of the server handshake
  (``transports.tls.relayend.terminate``) where blocking is harmless, as connecting is. A
  client that fails it (plain text, a bad or missing client certificate, silence) is
  refused, counted and logged with the reason, and the relay goes on serving; SIGHUP
  reloads its certificate and key for new handshakes (``reload_certificates``, as stunnel
  and ``ipcnet serve`` do; a bad file keeps the old pair, logged);
- every target refusing or timing out: the client is reset (a refusal passed on); for a
  tls:// target a failed handshake or verification is such a failure; the line says
  "server timeout" when the last one timed out, "server refused" otherwise;
- when the bridge ends its counters go to ``RelayStats`` and its line to the log; an
  exec: target's child that failed (a status over 0, a signal not the relay's) gets a
  line of its own after it, once reaped.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, cast

from ipcnet.addresses import Address
from ipcnet.errors import IPCError, Timeout
from ipcnet.protocols.base import (
    Action,
    Actions,
    BaseService,
    BaseSession,
    Peer,
    Session,
    Timer,
    as_list,
)
from ipcnet.protocols.handover import Handover
from ipcnet.protocols.proxy import Endpoint, ProxyHeaderReader, ProxyProtocolError
from ipcnet.relay import proxyio
from ipcnet.relay.pump import Bridge, end_for
from ipcnet.relay.stats import End, RelayStats, log_line
from ipcnet.relay.targets import Targets
from ipcnet.transports import StreamTransport, process
from ipcnet.transports.sockets import SocketStream
from ipcnet.transports.splice import RelayEnd

if TYPE_CHECKING:
    from subprocess import Popen

log = logging.getLogger("ipcnet.relay")


class RelayService(BaseService):
    name = "relay"

    def __init__(
        self, targets: Targets, config: object, stats: RelayStats, listen: Address | None = None
    ) -> None:
        from ipcnet.relay.server import RelayConfig

        assert isinstance(config, RelayConfig)
        self.targets = targets
        self.config = config
        self.stats = stats
        self.tls: tuple[Any, Any] | None = None  # (ServerContext, TLSOptions) to terminate
        if listen is not None and is_tls(listen):
            from ipcnet.transports.tls import ServerContext, TLSOptions

            options = TLSOptions.of(**config.tls)
            self.tls = (ServerContext(options), options)  # a bad certificate binds nothing

    def reload_certificates(self) -> None:
        """SIGHUP (a ``ServerCore`` reload hook): a terminating relay's next handshakes use
        the certificate and key as the files hold them now; live connections keep theirs."""
        if self.tls is not None and self.tls[0].reload():
            log.info("SIGHUP: reloaded the certificate %s", self.tls[1].cert)

    def stats_section(self) -> dict[str, object]:
        """The relay's own counters, for the driver's stats socket and status JSON."""
        return {self.name: self.stats.snapshot()}

    def start(self, peer: Peer) -> tuple[Session, Actions]:
        session = RelaySession(self, peer)
        if self.config.accept_proxy:
            return session, Timer(self.config.connect_timeout)  # the header's deadline
        if self.tls is not None:
            return session, Timer(self.tls[1].handshake_timeout)  # the first record's
        return session, _action(Handover(session.take_over))


class RelaySession(BaseSession):
    def __init__(self, service: RelayService, peer: Peer) -> None:
        self.service = service
        self.started = time.monotonic()
        self.who = str(peer.address) if peer.address else "unnamed peer"
        if service.tls is not None and peer.address:  # terminated: named as its errors are
            from ipcnet.transports.tls.stream import tls_where

            self.who = tls_where(self.who)
        self.source: Endpoint | None = proxyio.endpoint(peer.address)
        self.destination: Endpoint | None = proxyio.endpoint(peer.local)
        self.first = b""
        self.reader = ProxyHeaderReader() if service.config.accept_proxy else None
        self.hello: bytearray | None = bytearray() if service.tls is not None else None
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
        if self.reader is not None:
            try:
                header = self.reader.feed(data)
            except ProxyProtocolError as exc:
                return self._refuse(str(exc))
            if header is None:
                return None
            if not header.local:
                self.source, self.destination = header.source, header.destination
                self.who = f"{_show(header.source)} (via {self.who})"
            data = self.reader.rest
            self.reader = None
            if self.hello is None:
                self.first = data
                return [Timer(None), _action(Handover(self.take_over))]
            tls = self.service.tls
            assert tls is not None
            self.hello += data
            return [Timer(tls[1].handshake_timeout), *as_list(self._hello())]
        assert self.hello is not None
        self.hello += data
        return self._hello()

    def _hello(self) -> Actions:
        """Terminating TLS: the hand-over once the client's first record is whole."""
        from ipcnet.transports.tls.relayend import first_record

        assert self.hello is not None
        try:
            whole = first_record(self.hello, self.who)
        except IPCError as exc:
            return self._refuse(str(exc))
        return [Timer(None), _action(Handover(self.take_over))] if whole else None

    def feed_eof(self) -> Actions:
        if self.reader is None:
            return self._refuse(f"unclean eof: {self.who} closed the connection before tls")
        try:
            self.reader.feed_eof()
        except ProxyProtocolError as exc:
            return self._refuse(str(exc))
        return None  # pragma: no cover - feed_eof always raises

    def on_timer(self) -> Actions:
        if self.reader is None and self.service.tls is not None:
            timeout = self.service.tls[1].handshake_timeout
            return self._refuse(f"tls handshake timeout: no client hello within {timeout:g} s")
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
        if service.tls is not None:
            from ipcnet.transports.tls.relayend import terminate

            assert isinstance(stream, SocketStream) and self.hello is not None
            try:
                stream = terminate(stream, bytes(self.hello), *service.tls)
            except IPCError as exc:
                service.stats.add("refused")
                self._log([End("client", "refused", time.monotonic(), str(exc))])
                self._over()
                return None
        header = b""
        if config.send_proxy:
            header = proxyio.header_for(config.send_proxy, self.source, self.destination)
        try:
            upstream, target = service.targets.connect(header)
        except IPCError as exc:
            how = "timeout" if isinstance(exc, Timeout) else "refused"  # HAProxy: sC, SC
            self._log([End("server", how, time.monotonic(), str(exc))])
            self._over()
            RelayEnd(stream).abort()
            return None
        self.target = str(target)
        try:
            client = end_for(stream)
            server = end_for(upstream)
            return Bridge(
                client,
                server,
                splice=config.splice,
                size=config.buffer,
                first=first,
                linger=config.linger,
                idle_timeout=config.idle_timeout,
                on_end=self._ended,
                on_child=self._child_ended,
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

    def _child_ended(self, child: Popen[bytes]) -> None:
        """An exec: target's child, reaped: a status over 0, or a signal not the relay's
        own, is logged after the connection's line (socat: "E waitpid(): child N exited
        with status S"; ``ipcnet connect`` exits 1 naming it)."""
        failed = process.failure(child)
        if failed is not None:
            log.warning("%s -> %s: the child (pid %d) %s", self.who, self.target, child.pid, failed)

    target = "-"

    def _log(self, ends: list[End], up: int = 0, down: int = 0) -> None:
        if log.isEnabledFor(logging.INFO):
            seconds = time.monotonic() - self.started
            log.info(log_line(self.who, self.target, up, down, seconds, ends))


def is_tls(address: Address) -> bool:
    return address.spec.transport == "tls"


def plain(address: Address) -> Address:
    """Where a relay listens: a tls:// address as its socket (the relay terminates TLS)."""
    if not is_tls(address):
        return address
    from ipcnet.transports.tls import raw_address

    return raw_address(address)


def _action(handover: Handover) -> Action:
    """A Handover as one of the contract's actions (the Action alias predates it)."""
    return cast(Action, handover)


def _show(endpoint: object) -> str:
    if isinstance(endpoint, tuple):
        host, port = endpoint
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(endpoint or "unix peer")
