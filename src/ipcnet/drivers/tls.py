"""TLS for every model: a service wrapper that puts a ``TLSLayer`` in front of each session.

Role: ``TLSService(service, contexts, options)`` is itself a service; the driver engine and
every model serve it like any other, so TLS is one layer (the sans-IO ``TLSLayer``), not
one per model. Ciphertext from the connection is fed to the layer, the plaintext it yields
to the inner session; the inner session's actions become ciphertext to send.

Rules (what each inner action becomes):

    inner action       what the wrapper hands the engine
    -----------------  ----------------------------------------------------------------
    bytes              the records that encrypt them (consecutive ones encrypted together)
    SendFile           Run jobs that pread the region a chunk at a time, each chunk sent
                       encrypted (the kernel's sendfile cannot encrypt); what the session
                       said after it waits until the region is sent
    ShutdownWrite      close_notify, then ShutdownWrite (the socket's FIN follows it)
    Close              close_notify and ShutdownWrite, then a wait of at most
                       ``close_timeout`` for the peer's close_notify or EOF (what comes
                       meanwhile is dropped), then Close: nothing the peer still sends
                       meets a closed socket, whose RST could destroy our last bytes
    Run, Timer, Sent   passed through (the handshake's deadline owns the timer before the
                       inner session starts, the close wait after it closed); a Sent
                       dropped unsent is told NOTHING_KNOWN_SENT

- the inner session starts when the handshake is done, and sees plaintext only;
- the handshake has a deadline (``handshake_timeout``); a failure is logged with its
  reason, counted, and the connection closed after any alert OpenSSL made; the server
  goes on serving;
- plain text on the port: a first byte that cannot start a TLS handshake record gets
  ``plain_reply`` (for HTTPS, a short plaintext 400, as nginx answers) and a close;
- a peer's TCP EOF without close_notify is EOF for the inner session (browsers and curl
  often skip it); it is the client's data that might be cut, so it is counted
  (``unclean_eofs``) and logged with -v;
- ``--stats`` and the status page get a ``tls`` section (``TLSStats``);
- a server may mix plain and TLS addresses: connections accepted on a plain listener go
  to the inner service directly;
- a service may declare ``alpn``, the application protocols it speaks (HTTP:
  ``("http/1.1",)``): they are offered by default, and a service that speaks http/1.1 answers
  plain HTTP on its TLS port with ``PLAIN_HTTP_REPLY``;
- SIGHUP reloads the certificate and key for new handshakes (live connections keep theirs;
  a bad file keeps the old one and logs why): the process that gets the signal reloads at
  once and bumps a generation in shared memory, and every other process of the server
  (prefork workers) reloads before its next handshake.

How a server uses this (``ServerCore``): ``secure(service, addresses, tls)`` is the
service it runs; each listener is opened with ``listen_keywords(service, address)`` and
served as ``served(service, listener)``.
"""

from __future__ import annotations

import collections
import logging
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from ipcnet.addresses import Address
from ipcnet.errors import IPCError, TLSError, Unsupported
from ipcnet.protocols.base import (
    CLOSE,
    NOTHING_KNOWN_SENT,
    SHUTDOWN_WRITE,
    Action,
    Actions,
    Close,
    Outcome,
    Peer,
    Run,
    SendFile,
    Sent,
    Service,
    Session,
    ShutdownWrite,
    Timer,
    as_list,
)
from ipcnet.transports.base import Listener
from ipcnet.transports.files import read_region, release
from ipcnet.transports.tls import ServerContext, TLSLayer, TLSListener, TLSOptions
from ipcnet.transports.tls.failures import handshake_eof, not_tls
from ipcnet.transports.tls.stats import TLSStats
from ipcnet.transports.tls.stream import tls_where

log = logging.getLogger("ipcnet.tls")

FILE_CHUNK = 256 * 1024  # bytes of a SendFile region read and encrypted per job
HANDSHAKE_RECORD = 0x16  # the content type of the first record a TLS client sends
_PLAIN_HTTP_BODY = b"400 bad request: plain http was sent to an https port\n"
PLAIN_HTTP_REPLY = (  # what HTTPS answers to plain HTTP, as nginx does (then it closes)
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_PLAIN_HTTP_BODY), _PLAIN_HTTP_BODY)
)
_BUFFERS = (bytes, bytearray, memoryview)


def is_tls(address: Address) -> bool:
    return address.spec.transport == "tls"


