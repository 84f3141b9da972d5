"""Datagram services under every model: one datagram in, the replies out to its sender.

Role: a readiness loop (any model's) says an endpoint is readable; ``answer`` receives one
datagram, hands it to ``service.datagram`` and sends the Send actions back to the sender.
Rules: the endpoint is non-blocking (every loop sets it so): a reply that cannot go at
once (a unix peer's queue is full) is dropped, as a UDP queue drops it, and nothing to read
(another worker took the datagram) is no error; only Send actions mean something for a
datagram (each is one reply); a bad datagram or a failed reply is counted and logged, and
the endpoint keeps serving.

No reply goes to a sender a reply could loop with (``may_loop``): a UDP source port below
1024, where the services that answer any datagram live (echo 7, daytime 13, chargen 19,
time 37, DNS 53, NTP 123), as xinetd 2.3.14 and BusyBox's inetd refuse; or one of the
ports this server answers on, another copy of it, as FreeBSD's inetd refuses. Source
addresses are forged at will: one datagram to an echo server, forged to come from another
echo (or daytime, chargen) server, made the two answer each other for ever (CERT
CA-1996-01). Such a datagram is not handed to the service; it is counted as an error.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ipcnet.addresses import Address
from ipcnet.errors import Busy, IPCError
from ipcnet.protocols.base import Peer, as_list
from ipcnet.transports import DatagramEndpoint

if TYPE_CHECKING:
    from ipcnet.drivers.core import ServerCore
    from ipcnet.drivers.counters import Row

log = logging.getLogger("ipcnet.serve")

RESERVED = 1024  # IPPORT_RESERVED: below it, the well-known services


def may_loop(sender: Address | None, own_ports: frozenset[int]) -> bool:
    """Whether a reply to ``sender`` could start an endless exchange with another server
    (see the rules): an inet source port below 1024 or among ``own_ports``. Only inet
    addresses have a port: a unix sender cannot be forged, the kernel names it."""
    port = None if sender is None else sender.port
    return port.__class__ is int and (port < RESERVED or port in own_ports)


def answer(core: ServerCore, endpoint: DatagramEndpoint, row: Row | None = None) -> None:
    """Receive one datagram (the endpoint must be readable) and send the replies."""
    row = row or core.row
    trace = core.trace
    try:
        data, sender = endpoint.recv()
    except Busy:
        return  # EAGAIN: woken with the other workers, one of which took it
    except IPCError as exc:
        row.add("errors")
        log.debug("datagram on %s: %s", endpoint.where, exc)
        return
    row.add("bytes_in", len(data))
    row.add("handled")
    if trace:
        trace(f"recvfrom(fd {endpoint.fileno()}) -> {len(data)} bytes from {sender}")
    if may_loop(sender, core.datagram_ports):
        row.add("errors")
        log.debug("no reply to %s on %s: a reply could loop", sender, endpoint.where)
        return
    try:
        for reply in as_list(core.service.datagram(data, Peer(sender, None))):
            if isinstance(reply, (bytes, bytearray, memoryview)):
                endpoint.send(reply, to=sender)
                row.add("bytes_out", len(reply))
                if trace:
                    trace(f"sendto(fd {endpoint.fileno()}, {len(reply)} bytes) to {sender}")
    except IPCError as exc:
        row.add("errors")
        log.debug("datagram reply to %s: %s", sender, exc)
    except Exception:
        row.add("errors")
        log.exception("%s failed on a datagram from %s", core.service.name, sender)
