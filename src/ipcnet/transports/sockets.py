"""Connected stream sockets and listening sockets (tcp, unix, unixpacket, socketpair).

Role: wrap a ``socket.socket`` as a StreamTransport or a listener. Rules: sockets stay in
blocking mode (the kernel does the waiting; timeouts use the socket module's own poll);
writes use MSG_NOSIGNAL so a vanished peer is an error, not a signal; ``close()`` shuts the
socket down first only when a thread is blocked in it, so that a socket shared with a
forked child is never shut down behind the child's back. A descriptor is closed only once
no thread is inside a blocking call on it (the last one out closes it), so its number
cannot be reused under a thread about to poll or recv on it.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import os
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import Any, ClassVar, NoReturn

from ipcnet.addresses import Address
from ipcnet.errors import Broken, Closed, Interrupted, IPCError, Reset, Timeout, Unsupported
from ipcnet.transports.base import (
    Detached,
    Exchange,
    Listener,
    StreamTransport,
    check_timeout,
    refuse_pickle,
)
from ipcnet.transports.oserrors import translate, translating

MSG_NOSIGNAL = socket.MSG_NOSIGNAL
MSG_DONTWAIT = socket.MSG_DONTWAIT
SEQPACKET_CHUNK = 64 * 1024  # one write becomes packets of at most this size

_OPTIONS = {
    "nodelay": (socket.IPPROTO_TCP, socket.TCP_NODELAY),
    "keepalive": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    "recv_buffer": (socket.SOL_SOCKET, socket.SO_RCVBUF),
    "send_buffer": (socket.SOL_SOCKET, socket.SO_SNDBUF),
}


def scheme_for(sock: socket.socket) -> str:
    """The URL scheme that names this socket's family and type."""
    is_dgram = sock.type == socket.SOCK_DGRAM
    if sock.family == socket.AF_UNIX:
        if sock.type == socket.SOCK_SEQPACKET:
            return "unixpacket"
        return "unixgram" if is_dgram else "unix"
    return "udp" if is_dgram else "tcp"


def sockaddr_to_address(scheme: str, sockaddr: object) -> Address | None:
    """Turn what getsockname/getpeername/recvfrom return into an Address (None if unnamed)."""
    if isinstance(sockaddr, tuple):
        host = str(sockaddr[0])
        if ":" in host:
            mapped = ipaddress.IPv6Address(host.partition("%")[0]).ipv4_mapped
            if mapped is not None:
                host = str(mapped)
            elif len(sockaddr) > 3 and sockaddr[3] and "%" not in host:  # link-local
                host = f"{host}%{scope_name(int(sockaddr[3]))}"
        return Address(scheme, host=host, port=int(sockaddr[1]))
    if isinstance(sockaddr, bytes):
        if not sockaddr:
            return None
        if sockaddr[0] == 0:
            return Address(
                scheme, path=sockaddr[1:].decode(errors="surrogateescape"), abstract=True
            )
        return Address(scheme, path=os.fsdecode(sockaddr))
    if isinstance(sockaddr, str):
        if not sockaddr:
            return None
        if sockaddr.startswith("\0"):
            return Address(scheme, path=sockaddr[1:], abstract=True)
        return Address(scheme, path=sockaddr)
    return None


def scope_name(index: int) -> str:
    """An IPv6 zone by its interface's name (RFC 4007 §11, as ss and getnameinfo print it),
    or by its number if no interface has it now."""
    try:
        return socket.if_indextoname(index)
    except OSError:
        return str(index)


_ASK: Any = object()  # "not known yet: ask the kernel"
_RELEASE = threading.Lock()  # taken only to close a descriptor exactly once (SocketEndpoint)
# an error inside ``exchanging``'s block: the operation its errno implies
_EXCHANGE_OP = {errno.EPIPE: "write to", errno.EAGAIN: "read from"}


