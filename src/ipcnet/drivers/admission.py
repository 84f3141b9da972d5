"""Admission and shutdown, once for every model: accepting, refusing, the idle sweep, drain.

Role: the rules a connection meets on its way in and out, whatever model serves it.
Rules:
- ``Gate.accept`` takes what a ready listener has queued (up to BATCH at a time); on
  EMFILE/ENFILE (a translated ``Busy``) it stops watching every listener for ACCEPT_PAUSE
  seconds (never spinning on a listener it cannot empty) and logs that at most every 5 s;
  so does a blocking model that cannot fork or start a thread for a connection (``pause``;
  that connection is refused: the server goes on, as socketserver's handle_error does);
  a connection over --max-conns is refused explicitly (the service's refusal bytes, if
  any, then FIN; what the client already sent is read and dropped first, or the close
  would be an RST), counted, and logged at most once every LOG_EVERY s, with the count
  since (a client retrying is not a line a retry; nginx's "worker_connections are not
  enough"), never left hanging in the backlog, unless a sibling has room for it:
  a prefork worker at its limit on a listener it shares (``core.room_elsewhere``) stops
  accepting for ACCEPT_PAUSE s while another worker is under its own, leaving the
  connection to that one (nginx's ngx_accept_disabled: a worker short of connections lets
  the others accept), and refuses only once every worker is full; so is one whose
  descriptor the model cannot watch (``fd_limit``: select(2)'s FD_SETSIZE; a larger one
  made select raise and the server exit; nginx refuses to start select with more
  connections);
- ``sweep`` adds each connection's byte counts to the shared row (once a second, not per
  read) and closes one without traffic for longer than --idle-timeout, idle or owing output
  its peer does not take (a client that stopped reading holds a connection as surely as
  one that stopped sending: nginx's send_timeout), unless a job or a handed-over pump is
  at work (the blocking models get the same rule from their read and write timeouts,
  SO_RCVTIMEO/SO_SNDTIMEO);
- ``drain_step`` is one look while stopping: idle connections are ended at once, busy
  ones may finish until the grace period ends, then every one is forced. Ended, not
  closed: a lingering close (nginx's lingering_close, RFC 9112 §9.6; ``Engine.linger``),
  because a stream client may still be sending, and a close with its input unread sends
  an RST, which makes its kernel throw away the echo or answer it has not read yet. We
  half-close (the client reads EOF after every byte we sent), drop what it still sends,
  and close at its EOF, after it has been silent ``engine.LINGER_IDLE`` s, or at the
  latest ``core.linger_time()`` after our FIN (the daytime service's 2 s, within the
  grace): a client that stops at our EOF, as clients do, ends it at once, an idle one
  that does not read costs the stop half a second, and one that keeps sending cannot
  hold the stop for the whole grace period. The forced close at the end of the grace
  period (or at a second signal) stays abrupt, an RST if input is unread: the stop was
  given a deadline. A connection that has not sent a byte yet is not idle: the client
  connected before we stopped accepting and its first request is on its way (closing it
  is the lost request of gunicorn #2529/#3397); it gets the grace period like a busy one.
  For a service that drains (http: its answers now say ``Connection: close``) idle
  connections stay open until ``core.linger_until``, so a keep-alive client's next
  request is answered, and the close announced, instead of meeting a close.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ipcnet.errors import Busy, IPCError

if TYPE_CHECKING:
    from ipcnet.drivers.core import ServerCore
    from ipcnet.drivers.counters import Row
    from ipcnet.transports import SocketStream
    from ipcnet.transports.base import Listener

log = logging.getLogger("ipcnet.serve")

ACCEPT_PAUSE = 0.1  # seconds to stop accepting after EMFILE/ENFILE
BATCH = 64  # connections taken from a ready listener before looking at the others
QUEUED = 4096  # the most taken from a listener's queue when a stop closes it (its backlog)
LOG_EVERY = 5  # seconds between log lines of one kind (refusals, an accept pause)
REFUSAL_DRAIN = 4  # reads of what a refused client already sent (so close sends FIN, not RST)
READ_SIZE = 64 * 1024


class Gate:
    """Accepting for one model; ``watch``/``unwatch`` say how it listens for readiness."""

    def __init__(
        self,
        core: ServerCore,
        active: Callable[[], int],
        watch: Callable[[Listener[Any]], object] | None = None,
        unwatch: Callable[[Listener[Any]], object] | None = None,
        fd_limit: int | None = None,
    ) -> None:
        self.core = core
        self.active = active
        self.watch = watch
        self.unwatch = unwatch
        self.fd_limit = fd_limit  # descriptors from here on are refused (see the rules)
        self.paused_until = 0.0
        self._logged = 0.0

    def accept(
        self, listener: Listener[Any], batch: int = BATCH, last: bool = False
    ) -> Iterator[SocketStream]:
        """The connections to serve now (over-limit ones are refused on the way). ``last``:
        the stop has begun and the listener closes next; what the kernel queued on it
        before is still taken (closing would reset it: gunicorn #3397), then nothing."""
        core = self.core
        limit = core.config.max_conns
        for _ in range(batch):
            if self.paused_until or (core.stopping.is_set() and not last):
                return
            elsewhere = core.room_elsewhere  # a prefork worker's siblings (see the rules)
            if not last and elsewhere is not None and self.active() >= limit and elsewhere():
                self.defer()
                return
            try:
                stream = listener.try_accept()
            except Busy as exc:
                self.pause(exc)
                return
            if stream is None:
                return
            if core.trace:
                core.trace(
                    f"accept(fd {listener.fileno()}) -> new fd {stream.fileno()} from "
                    f"{stream.where}"
                )
            if self.active() >= limit:
                refuse(core, stream)
                continue
            if self.fd_limit is not None and stream.fileno() >= self.fd_limit:
                self._warn(
                    f"cannot watch fd {stream.fileno()} (select(2) takes fds below "
                    f"{self.fd_limit}): connection refused; poll and epoll have no such limit"
                )
                refuse(core, stream, why=f"fd {stream.fileno()} over select(2)'s limit", quiet=True)
                continue
            yield stream

    def _warn(self, what: str) -> None:
        now = time.monotonic()
        if now - self._logged > LOG_EVERY:
            log.warning("%s", what)
            self._logged = now

    def pause(self, exc: IPCError) -> None:
        """Out of a resource (descriptors; processes or threads for a blocking model):
        stop accepting for ACCEPT_PAUSE s, rather than failing one connection after another."""
        self._warn(f"{exc}; pausing accept for {ACCEPT_PAUSE:.1f} s")
        self.core.row.add("errors")
        self.defer()

    def defer(self) -> None:
        """At our limit, with room in a sibling: leave the listener to it for ACCEPT_PAUSE s
        (no error: nothing failed)."""
        self.paused_until = time.monotonic() + ACCEPT_PAUSE
        if self.unwatch is not None:
            for listener in self.core.listeners:
                self.unwatch(listener)

    def wait(self) -> float | None:
        """Seconds until accepting resumes (None: it is not paused)."""
        return max(0.0, self.paused_until - time.monotonic()) if self.paused_until else None

    def resume(self, now: float | None = None) -> None:
        """Accept again once the pause is over (call it from the model's loop or timer)."""
        if self.paused_until and (now or time.monotonic()) >= self.paused_until:
            self.reopen()

    def reopen(self) -> None:
        """Accept again now (a model whose timer says the pause is over)."""
        self.paused_until = 0.0
        if self.watch is not None and not self.core.stopping.is_set():
            for listener in self.core.listeners:
                if not listener.closed:
                    self.watch(listener)


class _Said:
    """When refusals were last logged, and how many came since (one process's)."""

    at: float = -float(LOG_EVERY)
    count = 0


def refuse(
    core: ServerCore,
    stream: SocketStream,
    row: Row | None = None,
    why: str | None = None,
    quiet: bool = False,
) -> None:
    """Tell an over-limit connection so (the service's refusal bytes) and close it; logged
    at most every LOG_EVERY s with the count since (``why``: a reason other than being over
    --max-conns; ``quiet``: the caller logged it already). Counted all the same."""
    (row or core.row).add("refused")
    reason = why or f"over --max-conns {core.config.max_conns}"
    if core.trace:
        core.trace(f"refuse fd {stream.fileno()}: {reason}")
    if not quiet:
        _Said.count += 1
        now = time.monotonic()
        if now - _Said.at >= LOG_EVERY:
            n, _Said.count, _Said.at = _Said.count, 0, now
            log.warning(
                "%s: %d connection%s refused (said at most every %d s)",
                reason,
                n,
                "" if n == 1 else "s",
                LOG_EVERY,
            )
    refusal = core.service.refusal
    try:
        stream.set_blocking(False)
        if refusal:
            stream.try_write(refusal)
        stream.send_eof()
        for _ in range(REFUSAL_DRAIN):  # unread input would turn our FIN into an RST
            if not stream.try_read(READ_SIZE):
                break
    except IPCError:
        pass
    stream.close()


def sweep(
    conns: Iterable[Any],
    row: Row,
    idle_timeout: float | None,
    now: float,
    close: Callable[[Any], None],
) -> None:
    """Flush byte counts; close a connection without traffic too long, idle or stalled
    (output owed, none taken; see the rules). A connection has ``engine``, ``watch`` and
    ``last_active``."""
    for conn in list(conns):
        engine = conn.engine
        new_in, new_out = engine.counts()
        if new_in or new_out:
            row.add("bytes_in", new_in)
            row.add("bytes_out", new_out)
            conn.last_active = now
        elif (
            idle_timeout is not None
            and now - conn.last_active > idle_timeout
            and engine.job is None
            and conn.watch is None
        ):
            log.debug("closing a connection without traffic for %s s", idle_timeout)
            close(conn)


def drain_step(
    core: ServerCore,
    conns: Iterable[Any],
    linger: Callable[[Any], None],
    force_close: Callable[[Any], None],
) -> bool:
    """One look while stopping: end the idle (``linger``: a lingering close, asked again
    at each look while the connection stays idle, so it must do its work once), force
    all once the grace period is over. True once it is over (every one was forced)."""
    force = core.time_left() <= 0
    lingering = time.monotonic() < core.linger_until
    for conn in list(conns):
        if force:
            force_close(conn)
        elif conn.idle and not lingering and getattr(getattr(conn, "engine", None), "fed", True):
            linger(conn)
    return force
