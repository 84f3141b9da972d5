"""The service/driver contract: services are sans-IO state machines, drivers do the I/O.

Role: a Service is written once and runs under every driver (iterative, fork, threads,
select/poll/epoll, asyncio, prefork); ``drivers.engine`` is the one interpreter of the
actions below (a new action is added here and there). A new service is one module in
protocols/ and one row in ``protocols.SERVICES``. Rules:
- A service never imports socket, select, selectors, threading, asyncio or os; it sees bytes
  and returns actions. A test checks the imports.
- ``service.start(peer)`` makes a Session for one connection and says what to send first.
  ``session.feed(data)`` / ``session.feed_eof()`` / ``session.resume(job, result)`` return
  Actions: ``None`` (nothing to do), one action, or a list of them, in order.
- ``bytes``, ``bytearray`` and ``memoryview`` are themselves the Send action: the common
  case (echo) costs no wrapper object. The driver may keep a reference to what it is given
  until it is sent, so a session must not mutate a buffer it returned.
- ``SendFile`` sends a file region with sendfile(2) (zero copy); ``ShutdownWrite`` is our
  half-close; ``Close`` closes once everything queued before it is sent (nothing after a
  Close is done). Opening files, stat() and the like are blocking work: they belong in a
  Run job.
- ``Run(job)`` asks the driver to run ``job`` where blocking is harmless and hand its
  result (or the exception it raised) to ``session.resume``; the connection is neither
  read nor written meanwhile, and actions after a Run wait for it (``resume``'s actions go
  first). A job has exactly two forms, honoured by every model: a plain callable, called
  in a worker thread (event loops) or inline (blocking models); or an ``async def``
  function, awaited on the server's loop under a model that runs one (asyncio) and run to
  completion with ``asyncio.run`` in that same harmless place under every other model.
  Why keep the coroutine form rather than remove it: an ``async def`` handler (JSON-RPC)
  is a user-visible feature worth having on the asyncio model (it may await the loop's
  own objects without holding a thread), and the fallback is mechanical, so it belongs
  to the one interpreter of this contract (``drivers.engine.run_job``), not to each
  service. A service therefore never knows which driver runs it.
- ``Sent(then)`` is a mark in the output: the engine calls ``then(unsent)`` when the
  output reaches it (0) or the connection ends before (the bytes before it not sent).
- ``Timer(seconds)`` arms the connection's one timer (None disarms it); when it fires the
  driver calls ``session.on_timer()``. It takes effect at once, even while output queued
  before it waits, and it is an absolute deadline: traffic does not move it (a header
  deadline against slowloris), unlike the driver's idle timeout.
- Backpressure is the driver's: it stops feeding a session while that session's unsent
  output is above the high-water mark, and feeds again once it drained below it.
- Datagram services implement ``datagram(data, peer)``: Send actions reply to the sender.
- A service that shows the server's counters (a status page) defines
  ``attach(stats: Callable[[], dict])``; the driver calls it once with a function that
  returns a snapshot (the same JSON the --stats socket serves).
- A service with counters of its own (the relay's, TLS handshakes) defines
  ``stats_section() -> dict``: its sections are merged into that snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from ipcnet.addresses import Address
from ipcnet.protocols.handover import Handover  # relay (issue 12): the connection is given away


@dataclass(frozen=True, slots=True)
class SendFile:
    """Send ``count`` bytes of an open file from ``offset`` (sendfile(2) where possible).

    With ``close=True`` the driver owns ``fd`` from now on and closes it once the region is
    sent, or when the connection ends first; otherwise the fd stays the caller's.
    ``path`` is informational (traces, logs).
    """

    fd: int
    offset: int
    count: int
    path: str = ""
    close: bool = False


@dataclass(frozen=True, slots=True)
class ShutdownWrite:
    """Half-close: the peer reads EOF once everything queued before this is sent."""


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection once everything queued before this is sent."""


@dataclass(frozen=True, slots=True)
class Run:
    """Run ``job`` (a callable, or an ``async def`` function) where blocking is harmless;
    its outcome goes to ``session.resume``."""

    job: Callable[[], Any]


@dataclass(frozen=True, slots=True)
class Timer:
    """Arm the connection's timer to fire ``seconds`` from now (None disarms it)."""

    seconds: float | None


@dataclass(frozen=True, slots=True)
class Sent:
    """Call ``then(unsent)`` once everything queued before this went out (``unsent`` is 0),
    or, when the connection ends first, with the bytes queued before it that never went
    out (an access log's bytes sent for a response cut short). ``then`` must not raise."""

    then: Callable[[int], None]


#: ``Sent.then``'s argument when nothing is known of what went out before the mark
NOTHING_KNOWN_SENT = 1 << 62


@dataclass(slots=True)  # not frozen: the engine builds one a job, and frozen is 2x the cost
class Outcome:
    """What a Run job produced: ``value``, or the exception it raised in ``error``."""

    value: Any = None
    error: BaseException | None = None


Send: TypeAlias = bytes | bytearray | memoryview
Action: TypeAlias = Send | SendFile | ShutdownWrite | Close | Run | Timer | Sent | Handover
Actions: TypeAlias = Action | Sequence[Action] | None

SHUTDOWN_WRITE = ShutdownWrite()
CLOSE = Close()


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other end, as far as the driver knows."""

    address: Address | None  # None for unnamed unix sockets
    local: Address | None = None


class Session(Protocol):
    """The state of one connection."""

    def feed(self, data: bytes) -> Actions: ...

    def feed_eof(self) -> Actions: ...

    def resume(self, job: Run, outcome: Outcome) -> Actions: ...

    def on_timer(self) -> Actions: ...


class Service(Protocol):
    """A kind of server: echo, http, json-rpc, ..."""

    #: short name used by the CLI and the counters
    name: str
    #: bytes sent to a connection refused for being over --max-conns (b"" = just close)
    refusal: bytes

    def start(self, peer: Peer) -> tuple[Session, Actions]: ...

    def datagram(self, data: bytes, peer: Peer) -> Actions:
        """Answer one datagram; raise NotImplementedError for stream-only services."""
        ...


def as_list(actions: Actions) -> Sequence[Action]:
    """Normalise Actions to a sequence (drivers that do not special-case one Send)."""
    if actions is None:
        return ()
    if isinstance(
        actions,
        (bytes, bytearray, memoryview, SendFile, ShutdownWrite, Close, Run, Timer, Sent, Handover),
    ):
        return (actions,)
    return actions


class BaseSession:
    """Defaults for sessions: EOF closes, no jobs."""

    def feed(self, data: bytes) -> Actions:
        return None

    def feed_eof(self) -> Actions:
        return CLOSE

    def resume(self, job: Run, outcome: Outcome) -> Actions:
        if outcome.error is not None:
            raise outcome.error
        return None

    def on_timer(self) -> Actions:
        return CLOSE


class BaseService:
    """Defaults for services: nothing sent on refusal, no datagram support."""

    name = "service"
    refusal = b""

    def datagram(self, data: bytes, peer: Peer) -> Actions:
        raise NotImplementedError(f"{self.name} is a stream service; it has no datagram form")
