"""TLS for every stream address: one layer, used by clients, listeners and servers.

Role: ``tls://host:port`` is TLS over TCP and ``tls+unix:///path`` / ``tls+unix://@name``
TLS over a unix socket. All of ipcnet's TLS lives in this package:

    context   TLSOptions (the --cert/--key/--ca/--insecure/--sni/--alpn/--tls-min/
              --tls-tickets flags), SSLContexts with secure defaults, ServerContext (reload)
    failures  ssl.SSLError -> the TLSError branch of ipcnet.errors, in one place
    layer     TLSLayer: ssl.SSLObject over two MemoryBIOs, bytes in / bytes out, no I/O
    hello     the ALPN offer of a ClientHello, for the server's no_application_protocol
    stream    TLSStream: the blocking StreamTransport over a socket, through TLSLayer;
              TLSListener, whose accept() returns TLS streams
    stats     handshake counters (by outcome, failure reason, version and cipher) that
              survive fork
    probe     the names and dates on a certificate, for the wrong-host and expired messages
    devcert   a local CA and a server certificate (``ipcnet cert``)

Servers do not use TLSStream: the driver engine's session wrapper (``ipcnet.drivers.tls``)
puts the same TLSLayer between a connection's bytes and its session, so every model
serves TLS the same way.

What half-close means over TLS: ``send_eof()`` sends close_notify and shuts the socket
down for writing. Under TLS 1.3 that is a true half-close: the peer reads EOF and may go on
sending (RFC 8446 §6.1). Under TLS 1.2 the peer must answer with its own close_notify and
stop (RFC 5246 §7.2.1), so there it ends the whole connection once the peer answered; a
TLS 1.2 peer's close_notify is answered at once the same way.
``ipcnet connect tls://...`` sends close_notify when its stdin ends and exits once the
peer's close_notify came (or fails if the TCP stream ended without one).
"""

from __future__ import annotations

import socket
from dataclasses import replace
from typing import Any

from ipcnet.addresses import Address
from ipcnet.transports import inet, tcp, unix
from ipcnet.transports.sockets import stream_for
from ipcnet.transports.tls import stream
from ipcnet.transports.tls.context import (
    ServerContext,
    TLSOptions,
    client_context,
    parse_alpn,
    server_context,
)
from ipcnet.transports.tls.layer import TLSLayer
from ipcnet.transports.tls.stream import TLSListener, TLSStream

#: ``open_stream``/``open_listener`` pass TLS keywords (``TLSOptions``' fields) to this module
TAKES_TLS = True
#: a TLSStream cannot be handed to an event loop: its TLS state is this process's SSLObject
DETACHES = False


def raw_address(address: Address) -> Address:
    """What TLS runs over: tls://h:p -> tcp://h:p, tls+unix://... -> unix://..."""
    return replace(address, scheme="unix" if address.is_unix else "tcp")


def _raw_module(address: Address) -> Any:
    return unix if address.is_unix else tcp


def connect(address: Address, timeout: float | None, preface: bytes = b"", **tls: Any) -> TLSStream:
    """The registry's connect: the socket, then the client handshake (see ``stream``).

    ``preface`` goes out in the clear before the handshake: a relay's PROXY protocol
    header, as HAProxy's ``send-proxy`` on an ``ssl`` server sends it (issue 12).
    """
    options = TLSOptions.of(**tls)
    if address.is_inet:  # errors name the tls:// address
        raw = stream_for(inet.connect(address, socket.SOCK_STREAM, timeout), str(address), "tcp")
    else:
        raw = unix.connect(raw_address(address), timeout)
    if preface:
        try:
            raw.write(preface)
        except BaseException:
            raw.close()
            raise
    host = address.host or None
    return stream.client(raw, options, host, where=str(address))


def listen(address: Address, backlog: int, mode: int, reuse_port: bool, **tls: Any) -> TLSListener:
    """The registry's listen: a socket whose accept() returns TLS streams."""
    options = TLSOptions.of(**tls)
    contexts = ServerContext(options)  # before binding: a bad certificate binds nothing
    raw = _raw_module(address).listen(raw_address(address), backlog, mode, reuse_port)
    return TLSListener(raw, contexts, options, address)


__all__ = [
    "TAKES_TLS",
    "ServerContext",
    "TLSLayer",
    "TLSListener",
    "TLSOptions",
    "TLSStream",
    "client_context",
    "connect",
    "listen",
    "parse_alpn",
    "raw_address",
    "server_context",
]
