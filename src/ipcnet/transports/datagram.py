"""Datagram endpoints (udp, unixgram): whole messages, never a byte stream.

Role: ``send(data, to=None)`` and ``recv() -> (data, sender)`` over one SOCK_DGRAM socket.
Rules: one send is one datagram and one recv returns exactly one datagram, so boundaries
are kept; ``b""`` is a valid (empty) message, not EOF; a datagram larger than ``max_size``
raises ``Truncated`` with its real size (MSG_TRUNC), never comes back silently cut; a send
too large for the kernel raises ``MessageTooLarge``. A server bound to a wildcard address
(``answer_from_destination``) sends each reply from the address its datagram was sent to.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable

from ipcnet.addresses import Address, parse
from ipcnet.errors import Closed, LocalProtocolError, Truncated, Unsupported
from ipcnet.transports.oserrors import translate, translating
from ipcnet.transports.sockets import SocketEndpoint, sockaddr_to_address

DEFAULT_MAX_SIZE = 65536  # every UDP datagram fits; unixgram ones can be larger
UDP_MAX_PAYLOAD = 65507  # 65535 - 20 (IPv4 header) - 8 (UDP header); IPv6 allows 20 more
IP_PKTINFO = 8  # linux/in.h (the socket module of Python 3.11 does not name it)
_PKTINFO_SPACE = socket.CMSG_SPACE(20)  # in6_pktinfo, the larger of the two


class DatagramEndpoint(SocketEndpoint):
    """A bound or connected datagram socket (its lifecycle is ``SocketEndpoint``'s)."""

    def __init__(
        self,
        sock: socket.socket,
        where: str,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(sock, where, cleanup=cleanup)
        self.max_size = max_size
        self._buf = bytearray(max_size)
        self._info: tuple[int, int] | None = None  # (level, type) of packet info, if asked
        self._dest: bytes | None = None  # the packet info of the last datagram received

    def answer_from_destination(self) -> None:
        """Learn each datagram's destination address (IP_PKTINFO, IPV6_PKTINFO) and send
        replies from it: bound to 0.0.0.0 or ::, the kernel would otherwise pick the source
        by route, and a client whose socket is connected to the address it asked (nc -u,
        socat udp:) drops a reply from any other (127.0.0.2 answered from 127.0.0.1)."""
        if self.sock.family == socket.AF_INET6:
            info = (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO)
            ask = socket.IPV6_RECVPKTINFO
        else:
            info = (socket.IPPROTO_IP, IP_PKTINFO)
            ask = IP_PKTINFO
        with translating("ask for packet info on", self.where):
            self.sock.setsockopt(info[0], ask, 1)
        self._info = info

    @property
    def max_payload(self) -> int:
        """The largest datagram to send here: UDP's over IPv4 (an IPv6 socket may reach
        IPv4-mapped peers), else ``max_size`` (a unix socket's peer reads that much; a
        message queue, which has no socket, takes that much)."""
        sock = getattr(self, "sock", None)
        inet = sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6)
        return UDP_MAX_PAYLOAD if inet else self.max_size

    def send(self, data: bytes | bytearray | memoryview, to: Address | str | None = None) -> None:
        """Send one datagram, to the connected peer or to ``to``."""
        target = self.where if to is None else str(to)
        self._blocked += 1  # a unix datagram send blocks while the receiver's queue is full
        try:
            self._check_open("send on")
            if to is None:
                self.sock.send(data)
            elif self._dest is not None and self._info is not None:  # from where it came
                self.sock.sendmsg([data], [(*self._info, self._source())], 0, self._sockaddr(to))
            else:
                self.sock.sendto(data, self._sockaddr(to))
        except OSError as exc:
            if to is None and exc.errno in (errno.ENOTCONN, errno.EDESTADDRREQ):
                raise Unsupported(
                    f"cannot send on {self.where}: it has no peer (a datagram from an "
                    "unbound unix socket has no address to answer)"
                ) from exc
            raise translate(exc, "send to", target) from exc
        finally:
            self._blocked -= 1
            if self._closed:
                self._leave()

    def _source(self) -> bytes:
        """The packet info that sends from the last datagram's destination address."""
        dest = self._dest or b""
        if self.sock.family == socket.AF_INET6:
            return dest  # in6_pktinfo: that address, that interface
        return bytes(4) + dest[8:12] + bytes(4)  # in_pktinfo: ipi_spec_dst = its ipi_addr

    def recv(self) -> tuple[bytes, Address | None]:
        """Receive one whole datagram and its sender (None for an unnamed unix socket)."""
        self._blocked += 1
        try:
            self._check_open("receive on")
            if self._info is None:
                size, sender = self.sock.recvfrom_into(self._buf, 0, socket.MSG_TRUNC)
            else:
                size, ancillary, _, sender = self.sock.recvmsg_into(
                    [self._buf], _PKTINFO_SPACE, socket.MSG_TRUNC
                )
                self._dest = next((data for _, _, data in ancillary), None)
        except OSError as exc:
            if self._closed:
                raise Closed(f"closed while receiving on {self.where}") from exc
            raise translate(exc, "receive on", self.where) from exc
        finally:
            self._blocked -= 1
            if self._closed:
                self._leave()
        if self._closed:
            raise Closed(f"closed while receiving on {self.where}")
        if size > self.max_size:
            raise Truncated(
                f"datagram of {size} bytes is larger than the {self.max_size}-byte buffer "
                f"of {self.where}; it was dropped (raise max_size)"
            )
        return bytes(self._buf[:size]), sockaddr_to_address(self._scheme, sender)

    def _sockaddr(self, to: Address | str) -> tuple[object, ...] | str | bytes:
        if isinstance(to, str):
            to = parse(to)
        if to.is_unix:
            return to.unix_sockaddr
        host = to.host or ("::1" if self.sock.family == socket.AF_INET6 else "127.0.0.1")
        if not isinstance(to.port, int):
            raise LocalProtocolError(f"send to {to}: a numeric port is needed here")
        if self.sock.family == socket.AF_INET6:
            if ":" not in host:
                try:
                    host = f"::ffff:{ipaddress.IPv4Address(host)}"
                except ValueError:
                    pass  # a name: the kernel will not take it, translate says so
            return (host, to.port, 0, 0)
        return (host, to.port)

    @property
    def peer_address(self) -> Address | None:
        try:
            return sockaddr_to_address(self._scheme, self.sock.getpeername())
        except OSError:
            return None  # not connected

    def __enter__(self) -> DatagramEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