def secure(service: Service, addresses: Sequence[Address], tls: Mapping[str, Any]) -> Service:
    """The service a server runs: behind TLS when any of its addresses is tls:// or
    tls+unix:// (``tls``: TLSOptions' fields as keywords, from the CLI flags)."""
    if not any(is_tls(a) for a in addresses):
        if tls:
            raise Unsupported("tls options given, but no tls:// or tls+unix:// address to use them")
        return service
    options = TLSOptions.of(**tls)
    alpn = tuple(getattr(service, "alpn", ()))
    if alpn and not options.alpn:
        options = replace(options, alpn=alpn)
    reply = PLAIN_HTTP_REPLY if "http/1.1" in alpn else b""
    return TLSService(service, ServerContext(options), options, plain_reply=reply)


def listen_keywords(service: Service, address: Address) -> dict[str, Any]:
    """What ``open_listener`` needs for this address: the server's context for a TLS one."""
    if isinstance(service, TLSService) and is_tls(address):
        return {"context": service.contexts.current}
    return {}


def served(service: Service, listener: Listener[Any]) -> Listener[Any]:
    """The listener a server's models accept on: a TLS listener's socket itself (the
    handshakes run in the sessions, through TLSService), any other as it is."""
    if isinstance(listener, TLSListener):
        assert isinstance(service, TLSService)
        raw = listener.raw
        raw.address, raw.where = listener.address, listener.where  # it is shown as tls://
        service.secured.add(_endpoint(raw.address))
        return raw
    if isinstance(service, TLSService):
        if is_tls(listener.address):  # a TLS socket inherited at a SIGUSR2 upgrade
            service.secured.add(_endpoint(listener.address))
        else:
            service.plain.add(_endpoint(listener.address))
    return listener


def _endpoint(address: Address | None) -> tuple[object, ...] | None:
    """What tells our listeners apart in a connection's local address."""
    if address is None:
        return None
    if address.is_inet:
        return ("inet", address.port)
    return ("unix", address.path, address.abstract)


class TLSService:
    """``service`` behind TLS; see the module docstring."""

    def __init__(
        self,
        service: Service,
        contexts: ServerContext,
        options: TLSOptions | None = None,
        stats: TLSStats | None = None,
        plain_reply: bytes = b"",
    ) -> None:
        self.inner = service
        self.name = service.name
        self.refusal = b""  # a refusal in plain text means nothing to a TLS client
        self.contexts = contexts
        self.options = options or contexts.options
        self.stats = stats or TLSStats(contexts.current)
        self.plain_reply = plain_reply
        self.secured: set[tuple[object, ...] | None] = set()  # our TLS listeners
        self.plain: set[tuple[object, ...] | None] = set()  # plain listeners beside them
        self._generation = self.stats.generation  # the reloads this process has done

    def reload(self) -> None:
        """SIGHUP (a ``ServerCore.on_reload`` hook): reload the certificate for new
        handshakes; other processes of the server see the new generation and follow."""
        self._generation = self.stats.bump_generation()
        self.contexts.reload()

    def stats_section(self) -> dict[str, Any]:
        """The ``tls`` part of ``--stats`` and of the status page (and the inner service's)."""
        inner = getattr(self.inner, "stats_section", None)
        return {"tls": self.stats.snapshot(), **(inner() if inner is not None else {})}

    def start(self, peer: Peer) -> tuple[Session, Actions]:
        if self.plain and _endpoint(peer.local) not in self.secured:
            return self.inner.start(peer)  # accepted on a plain listener
        generation = self.stats.generation
        if generation != self._generation:  # another process got SIGHUP
            self._generation = generation
            self.contexts.reload()
        where = tls_where(str(peer.address)) if peer.address else "a tls+unix peer"
        layer = TLSLayer(
            self.contexts.current,
            server_side=True,
            where=where,
            handshake_timeout=self.options.handshake_timeout,
            close_timeout=self.options.close_timeout,
            alpn=self.options.alpn,
        )
        return TLSSession(self, layer, peer), Timer(layer.handshake_timeout)

    def datagram(self, data: bytes, peer: Peer) -> Actions:
        raise NotImplementedError(f"{self.name} over tls is a stream service (no dtls)")

    def attach(self, stats: Callable[[], dict[str, Any]]) -> None:
        """The inner service's status page reads the server's counters (with ``tls``)."""
        attach = getattr(self.inner, "attach", None)
        if attach is not None:
            attach(stats)


