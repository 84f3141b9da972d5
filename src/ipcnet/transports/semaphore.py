"""Semaphores between processes: POSIX named, POSIX unnamed (process-shared), SysV undo.

Role: three counters with one interface: ``acquire(timeout=None)`` (True, as threading's;
raises ``Timeout`` where threading's returns False; a negative timeout has expired),
``release(n=1)``, ``value``, ``with sem:``, ``close()``; the named kinds also ``unlink()``.
threading's ``acquire(blocking)`` flag does not exist here: ``acquire(True)`` is refused
(TypeError), not taken for "wait 1 s"; ``timeout=0`` does not wait.
- ``Semaphore(name, value=1)``: sem_open(3), found by name by unrelated processes (it lives
  in /dev/shm as ``sem.NAME``), through ``posix_ipc``.
- ``SharedSemaphore(value=1)``: sem_init(3) with pshared=1 in an anonymous shared mapping:
  no name at all, shared by fork (children inherit the mapping); through ctypes (libc).
- ``UndoSemaphore(name, value=1)``: a SysV semaphore whose operations carry SEM_UNDO, so the
  kernel gives back what a process still holds when it exits, even by SIGKILL. Only what
  this process took: a release beyond it (a child signalling its parent) is a plain one,
  which stays when the releasing process exits (with SEM_UNDO the kernel took it back).
  A fork turns the units a process holds into plain holds that either process may
  release (the kernel gives a child no adjustments, and the parent's would give a unit
  its child released back a second time at the parent's exit): only units taken after
  the fork come back from a holder that dies.
The crash question, honestly: a POSIX semaphore (named or not) has no owner; if its holder
dies the count stays taken and every later acquire waits (posix_ipc #53). ``timeout=`` turns
that into a ``Timeout`` that says so; ``UndoSemaphore`` is the one that recovers, and its
``last_pid`` names the process that operated on it last (GETPID), for post-mortems.
Rules: names are one component (at most 251 bytes, in UTF-8 as posix_ipc spells them;
"/jobs" is "jobs"); values are 0..SEM_VALUE_MAX (SysV: 0..32767); errno values are
translated by ``oserrors``; ``release`` beyond the maximum raises ``LimitExceeded``.
A signal whose handler returns does not end a wait (EINTR is retried, as PEP 475 does):
``acquire`` goes on to the one deadline its timeout set.
``close()`` while another thread waits in ``acquire`` wakes it with ``Closed`` (as a
Channel's reader): a wait sleeps in slices of ``SLICE`` seconds and looks for close()
between them (nothing can interrupt sem_wait or semop short of a unit), and the memory
of a POSIX semaphore is unmapped only once the last thread inside has left (unmapping it
under a waiter crashed the process with SIGSEGV when the wait ended).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import threading
import time
import zlib
from types import TracebackType
from typing import Any

from ipcnet.errors import (
    Closed,
    InvalidAddress,
    LimitExceeded,
    NoSuchSocket,
    PermissionDenied,
    Timeout,
)
from ipcnet.transports.base import check_count, check_timeout, refuse_pickle
from ipcnet.transports.oserrors import translate

NAME_MAX = 251  # NAME_MAX less the "sem." prefix glibc adds in /dev/shm
SEM_VALUE_MAX = 2147483647  # sem_post(3) fails with EOVERFLOW beyond it (INT_MAX on Linux)
_DEAD_HINT = "(a holder that died keeps its count: UndoSemaphore gives it back)"
SLICE = 0.2  # seconds: a waiter looks for close() this often (see the module docstring)
_FREE = threading.Lock()  # taken only to let go of a semaphore exactly once


def _check_name(name: str) -> str:
    """One component; the leading '/' of sem_overview(7)'s "/somename" form is optional."""
    if not isinstance(name, str):
        raise InvalidAddress(f"invalid semaphore name {name!r}: a name is a string")
    bare = name[1:] if name.startswith("/") else name
    if not bare or "/" in bare or "\0" in bare or bare in (".", ".."):
        raise InvalidAddress(f"invalid semaphore name {name!r}: one name, no '/' inside")
    try:
        size = len(bare.encode())
    except UnicodeEncodeError:
        raise InvalidAddress(
            f"invalid semaphore name {name!r}: the name is not valid UTF-8"
        ) from None
    if size > NAME_MAX:
        raise InvalidAddress(f"invalid semaphore name: over {NAME_MAX} bytes")
    return bare


