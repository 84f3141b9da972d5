"""fifo:///path: named pipes between unrelated processes.

Role: ``connect`` opens the fifo's write end, ``listen`` makes (or finds) the fifo and each
``accept()`` opens its read end. Rules: opening waits up to the timeout for the other side
(then "no reader" / "no writer"); a path that is another kind of file is "address in use",
at once (open(2) of a socket is ENXIO, as for a fifo with no reader: we look, not wait);
a fifo made by ``listen`` is removed on close, one that existed before is left alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import time
from typing import Any, ClassVar

from ipcnet.addresses import Address
from ipcnet.errors import AddressInUse, Closed, IPCError, Unreachable, Unsupported
from ipcnet.transports.base import Listener, check_timeout
from ipcnet.transports.oserrors import translate
from ipcnet.transports.pipes import PipeStream, enlarge


def connect(address: Address, timeout: float | None) -> PipeStream:
    return open_fifo_writer(address, timeout)


def listen(address: Address, backlog: int, mode: int, reuse_port: bool) -> FifoListener:
    return FifoListener(address, mode)


def open_fifo_writer(address: Address, timeout: float | None) -> PipeStream:
    """Open a fifo for writing; waits up to ``timeout`` for a reader, then "no reader"."""
    path = address.path or ""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            break
        except OSError as exc:
            if exc.errno == errno.EISDIR or (exc.errno == errno.ENXIO and not _is_fifo(path)):
                raise _not_a_fifo(address) from exc
            if exc.errno != errno.ENXIO:  # ENXIO: nobody has it open for reading yet
                raise translate(exc, "open", address) from exc
            if deadline is not None and time.monotonic() >= deadline:
                raise Unreachable(f"no reader on {address} after {timeout} s") from exc
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    _check_fifo(fd, address)
    enlarge(fd)
    return PipeStream(None, fd, str(address))


def open_fifo_reader(address: Address, timeout: float | None) -> PipeStream:
    """Open a fifo for reading; waits up to ``timeout`` for a writer, then "no writer".

    open(O_RDONLY) is what blocks until a writer arrives; it runs in a helper thread, and
    on timeout we briefly open the fifo for writing ourselves to release it.
    """
    path = address.path or ""
    result: dict[str, Any] = {}

    def opener() -> None:
        try:
            result["fd"] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            result["error"] = exc

    thread = threading.Thread(target=opener, name="ipcnet-fifo-open", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        _release(path)
        thread.join()
        if "fd" in result:
            os.close(result["fd"])
        raise Unreachable(f"no writer on {address} after {timeout} s")
    if "error" in result:
        exc = result["error"]
        if exc.errno == errno.ENXIO:  # a socket: a fifo opened for reading never says so
            raise _not_a_fifo(address) from exc
        raise translate(exc, "open", address) from exc
    fd = int(result["fd"])
    _check_fifo(fd, address)
    enlarge(fd)
    return PipeStream(fd, None, str(address))


def _release(path: str) -> bool:
    """Open the fifo for writing and close it: that wakes every reader blocked in open()."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
    except OSError:
        return False  # no reader inside open() (yet)
    return True


def _check_fifo(fd: int, address: Address) -> None:
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise _not_a_fifo(address)


def _is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return True  # gone meanwhile: the open's own answer stands


def _not_a_fifo(address: Address) -> AddressInUse:
    return AddressInUse(f"not a fifo: {address} is another kind of file")


class FifoListener(Listener[PipeStream]):
    """Creates the fifo (0600) if missing; each ``accept()`` opens it for reading.

    A fifo made here is removed on close; one that existed before is left alone. It has no
    descriptor to poll between peers, so a server cannot serve it (``servable`` is False).
    ``close()`` wakes a thread blocked in ``accept()`` (by opening the fifo for writing, as
    a peer would), which then raises ``Closed``.
    """

    servable: ClassVar[bool] = False

    def __init__(self, address: Address, mode: int = 0o600) -> None:
        self.address = address
        self.where = str(address)
        self._closed = False
        self._timeout: float | None = None
        self._accepting = 0  # threads inside accept()
        path = address.path or ""
        self._created: int | None = None  # the pid that made the fifo (only it removes it)
        try:
            os.mkfifo(path, mode)
            self._created = os.getpid()
        except FileExistsError:
            if not stat.S_ISFIFO(os.stat(path).st_mode):
                raise AddressInUse(f"address in use: {address} exists and is not a fifo") from None
        except OSError as exc:
            raise translate(exc, "create", address) from exc

    def accept(self) -> PipeStream:
        if self._closed:
            raise Closed(f"closed: cannot accept on {self.where}: this side closed it")
        self._accepting += 1
        try:
            stream = open_fifo_reader(self.address, self._timeout)
        except IPCError as exc:
            if self.closed:  # (the property: mypy would take _closed for still False)
                raise Closed(f"closed while accepting on {self.where}") from exc
            raise
        finally:
            self._accepting -= 1
        if self.closed:  # close() woke us by opening the fifo for writing
            stream.close()
            raise Closed(f"closed while accepting on {self.where}")
        return stream

    def try_accept(self) -> PipeStream | None:
        raise Unsupported(f"cannot accept on {self.where} without blocking: it is a fifo")

    def set_blocking(self, flag: bool) -> None:
        if not flag:
            raise Unsupported(f"cannot make {self.where} non-blocking: it is a fifo")

    @property
    def timeout(self) -> float | None:
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        value = check_timeout(value)
        if self._closed:
            raise Closed(f"closed: cannot set a timeout on {self.where}: this side closed it")
        self._timeout = value

    def fileno(self) -> int:
        raise Unsupported("a fifo listener has no descriptor until accept()")

    @property
    def closed(self) -> bool:
        return self._closed

    def abandon(self) -> None:
        self._closed = True  # no descriptor of ours to drop, and the fifo stays

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        path = self.address.path or ""
        for _ in range(100):  # an accept() may not be inside open() yet: try for up to ~1 s
            if not self._accepting:
                break
            _release(path)
            time.sleep(0.01)
        if self._created == os.getpid():  # not in a forked child
            with contextlib.suppress(OSError):
                os.unlink(path)
