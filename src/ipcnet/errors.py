"""The ipcnet exception tree.

Role: every failure a user of ipcnet can see is one of these classes. Transports translate
OSError into them in exactly one place (``ipcnet.transports.oserrors``); no other layer
catches OSError. Messages are short, lower-case, and say what happened and where.

    IPCError
    ├── Closed               your own code closed the channel, then used it (a ValueError)
    ├── Broken               the peer or the kernel ended it (the OSError is chained)
    │   ├── PeerClosed       EPIPE: the reader went away while we wrote
    │   ├── Reset            ECONNRESET / ECONNABORTED
    │   ├── Refused          ECONNREFUSED, or a full listener queue on a unix socket
    │   ├── Unreachable      ENETUNREACH, EHOSTUNREACH, ENXIO ("no reader" on a fifo)
    │   └── IncompleteRead   the stream ended before the bytes a reader required
    ├── Busy                 a limit says "not now": EAGAIN where blocking is off, full queues
    ├── Timeout              a deadline passed (also a builtin TimeoutError)
    ├── Interrupted          another thread's ``wake()`` ended a blocking read
    ├── AddressError         the address is wrong for this machine
    │   ├── InvalidAddress   the URL does not parse (raised by ipcnet.addresses)
    │   ├── ResolveError     getaddrinfo failed (carries gai_strerror text)
    │   ├── AddressInUse     EADDRINUSE, or a live unix socket at the path
    │   ├── AddressNotAvailable  EADDRNOTAVAIL, EAFNOSUPPORT (no IPv6 here, say)
    │   ├── NoSuchSocket     ENOENT / ENOTSOCK on a unix or fifo path
    │   ├── NoSuchFile       ENOENT, ENOTDIR, ELOOP... opening a file:// path (the web server)
    │   └── PermissionDenied EACCES / EPERM
    ├── LimitExceeded        a bound was hit: the data was refused, never cut silently
    │   ├── MessageTooLarge  EMSGSIZE: a datagram too big to send
    │   └── Truncated        a received datagram was larger than the buffer (MSG_TRUNC)
    ├── Unsupported          the operation makes no sense here (read on a write-only pipe end)
    └── ProtocolError        bytes broke the rules of a protocol
        ├── LocalProtocolError   our side tried to break them (a programming error)
        └── RemoteProtocolError  the peer sent something invalid
            └── BadRequest       a request a server cannot serve; ``status`` says why (HTTP)
"""

from __future__ import annotations


class IPCError(Exception):
    """Base of every ipcnet error."""


class Closed(IPCError, ValueError):
    """The channel was closed by this process and then used (a ValueError, as io's
    operations on a closed file raise)."""


class Broken(IPCError):
    """The peer or the kernel ended the channel; ``__cause__`` holds the OSError.
    ``written``: the bytes of the failed operation that went out before it broke (as
    io's BlockingIOError.characters_written), where the operation can tell."""

    written: int = 0


class PeerClosed(Broken):
    """Writing failed because nobody reads any more (EPIPE)."""


class Reset(Broken):
    """The peer aborted the connection (ECONNRESET, ECONNABORTED)."""


class Refused(Broken):
    """Nothing accepted the connection (ECONNREFUSED)."""


class Unreachable(Broken):
    """The peer cannot be reached (ENETUNREACH, EHOSTUNREACH, ENXIO on a fifo)."""


class IncompleteRead(Broken, EOFError):
    """EOF came before the required bytes; ``partial`` holds what did arrive."""

    def __init__(self, message: str, partial: bytes = b"", expected: int | None = None) -> None:
        super().__init__(message)
        self.partial = partial
        self.expected = expected


class Busy(IPCError):
    """A bounded resource is full; try again later."""


class Timeout(IPCError, TimeoutError):
    """A deadline passed before the operation completed."""


class Interrupted(IPCError):
    """Another thread's ``wake()`` ended a blocking read; nothing was read."""


class AddressError(IPCError):
    """The address is malformed or unusable on this machine."""


class InvalidAddress(AddressError, ValueError):
    """The URL does not parse; the message says which part is wrong."""


class ResolveError(AddressError):
    """Name resolution (getaddrinfo) failed."""


class AddressInUse(AddressError):
    """Something already listens on the address."""


class AddressNotAvailable(AddressError):
    """The address does not exist on this machine or its family is unsupported."""


class NoSuchSocket(AddressError):
    """No socket or fifo exists at the path."""


class NoSuchFile(AddressError):
    """Nothing can be opened at a file path (ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG, ENXIO)."""


