"""The blocking TLS stream: a StreamTransport over a connected socket, through ``TLSLayer``.

Role: what ``connect("tls://...")`` and a TLS listener's ``accept()`` return; the same
contract as every StreamTransport (``transports.base``). It is the sans-IO ``TLSLayer`` over
a blocking ``SocketStream``, not an ``ssl.SSLSocket``: an SSLSocket cannot half-close
(``unwrap()`` waits for the peer's close_notify and hands the socket back), and one
thread reading while another writes would use one OpenSSL object from two threads at once,
which OpenSSL does not allow. Here a lock guards the layer, never a system call.

Rules:
- ``read_into`` returns 0 if and only if the peer's close_notify came; a TCP EOF without
  it raises ``UncleanEOF`` (the data may have been cut short: a truncation attack looks
  the same);
- ``send_eof()`` sends close_notify, then shuts the socket down for writing. Over TLS 1.3
  that ends our direction only and reading goes on (RFC 8446 §6.1), exactly like a TCP
  half-close; a TLS 1.2 peer answers with its own close_notify and stops sending
  (RFC 5246 §7.2.1). Writing afterwards raises ``Closed``;
- the other way round, a TLS 1.2 peer's close_notify is answered with ours as soon as it
  is read, as openssl s_client does (RFC 5246 §7.2.1); writing then raises ``PeerClosed``;
- ``close()`` sends close_notify (if not sent), then waits at most ``close_timeout``
  seconds for the peer's (reading and dropping what comes), so that nothing the peer still
  sends meets a closed socket and an RST that would destroy our last bytes in flight; a
  close from another thread while one is blocked in this stream closes at once;
- ciphertext leaves in the order the layer made it: one writer at a time sends what is
  queued, and a reader that made some (a TLS 1.3 KeyUpdate answer) never waits for it;
- ``sendfile`` copies through TLS (the kernel cannot encrypt for us): pread and write;
- the handshake has a deadline (``handshake_timeout``); a peer that says nothing, or too
  little, gets ``HandshakeTimeout``.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from ipcnet.addresses import Address
from ipcnet.errors import (
    Broken,
    CertificateExpired,
    Closed,
    HostnameMismatch,
    IPCError,
    PeerClosed,
    Timeout,
    TLSError,
)
from ipcnet.transports.base import Listener, StreamTransport
from ipcnet.transports.files import read_region
from ipcnet.transports.sockets import SocketStream
from ipcnet.transports.tls.context import ServerContext, TLSOptions, client_context
from ipcnet.transports.tls.failures import with_dates, with_names
from ipcnet.transports.tls.layer import TLSLayer

if TYPE_CHECKING:
    from ipcnet.transports.tls import probe

RAW_CHUNK = 64 * 1024  # ciphertext read per recv (four full records)
WRITE_CHUNK = 256 * 1024  # plaintext encrypted per sendall (bounds the ciphertext buffered)
FILE_CHUNK = 256 * 1024
EXPLAIN_WAIT = 0.5  # seconds a failed writer waits for a reader to decode the peer's alert


def tls_where(raw_where: str) -> str:
    """tcp://h:p -> tls://h:p, unix:///p -> tls+unix:///p (the name TLS users see)."""
    scheme, _, rest = raw_where.partition(":")
    if scheme in ("tcp", "tcp4", "tcp6"):
        return f"tls:{rest}"
    if scheme == "unix":
        return f"tls+unix:{rest}"
    return raw_where


