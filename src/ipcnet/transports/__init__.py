"""Transports: the only code in ipcnet that touches sockets and file descriptors.

Role: turn a parsed Address into an open StreamTransport, Listener or DatagramEndpoint.
Rules: the scheme's row in ``ipcnet.addresses.SCHEMES`` names the module of this package
(or, dotted, any module) that opens it; that module defines any of

    connect(address, timeout) -> StreamTransport
    listen(address, backlog, mode, reuse_port) -> Listener
    datagram(address, listen, max_size, mode) -> DatagramEndpoint

and ``open_stream``, ``open_listener`` and ``open_datagram`` call it, or say what the scheme
cannot do. Every OSError leaves as an ipcnet error (see ``oserrors``).

A new transport is one module here (``stdio.py`` is the smallest) plus one ``Scheme`` row
in ``ipcnet.addresses.SCHEMES`` naming it; nothing else changes.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ipcnet.errors import LimitExceeded, Unsupported

if TYPE_CHECKING:  # (addresses loads dataclasses and inspect: 20 ms a quick command saves)
    from ipcnet.addresses import Address
    from ipcnet.transports.base import Listener, StreamTransport
    from ipcnet.transports.datagram import DatagramEndpoint
    from ipcnet.transports.fifo import FifoListener
    from ipcnet.transports.pipes import PipeStream, make_pipe
    from ipcnet.transports.socketpair import make_socketpair
    from ipcnet.transports.sockets import SocketListener, SocketStream

# loaded on first use, so that importing one module of this package (procfs, say) is cheap
_EXPORTS = {
    "DatagramEndpoint": "datagram",
    "FifoListener": "fifo",
    "Listener": "base",
    "PipeStream": "pipes",
    "SocketListener": "sockets",
    "SocketStream": "sockets",
    "StreamTransport": "base",
    "make_pipe": "pipes",
    "make_socketpair": "socketpair",
}

__all__ = [
    "DatagramEndpoint",
    "FifoListener",
    "Listener",
    "PipeStream",
    "SocketListener",
    "SocketStream",
    "StreamTransport",
    "make_pipe",
    "make_socketpair",
    "open_datagram",
    "open_listener",
    "open_stream",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def _module(address: Address) -> ModuleType:
    name = address.spec.transport  # a module of this package, or any dotted module path
    return importlib.import_module(name if "." in name else f"{__name__}.{name}")


def detaches(address: Address) -> bool:
    """Whether ``address``'s streams can be handed to an event loop (``detach``): a module
    whose streams cannot says ``DETACHES = False``."""
    return bool(getattr(_module(address), "DETACHES", True))


def open_stream(address: Address, connect_timeout: float | None, **tls: Any) -> StreamTransport:
    """Connect to (or open) a stream address (``tls``: TLS options, for tls:// addresses)."""
    module = _module(address)
    connect = getattr(module, "connect", None)
    if connect is None:
        if address.kind == "datagram":
            raise Unsupported(f"{address} is a datagram address; use open_datagram()")
        raise Unsupported(
            f"{address} has no name to connect to; call ipcnet.{address.scheme}() instead"
        )
    stream: StreamTransport = connect(address, connect_timeout, **_tls(module, address, tls))
    return stream


def open_listener(
    address: Address,
    backlog: int = 128,
    mode: int = 0o600,
    reuse_port: bool = False,
    **tls: Any,
) -> Listener[StreamTransport]:
    """Bind and listen on a stream address (a fifo listener creates the fifo)."""
    from ipcnet.transports.base import check_count  # checked before a socket is made

    backlog, mode = check_count(backlog, "listen() backlog"), check_count(mode, "listen() mode")
    module = _module(address)
    listen = getattr(module, "listen", None)
    if listen is None:
        raise Unsupported(f"cannot listen on {address}: not a stream address with a name")
    listener: Listener[StreamTransport] = listen(
        address, backlog, mode, reuse_port, **_tls(module, address, tls)
    )
    return listener


def _tls(module: ModuleType, address: Address, options: dict[str, Any]) -> dict[str, Any]:
    """TLS options go only to a module that takes them (``TAKES_TLS``), else are refused;
    a keyword that is no TLS option at all (``timout=5``) is Python's TypeError."""
    if options and not getattr(module, "TAKES_TLS", False):
        import dataclasses  # (only on this error path: the TLS module is not loaded else)

        from ipcnet.transports.tls.context import TLSOptions

        known = {f.name for f in dataclasses.fields(TLSOptions)} | {"tls"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r} for {address}")
        raise Unsupported(f"tls options given for {address}: use tls:// or tls+unix://")
    return options


def open_datagram(
    address: Address,
    *,
    listen: bool = False,
    max_size: int = 65536,
    mode: int = 0o600,
) -> DatagramEndpoint:
    """A datagram endpoint bound to the address (listen=True) or connected to it."""
    from ipcnet.transports.base import check_count  # checked before a socket is made

    max_size, mode = check_count(max_size, "max_size"), check_count(mode, "mode")
    if max_size < 0:
        raise LimitExceeded(f"max_size {max_size} out of range: a buffer of 0 or more bytes")
    datagram = getattr(_module(address), "datagram", None)
    if datagram is None:
        raise Unsupported(f"{address} is not a datagram address (use udp:// or unixgram://)")
    endpoint: DatagramEndpoint = datagram(address, listen, max_size, mode)
    return endpoint
