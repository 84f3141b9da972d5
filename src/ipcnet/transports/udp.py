"""udp://, udp4://, udp6://: UDP datagram endpoints, resolved and bound by ``inet``'s rules.

Rules: an endpoint bound to a wildcard address, ours or inherited (fd://, systemd://, a
SIGUSR2 upgrade), answers each datagram from the address it was sent to. One bound to a
multicast group joins it (on the zone's interface, else on the one the kernel routes the
group to), as iperf -s -B GROUP does: bound and not a member, it would hear nothing.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

from ipcnet.addresses import Address
from ipcnet.errors import PermissionDenied
from ipcnet.transports import inet
from ipcnet.transports.datagram import DatagramEndpoint, no_destination
from ipcnet.transports.oserrors import translating


def datagram(address: Address, listen: bool, max_size: int, mode: int) -> DatagramEndpoint:
    if listen:
        sock = inet.bind(address, socket.SOCK_DGRAM, None)
        try:
            _join_group(sock, address)
        except BaseException:
            sock.close()
            raise
        port = sock.getsockname()[1]
        endpoint = DatagramEndpoint(sock, str(address.with_port(port)), max_size=max_size)
        return from_destination(endpoint)
    if address.port == 0:
        raise no_destination(address)
    try:
        sock = inet.connect(address, socket.SOCK_DGRAM, None)
    except PermissionDenied as exc:
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno == errno.EACCES:
            # the one EACCES of a UDP connect(2): the route is a broadcast (ip(7))
            exc.args = (
                f"{exc} (a broadcast address: ipcnet sets no SO_BROADCAST, as socat "
                "without its broadcast option and nc without -b)",
            )
        raise
    # no handshake to fall back on: the first address it is, and errors say which
    return DatagramEndpoint(sock, inet.where(address, sock.getpeername()), max_size=max_size)


def from_destination(endpoint: DatagramEndpoint) -> DatagramEndpoint:
    """Bound to 0.0.0.0 or :: and not connected: answer from each datagram's address."""
    sock = endpoint.sock
    inet = sock.family in (socket.AF_INET, socket.AF_INET6)
    if inet and endpoint.peer_address is None and sock.getsockname()[0] in ("0.0.0.0", "::"):
        endpoint.answer_from_destination()
    return endpoint


def _join_group(sock: socket.socket, address: Address) -> None:
    """Join the multicast group ``sock`` is bound to, if it is bound to one (IPv4: on the
    interface the kernel routes the group to; IPv6: the zone's, else the route's)."""
    bound = sock.getsockname()
    group = ipaddress.ip_address(str(bound[0]).partition("%")[0])
    if not group.is_multicast:
        return
    with translating("join the multicast group of", address):
        if group.version == 4:
            mreq = group.packed + bytes(4)  # struct ip_mreq, imr_interface INADDR_ANY
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        else:
            mreq = group.packed + struct.pack("@I", bound[3])  # struct ipv6_mreq
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
