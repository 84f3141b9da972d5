"""Datagram services under every model: one datagram in, the replies out to its sender.

Role: a readiness loop (any model's) says an endpoint is readable; ``answer`` receives one
datagram, hands it to ``service.datagram`` and sends the Send actions back to the sender.
Rules: the endpoint is non-blocking (every loop sets it so): a reply that cannot go at
once (a unix peer's queue is full) is dropped, as a UDP queue drops it, and nothing to read
(another worker took the datagram) is no error; only Send actions mean something for a
datagram (each is one reply); a bad datagram or a failed reply is counted and logged, and
the endpoint keeps serving.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ipcnet.errors import Busy, IPCError
from ipcnet.protocols.base import Peer, as_list
from ipcnet.transports import DatagramEndpoint

if TYPE_CHECKING:
    from ipcnet.drivers.core import ServerCore
    from ipcnet.drivers.counters import Row

log = logging.getLogger("ipcnet.serve")


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
