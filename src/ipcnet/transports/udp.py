"""udp://, udp4://, udp6://: UDP datagram endpoints, resolved and bound by ``inet``'s rules.

Rules: an endpoint bound to a wildcard address, ours or inherited (fd://, systemd://, a
SIGUSR2 upgrade), answers each datagram from the address it was sent to.
"""

from __future__ import annotations

import socket

from ipcnet.addresses import Address
from ipcnet.transports import inet
from ipcnet.transports.datagram import DatagramEndpoint


def datagram(address: Address, listen: bool, max_size: int, mode: int) -> DatagramEndpoint:
    if listen:
        sock = inet.bind(address, socket.SOCK_DGRAM, None)
        port = sock.getsockname()[1]
        endpoint = DatagramEndpoint(sock, str(address.with_port(port)), max_size=max_size)
        return from_destination(endpoint)
    sock = inet.connect(address, socket.SOCK_DGRAM, None)
    # no handshake to fall back on: the first address it is, and errors say which
    return DatagramEndpoint(sock, inet.where(address, sock.getpeername()), max_size=max_size)


def from_destination(endpoint: DatagramEndpoint) -> DatagramEndpoint:
    """Bound to 0.0.0.0 or :: and not connected: answer from each datagram's address."""
    sock = endpoint.sock
    inet = sock.family in (socket.AF_INET, socket.AF_INET6)
    if inet and endpoint.peer_address is None and sock.getsockname()[0] in ("0.0.0.0", "::"):
        endpoint.answer_from_destination()
    return endpoint
