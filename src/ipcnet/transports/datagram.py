"""Datagram endpoints (udp, unixgram): whole messages, never a byte stream.

Role: ``send(data, to=None)`` and ``recv() -> (data, sender)`` over one SOCK_DGRAM socket.
Rules: one send is one datagram and one recv returns exactly one datagram, so boundaries
are kept; ``b""`` is a valid (empty) message, not EOF; a datagram larger than ``max_size``
raises ``Truncated`` with its real size (MSG_TRUNC), never comes back silently cut; a send
too large for the kernel raises ``MessageTooLarge``; port 0 is no destination
(``InvalidAddress``). A server bound to a wildcard address
(``answer_from_destination``) sends each reply from the address its datagram was sent to
(a unicast one: the kernel's choice for a broadcast). ``keep_to`` makes an unconnected
endpoint hear and answer one peer only.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable

from ipcnet.addresses import Address, parse
from ipcnet.errors import Closed, InvalidAddress, LocalProtocolError, Truncated, Unsupported
from ipcnet.transports.oserrors import translate, translating
from ipcnet.transports.sockets import SocketEndpoint, sockaddr_to_address

DEFAULT_MAX_SIZE = 65536  # every UDP datagram fits; unixgram ones can be larger
UDP_MAX_PAYLOAD = 65507  # 65535 - 20 (IPv4 header) - 8 (UDP header); IPv6 allows 20 more
IP_PKTINFO = 8  # linux/in.h (the socket module of Python 3.11 does not name it)
# an IPv4 datagram on a dual-stack socket brings both: in6_pktinfo and in_pktinfo
_PKTINFO_SPACE = socket.CMSG_SPACE(20) + socket.CMSG_SPACE(12)


def _answer(ancillary: list[tuple[int, int, bytes]]) -> tuple[int, int, bytes] | None:
    """The cmsg that sends a reply from the address a datagram came to: in_pktinfo with
    the datagram's ipi_spec_dst (IPv4, also on a dual-stack socket), else its in6_pktinfo."""
    info = {(level, kind): data for level, kind, data in ancillary}
    v4 = info.get((socket.IPPROTO_IP, IP_PKTINFO))
    if v4 is not None:
        return (socket.IPPROTO_IP, IP_PKTINFO, bytes(4) + v4[4:8] + bytes(4))
    v6 = info.get((socket.IPPROTO_IPV6, socket.IPV6_PKTINFO))
    return None if v6 is None else (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, v6)