class TLSStream(StreamTransport):
    """A TLS connection over a connected socket; see the module docstring for the rules."""

    def __init__(self, raw: SocketStream, layer: TLSLayer, where: str | None = None) -> None:
        self.raw = raw
        self.layer = layer
        self.where = where or tls_where(raw.where)
        layer.where = self.where
        self._lock = threading.Lock()  # guards the layer (never held across a system call)
        self._wlock = threading.Lock()  # one sender of ciphertext at a time
        self._rbuf = memoryview(bytearray(RAW_CHUNK))
        self._eof_sent = False
        self._peer_done = False  # a TLS 1.2 peer's close_notify came: nothing more may be sent
        self._readers = 0  # threads in read_into
        self._failure: TLSError | None = None  # what the layer raised to a reader

    # --- the handshake ------------------------------------------------------------------

    def handshake(self) -> None:
        """Complete the handshake within ``layer.handshake_timeout`` seconds, or raise."""
        user_timeout = self.raw.timeout
        deadline = time.monotonic() + self.layer.handshake_timeout
        try:
            while True:
                try:
                    done = self.layer.handshake()
                except IPCError:
                    self._send_alert()
                    raise
                self._flush(blocking=True)
                if done:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.layer.timed_out()
                self.raw.timeout = left
                try:
                    n = self.raw.read_into(self._rbuf)
                except Timeout:
                    raise self.layer.timed_out() from None
                if n:
                    self.layer.receive(self._rbuf[:n])
                else:
                    self.layer.receive_eof()
        finally:
            if not self.raw.closed:
                self.raw.timeout = user_timeout

    def _send_alert(self) -> None:
        """Best effort: the alert OpenSSL made tells the peer why the handshake failed."""
        try:
            self._flush(blocking=True)
        except IPCError:
            pass  # the peer is gone already

    # --- data -------------------------------------------------------------------------

    def read_into(self, buf: memoryview) -> int:
        if self._closed:  # the layer may still hold plaintext, or the peer's close_notify
            self._check_open("read from")
        self._readers += 1
        try:
            n = self._read_into(buf)
            if n == 0 and self.layer.version == "TLSv1.2":
                self._answer_close()
            return n
        except TLSError as exc:
            self._failure = exc  # for a writer whose peer left after saying why (see _explained)
            raise
        finally:
            self._readers -= 1

    def _read_into(self, buf: memoryview) -> int:
        layer = self.layer
        while True:
            with self._lock:
                n = layer.read_into(buf)
                while n and n < len(buf):  # more whole records: one call, not one per record
                    try:
                        more = layer.read_into(buf[n:])
                    except IPCError:
                        break  # sticky in the layer: the next read raises it
                    if not more:
                        break
                    n += more
                queued = layer.pending
            if queued:  # an answer made while reading (KeyUpdate, a no_renegotiation
                self._flush(blocking=False)  # alert): the peer may be waiting for it
            if n is not None:
                return n
            got = self.raw.read_into(self._rbuf)
            if got == 0 and self._closed:
                raise Closed(f"closed while reading: {self.where}")
            with self._lock:
                if got:
                    layer.receive(self._rbuf[:got])
                else:
                    layer.receive_eof()

    def _answer_close(self) -> None:
        """RFC 5246 §7.2.1: a TLS 1.2 peer's close_notify is answered at once with ours, and
        pending writes are dropped (TLS 1.3 keeps our direction open: RFC 8446 §6.1)."""
        self._peer_done = True
        if self._eof_sent or self._closed:
            return
        try:
            self.send_eof()
        except IPCError:
            pass  # the peer is gone already: there is nobody to answer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._peer_done and not self._closed:
            raise PeerClosed(
                f"peer closed: {self.where} ended the tls 1.2 session (close_notify), "
                "which allows nothing more to be sent"
            )
        if self._eof_sent or self._closed:
            self._check_open("write to")
            raise Closed(f"cannot write to {self.where}: this side sent eof (close_notify)")
        view = memoryview(data).cast("B")
        with self._wlock:
            for start in range(0, len(view), WRITE_CHUNK):
                with self._lock:
                    self.layer.write(view[start : start + WRITE_CHUNK])
                self._send_queued()
        if self.layer.pending:
            self._flush(blocking=False)

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Copy a file region through TLS (no sendfile(2) here); the bytes sent."""
        self._check_open("send a file to")
        sent = 0
        while sent < count:
            chunk = read_region(fd, offset + sent, min(FILE_CHUNK, count - sent))
            if not chunk:
                break
            self.write(chunk)
            sent += len(chunk)
        return sent

    def send_eof(self) -> None:
        self._check_open("send eof on")
        if self._eof_sent:
            return
        self._eof_sent = True
        with self._wlock:
            with self._lock:
                self.layer.close_notify()
            self._send_queued()
        try:
            self.raw.send_eof()
        except Broken as exc:
            raise self._explained(exc) from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        raw = self.raw
        if raw._blocked or raw.closed:  # another thread is inside: wake it, now
            raw.close()
            return
        try:
            self._close_politely()
        except IPCError:
            pass  # the peer is gone or silent: closing is all that is left
        finally:
            raw.close()

    def _close_politely(self) -> None:
        layer = self.layer
        if not layer.established:
            return
        raw = self.raw
        raw.timeout = layer.close_timeout
        if not self._eof_sent:
            self._eof_sent = True
            with self._lock:
                layer.close_notify()
            self._send_queued()
            raw.send_eof()
        deadline = time.monotonic() + layer.close_timeout
        while not (layer.eof or layer.raw_eof):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            raw.timeout = left
            got = raw.read_into(self._rbuf)
            with self._lock:
                if got:
                    layer.receive(self._rbuf[:got])
                else:
                    layer.receive_eof()
                while layer.read() and not layer.eof:
                    pass  # what the peer still says is dropped: we are closing

    # --- sending ciphertext -------------------------------------------------------------

    def _send_queued(self) -> None:
        """Send what the layer queued; the caller holds the write lock."""
        while True:
            with self._lock:
                out = self.layer.outgoing()
            if not out:
                return
            try:
                self.raw.write(out)
            except Broken as exc:
                raise self._explained(exc) from exc

    def _explained(self, error: Broken) -> IPCError:
        """A write failed because the peer left: if it said why first (a TLS alert, such as
        "certificate required" after a TLS 1.3 handshake), that is the error to report."""
        deadline = time.monotonic() + EXPLAIN_WAIT
        while self._readers and self._failure is None and time.monotonic() < deadline:
            time.sleep(0.01)  # a reader thread has the bytes: let it decode the alert
        if self._failure is not None or self._readers:
            return self._failure or error
        raw, timeout = self.raw, self.raw.timeout
        try:
            raw.timeout = 0  # only what has arrived already
            got = raw.read_into(self._rbuf)
        except IPCError:
            return error
        finally:
            if not raw.closed:
                raw.timeout = timeout
        with self._lock:
            if got:
                self.layer.receive(self._rbuf[:got])
            alert = self.layer.failure()  # the data before it is kept for the next read
        if isinstance(alert, TLSError):
            self._failure = alert
            return alert
        return error

    def _flush(self, blocking: bool) -> None:
        """Send queued ciphertext unless (``blocking=False``) another thread is sending:
        that thread looks again once it is done, so nothing is left behind."""
        while self.layer.pending:
            if not self._wlock.acquire(blocking):
                return
            try:
                self._send_queued()
            finally:
                self._wlock.release()

    # --- the rest of the contract --------------------------------------------------------

    def fileno(self) -> int:
        return self.raw.fileno()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def read_ready(self) -> bool:
        with self._lock:
            return self.layer.ready()

    @property
    def timeout(self) -> float | None:
        return self.raw.timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self.raw.timeout = value

    @property
    def local_address(self) -> Address | None:
        return _as_tls(self.raw.local_address)

    @property
    def peer_address(self) -> Address | None:
        return _as_tls(self.raw.peer_address)

    def get_option(self, name: str) -> int:
        return self.raw.get_option(name)

    def set_option(self, name: str, value: int) -> None:
        self.raw.set_option(name, value)

    # --- what was agreed ------------------------------------------------------------------

    @property
    def version(self) -> str | None:
        return self.layer.version

    @property
    def cipher(self) -> str | None:
        return self.layer.cipher

    @property
    def alpn(self) -> str | None:
        return self.layer.alpn

    def peer_certificate(self) -> dict[str, object] | None:
        return self.layer.peer_certificate()


def _as_tls(address: Address | None) -> Address | None:
    if address is None:
        return None
    scheme = {"tcp": "tls", "unix": "tls+unix"}.get(address.scheme, address.scheme)
    return replace(address, scheme=scheme)


def client(
    raw: SocketStream, options: TLSOptions, host: str | None, where: str | None = None
) -> TLSStream:
    """Run the client handshake on a connected socket (``host``: the name to check).

    A certificate for another name is reported with the names it does have, an expired
    (or not yet valid) one with its dates, or, when its own dates are right, as a ca
    certificate of its chain (openssl s_client: the error's depth): they are read from a
    second, unverified handshake, made only for the message. With ``options.sessions``
    the last session with this server (and name) is offered, and the new one kept.
    """
    # an absolute name's trailing dot is neither sent (RFC 6066 §3) nor checked (as curl)
    server_name = (options.sni or host or "").removesuffix(".") or None

    def build() -> ssl.SSLContext:
        context = client_context(options)
        if server_name is None and options.context is None and context.check_hostname:
            context.check_hostname = False  # tls+unix, no --sni: the chain is checked, no name
        return context

    sessions = options.sessions
    if sessions is None:
        context, session, keep = build(), None, None
    else:
        context = sessions.context((options, server_name is None), build)
        server = (where or str(raw.peer_address), server_name)
        session, keep = sessions.get(server), partial(sessions.keep, server)
    layer = TLSLayer(
        context,
        server_side=False,
        server_hostname=server_name,
        handshake_timeout=options.handshake_timeout,
        close_timeout=options.close_timeout,
        session=session,
        on_session=keep,
    )
    stream = TLSStream(raw, layer, where)
    try:
        stream.handshake()
    except (HostnameMismatch, CertificateExpired) as exc:
        peer = raw.peer_address
        raw.close()
        found = _names_of(peer, options, server_name)
        if found is None:
            raise  # the names could not be read: the error as it is
        if isinstance(exc, CertificateExpired):
            if found.not_before is None or found.not_after is None:
                raise
            raise with_dates(exc, stream.where, found.not_before, found.not_after) from exc
        raise with_names(exc, found.sans, found.common_name) from exc
    except BaseException:
        raw.close()
        raise
    return stream


def _names_of(
    peer: Address | None, options: TLSOptions, server_name: str | None
) -> probe.Names | None:
    """The names and dates of the peer's certificate, from a fresh connection that checks
    nothing."""
    from ipcnet.transports.tls import probe  # only on this error path

    return probe.certificate_names(peer, options, server_name)


def server(raw: SocketStream, context: ssl.SSLContext, options: TLSOptions) -> TLSStream:
    """Run the server handshake on an accepted socket."""
    layer = TLSLayer(
        context,
        server_side=True,
        handshake_timeout=options.handshake_timeout,
        close_timeout=options.close_timeout,
        alpn=options.alpn,
    )
    stream = TLSStream(raw, layer)
    try:
        stream.handshake()
    except BaseException:
        raw.close()
        raise
    return stream


class TLSListener(Listener[TLSStream]):
    """A listening socket whose ``accept()`` returns TLS streams, handshake done.

    ``contexts.current`` is read at every accept, so a reload applies to the next
    handshake. A peer that fails its handshake makes ``accept()`` raise its TLSError. The
    handshake blocks (up to its deadline), so servers' event loops serve ``raw`` instead,
    through the TLS session wrapper (``ipcnet.drivers.tls``). ``close()`` also closes the
    connections still in their handshake, so that an ``accept()`` inside one wakes with
    ``Closed`` (the Listener contract), not after the handshake timeout.
    """

    servable: ClassVar[bool] = False

    def __init__(
        self,
        raw: Listener[SocketStream],
        contexts: ServerContext,
        options: TLSOptions,
        address: Address | None = None,
    ) -> None:
        self.raw = raw
        self.contexts = contexts
        self.options = options
        if address is None:
            self.address = _as_tls(raw.address) or raw.address
        elif address.is_inet:
            self.address = address.with_port(int(raw.address.port or 0))
        else:
            self.address = address
        self.where = str(self.address) if address is not None else tls_where(raw.where)
        self._handshaking: set[SocketStream] = set()  # accepted, handshake not done yet
        self._lock = threading.Lock()

    def accept(self) -> TLSStream:
        return self._serve(self.raw.accept())

    def try_accept(self) -> TLSStream | None:
        raw = self.raw.try_accept()
        if raw is None:
            return None
        raw.set_blocking(True)
        return self._serve(raw)

    def _serve(self, raw: SocketStream) -> TLSStream:
        """The handshake, which close() can end (it closes ``raw`` then)."""
        with self._lock:
            if self.raw.closed:
                raw.close()
                raise Closed(f"closed while accepting on {self.where}")
            self._handshaking.add(raw)
        try:
            return server(raw, self.contexts.current, self.options)
        except IPCError as exc:
            if self.raw.closed:
                raise Closed(f"closed while accepting on {self.where}") from exc
            raise
        finally:
            with self._lock:
                self._handshaking.discard(raw)

    def set_blocking(self, flag: bool) -> None:
        self.raw.set_blocking(flag)

    def fileno(self) -> int:
        return self.raw.fileno()

    @property
    def timeout(self) -> float | None:
        return self.raw.timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self.raw.timeout = value

    @property
    def local_address(self) -> Address | None:
        return _as_tls(self.raw.local_address)

    @property
    def closed(self) -> bool:
        return self.raw.closed

    def abandon(self) -> None:
        self.raw.abandon()

    def close(self) -> None:
        self.raw.close()
        with self._lock:
            pending = list(self._handshaking)
        for raw in pending:  # wakes an accept() inside a handshake (with Closed)
            raw.close()
