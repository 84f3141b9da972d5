"""udp://, udp4://, udp6://: UDP datagram endpoints, resolved and bound by ``inet``'s rules."""

from __future__ import annotations

import socket

from ipcnet.addresses import Address
from ipcnet.transports import inet
from ipcnet.transports.datagram import DatagramEndpoint


def datagram(address: Address, listen: bool, max_size: int, mode: int) -> DatagramEndpoint:
    if listen:
        sock = inet.bind(address, socket.SOCK_DGRAM, None)
        bound = address.with_port(sock.getsockname()[1])
        return DatagramEndpoint(sock, str(bound), max_size=max_size)
    sock = inet.connect(address, socket.SOCK_DGRAM, None)
    return DatagramEndpoint(sock, str(address), max_size=max_size)
