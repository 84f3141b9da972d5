"""Signals as events: ``signals(SIGUSR1, SIGTERM)`` and ``send_signal(pid, sig)``.

Role: a ``SignalSource`` is a signalfd(2): the chosen signals are blocked in the calling
thread and queued to a descriptor instead of interrupting the program, so they arrive as
``SignalEvent`` records carrying who sent them (``pid``, ``uid``; from the kernel, not
forgeable) and can be iterated, read with a timeout, or polled by any event loop
(``fileno()``). Rules:
- Block them before other threads start (threads inherit the mask; a thread that does not
  block a signal may take it with the default action). ``close()`` unblocks what the
  source blocked and no other open source still needs, in any order of closing (what
  the program blocked itself stays blocked).
- Standard signals coalesce while pending (two SIGUSR1 before a read may be one event);
  real-time signals queue.
- ``send_signal`` says "no such process" (ESRCH) and "not permitted" (EPERM) plainly.
- A signal or pid that is not an integer (1.5) is a TypeError, as the signal module and
  os.kill say, never truncated (1.5 would be SIGHUP).
- A source dropped unclosed closes its descriptor and, in the thread that made it, lets
  its signals go, with a ResourceWarning (as an unclosed socket).
signalfd has no wrapper in the os module; it is one libc call through ctypes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import math
import os
import re
import select
import signal
import struct
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ipcnet.errors import (
    AddressError,
    Closed,
    InvalidAddress,
    PermissionDenied,
    Timeout,
)
from ipcnet.transports.base import check_count, check_timeout, refuse_pickle
from ipcnet.transports.oserrors import translate

_SFD_NONBLOCK, _SFD_CLOEXEC = 0o4000, 0o2000000
# the head of struct signalfd_siginfo (128 bytes): signo errno code pid uid fd tid band
# overrun trapno status int ptr
_INFO = struct.Struct("<IiiIIiIIIIiiQ")
_SIGINFO_SIZE = 128
# a signal mask is a thread's: (thread, signal) -> how many open sources need it blocked,
# and those a source blocked (the program had not blocked them itself)
_needed: dict[tuple[int, int], int] = {}
_ours: set[tuple[int, int]] = set()


@dataclass(frozen=True, slots=True)
class SignalEvent:
    """One signal: its number, the sender's pid and uid, the si_code, and sigqueue's value."""

    signo: int
    pid: int
    uid: int
    code: int
    value: int

    @property
    def name(self) -> str:
        return signal_name(self.signo)


_RT = re.compile(r"(?:SIG)?RT(MIN|MAX)(?:([+-])(\d+))?\Z")


def signal_name(signo: int) -> str:
    """``SIGUSR1``; a real-time signal as ``kill -l`` spells it (``SIGRTMIN+1``,
    ``SIGRTMAX-2``): Python's enum names only SIGRTMIN and SIGRTMAX themselves."""
    low, high = int(signal.SIGRTMIN), int(signal.SIGRTMAX)
    if not low <= signo <= high:
        return signal.Signals(signo).name
    if signo - low <= (high - low) // 2:
        return "SIGRTMIN" + (f"+{signo - low}" if signo > low else "")
    return "SIGRTMAX" + (f"-{high - signo}" if signo < high else "")


def _signum(sig: int | str) -> int:
    """A signal number from a number, ``"USR1"``/``"SIGUSR1"``, ``"RTMIN+3"`` or ``"10"``
    (as kill(1) takes ``-s 10``)."""
    low, high = int(signal.SIGRTMIN), int(signal.SIGRTMAX)
    if not isinstance(sig, (str, signal.Signals)) and sig is not None:
        sig = check_count(sig, "a signal")  # 1.5 is refused, not SIGHUP
    try:
        if isinstance(sig, str) and sig.strip().isascii() and sig.strip().isdigit():
            num = int(sig)
        elif isinstance(sig, str):
            text = sig.strip().upper()
            rt = _RT.match(text)
            if rt is None:
                return int(signal.Signals[text if text.startswith("SIG") else f"SIG{text}"])
            base = low if rt.group(1) == "MIN" else high
            num = base + (int(rt.group(3)) if rt.group(2) == "+" else -int(rt.group(3) or 0))
        elif sig is None:
            raise ValueError
        else:
            num = int(sig)
        if low <= num <= high:
            return num
        return int(signal.Signals(num))
    except (KeyError, ValueError):
        pass
    raise InvalidAddress(
        f"unknown signal {sig!r} (a name like USR1, RTMIN+1, or a number; "
        f"real-time ones are {low}..{high})"
    )