class _Region:
    """A SendFile being copied through TLS. An owned descriptor is released exactly once:
    when the region is done, or when its session is dropped first (a connection that
    ended mid-file: the engine drops the session, and nothing else would tell us)."""

    __slots__ = ("count", "fd", "offset", "release")

    def __init__(self, action: SendFile, session: TLSSession) -> None:
        self.fd = action.fd
        self.offset = action.offset
        self.count = action.count
        self.release = weakref.finalize(session, release, action.fd) if action.close else None

    def done(self) -> None:
        if self.release is not None:
            self.release()  # a finalizer runs once, then is dead


class TLSSession:
    """One connection: handshake, then the inner session's bytes through the layer."""

    def __init__(self, service: TLSService, layer: TLSLayer, peer: Peer) -> None:
        self.service = service
        self.layer = layer
        self.peer = peer
        self.inner: Session | None = None  # started once the handshake is done
        self.state = "handshake"  # -> open -> closing -> closed
        self.region: _Region | None = None  # a SendFile being copied
        self.held: collections.deque[Action] = collections.deque()  # after the region
        self.inner_job = False  # the inner session waits for a Run of its own
        self.inner_eof = False  # the inner session was told of the peer's EOF
        self.first = True  # nothing came yet: the first byte says whether it is TLS
        self._plain: list[bytes | bytearray | memoryview] = []  # to encrypt together

    # --- the engine's calls --------------------------------------------------------------

    def feed(self, data: bytes) -> Actions:
        layer = self.layer
        if self.state == "handshake":
            if self.first:
                self.first = False
                if data[0] != HANDSHAKE_RECORD:
                    return self._plain_text()
            layer.receive(data)
            return self._handshake()
        if self.state == "closed":
            return None
        layer.receive(data)
        if self.state == "open":
            return self._pump([])
        return self._closing_input()

    def feed_eof(self) -> Actions:
        self.layer.receive_eof()
        if self.state == "handshake":
            error = handshake_eof(self.layer.where)
            log.debug("tls: %s", error)
            self.service.stats.failure(error)
            return self._end()
        if self.state == "open":
            return self._pump([])
        return self._end()

    def on_timer(self) -> Actions:
        if self.state == "handshake":
            return self._failed(self.layer.timed_out())
        if self.state == "open" and self.inner is not None:
            return self._wrap(self.inner.on_timer(), [])
        return self._end()  # the close wait is over

    def linger(self, seconds: float) -> Actions | None:
        """The server ends an idle connection (a graceful stop; ``Engine.linger``): once
        open, as at any close: close_notify, our FIN, the wait for the peer's (RFC 8446
        §6.1: close_notify before closing the write side). None before that: the engine's
        own lingering close (there is no session to end yet)."""
        return self._close() if self.state == "open" else None

    def resume(self, job: Run, outcome: Outcome) -> Actions:
        region = self.region
        if region is not None and not self.inner_job:
            return self._region_chunk(region, outcome)
        self.inner_job = False
        assert self.inner is not None
        out = self._wrap(self.inner.resume(job, outcome), [])
        if self._feedable():
            out = self._pump(out)  # plaintext that waited for the job
        return out

    # --- the handshake ---------------------------------------------------------------------

    def _handshake(self) -> Actions:
        layer = self.layer
        try:
            done = layer.handshake()
        except TLSError as exc:
            return self._failed(exc)
        out: list[Action] = []
        self._ciphertext(out)
        if not done:
            return out
        self.service.stats.handshake(layer.version, layer.cipher)
        self.state = "open"
        out.append(Timer(None))  # the handshake deadline is over
        self.inner, first = self.service.inner.start(self.peer)
        out = self._wrap(first, out)
        return self._pump(out)

    def _failed(self, error: IPCError) -> Actions:
        self.service.stats.failure(error)
        log.info("tls handshake failed: %s", error)
        out: list[Action] = []
        self._ciphertext(out)  # the alert that tells the peer why
        return [*out, *self._end()]

    def _plain_text(self) -> Actions:
        error = not_tls(self.layer.where, server_side=True)
        self.service.stats.failure(error)
        log.info("%s (closed)", error)
        reply = self.service.plain_reply
        self.state = "closed"
        return [reply, CLOSE] if reply else CLOSE

    # --- plaintext in ---------------------------------------------------------------------

    def _pump(self, out: list[Action]) -> list[Action]:
        """Feed the inner session what the layer has decrypted, until it must wait."""
        layer = self.layer
        while self._feedable():
            try:
                plain = layer.read_all()
            except TLSError as exc:
                if layer.raw_eof and not layer.eof:  # TCP EOF without close_notify
                    log.debug("tls: %s (taken as eof)", exc)
                    self.service.stats.unclean_eof()
                    plain = b""
                else:
                    log.info("tls: %s", exc)
                    self.service.stats.failure(exc)
                    return [*self._flush(out), *self._end()]
            if plain is None:
                break
            assert self.inner is not None
            if plain:
                out = self._wrap(self.inner.feed(plain), out)
            else:
                self.inner_eof = True
                out = self._wrap(self.inner.feed_eof(), out)
        return self._flush(out)

    def _feedable(self) -> bool:
        """Whether the inner session may be fed now (not waiting, not sending a file)."""
        return (
            self.state == "open"
            and not self.inner_eof
            and not self.inner_job
            and self.region is None
        )

    def _closing_input(self) -> Actions:
        """After our close_notify: drop what comes until the peer's close_notify."""
        try:
            while self.layer.read():
                pass
        except TLSError:
            return self._end()
        return self._end() if self.layer.eof else None

    # --- the inner session's actions out ------------------------------------------------

    def _wrap(self, actions: Actions, out: list[Action]) -> list[Action]:
        """Turn inner actions into ours, appended to ``out`` (see the module's table)."""
        for action in as_list(actions):
            if self.region is not None or self.state != "open":
                if self.state == "open":
                    self.held.append(action)
                else:
                    _drop(action)
                continue
            if isinstance(action, _BUFFERS):
                if action:
                    self._plain.append(action)
                continue
            self._flush(out)
            cls = action.__class__
            if cls is SendFile:
                region = _Region(action, self)  # type: ignore[arg-type]
                self.region = region
                out.append(self._next_chunk(region))
            elif cls is ShutdownWrite:
                self.layer.close_notify()
                self._ciphertext(out)
                out.append(SHUTDOWN_WRITE)
            elif cls is Close:
                out.extend(self._close())
            elif cls is Run:
                self.inner_job = True
                out.append(action)
            else:
                out.append(action)  # Timer
        return out

    def _flush(self, out: list[Action]) -> list[Action]:
        """Encrypt the plaintext gathered so far; its records join ``out``."""
        if self._plain:
            parts, self._plain = self._plain, []
            try:
                self.layer.write(parts[0] if len(parts) == 1 else b"".join(parts))
            except TLSError as exc:
                log.info("tls: %s", exc)
                out.extend(self._end())
                return out
        self._ciphertext(out)
        return out

    def _ciphertext(self, out: list[Action]) -> None:
        if self.layer.pending:
            out.append(self.layer.outgoing())

    def _close(self) -> list[Action]:
        layer = self.layer
        already = layer.close_sent
        layer.close_notify()
        out: list[Action] = []
        self._ciphertext(out)
        if not already:
            out.append(SHUTDOWN_WRITE)
        if layer.eof or layer.raw_eof:
            return [*out, *self._end()]
        self.state = "closing"
        out.append(Timer(layer.close_timeout))
        return out

    def _end(self) -> list[Action]:
        self.state = "closed"
        if self.region is not None:
            self.region.done()
            self.region = None
        for action in self.held:
            _drop(action)
        self.held.clear()
        return [CLOSE]

    # --- files through TLS -------------------------------------------------------------

    def _next_chunk(self, region: _Region) -> Run:
        return Run(partial(read_region, region.fd, region.offset, min(FILE_CHUNK, region.count)))

    def _region_chunk(self, region: _Region, outcome: Outcome) -> Actions:
        if outcome.error is not None or self.state != "open":
            if outcome.error is not None:
                log.info("tls: reading a file for %s: %s", self.layer.where, outcome.error)
            return self._end()
        chunk: bytes = outcome.value
        region.offset += len(chunk)
        region.count -= len(chunk)
        out: list[Action] = []
        if chunk:
            self._plain.append(chunk)
            self._flush(out)
        if chunk and region.count > 0:
            out.append(self._next_chunk(region))
            return out
        if region.count > 0:  # the file shrank while it was sent: the length announced for
            return self._end()  # it cannot be kept, and closing says so (as with sendfile)
        region.done()
        self.region = None
        held, self.held = list(self.held), collections.deque()
        out = self._wrap(held, out)
        if self._feedable():
            out = self._pump(out)
        return out


def _drop(action: Action) -> None:
    """An action that will never be done: release the file it hands over, if any."""
    if isinstance(action, SendFile) and action.close:
        release(action.fd)
    elif isinstance(action, Sent):
        action.then(NOTHING_KNOWN_SENT)


__all__ = [
    "PLAIN_HTTP_REPLY",
    "TLSService",
    "TLSSession",
    "is_tls",
    "listen_keywords",
    "secure",
    "served",
]
