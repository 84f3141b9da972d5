"""Netlink sockets (AF_NETLINK, SOCK_RAW): the kernel's tables as request and dump.

Role: open one, send a request, receive the dump into the caller's buffer; building and
parsing the messages is the inspector's (``ipcnet.inspector.netlink``). Rules: a kernel
that refuses the socket (protocol not built, a sandbox) is ``Unsupported``; every other
OSError is translated. One dump at a time per socket. With ``netns`` (a descriptor from
``netns.current()``) the socket is made in that network namespace and speaks for it.
"""

from __future__ import annotations

import socket

from ipcnet.errors import Unsupported
from ipcnet.transports import netns as namespaces
from ipcnet.transports.oserrors import translate


class NetlinkSocket:
    """One netlink socket of ``protocol`` (NETLINK_SOCK_DIAG = 4 ...), named ``name``."""

    def __init__(self, protocol: int, name: str, netns: int | None = None) -> None:
        self.where = f"{name} netlink socket"
        try:
            self.sock = namespaces.socket_in(netns, socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        except OSError as exc:
            raise Unsupported(f"no {self.where}: {exc}") from exc

    def send(self, request: bytes) -> None:
        """Send one request to the kernel (port id 0)."""
        try:
            self.sock.sendto(request, (0, 0))
        except OSError as exc:
            raise translate(exc, "send to", self.where) from exc

    def recv_into(self, buf: bytearray, size: int) -> int:
        """Receive up to ``size`` bytes of the reply into ``buf``."""
        try:
            return self.sock.recv_into(buf, size)
        except OSError as exc:
            raise translate(exc, "receive from", self.where) from exc

    def close(self) -> None:
        self.sock.close()


def interface_names() -> dict[int, str]:
    """Index -> name of the interfaces of this network namespace (if_nameindex(3))."""
    try:
        return dict(socket.if_nameindex())
    except OSError as exc:
        raise translate(exc, "list", "the network interfaces") from exc
