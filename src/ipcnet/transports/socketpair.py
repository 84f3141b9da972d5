"""socketpair: two connected unix sockets made by socketpair(2); it has no name to connect to."""

from __future__ import annotations

import socket

from ipcnet.transports.oserrors import translating
from ipcnet.transports.sockets import SocketStream, stream_for


def make_socketpair(kind: int = socket.SOCK_STREAM) -> tuple[SocketStream, SocketStream]:
    """socketpair(2): two connected unix sockets."""
    with translating("create", "socketpair:"):
        a, b = socket.socketpair(socket.AF_UNIX, kind)
    return stream_for(a, "socketpair:"), stream_for(b, "socketpair:")
