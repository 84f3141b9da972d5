"""Driving a handed-over connection (``protocols.handover``): one way per kind of model.

Role: after a session's ``Handover`` the model no longer reads or writes the connection;
it waits on the descriptors the pump names and calls ``advance()`` when they are ready,
``expire()`` when its deadline passed and ``stop()`` on a forced stop. Three ways:
- ``drive``: blocking, in the calling thread, waiting in poll(2) (iterative, fork,
  forkconc, thread, pool);
- ``Watch``: inside a ``selectors`` readiness loop (select, poll, epoll);
- ``AioWatch``: on an asyncio loop (``add_reader``/``add_writer``, uvloop included).
Rules: a pump's descriptors are the pump's; here they are only registered and
unregistered, never read, written or closed.
"""

from __future__ import annotations

import selectors
import time
from collections.abc import Callable
from typing import Any, Protocol

from ipcnet.protocols.handover import READ, WRITE, Pump
from ipcnet.transports.splice import Poller

TICK = 0.1  # seconds between looks at ``stopping`` while a blocking pump waits


def drive(pump: Pump, stopping: Callable[[], bool] | None = None, waker: int | None = None) -> None:
    """Drive ``pump`` to its end in this thread; ``stopping()`` true: stop it now.

    ``waker``: a descriptor that turns readable when ``stopping`` may have become true
    (without one, ``stopping`` is looked at every TICK seconds). The blocking models pass
    neither: they force a stop by closing the connection, which ends the pump."""
    poller = Poller()
    while True:
        wanted = pump.advance()
        if pump.finished:
            return
        if waker is not None:
            wanted[waker] = wanted.get(waker, 0) | READ
        poller.set(wanted)
        deadline = pump.deadline()
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if waker is None and stopping is not None:
            timeout = TICK if timeout is None else min(timeout, TICK)
        ready = poller.wait(timeout)
        woken = waker is None or any(fd == waker for fd, _ in ready)
        if woken and stopping is not None and stopping():
            pump.stop()
            return
        if not ready and pump.expire():
            return


def _selector_events(events: int) -> int:
    return (selectors.EVENT_READ if events & READ else 0) | (
        selectors.EVENT_WRITE if events & WRITE else 0
    )


class Registry(Protocol):
    """What a Watch registers its descriptors with (a ``selectors`` selector, or the
    readiness models' ``transports.readiness.Poller``)."""

    def register(self, fd: int, events: int, data: Any) -> object: ...

    def modify(self, fd: int, events: int, data: Any) -> object: ...

    def unregister(self, fd: int) -> object: ...


class Watch:
    """A pump inside a selectors loop: the loop calls ``step()`` when one of its
    descriptors is ready (the selector key's data is this Watch) and ``expire()`` on
    its ticks; ``done`` is called once, when the pump finished."""

    __slots__ = ("done", "fds", "pump", "selector")

    def __init__(self, pump: Pump, selector: Registry, done: Callable[[Watch], None]) -> None:
        self.pump = pump
        self.selector = selector
        self.done = done
        self.fds: dict[int, int] = {}  # fd -> selector events registered

    def step(self) -> None:
        wanted = {fd: _selector_events(ev) for fd, ev in self.pump.advance().items()}
        self._register(wanted)
        if self.pump.finished:
            self.done(self)

    def expire(self, now: float) -> None:
        deadline = self.pump.deadline()
        if deadline is not None and now >= deadline and self.pump.expire():
            self._register({})
            self.done(self)

    def stop(self) -> None:
        self._register({})
        self.pump.stop()
        self.done(self)

    def _register(self, wanted: dict[int, int]) -> None:
        selector, fds = self.selector, self.fds
        for fd in [fd for fd in fds if fd not in wanted]:
            selector.unregister(fd)
            del fds[fd]
        for fd, events in wanted.items():
            if fd not in fds:
                selector.register(fd, events, self)
            elif fds[fd] != events:
                selector.modify(fd, events, self)
            fds[fd] = events


class AioWatch:
    """A pump on an asyncio loop: readers and writers for its descriptors, a timer for
    its deadline; ``done`` is called once, when the pump finished."""

    def __init__(self, pump: Pump, loop: Any, done: Callable[[AioWatch], None]) -> None:
        self.pump = pump
        self.loop = loop
        self.done = done
        self.fds: dict[int, int] = {}
        self.timer: Any = None

    def step(self) -> None:
        self._set(self.pump.advance())
        if self.pump.finished:
            self._finish()
            return
        deadline = self.pump.deadline()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if deadline is not None:
            self.timer = self.loop.call_later(max(0.0, deadline - time.monotonic()), self._due)

    def _due(self) -> None:
        self.timer = None
        if self.pump.expire():
            self._set({})
            self._finish()
        else:
            self.step()

    def stop(self) -> None:
        self._set({})
        self.pump.stop()
        self._finish()

    def _finish(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.done is not None:
            done, self.done = self.done, None  # type: ignore[assignment]
            done(self)

    def _set(self, wanted: dict[int, int]) -> None:
        loop, fds = self.loop, self.fds
        for fd, had in list(fds.items()):
            now = wanted.get(fd, 0)
            if had & READ and not now & READ:
                loop.remove_reader(fd)
            if had & WRITE and not now & WRITE:
                loop.remove_writer(fd)
            if not now:
                del fds[fd]
        for fd, events in wanted.items():
            had = fds.get(fd, 0)
            if events & READ and not had & READ:
                loop.add_reader(fd, self.step)
            if events & WRITE and not had & WRITE:
                loop.add_writer(fd, self.step)
            fds[fd] = events


__all__ = ["AioWatch", "Watch", "drive"]