class PermissionDenied(AddressError):
    """The kernel refused for lack of permission."""


class LimitExceeded(IPCError):
    """A configured or kernel bound was exceeded; nothing was silently cut."""


class MessageTooLarge(LimitExceeded):
    """A datagram is too large to send in one piece (EMSGSIZE)."""


class Truncated(LimitExceeded):
    """A received datagram did not fit the buffer; its real size is in the message."""


class Unsupported(IPCError):
    """The operation is not possible on this kind of channel."""


class ProtocolError(IPCError):
    """Bytes on the wire broke a protocol's rules."""


class LocalProtocolError(ProtocolError):
    """Our side tried to break the protocol (a bug in the caller)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol."""


class BadRequest(RemoteProtocolError):
    """The peer's request cannot be served; ``status`` says why (HTTP: 400, 414, 431, 505...)."""

    def __init__(self, status: int, detail: str = "") -> None:
        super().__init__(detail or str(status))
        self.status = status
        self.detail = detail


__all__ = [
    "AddressError",
    "AddressInUse",
    "AddressNotAvailable",
    "BadRequest",
    "Broken",
    "Busy",
    "Closed",
    "IPCError",
    "IncompleteRead",
    "InvalidAddress",
    "LimitExceeded",
    "LocalProtocolError",
    "MessageTooLarge",
    "NoSuchFile",
    "NoSuchSocket",
    "PeerClosed",
    "PermissionDenied",
    "ProtocolError",
    "Refused",
    "RemoteProtocolError",
    "Reset",
    "ResolveError",
    "Timeout",
    "Truncated",
    "Unreachable",
    "Unsupported",
]


# --- TLS (issue 11) -------------------------------------------------------------------
# The TLSError branch of the tree, translated from ssl.SSLError in one place
# (``ipcnet.transports.tls.failures``):
#
#     IPCError
#     └── TLSError                a TLS handshake, record or configuration failed
#         ├── CertificateUntrusted    the peer's certificate chains to no CA we trust
#         ├── CertificateExpired      the peer's certificate expired (or is not valid yet)
#         ├── HostnameMismatch        the certificate is not for the name we asked for
#         ├── NoClientCertificate     mutual TLS: the client offered no certificate
#         ├── CertificateRejected     the peer refused our certificate (its alert says why)
#         ├── ProtocolTooOld          no TLS version both sides accept (--tls-min)
#         ├── HandshakeTimeout        the handshake did not finish in time (also Timeout)
#         ├── NotTLS                  plain text where TLS was expected
#         ├── UncleanEOF              the stream ended without close_notify (also Broken)
#         └── TLSConfigError          a certificate, key or CA file cannot be used


class TLSError(IPCError):
    """A TLS failure; ``reason`` is a short key for counters ("untrusted", "expired", ...)."""

    reason = "tls"


class CertificateUntrusted(TLSError):
    """The peer's certificate does not chain to a CA we trust."""

    reason = "untrusted"


class CertificateExpired(TLSError):
    """The peer's certificate is outside its validity period."""

    reason = "expired"


class HostnameMismatch(TLSError):
    """The peer's certificate is not for the host we asked for; ``names`` are its names."""

    reason = "wrong-host"

    def __init__(self, message: str, names: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.names = names


class NoClientCertificate(TLSError):
    """Mutual TLS: the server requires a client certificate and none was offered."""

    reason = "no-client-cert"


class CertificateRejected(TLSError):
    """The peer refused our certificate (an alert such as bad_certificate, unknown_ca)."""

    reason = "cert-rejected"


class ProtocolTooOld(TLSError):
    """The two sides share no TLS version (one of them requires a newer one)."""

    reason = "protocol-version"


class HandshakeTimeout(TLSError, Timeout):
    """The handshake did not complete before its deadline."""

    reason = "handshake-timeout"


class NotTLS(TLSError):
    """Plain text arrived where a TLS record was expected."""

    reason = "not-tls"


class UncleanEOF(TLSError, Broken):
    """The peer's stream ended without close_notify: what it sent may be cut short."""

    reason = "unclean-eof"


class TLSConfigError(TLSError):
    """A certificate, key or CA file (or a TLS option) cannot be used."""

    reason = "config"


__all__ += [
    "CertificateExpired",
    "CertificateRejected",
    "CertificateUntrusted",
    "HandshakeTimeout",
    "HostnameMismatch",
    "NoClientCertificate",
    "NotTLS",
    "ProtocolTooOld",
    "TLSConfigError",
    "TLSError",
    "UncleanEOF",
]
# --- end TLS --------------------------------------------------------------------------
