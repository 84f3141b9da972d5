"""stdio: this process's stdin (read) and stdout (write) as one stream.

Rules: both descriptors are shared with the rest of the process, so they keep their
blocking mode (``shared=True``); ``send_eof()`` puts /dev/null in stdout's place.
``open_std_fds()`` (``transports.stdfds``) puts /dev/null on any of fds 0-2 that was
closed when we started (``ipcnet connect URL <&-``); ``directions(fd)`` which ways an open
one goes (``0>>file``: stdin is open for writing only).
"""

from __future__ import annotations

from ipcnet.addresses import Address
from ipcnet.transports.pipes import PipeStream
from ipcnet.transports.stdfds import directions, open_std_fds


def connect(address: Address, timeout: float | None) -> PipeStream:
    return PipeStream(0, 1, str(address), shared=True)


__all__ = ["connect", "directions", "open_std_fds"]
