"""unixgram://: UNIX datagram endpoints (reliable and ordered, boundaries kept).

Rules: a bound endpoint follows ``unix``'s path rules (stale file removed, ``mode``,
removal on close); a connected one autobinds an abstract name first, so replies reach it.
"""

from __future__ import annotations

import socket

from ipcnet.addresses import Address
from ipcnet.transports.datagram import DatagramEndpoint
from ipcnet.transports.oserrors import translating
from ipcnet.transports.unix import bind_socket


def datagram(address: Address, listen: bool, max_size: int, mode: int) -> DatagramEndpoint:
    where = str(address)
    if listen:
        sock, cleanup = bind_socket(address, None, mode)
        return DatagramEndpoint(sock, where, max_size=max_size, cleanup=cleanup)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with translating("connect to", address):
        try:
            sock.bind("")  # autobind an abstract name so that replies can reach us
            sock.connect(address.unix_sockaddr)
        except OSError:
            sock.close()
            raise
    return DatagramEndpoint(sock, where, max_size=max_size)
