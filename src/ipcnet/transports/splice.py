"""What a relay does to two open streams: non-blocking copy, splice(2), half-close, reset.

Role: the system calls of ``ipcnet.relay``'s pump, on the descriptors of stream transports
(sockets, pipes, a child's stdin/stdout), every one non-blocking, every OSError leaving as
an ipcnet error. Rules:
- ``RelayEnd`` takes a StreamTransport over: its descriptors become non-blocking (so it
  must not be a descriptor shared with other processes, such as stdio);
- a read or splice that would block returns None, a write that would block returns 0; a
  read that returns 0 is EOF;
- splice(2) needs a pipe on one side: ``SplicePipe`` is the pipe between two sockets; its
  size (F_SETPIPE_SZ) bounds what one direction holds, so a slow reader stops the reads
  from a fast writer;
- ``abort()`` passes a reset on: SO_LINGER {on, 0 s} and close, so the peer gets an RST;
- a half-close of a socket a reset already ended (ENOTCONN) is a Reset, as a socket's
  own ``send_eof`` says;
- ``Poller`` waits on several descriptors at once (poll(2)), for a relay's own loop.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import struct
from typing import ClassVar

from ipcnet.errors import Broken, Reset
from ipcnet.transports.base import StreamTransport
from ipcnet.transports.oserrors import translate
from ipcnet.transports.pipes import PipeStream
from ipcnet.transports.sockets import SocketStream, stream_for

SPLICE = hasattr(os, "splice")
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
READ = select.POLLIN
WRITE = select.POLLOUT
_FAILED = select.POLLERR | select.POLLHUP | select.POLLNVAL
_ABORT = struct.pack("ii", 1, 0)  # struct linger {l_onoff = 1, l_linger = 0}
POOL_SIZE = 64  # empty splice pipes kept for reuse


class SplicePipe:
    """A non-blocking pipe that one direction of a relay splices through.

    ``take(size)`` reuses an empty pipe given back with ``release()`` (as HAProxy's pipe
    pool does): a short connection then costs no pipe2/fcntl/close calls. At most
    POOL_SIZE pipes wait in the pool; a pipe that may hold bytes is closed, never pooled.
    """

    _pool: ClassVar[list[SplicePipe]] = []

    @classmethod
    def take(cls, size: int) -> SplicePipe:
        pool = cls._pool
        while pool:
            try:
                pipe = pool.pop()
            except IndexError:  # another thread took the last one
                break
            if pipe.wanted == size:
                return pipe
            pipe.close()
        return cls(size)

    def release(self, empty: bool) -> None:
        """Give the pipe back: pooled when ``empty`` and the pool has room, else closed."""
        if empty and len(self._pool) < POOL_SIZE:
            self._pool.append(self)
        else:
            self.close()

    def __init__(self, size: int) -> None:
        self.wanted = size
        try:
            self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise translate(exc, "create", "pipe: (for splice)") from exc
        with contextlib.suppress(OSError):  # refused above pipe-max-size: keep the default
            fcntl.fcntl(self.w, _F_SETPIPE_SZ, size)
        self.size: int = fcntl.fcntl(self.w, _F_GETPIPE_SZ)

    def close(self) -> None:
        for fd in (self.r, self.w):
            with contextlib.suppress(OSError):
                os.close(fd)


class RelayEnd:
    """One side of a relay: the descriptors of a stream transport, driven non-blocking."""

    def __init__(self, transport: StreamTransport) -> None:
        self.transport = transport
        self.where = transport.where
        self.sock: socket.socket | None = None
        if isinstance(transport, SocketStream):
            self.sock = transport.sock
            self.read_fd: int | None = transport.fileno()
            self.write_fd: int | None = self.read_fd
            #: splice(2) works on stream sockets; seqpacket ones keep their packets by copying
            self.splices = SPLICE and self.sock.type == socket.SOCK_STREAM
        elif isinstance(transport, PipeStream):
            self.read_fd, self.write_fd = transport._rfd, transport._wfd
            self.splices = SPLICE
        else:
            raise Broken(f"cannot relay {transport.where}: not a socket or a pipe")
        for fd in {self.read_fd, self.write_fd} - {None}:
            assert fd is not None
            try:
                os.set_blocking(fd, False)
            except OSError as exc:
                raise translate(exc, "set up", self.where) from exc

    # --- data ----------------------------------------------------------------------

    def read_into(self, buf: memoryview) -> int | None:
        """Bytes read (0: EOF), or None when nothing is there yet."""
        assert self.read_fd is not None
        try:
            if self.sock is not None:
                return self.sock.recv_into(buf)
            return os.readv(self.read_fd, (buf,))
        except BlockingIOError:
            return None
        except OSError as exc:
            raise translate(exc, "read from", self.where) from exc

    def write(self, data: memoryview) -> int:
        """Bytes written now (0: the kernel's buffer is full)."""
        assert self.write_fd is not None
        try:
            if self.sock is not None:
                return self.sock.send(data, socket.MSG_NOSIGNAL)
            return os.write(self.write_fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise translate(exc, "write to", self.where) from exc

    def splice_in(self, pipe: SplicePipe, count: int) -> int | None:
        """Move up to ``count`` bytes from this end into ``pipe`` (0: EOF, None: nothing yet)."""
        assert self.read_fd is not None
        try:
            return os.splice(self.read_fd, pipe.w, count, flags=_FLAGS)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise translate(exc, "read from", self.where) from exc

    def splice_out(self, pipe: SplicePipe, count: int) -> int:
        """Move up to ``count`` bytes from ``pipe`` out of this end (0: would block)."""
        assert self.write_fd is not None
        try:
            return os.splice(pipe.r, self.write_fd, count, flags=_FLAGS)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise translate(exc, "write to", self.where) from exc

    @property
    def backlog(self) -> bool:
        """Bytes taken by ``write`` but not sent yet (a TLS end's records; none here)."""
        return False

    def flush(self) -> bool:
        """Send the backlog; True once nothing is left (here: at once)."""
        return True

    # --- ending ----------------------------------------------------------------------

    def shutdown_write(self) -> None:
        """Half-close: the peer reads EOF; reading from it goes on."""
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError as exc:
                if exc.errno == errno.ENOTCONN:  # a reset ended it already (as send_eof says)
                    raise Reset(f"connection reset by peer: shut down {self.where}") from exc
                raise translate(exc, "shut down", self.where) from exc
        else:
            self.transport.send_eof()
        self.write_fd = None if self.sock is None else self.write_fd

    def abort(self) -> None:
        """Close with a reset (RST) where the transport has one; a pipe just closes."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)
        self.close()

    def close(self) -> None:
        self.transport.close()


class Poller:
    """poll(2) over a few descriptors: ``wait`` returns (fd, ready) with READ/WRITE bits,
    where an error or hang-up counts as both (the next call then reports what happened)."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._fds: dict[int, int] = {}

    def set(self, wanted: dict[int, int]) -> None:
        """Wait for exactly these (fd -> READ|WRITE) from now on."""
        fds = self._fds
        for fd in list(fds):
            if fd not in wanted:
                self._poll.unregister(fd)
                del fds[fd]
        for fd, events in wanted.items():
            if fds.get(fd) != events:
                if fd in fds:
                    self._poll.modify(fd, events)
                else:
                    self._poll.register(fd, events)
                fds[fd] = events

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        try:
            ready = self._poll.poll(ms)
        except InterruptedError:  # pragma: no cover - PEP 475 retries poll itself
            return []
        return [(fd, ev | (READ | WRITE) if ev & _FAILED else ev) for fd, ev in ready]


def dup_stream(sock: object, where: str) -> SocketStream:
    """A SocketStream on a duplicate of ``sock``'s descriptor (an asyncio transport's
    socket), so a pump can own the connection while the transport keeps its own fd."""
    fileno = sock.fileno()  # type: ignore[attr-defined]
    try:
        dup = socket.socket(fileno=os.dup(fileno))
    except OSError as exc:
        raise translate(exc, "take over", where) from exc
    return stream_for(dup, where)


def make_waker() -> tuple[int, int]:
    """A non-blocking pipe: writing a byte to [1] wakes every Poller waiting on [0]."""
    try:
        return os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise translate(exc, "create", "pipe: (waker)") from exc


def wake(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, b"!")


def close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


__all__ = ["READ", "SPLICE", "WRITE", "Poller", "RelayEnd", "SplicePipe", "make_waker", "wake"]
