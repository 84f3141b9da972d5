"""udp://, udp4://, udp6://: UDP datagram endpoints, resolved and bound by ``inet``'s rules."""

from __future__ import annotations

import socket

from ipcnet.addresses import Address
from ipcnet.transports import inet
from ipcnet.transports.datagram import DatagramEndpoint


def datagram(address: Address, listen: bool, max_size: int, mode: int) -> DatagramEndpoint:
    if listen:
        sock = inet.bind(address, socket.SOCK_DGRAM, None)
        host, port = sock.getsockname()[:2]
        endpoint = DatagramEndpoint(sock, str(address.with_port(port)), max_size=max_size)
        if host in ("0.0.0.0", "::"):  # a wildcard: answer from each datagram's address
            endpoint.answer_from_destination()
        return endpoint
    sock = inet.connect(address, socket.SOCK_DGRAM, None)
    return DatagramEndpoint(sock, str(address), max_size=max_size)
