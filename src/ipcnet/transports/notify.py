"""sd_notify(3): tell a service manager (systemd ``Type=notify``) how the service is doing.

Role: send ``READY=1``, ``STOPPING=1``, ``WATCHDOG=1``, ``MAINPID=N`` ... as one datagram
to the unix datagram socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an
abstract one; anything else is refused, as systemd's own sd_notify refuses it with
EINVAL). Rules: without ``$NOTIFY_SOCKET`` nothing is sent and the answer is False; a send
never blocks the server (non-blocking: a full manager queue is ``Busy``, which the caller
logs); failures become ipcnet errors here.
``watchdog_interval`` reads ``$WATCHDOG_USEC`` (honouring ``$WATCHDOG_PID``) and says how
often to ping: half the timeout, as sd_watchdog_enabled(3) advises.
"""

from __future__ import annotations

import os
import socket

from ipcnet.errors import InvalidAddress
from ipcnet.transports.oserrors import translating


def notify(*assignments: str, where: str | None = None) -> bool:
    """Send ``KEY=VALUE`` lines to the service manager (``where``, else $NOTIFY_SOCKET: a
    path, or '@name' for an abstract socket); False if none is listening for us."""
    where = where or os.environ.get("NOTIFY_SOCKET")
    if not where:
        return False
    if where[:1] not in ("/", "@") or len(where) < 2:
        raise InvalidAddress(f"invalid NOTIFY_SOCKET {where!r}: an absolute path or @name")
    address = "\0" + where[1:] if where.startswith("@") else where
    with translating("sd_notify to", f"unixgram://{where}"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.setblocking(False)
            sock.sendto("\n".join(assignments).encode(), address)
        finally:
            sock.close()
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), None when not asked."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not (usec.isascii() and usec.isdigit()) or int(usec) == 0:  # "²" is a digit to isdigit
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2e6