class SocketEndpoint:
    """The lifecycle every socket-backed endpoint shares (stream, listener, datagram).

    ``close()`` is idempotent; it shuts the socket down first only while a thread is blocked
    in it (``_blocked``), to wake that thread, then runs ``cleanup`` (a unix socket file's
    removal). ``abandon()`` only drops our descriptor, for a forked child.

    A blocking call counts itself in ``_blocked``, then checks ``_closed`` before it
    touches the descriptor, and on the way out closes it if close() came meanwhile and it
    is the last one inside (``_leave``). So the descriptor is closed once, by close() or by
    the last thread to leave, never while a thread may still poll or recv on its number
    (which the kernel would give to the next socket or file opened).
    """

    def __init__(
        self,
        sock: socket.socket,
        where: str,
        scheme: str = "",
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        self.sock = sock
        self.where = where
        self._scheme = scheme or scheme_for(sock)
        self._cleanup = cleanup
        self._closed = False
        self._blocked = 0  # threads inside a blocking call; close() wakes them
        self._released = False  # the descriptor is closed (see the class docstring)

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def closed(self) -> bool:
        return self._closed

    def abandon(self) -> None:
        """Close only our descriptor: no shutdown, no socket-file removal.

        For a forked child that must drop the parent's socket without disturbing it.
        """
        self._closed = self._released = True
        self.sock.close()

    def own(self, cleanup: Callable[[], None]) -> None:
        """From now on ``close()`` runs ``cleanup`` (an inherited socket whose file is
        ours now: a SIGUSR2 upgrade's new master, issue 14)."""
        self._cleanup = cleanup

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._blocked:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # not connected any more: nothing to wake
        if not self._blocked:  # else the last thread to leave closes it (_leave)
            self._release()
        if self._cleanup is not None:
            self._cleanup()

    def _release(self) -> None:
        with _RELEASE:
            if self._released:
                return
            self._released = True
        self.sock.close()

    def _leave(self) -> None:
        """A blocking call that saw close() on its way out: the last one closes."""
        if not self._blocked:
            self._release()

    @property
    def timeout(self) -> float | None:
        return self.sock.gettimeout()

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        """Python's socket timeout; a negative one has expired (0: do not wait)."""
        seconds = check_timeout(value)
        self._check_open("set a timeout on")
        self.sock.settimeout(None if seconds is None else max(0.0, seconds))

    def __reduce_ex__(self, protocol: object) -> Any:
        raise refuse_pickle(self, self.where)

    @property
    def local_address(self) -> Address | None:
        with translating("getsockname", self.where):
            return sockaddr_to_address(self._scheme, self.sock.getsockname())

    def _check_open(self, op: str) -> None:
        if self._closed:
            raise Closed(f"closed: cannot {op} {self.where}: this side closed it")


class SocketStream(SocketEndpoint, StreamTransport):
    """A connected SOCK_STREAM socket."""

    def __init__(
        self, sock: socket.socket, where: str, scheme: str = "", peer: Address | None = _ASK
    ) -> None:
        super().__init__(sock, where, scheme)
        self._fd = sock.fileno()
        self._peer = peer  # known when accepted: no getpeername
        self._local: Address | None = _ASK  # known when accepted on a specific address
        self._timeout: float | None = None
        self._poll: Any = None  # a poll(POLLIN) to wait in before a blocking read (UnixStream)
        self._wait_ms = -1  # the timeout as poll(2) takes it
        self._wake_fd = -1  # an eventfd in that poll once ``wakeable()``
        self._eof_sent = False  # send_eof() shut our direction: EPIPE is ours, not the peer's

    # --- data ----------------------------------------------------------------------

    # read/read_into/write skip _check_open: a closed socket object fails with EBADF, which
    # _error turns into Closed; one method call less on the hot path.

    # A blocking read waits in poll(POLLIN) first when ``_poll`` is set (UnixStream says
    # why), in the same method: one Python call a read, not three (a helper, then this).

    def read_into(self, buf: memoryview) -> int:
        self._blocked += 1
        try:
            if self._closed:
                self._check_open("read from")
            if self._poll is None:
                n = self.sock.recv_into(buf)
            elif not (ready := self._poll.poll(self._wait_ms)):
                n = -1
            elif ready[0][0] != self._fd:
                self._woken()
            else:
                n = self.sock.recv_into(buf)
        except OSError as exc:
            raise self._error(exc, "read from") from exc
        finally:
            self._blocked -= 1
            if self._closed:
                self._leave()
        if n <= 0:
            if n < 0:
                raise Timeout(f"timed out: read from {self.where} after {self._timeout} s")
            if self._closed:
                raise Closed(f"closed while reading: {self.where}")
        return n

    def read(self, n: int) -> bytes:
        self._blocked += 1
        try:
            if self._closed:
                self._check_open("read from")
            if self._poll is None:
                data = self.sock.recv(n)
            elif not (ready := self._poll.poll(self._wait_ms)):
                data = None
            elif ready[0][0] != self._fd:
                self._woken()
            else:
                data = self.sock.recv(n)
        except OSError as exc:
            raise self._error(exc, "read from") from exc
        finally:
            self._blocked -= 1
            if self._closed:
                self._leave()
        if not data:
            if data is None:
                raise Timeout(f"timed out: read from {self.where} after {self._timeout} s")
            if self._closed:
                raise Closed(f"closed while reading: {self.where}")
        return data

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._blocked += 1
        try:
            if self._closed:
                self._check_open("write to")
            self.sock.sendall(data, MSG_NOSIGNAL)
        except OSError as exc:
            raise self._error(exc, "write to") from exc
        finally:
            self._blocked -= 1
            if self._closed:
                self._leave()

    def wakeable(self) -> None:
        """Let ``wake()`` end a read blocked in another thread: from now on a blocking read
        waits in poll(2) for input or a wake (an eventfd this stream owns), and there is
        no hot loop (``exchanging`` is None: a wake is a third outcome of the wait). For a
        thread model's stop, which must let the reader's own thread end the connection
        (TLS: close_notify) without our FIN first."""
        if self._wake_fd >= 0:
            return
        self._wake_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)
        self._poll.register(self._wake_fd, select.POLLIN)  # after the socket: ready[0] is it

    def wake(self) -> None:
        """End the blocking read in progress, or the next one, with Interrupted (any
        thread; once per call)."""
        if self._wake_fd < 0 and not self._closed:
            raise Unsupported(f"{self.where} is not wakeable (wakeable() first)")
        self._blocked += 1  # as a read: the eventfd is not closed under us
        try:
            if self._closed:
                self._check_open("wake a reader of")
            os.eventfd_write(self._wake_fd, 1)
        except OSError as exc:
            raise self._error(exc, "wake a reader of") from exc
        finally:
            self._blocked -= 1
            if self._closed:
                self._leave()

    def _release(self) -> None:
        super()._release()
        fd, self._wake_fd = self._wake_fd, -1  # no thread is inside: nothing polls on it
        if fd >= 0:
            os.close(fd)

    def _woken(self) -> NoReturn:
        os.eventfd_read(self._wake_fd)  # taken: the next read waits again
        raise Interrupted(f"interrupted: a read from {self.where} was woken")

    def exchanging(self) -> AbstractContextManager[Exchange] | None:
        """The socket's own recv and sendall for a blocking driver's hot loop (see
        ``StreamTransport.exchanging``); where reads wait in poll(2) first (UnixStream),
        ``wait`` is that poll's own poll(), with the timeout: it returns [] when the
        timeout passed, and a recv with MSG_DONTWAIT then fails EAGAIN, a Timeout as
        read's. None once ``wakeable()``."""
        return None if self._wake_fd >= 0 else self._exchange()

    @contextmanager
    def _exchange(self) -> Iterator[Exchange]:
        # the whole block counts as blocked in the socket: close() from another thread
        # shuts it down, which wakes a recv or a poll (the socket reads as shut down: the
        # b"" that gives is Closed below, not EOF)
        self._blocked += 1
        try:
            if self._closed:
                self._check_open("read from")
            poll = self._poll
            wait = None if poll is None else partial(poll.poll, self._wait_ms)
            yield self.sock.recv, self.sock.sendall, MSG_NOSIGNAL, wait, MSG_DONTWAIT
        except OSError as exc:  # which call failed is not known here: only a send gets EPIPE
            raise self._error(
                exc, _EXCHANGE_OP.get(exc.errno or 0, "read from or write to")
            ) from exc
        finally:
            self._blocked -= 1
            if self._closed:
                self._leave()
        if self._closed:
            raise Closed(f"closed while reading: {self.where}")

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Send a file region with sendfile(2), blocking; the bytes sent (< count at EOF)."""
        sent = 0
        self._blocked += 1
        try:
            self._check_open("send a file to")
            while sent < count:  # os.sendfile, not socket.sendfile: no silent fallback
                n = os.sendfile(self._fd, fd, offset + sent, count - sent)
                if n == 0:
                    break
                sent += n
        except OSError as exc:
            error = self._error(exc, "send a file to")
            if isinstance(error, Broken):
                error.written = sent  # the bytes the reader did get (an access log's count)
            raise error from exc
        finally:
            self._blocked -= 1
            if self._closed:
                self._leave()
        return sent

    # --- non-blocking primitives, for event-loop drivers --------------------------------

    def set_blocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def try_read(self, n: int) -> bytes | None:
        """Up to n bytes, b"" at EOF, None if nothing is there yet (non-blocking mode)."""
        try:
            return self.sock.recv(n)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise self._error(exc, "read from") from exc

    def try_write(self, data: bytes | bytearray | memoryview) -> int:
        """As much of data as the kernel takes now (0 if none)."""
        try:
            return self.sock.send(data, MSG_NOSIGNAL)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise self._error(exc, "write to") from exc

    def try_sendfile(self, fd: int, offset: int, count: int) -> int | None:
        """sendfile(2) once without blocking; bytes sent, 0 at the file's end, None if the
        socket buffer is full (as try_read)."""
        try:
            return os.sendfile(self._fd, fd, offset, count)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise self._error(exc, "send a file to") from exc

    def send_eof(self) -> None:
        self._check_open("send eof on")
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno == errno.ENOTCONN and not self._closed:  # a reset ended it already
                raise Reset(f"connection reset by peer: shut down {self.where}") from exc
            raise self._error(exc, "shut down") from exc
        self._eof_sent = True

    def fileno(self) -> int:
        return self._fd

    def detach(self) -> Detached:
        self._check_open("hand over")
        self._closed = True
        return Detached(sock=self.sock)

    def _error(self, exc: OSError, op: str) -> IPCError:
        if self._closed:
            return Closed(f"closed while waiting to {op.split()[0]}: {self.where}")
        if self._eof_sent and isinstance(exc, BrokenPipeError):  # as a pipe's write end says
            return Closed(f"closed: cannot {op} {self.where} after send_eof()")
        # a timeout of 0 ("do not wait": a deadline already past) times out as well
        timed = self._timeout is not None
        if isinstance(exc, BlockingIOError) and timed and self.sock.getblocking():
            return Timeout(f"timed out: {op} {self.where} after {self._timeout} s")
        return translate(exc, op, self.where)

    # --- properties ------------------------------------------------------------------

    @property
    def timeout(self) -> float | None:
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        """The kernel's SO_RCVTIMEO/SO_SNDTIMEO, not Python's socket timeout.

        Python's timeout mode polls before every recv and send; the kernel's timeouts cost
        nothing until they expire, and the socket stays in plain blocking mode.
        """
        value = check_timeout(value)
        self._check_open("set a timeout on")
        seconds = value or 0.0
        if value is not None and value <= 0:
            seconds = 1e-6  # "do not wait": the shortest timeout the kernel keeps
        tv = struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))
        with translating("set a timeout on", self.where):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        self._timeout = value
        self._wait_ms = -1 if value is None else max(0, math.ceil(value * 1000))

    @property
    def local_address(self) -> Address | None:
        if self._local is not _ASK:
            return self._local
        return super().local_address

    @property
    def peer_address(self) -> Address | None:
        if self._peer is not _ASK:
            return self._peer
        with translating("getpeername", self.where):
            return sockaddr_to_address(self._scheme, self.sock.getpeername())

    def get_option(self, name: str) -> int:
        level, opt = self._option(name)
        with translating(f"get {name} on", self.where):
            return self.sock.getsockopt(level, opt)

    def set_option(self, name: str, value: int) -> None:
        level, opt = self._option(name)
        with translating(f"set {name} on", self.where):
            self.sock.setsockopt(level, opt, value)

    def _option(self, name: str) -> tuple[int, int]:
        if name not in _OPTIONS:
            raise Unsupported(f"unknown option {name!r} (known: {', '.join(_OPTIONS)})")
        if name == "nodelay" and self.sock.family == socket.AF_UNIX:
            raise Unsupported(f"option 'nodelay' is for tcp, not {self.where}")
        return _OPTIONS[name]


class UnixStream(SocketStream):
    """A unix SOCK_STREAM socket: a blocking read waits in poll(2) for input, then reads.

    Why: a thread blocked in recv(2) on a unix stream socket sleeps on the socket's one wait
    queue, which the kernel also wakes whenever the peer consumes bytes this side sent
    (unix_write_space, on every read by the peer). In request/response that is a spurious
    wake-up per exchange on each side (two context switches and a cross-CPU wake-up, ~35
    µs on a VM), while a poll(POLLIN) waiter is woken for input only. close() from another
    thread still wakes the reader: its shutdown makes the socket readable. A blocking
    driver's hot loop waits the same way: its exchange's ``wait`` is this poll's poll().
    """

    def __init__(
        self, sock: socket.socket, where: str, scheme: str = "", peer: Address | None = _ASK
    ) -> None:
        super().__init__(sock, where, scheme, peer)
        self._poll = select.poll()  # None while non-blocking (event-loop drivers)
        self._poll.register(self._fd, select.POLLIN)

    def set_blocking(self, flag: bool) -> None:
        super().set_blocking(flag)
        if not flag:
            self._poll = None
        elif self._poll is None:
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)


class SeqpacketStream(SocketStream):
    """A SOCK_SEQPACKET socket read as a byte stream.

    A packet read into a short buffer would lose its tail, so each packet is read whole
    (its size learnt with MSG_PEEK|MSG_TRUNC) and what the caller's buffer cannot take is
    kept for the next read; ``try_read`` (a readiness loop's, which only a readable socket
    wakes) returns a longer packet whole instead. Writes are cut into packets of at most
    SEQPACKET_CHUNK bytes (one packet is sent whole or not at all: EMSGSIZE over the send
    buffer), ``try_write`` too. A packet of no bytes (recv reads 0 for it, as at EOF) is
    skipped: EOF is the peer's shutdown (POLLRDHUP) with no packet of bytes left.
    """

    def __init__(
        self, sock: socket.socket, where: str, scheme: str = "", peer: Address | None = _ASK
    ) -> None:
        super().__init__(sock, where, scheme, peer)
        self._pending = memoryview(b"")
        self._hangup = select.poll()
        self._hangup.register(self._fd, select.POLLRDHUP)

    def _next_size(self) -> int:
        """The size of the next packet that has bytes (waiting for it as the socket
        waits), 0 at EOF; empty packets before it are read and dropped."""
        while True:
            size = self.sock.recv_into(bytearray(1), 1, socket.MSG_PEEK | socket.MSG_TRUNC)
            if size:
                return size
            shut = bool(self._hangup.poll(0))  # the peer is done: no packet comes after
            self.sock.recv(1)  # the empty packet (nothing at EOF)
            if shut:
                peek = socket.MSG_PEEK | socket.MSG_TRUNC | socket.MSG_DONTWAIT
                return self.sock.recv_into(bytearray(1), 1, peek)

    def read_into(self, buf: memoryview) -> int:
        if not self._pending:
            self._blocked += 1
            try:
                self._check_open("read from")
                size = self._next_size()
                if size <= len(buf):
                    n = self.sock.recv_into(buf)
                    if n == 0 and self._closed:
                        raise Closed(f"closed while reading: {self.where}")
                    return n
                packet = bytearray(size)
                self.sock.recv_into(packet)
            except OSError as exc:
                raise self._error(exc, "read from") from exc
            finally:
                self._blocked -= 1
                if self._closed:
                    self._leave()
            self._pending = memoryview(packet)
        n = min(len(buf), len(self._pending))
        buf[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def read(self, n: int) -> bytes:
        return StreamTransport.read(self, n)

    def try_read(self, n: int) -> bytes | None:
        """Up to n bytes, or one whole packet if it is longer; b"" at EOF, None if nothing
        is there yet (non-blocking mode)."""
        if self._pending:
            data, self._pending = bytes(self._pending[:n]), self._pending[n:]
            return data
        try:
            return self.sock.recv(max(n, self._next_size()))
        except BlockingIOError:
            return None
        except OSError as exc:
            raise self._error(exc, "read from") from exc

    def try_write(self, data: bytes | bytearray | memoryview) -> int:
        return super().try_write(memoryview(data).cast("B")[:SEQPACKET_CHUNK])

    def exchanging(self) -> None:
        return None  # a packet is read whole (read_into): not one recv(2)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), SEQPACKET_CHUNK):
            super().write(view[start : start + SEQPACKET_CHUNK])


def stream_for(
    sock: socket.socket, where: str, scheme: str = "", peer: Address | None = _ASK
) -> SocketStream:
    """The right StreamTransport class for a connected socket (``scheme`` and ``peer``
    when the caller knows them already, as a listener does)."""
    scheme = scheme or scheme_for(sock)
    if scheme == "unixpacket":
        return SeqpacketStream(sock, where, scheme, peer)
    if scheme == "tcp":
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    elif scheme == "unix":
        return UnixStream(sock, where, scheme, peer)
    return SocketStream(sock, where, scheme, peer)


class SocketListener(SocketEndpoint, Listener[SocketStream]):
    """A listening socket; ``accept()`` returns connected SocketStreams."""

    servable: ClassVar[bool] = True

    def __init__(
        self,
        sock: socket.socket,
        address: Address,
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(sock, str(address), cleanup=cleanup)
        self.address = address
        self._conn_local: Address | None = _ASK  # accepted connections' local address
        self._kind = (int(sock.family), int(sock.type), sock.proto)  # for try_accept

    @property
    def seqpacket(self) -> bool:
        """Its connections are SOCK_SEQPACKET (unixpacket://): packets read as a stream."""
        return self._scheme == "unixpacket"

    def accept(self) -> SocketStream:
        self._blocked += 1
        try:
            self._check_open("accept on")
            conn, peer = self.sock.accept()
        except OSError as exc:
            if self._closed:
                raise Closed(f"closed while accepting on {self.where}") from exc
            raise translate(exc, "accept on", self.where) from exc
        finally:
            self._blocked -= 1
            if self._closed:
                self._leave()
        return self._stream(conn, peer)

    def _stream(self, conn: socket.socket, sockaddr: object) -> SocketStream:
        peer = sockaddr_to_address(self._scheme, sockaddr)
        where = str(peer) if peer else f"{self._scheme} peer"
        stream = stream_for(conn, where, self._scheme, peer)
        if self._scheme == "tcp":  # bound to one IP: every connection's local address
            if self._conn_local is _ASK:  # learnt once, from the first connection
                local, mine = stream.local_address, self.local_address
                same = local is not None and mine is not None and local.host == mine.host
                self._conn_local = local if same else None  # None: a wildcard bind
            if self._conn_local is not None:
                stream._local = self._conn_local
        return stream

    def try_accept(self) -> SocketStream | None:
        """The next queued connection, or None (the listener must be non-blocking).

        Raises Busy when the process is out of descriptors (EMFILE/ENFILE): the caller
        should back off, not spin; a connection aborted while queued is skipped.
        """
        try:  # socket.accept() without its two enum conversions (family, type) per call
            fd, peer = self.sock._accept()  # type: ignore[attr-defined]
        except BlockingIOError:
            return None
        except ConnectionAbortedError:
            return None
        except OSError as exc:
            raise translate(exc, "accept on", self.where) from exc
        conn = socket.socket(*self._kind, fileno=fd)
        if conn.gettimeout() is not None:  # only under socket.setdefaulttimeout: no ioctl
            conn.setblocking(True)
        return self._stream(conn, peer)

    def set_blocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)