def _wait_for(timeout: float | None) -> float | None:
    """None waits forever; a negative timeout is an expired one (as multiprocessing's)."""
    if isinstance(timeout, bool):
        raise TypeError(
            f"acquire({timeout}): there is no blocking flag here; acquire() waits, "
            "acquire(timeout=0) does not"
        )
    seconds = check_timeout(timeout)
    return None if seconds is None else max(0.0, float(seconds))


def _units(n: int, top: int, where: str) -> int:
    """release(n)'s count, as threading.Semaphore.release(n) takes it."""
    n = check_count(n, "release() n")
    if n < 1:
        raise ValueError("n must be one or more")
    if n > top:
        raise LimitExceeded(f"cannot release {where} by {n}: over its maximum value {top}")
    return n


def _left(deadline: float | None) -> float | None:
    """What is left of a wait until ``deadline`` (time.monotonic()), never below 0."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _check_value(value: int, top: int, where: str) -> int:
    value = check_count(value, "a semaphore's value")
    if not 0 <= value <= top:
        raise LimitExceeded(f"value {value} out of range 0..{top} for {where}")
    return value


class _Base:
    where: str
    _closed = False
    _inside = 0  # threads in a call that touches the semaphore (see close)
    _freed = False

    def acquire(self, timeout: float | None = None) -> bool:
        raise NotImplementedError

    def release(self, n: int = 1) -> None:
        """Give back ``n`` units (threading's release(n))."""
        if type(n) is not int or n != 1:
            n = _units(n, SEM_VALUE_MAX, self.where)
        self._inside += 1
        try:
            if self._closed:
                self._check_open("release")
            for _ in range(n):
                self._post()
        finally:
            self._inside -= 1
            if self._closed:
                self._leave()

    def _post(self) -> None:
        """Give back one unit (LimitExceeded at SEM_VALUE_MAX)."""
        raise NotImplementedError

    def _at_maximum(self) -> LimitExceeded:
        return LimitExceeded(f"cannot release {self.where}: at its maximum value {SEM_VALUE_MAX}")

    # A call that touches the semaphore counts itself in ``_inside`` first, then checks
    # ``_closed``; on its way out, the last one after a close() lets go (as sockets' do).

    def close(self) -> None:
        """Idempotent; a thread waiting in acquire() wakes with Closed; what this process
        maps is let go once no thread is inside any more."""
        if self._closed:
            return
        self._closed = True
        if not self._inside:  # else the last thread to leave lets go (_leave)
            self._let_go()

    def _leave(self) -> None:
        if not self._inside:
            self._let_go()

    def _let_go(self) -> None:
        with _FREE:
            if self._freed:
                return
            self._freed = True
        self._free()

    def _free(self) -> None:
        """Let go of what this process holds (after close(), with no thread inside)."""

    def _closed_while_waiting(self) -> Closed:
        return Closed(f"closed while waiting to acquire {self.where}")

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.where}{' closed' if self._closed else ''}>"

    def __reduce_ex__(self, protocol: object) -> Any:
        raise refuse_pickle(self, self.where)

    def _check_open(self, op: str) -> None:
        if self._closed:
            raise Closed(f"closed: cannot {op} {self.where}: this side closed it")

    def __enter__(self) -> _Base:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def _timed_out(self, timeout: float | None) -> Timeout:
        return Timeout(f"timed out: acquire {self.where} after {timeout} s {_DEAD_HINT}")


# --- POSIX named ----------------------------------------------------------------------


