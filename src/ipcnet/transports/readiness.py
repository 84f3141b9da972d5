"""Readiness of many descriptors: epoll(7), poll(2) or select(2) behind one small interface.

Role: what the readiness models (``drivers.selector``) wait in. ``register``/``modify``/
``unregister`` take a descriptor (or an object with ``fileno()``), READ/WRITE events as
``selectors`` numbers them, and a datum, kept in ``data`` (fd -> datum) for the loop to
look ready descriptors up in; ``wait`` returns the kernel's ``(fd, bits)`` pairs with
poll(2) bits (``IN``, ``OUT``, and error or hang-up bits as the kernel reports them).
Rules: as ``selectors`` (whose Python layer this replaces on the hot path: no key tuple
per call, no loop over the ready list): registering a descriptor twice is a KeyError,
unregistering one the kernel already forgot (its owner closed it) is not an error.
``fd_limit``: the first descriptor a backend cannot watch (select(2): FD_SETSIZE, a fixed
bitmap size): registering one raises LimitExceeded at once, not the next ``wait``, which
would end the loop; a caller refuses it (the gate refuses such a connection before).
"""

from __future__ import annotations

import math
import select
from collections.abc import Callable
from typing import Any

from ipcnet.errors import LimitExceeded

IN, OUT = select.POLLIN, select.POLLOUT  # == select.EPOLLIN, select.EPOLLOUT
MAX_EVENTS = 256  # per epoll_wait; level-triggered: the rest come with the next call
FD_SETSIZE = 1024  # glibc's fd_set: select(2) watches descriptors below it only
_KERNEL = (0, IN, OUT, IN | OUT)  # selectors' READ (1) / WRITE (2) bits -> poll(2) bits


def _fd(fileobj: Any) -> int:
    return fileobj if fileobj.__class__ is int else int(fileobj.fileno())


class Poller:
    """Descriptors with READ/WRITE events and a datum each; ``wait`` returns ``(fd, bits)``
    pairs with poll(2) bits. A backend sets ``_add``/``_change``/``_remove`` (fd, bits)."""

    _add: Callable[[int, int], None]
    _change: Callable[[int, int], None]
    _remove: Callable[[int], None]
    fd_limit: int | None = None  # select: FD_SETSIZE (see the rules)

    def __init__(self) -> None:
        self.data: dict[int, Any] = {}  # fd -> datum (the loop looks ready fds up here)

    def register(self, fileobj: Any, events: int, data: Any) -> None:
        fd = fileobj if fileobj.__class__ is int else _fd(fileobj)  # a new connection: int
        if fd in self.data:
            raise KeyError(f"fd {fd} is already registered")
        self._add(fd, _KERNEL[events])
        self.data[fd] = data

    def modify(self, fileobj: Any, events: int, data: Any) -> None:
        fd = _fd(fileobj)
        self._change(fd, _KERNEL[events])
        self.data[fd] = data

    def unregister(self, fileobj: Any) -> None:
        fd = _fd(fileobj)
        del self.data[fd]
        self._remove(fd)

    def forget(self, fd: int) -> None:
        """``unregister`` for a descriptor about to be closed, which is its open file's
        only one (not shared with a child or a dup): epoll drops it from its set at that
        close(2) by itself, so the epoll_ctl call is saved (nginx does the same)."""
        self.unregister(fd)

    def wait(self, timeout: float) -> list[tuple[int, int]]:
        """The ready descriptors, waiting up to ``timeout`` seconds (0: do not wait;
        negative: wait until one is ready)."""
        raise NotImplementedError

    def close(self) -> None:
        self.data.clear()


class EpollPoller(Poller):
    def __init__(self) -> None:
        super().__init__()
        self.epoll = select.epoll()
        self._add = self.epoll.register
        self._change = self.epoll.modify
        self._remove = self._unregister

    def _unregister(self, fd: int) -> None:
        try:
            self.epoll.unregister(fd)
        except OSError:  # closed already (the kernel forgot it): as selectors
            pass

    def forget(self, fd: int) -> None:
        del self.data[fd]  # close(2) takes it out of the epoll set

    def wait(self, timeout: float) -> list[tuple[int, int]]:
        return self.epoll.poll(timeout, MAX_EVENTS)

    def close(self) -> None:
        super().close()
        self.epoll.close()


class PollPoller(Poller):
    def __init__(self) -> None:
        super().__init__()
        self.poll = select.poll()
        self._add = self._change = self.poll.register
        self._remove = self.poll.unregister

    def wait(self, timeout: float) -> list[tuple[int, int]]:
        return self.poll.poll(math.ceil(timeout * 1e3) if timeout >= 0 else None)


class SelectPoller(Poller):
    fd_limit = FD_SETSIZE

    def __init__(self) -> None:
        super().__init__()
        self.readers: set[int] = set()
        self.writers: set[int] = set()
        self._add = self._change = self._set
        self._remove = self._forget

    def _set(self, fd: int, bits: int) -> None:
        if fd >= FD_SETSIZE:
            raise LimitExceeded(
                f"select(2) cannot watch descriptor {fd} (FD_SETSIZE {FD_SETSIZE}); "
                "poll and epoll have no such limit"
            )
        (self.readers.add if bits & IN else self.readers.discard)(fd)
        (self.writers.add if bits & OUT else self.writers.discard)(fd)

    def _forget(self, fd: int) -> None:
        self.readers.discard(fd)
        self.writers.discard(fd)

    def wait(self, timeout: float) -> list[tuple[int, int]]:
        r, w, _ = select.select(self.readers, self.writers, (), timeout if timeout >= 0 else None)
        if not w:
            return [(fd, IN) for fd in r]
        ready = dict.fromkeys(r, IN)
        for fd in w:
            ready[fd] = ready.get(fd, 0) | OUT
        return list(ready.items())


__all__ = ["IN", "OUT", "EpollPoller", "PollPoller", "Poller", "SelectPoller"]
