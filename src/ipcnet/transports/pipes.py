"""Pipes as stream transports: the PipeStream that fifo, stdio, exec: and fd:// share.

Role: a PipeStream reads one descriptor and writes another (either may be absent: a pipe
end is one-way). Rules:
- A read end we created is non-blocking and waits in poll(), together with a lazily made
  eventfd that ``close()`` signals, so closing wakes a blocked reader. The eventfd is one
  process's: a forked child makes its own (the parent's close() of its copy must not
  wake the child's reader, which then spun on the eventfd for ever). A read is tried
  first, unless the last one found the pipe empty or drained it: then it polls first, to
  save a failed read and its exception.
- A write end we created blocks in write(2) while no timeout is set (the kernel then copies
  as the reader drains, with no EAGAIN/poll round trips: most of a plain loop's speed); with
  a timeout it is non-blocking and waits in poll() like a reader. So close() from another
  thread cannot wake a writer stuck on a full pipe without a timeout; the reader draining
  or leaving does.
- Shared descriptors (stdio, fd://N) keep their blocking mode, because O_NONBLOCK would leak
  to every process sharing them; they wait in poll() first.
- Pipes and fifos we open get a PIPE_SIZE kernel buffer (F_SETPIPE_SZ) when allowed.
- The write end gives EPIPE, never SIGPIPE: importing this module ignores SIGPIPE if it is
  still at its default (CPython already does so at start-up).
- ``send_eof()`` closes our write descriptor; the reader sees EOF once every copy is closed.
  A shared one (stdout) that is a socket is shut down for writing first, since a copy of
  it (our own fd 0, under inetd or systemd's Accept=yes) stays open.
- ``close()`` while a thread is inside a read or write puts /dev/null in place of our
  descriptors (dup2: the pipe is let go now, so the other side sees EOF, but the numbers
  stay taken) and the last thread out closes them; so no thread of ours ever reads or
  writes a number the kernel has handed to the next file opened.
- A stream dropped unclosed closes its own descriptors with a ResourceWarning, as
  io.FileIO and socket.socket do (the peer sees EOF, nothing leaks); shared ones stay.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import stat
import threading
import warnings
from collections.abc import Callable

from ipcnet.errors import Closed, Timeout, Unsupported
from ipcnet.transports.base import Detached, StreamTransport, check_timeout
from ipcnet.transports.oserrors import translate, translating

PIPE_SIZE = 1 << 20  # F_SETPIPE_SZ for pipes we create; the kernel caps it at pipe-max-size
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

if threading.current_thread() is threading.main_thread():
    with contextlib.suppress(ValueError, OSError):
        if signal.getsignal(signal.SIGPIPE) == signal.SIG_DFL:
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)


class PipeStream(StreamTransport):
    """Read from ``read_fd`` and write to ``write_fd`` (the same fd for a tty or fd://N)."""

    def __init__(
        self,
        read_fd: int | None,
        write_fd: int | None,
        where: str,
        *,
        shared: bool = False,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.where = where
        self._rfd = read_fd
        self._wfd = write_fd
        self.readable = read_fd is not None
        self.writable = write_fd is not None
        self._shared = shared
        self._on_close = on_close
        self._timeout: float | None = None
        self._lock = threading.Lock()
        self._waker: int | None = None  # eventfd that close() signals, made on first wait
        self._waker_pid = 0  # the process that made it (a forked child makes its own)
        self._pollers: dict[int, select.poll] = {}  # one per direction: POLLIN, POLLOUT
        self._eof_sent = False
        self._was_empty = False  # the last read found the pipe empty (or drained it)
        self._inside = 0  # threads in read_into/write: the last one out after close() closes
        self._released = False
        if not shared:
            if read_fd is not None:
                os.set_blocking(read_fd, False)
            if write_fd is not None and write_fd != read_fd:
                os.set_blocking(write_fd, True)

    # --- data ----------------------------------------------------------------------

    def read_into(self, buf: memoryview) -> int:
        self._inside += 1
        try:
            fd = self._fd_for("read from", self._rfd)
            if self._shared or self._was_empty:
                # shared fds must not block unwoken; and a pipe that was empty last time is
                # likely empty now: poll first rather than pay a failed read and an exception
                self._wait(fd, select.POLLIN)
            while True:
                try:
                    n = os.readv(fd, (buf,))
                except BlockingIOError:
                    self._was_empty = True
                    self._wait(fd, select.POLLIN)
                    continue
                except OSError as exc:
                    raise self._error(exc, "read from") from exc
                if not n and self._closed:  # the /dev/null that close() put in its place
                    self._check_open("read from")
                self._was_empty = n < len(buf)  # a short read drained the pipe
                return n
        finally:
            self._inside -= 1
            if self._closed:
                self._leave()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._inside += 1
        try:
            fd = self._fd_for("write to", self._wfd)
            view = memoryview(data).cast("B")
            while view:
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    self._wait(fd, select.POLLOUT)
                    continue
                except OSError as exc:
                    raise self._error(exc, "write to") from exc
                if self._closed:  # it may have gone to the /dev/null close() put there
                    self._check_open("write to")
                view = view[n:]
        finally:
            self._inside -= 1
            if self._closed:
                self._leave()

    def send_eof(self) -> None:
        self._check_open("send eof on")
        if self._wfd is None or self._eof_sent:
            return
        self._eof_sent = True
        fd, self._wfd = self._wfd, None
        if self._shared and fd == self._rfd:
            return  # one fd both ways (a tty, a socket passed as fd://): nothing to end alone
        if self._shared:
            _shutdown_socket(fd)  # stdout a socket (inetd's, systemd Accept=yes): its FIN
            # stdout of this process: put /dev/null in its place so later prints are harmless
            devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            os.dup2(devnull, fd)
            os.close(devnull)
        else:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._waker is not None and self._waker_pid == os.getpid():
                os.eventfd_write(self._waker, 1)
            if self._inside and not self._shared:  # the last thread out closes them
                self._hold_numbers()
        if not self._inside:
            self._release()
        if self._on_close is not None:
            self._on_close()

    def _hold_numbers(self) -> None:
        """/dev/null in place of our descriptors: the pipes are let go, the numbers kept."""
        try:
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return  # out of descriptors: the pipes stay open until the last thread leaves
        for fd in {self._rfd, self._wfd} - {None}:
            assert fd is not None
            os.dup2(null, fd, inheritable=False)
        os.close(null)

    def _leave(self) -> None:
        if not self._inside:
            self._release()

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        if not self._shared:
            for fd in {self._rfd, self._wfd} - {None}:
                assert fd is not None
                with contextlib.suppress(OSError):
                    os.close(fd)

    def detach(self) -> Detached:
        """The descriptors (duplicates of shared ones, which stay ours) and the on_close."""
        self._check_open("hand over")
        with translating("hand over", self.where):
            read_fd, write_fd = self._rfd, self._wfd
            if self._shared:
                read_fd = None if read_fd is None else os.dup(read_fd)
                write_fd = None if write_fd is None else os.dup(write_fd)
        self._closed = True
        self._rfd = self._wfd = None
        return Detached(read_fd=read_fd, write_fd=write_fd, after_close=self._on_close)

    def fileno(self) -> int:
        fd = self._rfd if self._rfd is not None else self._wfd
        if fd is None:
            raise Closed(f"closed: {self.where} has no open descriptor")
        return fd

    def isatty(self) -> bool:
        """A terminal only if inherited (stdio:, fd://N): a pipe we made never is one."""
        self._check_open("ask about")
        return self._shared and os.isatty(self.fileno())

    @property
    def timeout(self) -> float | None:
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        value = check_timeout(value)
        self._check_open("set a timeout on")  # (our numbers may be another file's now)
        self._timeout = value
        wfd = self._wfd
        if not self._shared and wfd is not None and wfd != self._rfd:
            os.set_blocking(wfd, value is None)  # see the module docstring

    # --- waiting ---------------------------------------------------------------------

    def _fd_for(self, op: str, fd: int | None) -> int:
        self._check_open(op)
        if fd is None:
            if op == "write to" and self._eof_sent:
                raise Closed(f"closed: cannot write to {self.where} after send_eof()")
            way = "write-only" if op == "read from" else "read-only"
            raise Unsupported(f"cannot {op} {self.where}: this end is {way}")
        return fd

    def _wait(self, fd: int, events: int) -> None:
        """Sleep until ``fd`` is ready for ``events``, the timeout passes, or close() is called.

        Readers and writers may wait at once in two threads, and poll objects must not be
        shared between threads, so each direction keeps its own (fd + the close eventfd).
        """
        poller = self._pollers.get(events)
        if poller is not None and self._waker_pid != os.getpid():
            self._forked()
            poller = None
        if poller is None:
            with self._lock:
                if self._closed:
                    raise Closed(f"closed while waiting on {self.where}")
                if self._waker is None:
                    self._waker = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
                    self._waker_pid = os.getpid()
            poller = self._pollers[events] = select.poll()
            poller.register(self._waker, select.POLLIN)
            poller.register(fd, events)
        timeout_ms = None if self._timeout is None else max(0, int(self._timeout * 1000))
        ready = poller.poll(timeout_ms)
        if self._closed:
            raise Closed(f"closed while waiting on {self.where}")
        if not ready:
            verb = "read from" if events == select.POLLIN else "write to"
            raise Timeout(f"timed out: {verb} {self.where} after {self._timeout} s")

    def _forked(self) -> None:
        """In a forked child: drop the parent's eventfd (our copy of it) and pollers; the
        next wait makes this process's own."""
        with self._lock:
            waker, self._waker = self._waker, None
            self._pollers = {}
        if waker is not None:
            with contextlib.suppress(OSError):
                os.close(waker)

    def _error(self, exc: OSError, op: str) -> Exception:
        if self._closed:
            return Closed(f"closed while waiting to {op.split()[0]}: {self.where}")
        return translate(exc, op, self.where)

    def __del__(self) -> None:
        fds = [] if self._closed or self._shared else [self._rfd, self._wfd]
        if self._waker is not None:
            fds.append(self._waker)
        if not self._closed and not self._shared and (self._rfd, self._wfd) != (None, None):
            try:  # as io.FileIO's: a leak is a bug to show, and the descriptors go now
                warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1, source=self)
            except Exception:
                pass  # at interpreter exit warnings may be gone already
        for fd in dict.fromkeys(fds):  # (no contextlib here: at exit it may be gone already)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def __repr__(self) -> str:
        fds = [fd for fd in (self._rfd, self._wfd) if fd is not None]
        state = " closed" if self._closed else f" fd={','.join(map(str, dict.fromkeys(fds)))}"
        return f"<{type(self).__name__} {self.where}{state}>"


def _shutdown_socket(fd: int) -> None:
    """shutdown(SHUT_WR) if ``fd`` is a connected socket: closing our number alone sends no
    EOF while another holds it (fd 0, when an inetd-style parent gave us one socket as
    both stdin and stdout, or the parent itself)."""
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return
        sock = socket.socket(fileno=fd)
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # not connected, or gone already: nothing to end
    finally:
        sock.detach()


# --- anonymous pipes -------------------------------------------------------------------


def make_pipe(size: int | None = PIPE_SIZE) -> tuple[PipeStream, PipeStream]:
    """pipe(2): (reader, writer). The kernel buffer is enlarged to ``size`` when allowed."""
    with translating("create", "pipe:"):
        r, w = os.pipe2(os.O_CLOEXEC)
    if size:
        enlarge(w, size)
    return PipeStream(r, None, "pipe:"), PipeStream(None, w, "pipe:")


def enlarge(fd: int, size: int = PIPE_SIZE) -> None:
    """F_SETPIPE_SZ: fewer wake-ups per byte; refused above pipe-max-size for non-root."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, size)


def make_pipe_pair(size: int | None = PIPE_SIZE) -> tuple[PipeStream, PipeStream]:
    """Two pipes crossed into a two-way pair of streams (each end reads one, writes the other)."""
    r1, w1 = make_pipe(size)
    r2, w2 = make_pipe(size)
    return join_ends(r1, w2, "pipe:"), join_ends(r2, w1, "pipe:")


def join_ends(reader: PipeStream, writer: PipeStream, where: str) -> PipeStream:
    """One two-way stream from a read-only and a write-only one (taking over their fds)."""
    read_fd, write_fd = reader._rfd, writer._wfd
    reader._rfd = writer._wfd = None
    reader._closed = writer._closed = True
    return PipeStream(read_fd, write_fd, where)
