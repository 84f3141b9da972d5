"""tcp://, tcp4://, tcp6://: TCP streams, resolved and bound by ``inet``'s rules.

Rules: connected streams get TCP_NODELAY; a listener on port 0 reports the port it got.
"""

from __future__ import annotations

import socket

from ipcnet.addresses import Address
from ipcnet.transports import inet
from ipcnet.transports.sockets import SocketListener, SocketStream, stream_for


def connect(address: Address, timeout: float | None) -> SocketStream:
    return stream_for(inet.connect(address, socket.SOCK_STREAM, timeout), str(address))


def listen(address: Address, backlog: int, mode: int, reuse_port: bool) -> SocketListener:
    sock = inet.bind(address, socket.SOCK_STREAM, backlog, reuse_port=reuse_port)
    return SocketListener(sock, address.with_port(sock.getsockname()[1]))