class Semaphore(_Base):
    """A POSIX named semaphore: ``Semaphore("jobs", value=3)`` creates it or opens it."""

    def __init__(
        self, name: str, value: int = 1, *, create: bool = True, mode: int = 0o600
    ) -> None:
        import posix_ipc

        self.name = _check_name(name)
        self.where = f"semaphore {self.name!r}"
        self._ipc = posix_ipc
        _check_value(value, SEM_VALUE_MAX, self.where)
        try:
            self._sem = posix_ipc.Semaphore(
                "/" + self.name, posix_ipc.O_CREAT if create else 0, mode=mode, initial_value=value
            )
        except posix_ipc.ExistentialError as exc:
            raise NoSuchSocket(f"no {self.where} (create it first)") from exc
        except posix_ipc.PermissionsError as exc:
            raise PermissionDenied(f"permission denied: open {self.where}") from exc
        except ValueError as exc:
            raise LimitExceeded(f"cannot make {self.where}: {str(exc).lower()}") from exc
        except OSError as exc:
            raise translate(exc, "open", self.where) from exc

    def acquire(self, timeout: float | None = None) -> bool:
        """Take one unit; wait up to ``timeout`` seconds (None: forever), then Timeout."""
        if timeout is not None:
            timeout = _wait_for(timeout)
        self._inside += 1
        try:
            if self._closed:
                self._check_open("acquire")
            try:
                self._sem.acquire(0)  # free: no clock to read
                return True
            except self._ipc.BusyError:
                pass
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                left = _left(deadline)
                try:
                    self._sem.acquire(SLICE if left is None else min(left, SLICE))
                except self._ipc.SignalError:
                    continue  # the handler ran (and returned): wait on, for what is left
                except self._ipc.BusyError as exc:
                    if self._closed:
                        raise self._closed_while_waiting() from exc
                    if left is not None and left <= SLICE:
                        raise self._timed_out(timeout) from exc
                    continue
                if self._closed:  # closed meanwhile: the unit goes back
                    self._sem.release()
                    raise self._closed_while_waiting()
                return True
        finally:
            self._inside -= 1
            if self._closed:
                self._leave()

    def _post(self) -> None:
        try:
            self._sem.release()
        except (self._ipc.Error, OSError) as exc:  # EOVERFLOW comes as a plain OSError
            raise self._at_maximum() from exc

    @property
    def value(self) -> int:
        self._inside += 1
        try:
            self._check_open("read")
            return int(self._sem.value)
        finally:
            self._inside -= 1
            if self._closed:
                self._leave()

    def unlink(self) -> None:
        """Remove the name (processes that have it open keep using it)."""
        try:
            self._ipc.unlink_semaphore("/" + self.name)
        except self._ipc.ExistentialError as exc:
            raise NoSuchSocket(f"no {self.where} to remove") from exc

    def _free(self) -> None:
        self._sem.close()


# --- POSIX unnamed, process-shared -----------------------------------------------------


def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _timespec_at(deadline: float) -> _Timespec:
    """A CLOCK_REALTIME deadline (time.time()), as sem_timedwait wants it."""
    return _Timespec(int(deadline), int((deadline % 1) * 1e9))


def _rel_timespec(timeout: float) -> _Timespec:
    timeout = max(0.0, timeout)
    return _Timespec(int(timeout), int((timeout % 1) * 1e9))


def _fail(op: str, where: str) -> Exception:
    code = ctypes.get_errno()
    return translate(OSError(code, os.strerror(code)), op, where)