class SignalSource:
    """An iterable, pollable queue of the chosen signals (a signalfd)."""

    def __init__(self, sigs: Iterable[int | str]) -> None:
        self.signals = sorted({_signum(s) for s in sigs})
        if not self.signals:
            raise InvalidAddress("signals() needs at least one signal")
        for bad in (signal.SIGKILL, signal.SIGSTOP):
            if bad in self.signals:
                raise InvalidAddress(f"{signal_name(bad)} cannot be caught or queued")
        self.where = "signals(" + ", ".join(signal_name(s) for s in self.signals) + ")"
        self._thread = threading.get_ident()  # whose mask _hold changes
        self.timeout: float | None = None
        self._hold()
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        mask = ctypes.create_string_buffer(128)  # sigset_t
        for s in self.signals:
            libc.sigaddset(mask, s)
        fd = libc.signalfd(-1, mask, _SFD_NONBLOCK | _SFD_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            self._let_go()
            raise translate(OSError(code, os.strerror(code)), "create", self.where)
        self._fd = int(fd)
        self._closed = False
        self._waker = -1
        self._own_waker()

    def _own_waker(self) -> None:
        """The eventfd close() signals, this process's own: a forked child that inherited
        the parent's makes its own (the parent's close() woke the child's read, which
        then spun on it for ever)."""
        if self._waker >= 0:
            os.close(self._waker)  # our copy of the parent's
        self._waker = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._waker_pid = os.getpid()
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._poll.register(self._waker, select.POLLIN)

    def _hold(self) -> None:
        before = signal.pthread_sigmask(signal.SIG_BLOCK, self.signals)
        thread = threading.get_ident()
        for s in self.signals:
            key = (thread, s)
            if not _needed.get(key) and s not in before:
                _ours.add(key)
            _needed[key] = _needed.get(key, 0) + 1

    def _let_go(self) -> None:
        thread = threading.get_ident()
        free = []
        for s in self.signals:
            key = (thread, s)
            _needed[key] = _needed.get(key, 1) - 1
            if not _needed[key]:
                del _needed[key]
                if key in _ours:
                    _ours.discard(key)
                    free.append(s)
        if free:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, free)

    _closed = True  # until __init__ opened it

    def read(self, timeout: float | None = -1.0) -> SignalEvent:
        """The next signal; waits up to ``timeout`` (default: the ``timeout`` attribute)."""
        timeout = check_timeout(timeout)
        if timeout is not None and timeout < 0:
            timeout = check_timeout(self.timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            event = self.try_read()
            if event is not None:
                return event
            # what is left of it: a wake-up with nothing to read (another reader took the
            # signal) does not start the wait over; rounded up, as 0.4 ms is not "now"
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._waker_pid != os.getpid():
                self._own_waker()
            ready = self._poll.poll(None if left is None else math.ceil(left * 1000))
            if self._closed:
                raise Closed(f"closed while waiting on {self.where}")
            if not ready:
                raise Timeout(f"timed out: no signal on {self.where} after {timeout} s")

    def try_read(self) -> SignalEvent | None:
        """The next queued signal, or None (for event loops, after fileno() polled readable)."""
        if self._closed:
            raise Closed(f"closed: cannot read {self.where}: this side closed it")
        try:
            raw = os.read(self._fd, _SIGINFO_SIZE)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise translate(exc, "read", self.where) from exc
        f = _INFO.unpack_from(raw)
        return SignalEvent(signo=f[0], code=f[2], pid=f[3], uid=f[4], value=f[11])

    def __iter__(self) -> Iterator[SignalEvent]:
        """Events forever (until close(), or a Timeout when ``timeout`` is set)."""
        while True:
            try:
                yield self.read()
            except Closed:
                return

    def fileno(self) -> int:
        if self._closed:
            raise Closed(f"closed: cannot get the descriptor of {self.where}: this side closed it")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.where}{' closed' if self._closed else ''}>"

    def __reduce_ex__(self, protocol: object) -> Any:
        raise refuse_pickle(self, self.where)

    def close(self) -> None:
        """Stop queueing: restore the signal mask and close the descriptor.

        Signals still pending stay pending and are delivered as usual once unblocked.
        """
        if self._closed:
            return
        self._closed = True
        if self._waker_pid == os.getpid():  # (a forked child's copy wakes nobody here)
            os.eventfd_write(self._waker, 1)
        self._let_go()
        os.close(self._fd)

    def __del__(self) -> None:
        if not self._closed:  # dropped unclosed: as a socket, say so and let go
            with contextlib.suppress(Exception):
                warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1, source=self)
            self._closed = True
            with contextlib.suppress(Exception):
                if threading.get_ident() == self._thread:  # a mask is a thread's own
                    self._let_go()
            with contextlib.suppress(OSError):
                os.close(self._fd)
        waker = getattr(self, "_waker", None)
        if waker is not None:
            with contextlib.suppress(OSError):
                os.close(waker)

    def __enter__(self) -> SignalSource:
        if self._closed:
            raise Closed(f"closed: cannot use {self.where}: this side closed it")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def signals(*sigs: int | str) -> SignalSource:
    """``signals(signal.SIGUSR1, "TERM")``: queue these signals as events (see the module)."""
    return SignalSource(sigs)


def send_signal(pid: int, sig: int | str) -> None:
    """kill(2) with plain errors: no such process, not permitted, unknown signal."""
    pid = check_count(pid, "a pid")
    signo = 0 if isinstance(sig, (int, str)) and str(sig).strip() == "0" else _signum(sig)
    if pid <= 0:
        raise InvalidAddress(f"pid {pid} would signal a process group; give a process id > 0")
    if pid > 2**31 - 1:  # pid_t: no process has such a number (os.kill: OverflowError)
        raise InvalidAddress(f"no such process: pid {pid} is beyond any process id")
    try:
        os.kill(pid, signo)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            raise AddressError(f"no such process: pid {pid}") from exc
        if exc.errno == errno.EPERM:
            raise PermissionDenied(
                f"not permitted to signal pid {pid} (it belongs to another user)"
            ) from exc
        raise translate(exc, f"signal pid {pid} with", signo) from exc