def no_destination(address: Address) -> InvalidAddress:
    """Port 0 as a destination: nc refuses it ('port number too small'); Linux takes it
    for a UDP connect(2) but then has no peer name (ENOTCONN) and sendto(2) is EINVAL."""
    return InvalidAddress(
        f"invalid address {str(address)!r}: port 0 is no destination "
        "(to a listener it means any free port)"
    )


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
        self._pktinfo = False  # asked for each datagram's destination (packet info)
        self._dest: tuple[int, int, bytes] | None = None  # the cmsg that answers the last
        self._only: tuple[Address | None] | None = None  # (keep_to's peer,)

    def answer_from_destination(self) -> None:
        """Learn each datagram's destination address (IP_PKTINFO, IPV6_PKTINFO) and send
        replies from it: bound to 0.0.0.0 or ::, the kernel would otherwise pick the source
        by route, and a client whose socket is connected to the address it asked (nc -u,
        socat udp:) drops a reply from any other (127.0.0.2 answered from 127.0.0.1). Over
        IPv4 the source is in_pktinfo's ipi_spec_dst, the datagram's destination unless that
        was a broadcast (the kernel refuses to send from one); a dual-stack socket asks
        for in_pktinfo too, for its IPv4 peers."""
        with translating("ask for packet info on", self.where):
            if self.sock.family == socket.AF_INET6:
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            self.sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self._pktinfo = True

    def keep_to(self, peer: Address | None) -> None:
        """From now on exchange datagrams with ``peer`` only, as nc -u -l does with its
        first: ``recv`` drops what anyone else sends and ``send`` without ``to`` answers
        ``peer``. Not connect(2), which on a wildcard socket would also fix our own address
        by route (no more datagrams to any other) and keep what others had queued."""
        self._only = (peer,)

    @property
    def max_payload(self) -> int:
        """The largest datagram to send here: UDP's over IPv4 (an IPv6 socket may reach
        IPv4-mapped peers), else ``max_size`` (a unix socket's peer reads that much; a
        message queue, which has no socket, takes that much)."""
        sock = getattr(self, "sock", None)
        inet = sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6)
        return UDP_MAX_PAYLOAD if inet else self.max_size

    def send(self, data: bytes | bytearray | memoryview, to: Address | str | None = None) -> None:
        """Send one datagram, to ``to``, or to the connected or ``keep_to`` peer."""
        if to is None and self._only is not None:
            to = self._only[0]
        target = self.where if to is None else str(to)
        self._blocked += 1  # a unix datagram send blocks while the receiver's queue is full
        try:
            self._check_open("send on")
            if to is None:
                self.sock.send(data)
            elif self._dest is not None:  # from where it came
                self.sock.sendmsg([data], [self._dest], 0, self._sockaddr(to))
            else:
                self.sock.sendto(data, self._sockaddr(to))
        except OSError as exc:
            if to is None and exc.errno in (errno.ENOTCONN, errno.EDESTADDRREQ):
                why = "it is connected to no peer and was given no destination"
                if self.sock.family == socket.AF_UNIX:  # answering a sender with no name
                    why = (
                        "it has no peer (a datagram from an unbound unix socket has no "
                        "address to answer)"
                    )
                raise Unsupported(f"cannot send on {self.where}: {why}") from exc
            raise translate(exc, "send to", target) from exc
        finally:
            self._blocked -= 1
            if self._closed:
                self._leave()

    def recv(self) -> tuple[bytes, Address | None]:
        """Receive one whole datagram and its sender (None for an unnamed unix socket)."""
        while True:
            size, ancillary, sender = self._recv_one()
            if self._only is None or sender == self._only[0]:
                break
        if size > self.max_size:
            raise Truncated(
                f"datagram of {size} bytes is larger than the {self.max_size}-byte buffer "
                f"of {self.where}; it was dropped (raise max_size)"
            )
        if self._pktinfo:
            self._dest = _answer(ancillary)
        return bytes(self._buf[:size]), sender

    def _recv_one(self) -> tuple[int, list[tuple[int, int, bytes]], Address | None]:
        self._blocked += 1
        try:
            self._check_open("receive on")
            if self._pktinfo:
                size, ancillary, _, sender = self.sock.recvmsg_into(
                    [self._buf], _PKTINFO_SPACE, socket.MSG_TRUNC
                )
            else:
                size, sender = self.sock.recvfrom_into(self._buf, 0, socket.MSG_TRUNC)
                ancillary = []
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
        return size, ancillary, sockaddr_to_address(self._scheme, sender)

    def _sockaddr(self, to: Address | str) -> tuple[object, ...] | str | bytes:
        if not isinstance(to, Address):
            to = parse(to)  # InvalidAddress for what is no URL at all (to=5)
        if to.is_unix:
            return to.unix_sockaddr
        host = to.host or ("::1" if self.sock.family == socket.AF_INET6 else "127.0.0.1")
        if not isinstance(to.port, int):
            raise LocalProtocolError(f"send to {to}: a numeric port is needed here")
        if to.port == 0:
            raise no_destination(to)  # sendto(2)'s EINVAL said only "invalid argument"
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

    def fileno(self) -> int:
        """The socket's descriptor; Closed once closed (as io's fileno, not socket's -1)."""
        self._check_open("get the descriptor of")
        return self.sock.fileno()

    def __enter__(self) -> DatagramEndpoint:
        self._check_open("use")
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.where}{' closed' if self.closed else ''}>"

    def __exit__(self, *exc: object) -> None:
        self.close()