class SharedSemaphore(_Base):
    """An unnamed POSIX semaphore in shared memory: make it, fork, use it in both."""

    SIZE = 64  # >= sizeof(sem_t) (32 on x86-64 glibc)

    def __init__(self, value: int = 1) -> None:
        self.where = f"shared semaphore (pid {os.getpid()})"
        _check_value(value, SEM_VALUE_MAX, self.where)
        self._lib = _libc()
        self._map = mmap.mmap(-1, self.SIZE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self._buf = (ctypes.c_char * self.SIZE).from_buffer(self._map)
        self._sem = ctypes.addressof(self._buf)
        self._semp = ctypes.c_void_p(self._sem)  # made once: one object less per call
        if self._lib.sem_init(ctypes.c_void_p(self._sem), 1, ctypes.c_uint(value)) != 0:
            raise _fail("create", self.where)

    def acquire(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            timeout = _wait_for(timeout)
        self._inside += 1
        try:
            if self._closed:
                self._check_open("acquire")
            sem = self._semp
            if self._lib.sem_trywait(sem) == 0:  # free: no clock to read
                return True
            until = None if timeout is None else time.time() + timeout  # one deadline, kept
            while True:
                end = time.time() + SLICE
                last = until is not None and until <= end
                if until is not None:
                    end = min(end, until)
                rc = self._lib.sem_timedwait(sem, ctypes.byref(_timespec_at(end)))
                if rc == 0:
                    if self._closed:  # closed meanwhile: the unit goes back
                        self._lib.sem_post(sem)
                        raise self._closed_while_waiting()
                    return True
                code = ctypes.get_errno()
                if self._closed:
                    raise self._closed_while_waiting()
                if code == errno.EINTR or (code == errno.ETIMEDOUT and not last):
                    continue
                if code == errno.ETIMEDOUT:
                    raise self._timed_out(timeout)
                raise translate(OSError(code, os.strerror(code)), "acquire", self.where)
        finally:
            self._inside -= 1
            if self._closed:
                self._leave()

    def _post(self) -> None:
        if self._lib.sem_post(self._semp) != 0:
            if ctypes.get_errno() == errno.EOVERFLOW:
                raise self._at_maximum()
            raise _fail("release", self.where)

    @property
    def value(self) -> int:
        self._inside += 1
        try:
            self._check_open("read")
            out = ctypes.c_int()
            if self._lib.sem_getvalue(self._semp, ctypes.byref(out)) != 0:
                raise _fail("read", self.where)
            return out.value
        finally:
            self._inside -= 1
            if self._closed:
                self._leave()

    def _free(self) -> None:
        """Drop this process's mapping (the other processes keep theirs)."""
        del self._buf
        self._map.close()


# --- SysV, with SEM_UNDO ----------------------------------------------------------------

_IPC_CREAT, _IPC_EXCL, _IPC_NOWAIT, _IPC_RMID = 0o1000, 0o2000, 0o4000, 0
_GETPID, _GETVAL, _SETVAL = 11, 12, 16
_SEM_UNDO = 0x1000
_SEMVMX = 32767
#: semid -> units this process took with SEM_UNDO and has not released: a release up to it
#: carries SEM_UNDO (cancelling the acquire's adjustment), beyond it none. A forked child
#: starts with none, as the kernel gives it no adjustments.
_HELD: dict[int, int] = {}
_HELD_LOCK = threading.Lock()


def _disown() -> None:
    """Before a fork: units this process holds with SEM_UNDO become plain holds (one
    atomic semop: +n with SEM_UNDO cancels the adjustment, -n without it keeps the value).

    After the fork either process may release them, and the kernel's adjustment would
    count the parent's units a second time at its exit if the child released one (the
    job-slot pattern: take a slot, fork a worker, the worker gives it back). What this
    costs: a unit held across a fork is not given back if its holder dies."""
    with _HELD_LOCK:
        if not any(_HELD.values()):
            _HELD.clear()
            return
        lib = _libc()
        for semid, n in list(_HELD.items()):
            pair = (_Sembuf(0, n, _SEM_UNDO | _IPC_NOWAIT), _Sembuf(0, -n, _IPC_NOWAIT))
            if not n or lib.semop(semid, ctypes.byref((_Sembuf * 2)(*pair)), 2) == 0:
                del _HELD[semid]  # (failed: removed meanwhile, or ERANGE: held as before)


class _Sembuf(ctypes.Structure):
    _fields_ = [
        ("sem_num", ctypes.c_ushort),
        ("sem_op", ctypes.c_short),
        ("sem_flg", ctypes.c_short),
    ]


def sysv_key(name: str) -> int:
    """The SysV key a name stands for (a CRC-32 of it, never IPC_PRIVATE)."""
    return (zlib.crc32(name.encode()) & 0x7FFFFFFF) or 1


os.register_at_fork(before=_disown, after_in_child=_HELD.clear)


class UndoSemaphore(_Base):
    """A SysV semaphore taken with SEM_UNDO: the kernel returns a dead holder's units."""

    def __init__(
        self, name: str, value: int = 1, *, create: bool = True, mode: int = 0o600
    ) -> None:
        self.name = _check_name(name)
        self.key = sysv_key(self.name)
        self.where = f"sysv semaphore {self.name!r} (key 0x{self.key:08x})"
        _check_value(value, _SEMVMX, self.where)
        self._lib = _libc()
        self._id = -1
        self._ops = (_Sembuf(0, -1, _SEM_UNDO | _IPC_NOWAIT), _Sembuf(0, 1, _SEM_UNDO))
        self._take_now = ctypes.byref(self._ops[0])  # made once: the free case's
        self._give_one = self._ops[1]
        if create:
            semid = self._lib.semget(self.key, 1, _IPC_CREAT | _IPC_EXCL | mode)
            if semid >= 0:
                self._id = semid
                if self._lib.semctl(semid, 0, _SETVAL, ctypes.c_int(value)) != 0:
                    raise _fail("initialise", self.where)
                return
            if ctypes.get_errno() != errno.EEXIST:
                raise _fail("create", self.where)
        semid = self._lib.semget(self.key, 1, 0)
        if semid < 0:
            if ctypes.get_errno() == errno.ENOENT:
                raise NoSuchSocket(f"no {self.where} (create it first)")
            raise _fail("open", self.where)
        self._id = semid

    def _op(self, delta: int, timeout: float | None, op: str) -> bool:
        self._inside += 1  # (nothing to let go here; close() still wakes the waiter)
        try:
            if self._closed:
                self._check_open(op)
            return self._semop(delta, timeout, op)
        finally:
            self._inside -= 1

    def _took(self, n: int) -> None:
        """This process took ``n`` units with SEM_UNDO."""
        with _HELD_LOCK:
            _HELD[self._id] = _HELD.get(self._id, 0) + n

    def _semop(self, delta: int, timeout: float | None, op: str) -> bool:
        """acquire's semop (``delta`` -1): at once if free, else in slices (see above)."""
        if self._lib.semop(self._id, self._take_now, 1) == 0:  # free: no clock to read
            self._took(1)
            return True
        buf = _Sembuf(0, delta, _SEM_UNDO | _IPC_NOWAIT)
        buf.sem_flg = _SEM_UNDO | (_IPC_NOWAIT if timeout == 0 or delta > 0 else 0)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _left(deadline)
            if timeout == 0 or delta > 0:  # (a release never waits)
                rc = self._lib.semop(self._id, ctypes.byref(buf), 1)
            else:  # semtimedop's timeout is relative: what is left after an EINTR
                ts = _rel_timespec(SLICE if left is None else min(left, SLICE))
                rc = self._lib.semtimedop(self._id, ctypes.byref(buf), 1, ctypes.byref(ts))
            if rc == 0:
                if self._closed and delta < 0:  # closed meanwhile: the unit goes back
                    self._lib.semop(self._id, ctypes.byref(_Sembuf(0, -delta, _SEM_UNDO)), 1)
                    raise self._closed_while_waiting()
                self._took(-delta)
                return True
            code = ctypes.get_errno()
            if self._closed and code in (errno.EINTR, errno.EAGAIN):
                raise self._closed_while_waiting()
            sliced = delta < 0 and timeout != 0 and (left is None or left > SLICE)
            if code == errno.EINTR or (code == errno.EAGAIN and sliced):
                continue  # a handler ran, or a slice ended (not the timeout): wait on
            if code == errno.EAGAIN:
                raise Timeout(f"timed out: {op} {self.where} after {timeout} s")
            if code == errno.ERANGE:
                raise LimitExceeded(f"cannot {op} {self.where}: over its maximum {_SEMVMX}")
            if code in (errno.EIDRM, errno.EINVAL):
                raise Closed(f"{self.where} was removed")
            raise translate(OSError(code, os.strerror(code)), op, self.where)

    def acquire(self, timeout: float | None = None) -> bool:
        return self._op(-1, None if timeout is None else _wait_for(timeout), "acquire")

    def release(self, n: int = 1) -> None:
        """Give back ``n`` units at once (one semop; threading's release(n)): up to what
        this process took with SEM_UNDO (cancelling its adjustment), the rest without."""
        if type(n) is not int or n != 1:
            n = _units(n, _SEMVMX, self.where)
        self._inside += 1
        try:
            if self._closed:
                self._check_open("release")
            with _HELD_LOCK:  # (a release never waits: held for one semop)
                held = _HELD.get(self._id, 0)
                undo = min(n, held)
                if undo == n == 1:
                    bufs: Any = self._give_one
                    count = 1
                elif undo == n:
                    bufs, count = _Sembuf(0, n, _SEM_UNDO), 1
                elif not undo:
                    bufs, count = _Sembuf(0, n, 0), 1
                else:
                    pair = (_Sembuf(0, undo, _SEM_UNDO), _Sembuf(0, n - undo, 0))
                    bufs, count = (_Sembuf * 2)(*pair), 2
                while self._lib.semop(self._id, ctypes.byref(bufs), count) != 0:
                    code = ctypes.get_errno()
                    if code == errno.EINTR:
                        continue
                    if code == errno.ERANGE:
                        raise LimitExceeded(
                            f"cannot release {self.where}: over its maximum {_SEMVMX}"
                        )
                    if code in (errno.EIDRM, errno.EINVAL):
                        raise Closed(f"{self.where} was removed")
                    raise translate(OSError(code, os.strerror(code)), "release", self.where)
                _HELD[self._id] = held - undo
        finally:
            self._inside -= 1

    def _ctl(self, cmd: int, op: str) -> int:
        self._check_open(op)
        rc = int(self._lib.semctl(self._id, 0, cmd))
        if rc < 0:
            if ctypes.get_errno() in (errno.EIDRM, errno.EINVAL):  # as acquire() says it
                raise Closed(f"{self.where} was removed")
            raise _fail(op, self.where)
        return rc

    @property
    def value(self) -> int:
        return self._ctl(_GETVAL, "read")

    @property
    def last_pid(self) -> int:
        """The process that operated on it last (0 if none yet)."""
        return self._ctl(_GETPID, "read")

    def unlink(self) -> None:
        """IPC_RMID: remove it now; processes waiting on it wake with Closed."""
        if self._lib.semctl(self._id, 0, _IPC_RMID) != 0:
            if ctypes.get_errno() in (errno.EINVAL, errno.EIDRM):
                raise NoSuchSocket(f"no {self.where} to remove (removed already)")
            raise _fail("remove", self.where)


__all__ = ["Semaphore", "SharedSemaphore", "UndoSemaphore", "sysv_key"]
