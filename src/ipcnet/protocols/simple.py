"""The small services of the seeds and the RFCs: echo, increment, discard, daytime.

Role: the simplest sessions, and the first users of the contract in ``base``. Rules: no I/O
(see base); stateless services share one session object instead of making one per
connection; a service that ends a connection first (daytime, increment --once) half-closes
after its answer and drops what the client still sends until the client's EOF, or LINGER
seconds: closing with input unread would send an RST, and the RST makes the client's
kernel throw away the answer it had already received (RFC 9112 §9.6 asks HTTP servers the
same; nginx's lingering_close).
"""

from __future__ import annotations

import time

from ipcnet.protocols.base import (
    SHUTDOWN_WRITE,
    Actions,
    BaseService,
    BaseSession,
    Peer,
    Timer,
)

_PLUS_ONE = bytes((i + 1) & 0xFF for i in range(256))
LINGER = 2.0  # seconds a connection we ended stays open to drop the client's input
_LINGER = Timer(LINGER)


def last_answer(data: bytes) -> Actions:
    """Send ``data`` as the connection's last bytes (see the module's rules); the session
    drops later input, and closes at the client's EOF or its timer (BaseSession's rules)."""
    return [data, SHUTDOWN_WRITE, _LINGER]


class _EchoSession(BaseSession):
    def feed(self, data: bytes) -> Actions:
        return data


class Echo(BaseService):
    """RFC 862: every byte comes back; the peer's EOF closes after the last echo."""

    name = "echo"
    _session = _EchoSession()

    def start(self, peer: Peer) -> tuple[_EchoSession, Actions]:
        return self._session, None

    def datagram(self, data: bytes, peer: Peer) -> Actions:
        return data


class _IncrementSession(BaseSession):
    def feed(self, data: bytes) -> Actions:
        return data.translate(_PLUS_ONE)


class _IncrementOnceSession(BaseSession):
    def __init__(self) -> None:
        self.answered = False

    def feed(self, data: bytes) -> Actions:
        if self.answered:
            return None
        self.answered = True
        return last_answer(data[:1].translate(_PLUS_ONE))


class Increment(BaseService):
    """Seed 002 server1/server3: each byte answered with byte+1 ('A' -> 'B').

    ``once`` answers the first byte and closes, as the seed's server does.
    """

    name = "increment"
    _session = _IncrementSession()

    def __init__(self, once: bool = False) -> None:
        self.once = once

    def start(self, peer: Peer) -> tuple[BaseSession, Actions]:
        return (_IncrementOnceSession() if self.once else self._session), None

    def datagram(self, data: bytes, peer: Peer) -> Actions:
        return data[:1].translate(_PLUS_ONE) if self.once else data.translate(_PLUS_ONE)


class Discard(BaseService):
    """RFC 863: everything is read and thrown away; EOF closes."""

    name = "discard"
    _session = BaseSession()

    def start(self, peer: Peer) -> tuple[BaseSession, Actions]:
        return self._session, None

    def datagram(self, data: bytes, peer: Peer) -> Actions:
        return None


_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    *("January", "February", "March", "April", "May", "June", "July", "August"),
    *("September", "October", "November", "December"),
)


def daytime_text(now: float | None = None) -> bytes:
    """RFC 867 leaves the format free and shows one syntax, "Weekday, Month Day, Year
    Time-Zone"; this is it, in UTC (netkit's and OpenBSD's inetd send ctime(3)'s, xinetd
    an SMTP date). The names are English whatever the locale: strftime's %A and %B follow
    LC_TIME, and RFC 867 asks for ASCII printing characters ("März" is not)."""
    t = time.gmtime(now)
    return (
        f"{_DAYS[t.tm_wday]}, {_MONTHS[t.tm_mon - 1]} {t.tm_mday:02d}, {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}-UTC\r\n"
    ).encode("ascii")


class Daytime(BaseService):
    """RFC 867: on connect, send the date and time and close ("any data received is thrown
    away"); a datagram gets it too."""

    name = "daytime"
    _session = BaseSession()

    def start(self, peer: Peer) -> tuple[BaseSession, Actions]:
        return self._session, last_answer(daytime_text())

    def datagram(self, data: bytes, peer: Peer) -> Actions:
        return daytime_text()
