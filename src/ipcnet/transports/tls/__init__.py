"""TLS for every stream address: one layer, used by clients, listeners and servers.

Role: ``tls://host:port`` is TLS over TCP and ``tls+unix:///path`` / ``tls+unix://@name``
TLS over a unix socket. All of ipcnet's TLS lives in this package:

    context   TLSOptions (the --cert/--key/--ca/--insecure/--sni/--alpn/--tls-min/
              --tls-tickets flags), SSLContexts with secure defaults, ServerContext (reload)
    failures  ssl.SSLError -> the TLSError branch of ipcnet.errors, in one place
    layer     TLSLayer: ssl.SSLObject over two MemoryBIOs, bytes in / bytes out, no I/O
    stream    TLSStream: the blocking StreamTransport over a socket, through TLSLayer;
              TLSListener, whose accept() returns TLS streams
    stats     handshake counters (by outcome, failure reason, version and cipher) that
              survive fork
    probe     the names on a certificate, for the wrong-host message
    devcert   a local CA and a server certificate (``ipcnet cert``)

Servers do not use TLSStream: the driver engine's session wrapper (``ipcnet.drivers.tls``)
puts the same TLSLayer between a connection's bytes and its session, so every model
serves TLS the same way.

What half-close means over TLS: ``send_eof()`` sends close_notify and shuts the socket
down for writing. Under TLS 1.3 that is a true half-close: the peer reads EOF and may go on
sending (RFC 8446 §6.1). Under TLS 1.2 the peer must answer with its own close_notify and
stop (RFC 5246 §7.2.1), so there it ends the whole connection once the peer answered.
``ipcnet connect tls://...`` sends close_notify when its stdin ends and exits once the
peer's close_notify came (or fails if the TCP stream ended without one).
"""

from __future__ import annotations

from ipcnet.transports.tls.context import (
    ServerContext,
    TLSOptions,
    client_context,
    parse_alpn,
    server_context,
)
from ipcnet.transports.tls.layer import TLSLayer
from ipcnet.transports.tls.stream import TLSListener, TLSStream

__all__ = [
    "ServerContext",
    "TLSLayer",
    "TLSListener",
    "TLSOptions",
    "TLSStream",
    "client_context",
    "parse_alpn",
    "server_context",
]
