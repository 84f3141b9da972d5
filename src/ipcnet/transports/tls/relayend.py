"""A relay's TLS end: the non-blocking pump side of a TLS stream whose handshake is done.

Role: what ``ipcnet.relay``'s pump uses for a tls:// side (terminated or originated). It
is ``splice.RelayEnd``'s contract over the same ``TLSLayer`` as the blocking stream: the
socket's ciphertext is fed to the layer and plaintext comes out of ``read_into``;
plaintext given to ``write`` is encrypted and sent. The kernel cannot splice through TLS,
so this end never splices (the pump copies through the layer).
Rules:
- ``read_into`` fills the buffer with every whole record there is, so a short read means
  the layer holds no whole record and waiting on the socket is right; 0 is the peer's
  close_notify; a TCP EOF without it is EOF too (``unclean`` remembers it), as the
  servers' TLS wrapper treats it (curl and browsers often skip close_notify); a record
  that fails (a bad MAC, garbage) raises its TLSError once the fatal alert OpenSSL made
  for it is sent (RFC 8446 §6.2; stunnel and ``ipcnet serve`` send it): the peer learns
  why before the pump resets the connection;
- ``write`` takes at most ``WRITE_CHUNK`` bytes of plaintext at a time and keeps the
  ciphertext the socket did not take (``backlog``); the pump calls ``flush`` before it
  moves anything else that way, so a direction holds one chunk's records at most;
- ``shutdown_write`` is TLS's half-close as the layer documents it: close_notify, then
  the socket's FIN once every record before it is out;
- ``abort`` resets the socket (no close_notify: a reset is passed on as a reset).
Terminating, the relay reads the client's first record through its model like any bytes
(``first_record`` says when it is whole, or that it is not TLS), so no model reads a byte
past it before the hand-over; ``terminate`` runs the server handshake from there.
"""

from __future__ import annotations

import contextlib

from ipcnet.errors import IPCError, TLSError, UncleanEOF
from ipcnet.transports.sockets import SocketStream
from ipcnet.transports.splice import RelayEnd
from ipcnet.transports.tls.context import ServerContext, TLSOptions
from ipcnet.transports.tls.failures import not_tls
from ipcnet.transports.tls.layer import TLSLayer
from ipcnet.transports.tls.stream import RAW_CHUNK, TLSStream

WRITE_CHUNK = 64 * 1024  # plaintext encrypted per write (four full records)


class TLSRelayEnd(RelayEnd):
    """One TLS side of a relay (see the module's rules)."""

    splices = False

    def __init__(self, stream: TLSStream) -> None:
        super().__init__(stream.raw)
        self.splices = False
        self.tls = stream
        self.layer = stream.layer
        self.where = stream.where
        self._rbuf = memoryview(bytearray(RAW_CHUNK))
        self._out = b""  # ciphertext the socket has not taken yet
        self._fin = False  # the FIN goes once ``_out`` is sent
        self.unclean = False

    # --- plaintext out ----------------------------------------------------------------

    def read_into(self, buf: memoryview) -> int | None:
        try:
            return self._read_into(buf)
        except UncleanEOF:
            raise
        except TLSError:
            if self.layer.pending:  # the alert that tells the peer what failed
                self._queue()
                with contextlib.suppress(IPCError):
                    self.flush()
            raise

    def _read_into(self, buf: memoryview) -> int | None:
        layer = self.layer
        while True:
            try:
                n = layer.read_into(buf)
            except UncleanEOF:
                self.unclean = True
                return 0
            if n:
                while n < len(buf):  # every whole record there is, in one call
                    try:
                        more = layer.read_into(buf[n:])
                    except UncleanEOF:
                        break  # sticky: the next call reports the end
                    if not more:
                        break
                    n += more
            if layer.pending:  # a read may answer (a TLS 1.3 KeyUpdate)
                self._queue()
                self.flush()
            if n is not None:
                return n
            got = super().read_into(self._rbuf)
            if got is None:
                return None
            if got:
                layer.receive(self._rbuf[:got])
            else:
                layer.receive_eof()

    # --- plaintext in, ciphertext out ----------------------------------------------------

    def write(self, data: memoryview) -> int:
        if self._out and not self.flush():
            return 0
        n = min(len(data), WRITE_CHUNK)
        self.layer.write(data[:n])
        self._queue()
        self.flush()
        return n

    @property
    def backlog(self) -> bool:
        return bool(self._out) or self._fin

    def flush(self) -> bool:
        """Send what the socket takes of the queued ciphertext (then the FIN, if due);
        True once nothing is left."""
        while self._out:
            n = super().write(memoryview(self._out))
            if not n:
                return False
            self._out = self._out[n:]
        if self._fin:
            self._fin = False
            super().shutdown_write()
        return True

    def shutdown_write(self) -> None:
        self.layer.close_notify()
        self._queue()
        self._fin = True
        self.flush()

    def _queue(self) -> None:
        self._out += self.layer.outgoing()


# --- terminating: the client's first record, then the handshake ------------------------

HANDSHAKE_RECORD = 0x16  # the content type of the first record a TLS client sends


def first_record(data: bytes | bytearray, where: str) -> bool:
    """Whether ``data`` (the first bytes from a client) holds its whole first TLS record,
    so the handshake can take it from there; NotTLS if it cannot start a handshake."""
    if data and data[0] != HANDSHAKE_RECORD:
        raise not_tls(where, server_side=True)
    return len(data) >= 5 and len(data) >= 5 + int.from_bytes(data[3:5], "big")


def terminate(
    raw: SocketStream, hello: bytes, contexts: ServerContext, options: TLSOptions
) -> TLSStream:
    """The server handshake on an accepted socket whose first bytes (``hello``) were read
    already; blocks up to the handshake deadline; the socket is closed if it fails."""
    raw.set_blocking(True)  # an event loop's socket: the handshake blocks, with a deadline
    layer = TLSLayer(
        contexts.current,
        server_side=True,
        handshake_timeout=options.handshake_timeout,
        close_timeout=options.close_timeout,
        alpn=options.alpn,
    )
    layer.receive(hello)
    stream = TLSStream(raw, layer)
    try:
        stream.handshake()
    except BaseException:
        raw.close()
        raise
    return stream
