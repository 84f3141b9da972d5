"""The driver engine: one connection's actions in, the I/O steps to perform out; no I/O.

Role: the one interpreter of the service contract (``protocols.base``). Every model feeds
its session through an ``Engine`` and performs the steps it hands out in its own way
(blocking calls, a readiness loop, asyncio), reporting back how much got done. A new
action is added here (its row below, its step in ``step``) and nowhere else; a model only
learns to perform a new kind of step.

Rules (what each action becomes; the model performs the step and reports back):

    action               step handed out by step()        reported back with
    -------------------  -------------------------------  -----------------------------
    bytes / memoryview   the buffer: write it             sent(n), n may be short
    SendFile             a Region: sendfile(fd, off, n)   sent(n); sent(n, whole=True)
                                                            when the file ended early
                                                            (then the connection closes)
    ShutdownWrite        SHUTDOWN_WRITE: half-close        (nothing)
    Close                CLOSE: close the connection       end()
    Run(job)             the Run: run_job() it where       resumed(job, outcome)
                         blocking is harmless
    Timer(seconds)       the Timer: arm (or disarm) the    (nothing); when it fires:
                         connection's one deadline         timer()
    Sent(then)           (none: the engine calls           -
                         then(0) when the output reaches
                         it, then(n) with the n bytes
                         before it never sent when the
                         connection ends first)
    Handover(job)        the Handover: stop reading, run   end() once the pump it
                         job(transport) where blocking is  returned finished (see
                         harmless, drive the Pump it       protocols.handover)
                         returns (drivers.handover)

- one step is in flight at a time: after step() hands out a buffer, a Region or a Run,
  it returns None until that step is reported; ShutdownWrite, Close, Timer and Handover
  are done when handed out;
- a Timer is out of band: step() hands it out before anything queued, even while output
  is blocked or a step is in flight (a deadline is the session's clock, not its output);
- the actions ``resume`` returns go before whatever was queued after the Run (a job's
  answer comes before what the session said after asking for it);
- nothing after a Close is done: later actions are dropped (their files released);
- a ``SendFile(close=True)`` descriptor is the engine's from the moment it is pushed and
  is released exactly once: when its region is sent, when it is dropped, or at end()
  (a region in flight at end() is released when its step reports back, so a model never
  has a descriptor closed, and its number reused, under an ongoing sendfile);
- backpressure: ``reading`` turns False once unsent output is above ``high_water`` and
  True again once it drained to ``high_water // 4``; it is also False while a job or a
  step is in flight, after EOF and once a Close is queued;
- the hot path: when nothing is queued, ``feed`` and ``resumed`` return an answer that is
  one ``bytes`` (to write at once, counted as sent; ``requeue`` hands back what the kernel
  did not take) or one ``Run`` (to run at once, in flight) instead of queueing it: one
  call per read on top of the session's own. An engine made with ``last_answers=True``
  (for a model that performs what is queued after writing that answer) does the same
  for a last answer, ``[bytes, Close]``: the bytes come back, the Close is queued (a new
  connection per request: no queue round trip for its one answer);
- a job's outcome reaches ``session.resume`` even after the connection ended, so what the
  job opened comes back in actions, which the engine then releases;
- ``linger`` ends a connection the server ends (a graceful stop) the way a service ends
  one with its last answer (``protocols.simple.last_answer``): what is queued goes out,
  then ShutdownWrite and a Timer; the session becomes one that drops what the client
  still sends and closes at its EOF or the timer (``BaseSession``'s rules). Closing
  with input unread would send an RST instead of a FIN, and the RST makes the client's
  kernel throw away what it had received and not yet read. Unlike daytime's, the timer
  is re-armed by each read, to LINGER_IDLE s (nginx's lingering_timeout, Apache's
  SECONDS_TO_LINGER): the bytes a client sent before our FIN reached it arrive within a
  round trip, and a stopping server should not wait on idle clients that never read
  (a pooled keep-alive connection notices our FIN only when it is next used); the
  deadline given (daytime's 2 s within the grace) still ends a client that keeps
  sending. A session with a ``linger(seconds)`` method ends itself instead when it
  returns actions (TLS: close_notify before the FIN, RFC 8446 §6.1, then its close wait);
The one system call made here is closing an owned descriptor (``transports.files``).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from types import CoroutineType
from typing import Any

from ipcnet.protocols.base import (
    CLOSE,
    SHUTDOWN_WRITE,
    Action,
    Actions,
    BaseSession,
    Close,
    Outcome,
    Run,
    SendFile,
    Sent,
    Session,
    ShutdownWrite,
    Timer,
)
from ipcnet.protocols.handover import Handover
from ipcnet.transports.files import release

HIGH_WATER = 256 * 1024
_BUFFERS = (bytes, bytearray, memoryview)
LINGER_IDLE = 0.5  # seconds of silence that end a lingering close (see the rules)


class _Lingering(BaseSession):
    """A connection ``Engine.linger`` ended: input dropped, each read re-arms the timer."""

    def __init__(self, until: float) -> None:
        self.until = until

    def feed(self, data: bytes) -> Actions:
        return Timer(max(0.0, min(LINGER_IDLE, self.until - time.monotonic())))


class Region:
    """A SendFile step: ``count`` bytes of ``fd`` from ``offset`` still to send."""

    __slots__ = ("close", "count", "fd", "offset", "path")

    def __init__(self, action: SendFile) -> None:
        self.fd = action.fd
        self.offset = action.offset
        self.count = action.count
        self.path = action.path or str(action.fd)
        self.close = action.close


def _size(item: Any) -> int:
    """The bytes a queued buffer or Region still has to send (0 for other items)."""
    if item.__class__ is Region:
        return int(item.count)
    return len(item) if item.__class__ in _BUFFERS else 0


def run_job(job: Run) -> Outcome:
    """Run a job where blocking is harmless; an ``async def`` job is run to completion on a
    loop of its own (``asyncio.run``): the form of Run for models that do not await."""
    try:
        value = job.job()
        if value.__class__ is CoroutineType:
            import asyncio  # only when a job is async: quick commands stay quick

            value = asyncio.run(value)
        return Outcome(value=value)
    except Exception as exc:
        return Outcome(error=exc)


class Engine:
    """The contract for one connection; see the module docstring for the rules."""

    __slots__ = (
        "born",
        "bytes_in",
        "bytes_out",
        "closing",
        "counted_in",
        "counted_out",
        "ended",
        "eof",
        "high_water",
        "inflight",
        "job",
        "last_answers",
        "lingering",
        "low_water",
        "paused",
        "queue",
        "release",
        "session",
        "timer_change",
        "unsent",
    )

    def __init__(
        self,
        session: Session,
        high_water: int = HIGH_WATER,
        release: Callable[[int], None] = release,
        last_answers: bool = False,
    ) -> None:
        self.session = session
        self.born = time.monotonic()  # the connection's duration histogram (counters)
        self.queue: collections.deque[Any] = collections.deque()  # buffers, Regions, markers
        self.unsent = 0  # bytes queued (buffers and file regions)
        self.high_water = high_water
        self.low_water = high_water // 4
        self.paused = False  # above the high-water mark: do not read
        self.job: Run | None = None  # the job in flight
        self.inflight = False  # a buffer or Region was handed out and not yet reported
        self.timer_change: Timer | None = None  # to hand out before anything else
        self.eof = False
        self.closing = False  # a Close is queued
        self.ended = False
        self.bytes_in = 0  # totals of the connection (``counts`` gives what is new)
        self.bytes_out = 0
        self.counted_in = 0
        self.counted_out = 0
        self.release = release
        self.last_answers = last_answers  # feed may return a last answer's bytes (above)
        self.lingering = False  # ended by ``linger``: only EOF or its timer is awaited

    # --- what the model reports about the connection -----------------------------------

    def feed(self, data: bytes) -> bytes | Run | None:
        """Bytes arrived. The hot path: when nothing is queued and the session answers
        with one ``bytes`` (write it now, it is counted as sent) or one ``Run`` (run it:
        it is in flight), that answer is returned; with ``last_answers``, so are the bytes
        of ``[bytes, Close]``, the Close queued (perform it after the write), and of either
        after a leading Timer, queued the same way; anything else is queued for ``step``."""
        self.bytes_in += len(data)
        out = self.session.feed(data)
        # _answer(out), written out here: one call less per read on the hot path
        if out.__class__ is bytes:
            if not self.queue and self.job is None:
                self.bytes_out += len(out)
                return out
        elif out.__class__ is Run:
            if not self.queue and self.job is None:
                self.job = out
                return out
        elif out.__class__ is list and self.last_answers and not self.queue and self.job is None:
            if len(out) > 1 and out[0].__class__ is Timer:  # a deadline set with the answer
                self.queue.append(out[0])  # (HTTP's first head) is performed after its write
                out = out[1:]
                if len(out) == 1 and out[0].__class__ is bytes:
                    self.bytes_out += len(out[0])
                    return out[0]
            if len(out) == 2:
                answer, close = out
                if answer.__class__ is bytes and close.__class__ is Close:
                    self.closing = True  # as push() would, with the answer handed out at once
                    self.queue.append(close)
                    self.bytes_out += len(answer)
                    return answer
        if out is not None:
            self.push(out)
        return None

    def _answer(self, out: Actions) -> bytes | Run | None:
        """The hot path's answer (see ``feed``), or None once ``out`` is queued."""
        if out is None:
            return None
        cls = out.__class__
        if (cls is bytes or cls is Run) and not self.queue and self.job is None:
            if cls is bytes:
                self.bytes_out += len(out)  # type: ignore[arg-type]
            else:
                self.job = out  # type: ignore[assignment]
            return out  # type: ignore[return-value]
        self.push(out)
        return None

    def requeue(self, rest: memoryview) -> None:
        """The part of ``feed``'s answer the kernel did not take: it goes first."""
        self.bytes_out -= len(rest)
        self.queue.appendleft(rest)
        self._grow(len(rest))

    def feed_eof(self) -> None:
        """The peer half-closed."""
        self.eof = True
        self.push(self.session.feed_eof())

    def timer(self) -> None:
        """The deadline the last Timer step armed has passed."""
        self.push(self.session.on_timer())

    def resumed(self, job: Run, outcome: Outcome) -> bytes | Run | None:
        """The job in flight finished with ``outcome``; returns as ``feed`` does."""
        self.job = None
        actions = self.session.resume(job, outcome)
        if self.ended:
            self._drop(self._items(actions))
            return None
        if not self.queue:
            return self._answer(actions)
        self.queue.extendleft(reversed(self._items(actions)))
        return None

    def sent(self, n: int, whole: bool = False) -> None:
        """``n`` bytes of the buffer or Region in flight went out; ``whole``: a Region is
        finished even if short (its file ended)."""
        self.inflight = False
        if self.ended:  # a Region that was in flight at end()
            head = self.queue.popleft() if self.queue else None
            if head.__class__ is Region and head.close:
                self.release(head.fd)
            return
        queue = self.queue
        head = queue[0]
        self.bytes_out += n
        self.unsent -= n
        if head.__class__ is Region:
            head.offset += n
            head.count -= n
            if head.count <= 0 or whole:
                queue.popleft()
                if head.close:
                    self.release(head.fd)
                if head.count > 0:  # the file ended early: see _cut_short
                    self._cut_short(head.count)
                    return
        elif n >= len(head):
            queue.popleft()
        else:
            queue[0] = memoryview(head)[n:].cast("B")
        if self.paused and self.unsent <= self.low_water:
            self.paused = False

    def _cut_short(self, unsent: int) -> None:
        """A file region ended before its count (the file shrank while it was sent): what
        was announced for it (a Content-Length) can no longer be kept, so nothing more is
        sent and the connection closes, which tells the peer (as nginx does)."""
        self._drop(self.queue, unsent)
        self.queue.clear()
        self.queue.append(CLOSE)
        self.closing = True
        self.unsent = 0
        self.paused = False

    def counts(self) -> tuple[int, int]:
        """Bytes in and out since the last call: what to add to the shared counters."""
        new_in, new_out = self.bytes_in - self.counted_in, self.bytes_out - self.counted_out
        self.counted_in, self.counted_out = self.bytes_in, self.bytes_out
        return new_in, new_out

    @property
    def fed(self) -> bool:
        """A byte came: until then its first request may be in flight (drain waits)."""
        return self.bytes_in > 0

    def end(self) -> None:
        """The connection is over (closed, broken, swept or forced): release what is owned."""
        if self.ended:
            return
        self.ended = True
        self.timer_change = None
        self.unsent = 0
        queue = self.queue
        if not queue:  # the common end: everything was sent
            return
        head = queue.popleft() if self.inflight else None
        self._drop(queue, 0 if head is None else _size(head))
        queue.clear()
        if head is not None:
            queue.append(head)  # released when its step reports back (see sent)

    def linger(self, seconds: float) -> None:
        """End the connection with a lingering close (see the rules): what is queued is
        sent, then our FIN; the client's input is dropped until its EOF, LINGER_IDLE s
        of silence, or ``seconds``. Once only; for an engine without a job in flight
        (its outcome would be lost)."""
        if self.lingering:
            return
        self.lingering = True
        own = getattr(self.session, "linger", None)  # a session with its own last words
        actions = own(seconds) if own is not None else None
        if actions is None:
            self.session = _Lingering(time.monotonic() + seconds)
            actions = [SHUTDOWN_WRITE, Timer(min(LINGER_IDLE, seconds))]
        self.push(actions)

    # --- what the session asked for ------------------------------------------------------

    def push(self, actions: Actions) -> None:
        """Queue a session's actions (files handed over are owned from here)."""
        if actions.__class__ is bytes and not self.closing and not self.ended:
            if actions:
                self.queue.append(actions)
                self._grow(len(actions))
            return
        items = self._items(actions)
        if self.ended:
            self._drop(items)
        else:
            self.queue.extend(items)

    def _items(self, actions: Actions) -> list[Any]:
        """The queue entries for actions; a Timer is taken out of band, a Close ends them."""
        if actions is None:
            return []
        if isinstance(
            actions, (*_BUFFERS, SendFile, ShutdownWrite, Close, Run, Timer, Sent, Handover)
        ):
            actions = (actions,)
        items: list[Any] = []
        closing = self.closing
        size = dropped = 0
        for action in actions:
            if closing:  # never performed
                if action.__class__ is SendFile:
                    dropped += action.count
                    if action.close:
                        self.release(action.fd)
                elif action.__class__ is Sent:
                    action.then(dropped)
                elif isinstance(action, _BUFFERS):
                    dropped += len(action)
                continue
            if isinstance(action, _BUFFERS):
                if len(action):
                    items.append(action)
                    size += len(action)
            elif action.__class__ is SendFile:
                region = Region(action)
                items.append(region)
                size += region.count
            elif action.__class__ is Timer:
                self.timer_change = action
            else:
                if action.__class__ is Close or action.__class__ is Handover:
                    closing = True
                items.append(action)
        self.closing = closing
        self.unsent += size
        if self.unsent > self.high_water:
            self.paused = True
        return items

    def _grow(self, size: int) -> None:
        self.unsent += size
        if self.unsent > self.high_water:
            self.paused = True

    def _drop(self, items: Any, unsent: int = 0) -> None:
        """Items never to be performed (``unsent`` bytes before them were not sent
        either): files released, Sent marks told what was not sent."""
        for item in items:
            cls = item.__class__
            if cls is Region:
                unsent += item.count
                if item.close:
                    self.release(item.fd)
            elif cls is Sent:
                item.then(unsent)
            elif cls in _BUFFERS:
                unsent += len(item)
        self.timer_change = None

    # --- the steps to perform ----------------------------------------------------------

    def step(self) -> Action | Region | None:
        """The next step to perform, or None while one is in flight or nothing is queued."""
        if self.timer_change is not None:
            change, self.timer_change = self.timer_change, None
            return change
        if self.inflight or self.job is not None or not self.queue or self.ended:
            return None
        head = self.queue[0]
        cls = head.__class__
        if cls is Region or cls in _BUFFERS:
            self.inflight = True
            return head  # type: ignore[no-any-return]
        self.queue.popleft()
        if cls is Run:
            self.job = head
        elif cls is Sent:  # the output reached the mark: everything before it went out
            head.then(0)
            return self.step()
        return head  # type: ignore[no-any-return]

    def wants(self, read: int, write: int) -> int:
        """``read`` if reading now (see ``reading``), ORed with ``write`` if ``writing``: the
        events a readiness loop waits for, in one call."""
        if self.ended or self.job is not None:
            return 0
        wanted = write if self.queue else 0
        if not (self.paused or self.eof or self.closing or self.inflight):
            wanted |= read
        return wanted

    @property
    def reading(self) -> bool:
        """Whether the model should read (and feed) now."""
        return not (
            self.paused or self.eof or self.closing or self.ended or self.job or self.inflight
        )

    @property
    def writing(self) -> bool:
        """Whether a step waits for the connection to become writable."""
        return bool(self.queue) and self.job is None and not self.ended

    @property
    def idle(self) -> bool:
        """Nothing queued and no job: a stop or the idle timeout may close it now."""
        return not self.queue and self.job is None


__all__ = ["CLOSE", "HIGH_WATER", "SHUTDOWN_WRITE", "Engine", "Region", "run_job"]
