"""One TLS connection as bytes in / bytes out: ``ssl.SSLObject`` over two ``MemoryBIO``s.

Role: the sans-IO core every TLS user in ipcnet shares (the blocking stream in ``stream``,
the servers' session wrapper in ``ipcnet.drivers.tls``): ciphertext from the peer goes in
with ``receive``/``receive_eof``, plaintext comes out of ``read``; plaintext goes in with
``write`` and ciphertext to send comes out of ``outgoing``. It never touches a descriptor
and knows no clock: its users arm the handshake deadline (``handshake_timeout``) and the
close wait (``close_timeout``) their own way and ask ``timed_out()`` for the error.

Rules:
- every ssl.SSLError is translated here (``failures.translate``) and leaves as a TLSError;
  a failed handshake is first read against the peer's first bytes
  (``failures.handshake_failure``): a ClientHello sent back is an echo server, an EOF before
  any answer a server that closed at once, where OpenSSL's reasons would mislead;
- ``read`` returns plaintext, ``b""`` once the peer's close_notify came (EOF, sticky), or
  None when it needs more ciphertext; a raw EOF without close_notify makes the next read
  raise ``UncleanEOF`` (the data may have been cut short) once the whole records before it
  are read. After the handshake OpenSSL is not told of that EOF: it would make it a fatal
  error (OpenSSL 3 answers it with a decode_error alert and refuses to write), and our
  direction is still open: a reply and our close_notify can still be sent;
- a server given ``alpn`` refuses a ClientHello that offers protocols, none of them ours,
  with a fatal no_application_protocol alert (RFC 7301 §3.2; see ``hello``);
- a client given ``session`` offers it (resumption); ``on_session`` is told each
  resumable session the connection holds: at the end of the handshake (TLS 1.2), and at
  our close_notify and the peer's (a TLS 1.3 ticket comes after the handshake, read with
  the data);
- ``close_notify()`` ends our direction: in TLS 1.3 the peer may go on sending and we go
  on reading (RFC 8446 §6.1); a TLS 1.2 peer answers with its own close_notify and stops
  (RFC 5246 §7.2.1), so there it ends the connection once the peer has answered.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any, cast

from ipcnet.errors import IPCError
from ipcnet.transports.tls import hello
from ipcnet.transports.tls.context import CLOSE_TIMEOUT, HANDSHAKE_TIMEOUT, accepted
from ipcnet.transports.tls.failures import (
    handshake_failure,
    no_common_protocol,
    timed_out,
    translate,
    unclean_eof,
)

READ_CHUNK = 64 * 1024


class TLSLayer:
    """The TLS state of one connection; see the module docstring for the rules."""

    __slots__ = (
        "_accepted",
        "_alpn",
        "_end",
        "_got",
        "_hello",
        "_in",
        "_keep",
        "_obj",
        "_on_session",
        "_out",
        "_peer_ended",
        "_plain",
        "_sent",
        "close_sent",
        "close_timeout",
        "eof",
        "established",
        "handshake_timeout",
        "server_side",
        "where",
    )

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        where: str = "peer",
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        close_timeout: float = CLOSE_TIMEOUT,
        alpn: tuple[str, ...] = (),
        session: ssl.SSLSession | None = None,
        on_session: Callable[[ssl.SSLSession], None] | None = None,
    ) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(
            self._in,
            self._out,
            server_side=server_side,
            server_hostname=server_hostname,
            session=session,
        )
        self._on_session = on_session
        self._accepted = accepted(context)
        self.server_side = server_side
        self.where = where
        self.handshake_timeout = handshake_timeout
        self.close_timeout = close_timeout
        self.established = False  # the handshake completed
        self.eof = False  # the peer's close_notify arrived
        self.close_sent = False  # our close_notify is queued
        self._plain = bytearray()  # plaintext decrypted ahead by close_notify
        self._end: bool | IPCError | None = None  # what came after it: EOF (True) or an error
        self._peer_ended = False  # the transport ended after the handshake (see receive_eof)
        self._alpn = alpn  # a server's protocols: a ClientHello offering none is refused
        self._hello = bytearray() if server_side and alpn else None  # its bytes, until read
        # a client's handshake bytes both ways (up to MAX_HELLO), to tell what failed where
        # OpenSSL's reason would mislead (``failures.handshake_failure``): an echoed
        # ClientHello, no answer at all, a TLS 1.2 CertificateRequest (it is in the clear)
        self._keep = 0 if server_side else hello.MAX_HELLO
        self._got = bytearray()
        self._sent: bytearray | None = None if server_side else bytearray()

    # --- ciphertext in ----------------------------------------------------------------

    def receive(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes that arrived from the peer."""
        self._in.write(data)
        if not self.established and len(self._got) < self._keep:
            self._got += data[: self._keep - len(self._got)]
        if self._hello is not None:
            self._hello += data

    def receive_eof(self) -> None:
        """The peer's transport ended (TCP FIN)."""
        if self.established:
            self._peer_ended = True  # kept from OpenSSL: see the module's rules
        elif not self._in.eof:
            self._in.write_eof()

    @property
    def raw_eof(self) -> bool:
        return self._peer_ended or self._in.eof

    def _starved(self) -> None:
        """No whole record is left: if the peer's stream ended too, it was cut (raises)."""
        if self._peer_ended:
            self._end = unclean_eof(self.where)
            raise self._end

    # --- the handshake ----------------------------------------------------------------

    def handshake(self) -> bool:
        """Go on with the handshake: True once it is done (its output is in ``outgoing``)."""
        if self.established:
            return True
        if self._hello is not None:
            self._check_alpn()
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLError as exc:
            raise self._error(exc) from exc
        self.established = True
        self._got, self._sent = bytearray(), None  # only a failed handshake reads them
        self._keep_session()
        return True

    def _keep_session(self) -> None:
        """Tell ``on_session`` the session, if it can be resumed (see the rules)."""
        if self._on_session is None:
            return
        session = self._obj.session
        if session is not None and (session.has_ticket or self.version == "TLSv1.2"):
            self._on_session(session)

    @property
    def resumed(self) -> bool:
        """Whether the handshake resumed an earlier session."""
        return self._obj.session_reused

    def _check_alpn(self) -> None:
        """RFC 7301 §3.2: a ClientHello whose ALPN offer has none of ours gets a fatal
        no_application_protocol alert (Python's ssl would go on without a protocol)."""
        assert self._hello is not None
        try:
            offered = hello.offered_alpn(self._hello)
        except (ValueError, IndexError):
            offered = ()  # not a ClientHello we can read: OpenSSL will say what it is
        if offered is None and len(self._hello) < hello.MAX_HELLO:
            return  # not whole yet
        self._hello = None
        if offered and not set(offered) & set(self._alpn):
            self._out.write(hello.NO_APPLICATION_PROTOCOL)
            raise no_common_protocol(self.where, offered, self._alpn)

    def timed_out(self) -> IPCError:
        """The error for a handshake that missed its deadline."""
        answered = self.server_side or bool(self._got)  # a client may wait for a banner
        return timed_out(self.where, self.handshake_timeout, answered=answered)

    # --- plaintext out ----------------------------------------------------------------

    def read(self, n: int = READ_CHUNK) -> bytes | None:
        """Up to n bytes of plaintext; b"" at the peer's close_notify; None: need more."""
        if self._plain:
            data = bytes(self._plain[:n])
            del self._plain[:n]
            return data
        if self.eof or self._end is not None:
            return self._ended()
        if not self._in.pending and not self._in.eof and not self._obj.pending():
            self._starved()  # nothing to decrypt: spare OpenSSL the call
            return None
        try:
            data = self._obj.read(n)
        except ssl.SSLWantReadError:
            self._starved()
            return None
        except ssl.SSLZeroReturnError:
            data = b""
        except ssl.SSLError as exc:
            self._end = self._error(exc)
            raise self._end from exc
        if not data:
            self.eof = True
            self._keep_session()
        return data

    def read_into(self, buf: memoryview) -> int | None:
        """As ``read``, into ``buf``: the count, 0 at the peer's close_notify, None: need more."""
        if self._plain:
            n = min(len(buf), len(self._plain))
            buf[:n] = self._plain[:n]
            del self._plain[:n]
            return n
        if self.eof or self._end is not None:
            self._ended()
            return 0
        if not self._in.pending and not self._in.eof and not self._obj.pending():
            self._starved()
            return None
        try:
            n = cast(int, self._obj.read(len(buf), buf))
        except ssl.SSLWantReadError:
            self._starved()
            return None
        except ssl.SSLZeroReturnError:
            n = 0
        except ssl.SSLError as exc:
            self._end = self._error(exc)
            raise self._end from exc
        if n == 0:
            self.eof = True
            self._keep_session()
        return n

    def _ended(self) -> bytes:
        """What reading gives after the records drained by ``close_notify``: EOF or an error."""
        end = self._end
        if isinstance(end, IPCError):
            raise end  # sticky: every later read fails the same way
        self._end = None
        self.eof = True
        return b""

    def ready(self) -> bool:
        """Whether ``read`` returns at once (data, EOF or an error) without more ciphertext;
        the whole records already received are decrypted to find out."""
        if not (self._plain or self.eof or self._end is not None):
            self._drain()
        return bool(self._plain or self.eof or self._end is not None)

    def failure(self) -> IPCError | None:
        """The error the whole records received so far end in (an alert), if any; the
        plaintext before it is decrypted and kept for ``read``."""
        if not self.eof:
            self._drain()
        return self._end if isinstance(self._end, IPCError) else None

    def _drain(self) -> None:
        """Decrypt every whole record there is into ``_plain`` (see ``close_notify``)."""
        while self._end is None:
            try:
                data = self._obj.read(READ_CHUNK)
            except ssl.SSLWantReadError:
                if self._peer_ended:
                    self._end = unclean_eof(self.where)
                return
            except ssl.SSLZeroReturnError:
                data = b""
            except ssl.SSLError as exc:
                self._end = self._error(exc)
                return
            if not data:
                self._end = True
                self._keep_session()
                return
            self._plain += data

    def read_all(self) -> bytes | None:
        """All the plaintext there is now: b"" at EOF (after what came before it), None if
        nothing; raises at an unclean EOF only once nothing is left to hand out."""
        parts: list[bytes] = []
        while True:
            try:
                data = self.read()
            except IPCError:
                if parts:
                    break  # hand out what did come; the error comes on the next call
                raise
            if not data:
                if data is not None and not parts:
                    return b""
                break
            parts.append(data)
        return b"".join(parts) if parts else None

    # --- plaintext in, ciphertext out ----------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt all of ``data`` (the records go to ``outgoing``)."""
        try:
            self._obj.write(data)
        except ssl.SSLError as exc:
            raise self._error(exc) from exc

    def close_notify(self) -> None:
        """Queue our close_notify (once); reading goes on until the peer's arrives."""
        if self.close_sent:
            return
        self.close_sent = True
        if not self.established:
            return  # no session yet: nothing to close politely
        if not self.eof:
            # SSLObject.unwrap() calls SSL_shutdown twice; the second call reads on, looking
            # for the peer's close_notify, and drops the application data it meets. So first
            # decrypt every whole record already here (later reads hand it out), leaving it
            # nothing but a partial record it cannot finish.
            self._drain()
        self._keep_session()  # the tickets that came are read: TLS 1.3's are resumable
        try:
            self._obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            pass  # sent; the peer's close_notify has not come yet
        except ssl.SSLError:
            pass  # the session already failed: there is nothing to close politely

    def outgoing(self) -> bytes:
        """The ciphertext to send now (b"" if none)."""
        data = self._out.read()
        sent = self._sent
        if sent is not None and not self.established and len(sent) < hello.MAX_HELLO:
            sent += data[: hello.MAX_HELLO - len(sent)]
        return data

    @property
    def pending(self) -> int:
        """Bytes of ciphertext waiting in ``outgoing``."""
        return self._out.pending

    # --- what was agreed ------------------------------------------------------------------

    @property
    def version(self) -> str | None:
        return self._obj.version()

    @property
    def cipher(self) -> str | None:
        info = self._obj.cipher()
        return info[0] if info else None

    @property
    def alpn(self) -> str | None:
        return self._obj.selected_alpn_protocol()

    def peer_certificate(self) -> dict[str, Any] | None:
        """The peer's verified certificate as ``ssl`` decodes it (None if it sent none)."""
        if not self.established:
            return None
        cert = self._obj.getpeercert()
        return dict(cert) if cert else None

    def _error(self, exc: ssl.SSLError) -> IPCError:
        if not self.established:
            failure = handshake_failure(
                exc, self.where, self.server_side, bytes(self._got), self._sent
            )
            if failure is not None:
                return failure
        return translate(exc, self.where, self.server_side, self._accepted, self.established)
