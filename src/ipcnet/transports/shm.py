"""Shared memory as a stream: ``shm://@name``, ``shm:///path`` and ``shm_pair()``.

Role: two ring buffers (one per direction) in one sealed memfd, with eventfd wake-ups; the
bytes never pass through the kernel. The name is only the rendezvous: ``listen`` binds a
unix socket there, ``connect`` creates the memory and four eventfds and hands them over
with SCM_RIGHTS (``fdpass``); the socket then stays open, idle, as the liveness line: when
the peer's process ends (even by SIGKILL) the kernel closes its end and ours polls ready.

Rules (the StreamTransport contract of ``base``, plus):
- Ring layout: a 256-byte header of four cache lines (head + eof, tail, reader-waiting,
  writer-waiting; each a u64 written by one side only) and ``ring`` bytes of data. ``head``
  and ``tail`` count bytes ever written / read, so full and empty are never ambiguous.
- The hot path makes no system call while the peer is awake: the writer copies, stores
  ``head``, and calls eventfd_write only if the reader's waiting flag is set; the reader
  likewise only wakes a writer that said it sleeps. Before sleeping a side spins briefly
  (``SPIN`` re-checks), then sets its flag, re-checks, and polls its eventfd and the socket.
- Memory ordering (the "waiter flag" protocol is Dekker's: store my flag / load the other
  index on one side, store my index / load the other flag on the other). Aligned u64
  stores and loads through a memoryview are single instructions, so never torn. x86-64 is
  TSO: stores stay in order and loads stay in order, so whoever sees the new ``head`` sees
  the bytes before it, and a freed ``tail`` is only reused after the reader's copy. The one
  reordering TSO allows, a load passing an earlier store, would lose a wake-up; ``fence()``
  (an uncontended lock acquire/release: an atomic read-modify-write in CPython's lock,
  a full barrier on x86-64) sits between the store and the load on both sides. Weaker CPUs
  (aarch64) are covered by a backstop: no sleep lasts over ``BACKSTOP`` s without
  re-checking, so a lost wake-up costs latency, never a hang.
- EOF: ``send_eof`` sets the ring's eof flag after its last ``head``; the reader sees
  ``b""`` once the ring is empty and the flag set, or once the peer's socket closed.
  Writing when the peer is gone raises ``PeerClosed`` (found when the ring is full, or
  earlier if a read found the socket closed); it stays broken.
- ``close()`` wakes this side's blocked threads (they raise ``Closed``) and closes the
  socket, which is what the peer sees. Like a pipe, a forked child holds copies: each
  process closes the end it does not use. Nothing has a name except the rendezvous socket
  (abstract, or a path file removed when the listener closes): nothing is left behind.
- The memfd is sealed against shrinking and growing before it is handed over, and the
  acceptor checks the seals and size, so a peer cannot make our mapping fault (SIGBUS);
  a memfd sealed against writing cannot be mapped to write, and is refused as such.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import select
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, ClassVar

from ipcnet.addresses import Address
from ipcnet.errors import (
    Closed,
    IPCError,
    LimitExceeded,
    PeerClosed,
    RemoteProtocolError,
    Timeout,
)
from ipcnet.transports import fdpass, unix
from ipcnet.transports.base import Listener, StreamTransport, check_timeout

if TYPE_CHECKING:
    from ipcnet.transports.sockets import SocketListener
from ipcnet.transports.oserrors import translate, translating

DEFAULT_RING = 1 << 20  # bytes per direction
MIN_RING = 4096
MAX_RING = 64 << 20  # a listener refuses larger rings
SPIN = 200  # re-checks of the ring before a side sets its waiting flag and sleeps
BACKSTOP = 1.0  # seconds: the longest sleep without re-checking the ring (see the docstring)
HANDSHAKE_TIMEOUT = 10.0

HEADER = 256
_HEAD, _EOF, _TAIL, _RWAIT, _WWAIT = 0, 1, 8, 16, 24  # u64 indexes into a ring header
_HELLO = struct.Struct("<8sII")
_MAGIC = b"ipcnetSH"
_VERSION = 1
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
_SEAL_FUTURE_WRITE = 0x10  # memfd_create(2), Linux 5.1; the fcntl module names it from 3.12
_POLLDONE = select.POLLIN | select.POLLHUP | select.POLLERR

_fence_lock = threading.Lock()
_acquire, _release = _fence_lock.acquire, _fence_lock.release  # fence(), inlined on hot paths


def fence() -> None:
    """A full memory barrier: CPython's lock does an atomic read-modify-write each way."""
    _acquire()
    _release()


def ring_size(size: int, where: str) -> int:
    """``size`` checked against the bounds and rounded up to whole pages."""
    if not MIN_RING <= size <= MAX_RING:
        raise LimitExceeded(f"ring size {size} out of range {MIN_RING}..{MAX_RING} bytes: {where}")
    return -(-size // mmap.PAGESIZE) * mmap.PAGESIZE


class _Memory:
    """The mapped memfd: two ring headers (as u64 views) and two data areas.

    mmap keeps a descriptor of its own (a dup), so the caller closes ``memfd`` when it
    no longer needs to hand it on; the inspector still sees the mapping's descriptor.
    """

    def __init__(self, memfd: int, ring: int) -> None:
        self.memfd = memfd
        self.ring = ring
        self.map = mmap.mmap(memfd, 2 * (HEADER + ring))
        whole = memoryview(self.map)
        self.views = [
            whole[0:HEADER].cast("Q"),
            whole[HEADER : HEADER + ring],
            whole[HEADER + ring : 2 * HEADER + ring].cast("Q"),
            whole[2 * HEADER + ring :],
            whole,
        ]

    def drop_memfd(self) -> None:
        if self.memfd >= 0:
            os.close(self.memfd)
            self.memfd = -1

    def release(self) -> None:
        self.drop_memfd()
        for view in reversed(self.views):
            view.release()
        self.map.close()


class ShmStream(StreamTransport):
    """One end of a shared-memory stream. ``side`` 0 writes ring 0 and reads ring 1."""

    def __init__(
        self, memory: _Memory, efds: list[int], sock: socket.socket, side: int, where: str
    ) -> None:
        self.where = where
        self._mem = memory
        self._cap = memory.ring
        views = memory.views
        self._out, self._out_data = (views[0], views[1]) if side == 0 else (views[2], views[3])
        self._in, self._in_data = (views[2], views[3]) if side == 0 else (views[0], views[1])
        # efds: [side0 waits for data, side0 waits for space, side1 data, side1 space]
        mine, peer = (efds[0:2], efds[2:4]) if side == 0 else (efds[2:4], efds[0:2])
        self._efds = efds
        self._my_r, self._my_w = mine
        self._peer_r, self._peer_w = peer
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._head = self._out[_HEAD]  # our copies of the indexes only we store
        self._tail = self._in[_TAIL]
        self._timeout: float | None = None
        self._lock = threading.Lock()
        self._eof_sent = False
        self._peer_gone = False
        self._broken = False
        self._refusal = ""  # what a refusing listener wrote before it closed
        self._armed = False  # try_read left the reader-waiting flag set
        self._epoll: select.epoll | None = None
        self.spin = SPIN
        self._poll_r = select.poll()
        self._poll_r.register(self._my_r, select.POLLIN)
        self._poll_r.register(self._sock_fd, select.POLLIN)
        self._poll_w = select.poll()
        self._poll_w.register(self._my_w, select.POLLIN)
        self._poll_w.register(self._sock_fd, select.POLLIN)

    # --- data ----------------------------------------------------------------------

    def read_into(self, buf: memoryview) -> int:
        if self._closed:
            raise Closed(f"closed: cannot read from {self.where}: this side closed it")
        tail = self._tail
        head = self._in[_HEAD]
        if head == tail:
            head = self._wait_data(tail, block=True)
            if head == tail:
                return 0
        return self._take(buf, tail, head)

    def try_read(self, n: int) -> bytes | None:
        """Up to n bytes, b"" at EOF, None if the ring is empty (the waiting flag is then
        armed, so ``fileno()`` polls readable when data, EOF or a dead peer arrives)."""
        if self._closed:
            raise Closed(f"closed: cannot read from {self.where}: this side closed it")
        if self._armed:  # fileno() polled readable (or we are asked again): disarm
            self._armed = False
            self._in[_RWAIT] = 0
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._my_r)
        tail = self._tail
        head = self._in[_HEAD]
        if head == tail:
            head = self._wait_data(tail, block=False)
            if head == tail:
                return b"" if self._at_eof(tail) else None
        buf = bytearray(min(n, head - tail))
        got = self._take(memoryview(buf), tail, head)
        del buf[got:]
        return bytes(buf)

    def _take(self, buf: memoryview, tail: int, head: int) -> int:
        cap = self._cap
        n = len(buf)
        if head - tail < n:
            n = head - tail
        pos = tail % cap
        data = self._in_data
        if pos + n <= cap:
            buf[:n] = data[pos : pos + n]
        else:
            first = cap - pos
            buf[:first] = data[pos:]
            buf[first:n] = data[: n - first]
        tail += n
        self._tail = tail
        hdr = self._in
        hdr[_TAIL] = tail
        _acquire()  # fence(): the tail store before the writer-waiting load
        _release()
        if hdr[_WWAIT]:
            os.eventfd_write(self._peer_w, 1)
        return n

    def _at_eof(self, tail: int) -> bool:
        # eof is stored after the last head: seeing it, then an unchanged head, means the end
        if self._refusal:
            raise self._gone_error("read from")
        return bool(self._in[_EOF] or self._peer_gone) and self._in[_HEAD] == tail

    def _wait_data(self, tail: int, block: bool) -> int:
        """The new head once there is data; ``tail`` itself at EOF (or, unblocked, if empty)."""
        hdr = self._in
        for _ in range(self.spin if block else 0):
            head = hdr[_HEAD]
            if head != tail:
                return head
        deadline = self._deadline()
        while True:
            if self._at_eof(tail):
                return tail
            hdr[_RWAIT] = 1
            fence()
            head = hdr[_HEAD]
            if head != tail or hdr[_EOF]:
                hdr[_RWAIT] = 0
                return hdr[_HEAD]
            if not block:
                self._armed = True  # the flag stays set: fileno() will poll readable
                self._check_peer()
                return hdr[_HEAD]
            self._sleep(self._poll_r, self._my_r, deadline, "read from")
            hdr[_RWAIT] = 0
            head = hdr[_HEAD]
            if head != tail:
                return head

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed or self._eof_sent or self._peer_gone:
            raise self._write_refused()
        if type(data) is not bytes:
            data = memoryview(data).cast("B")
        n = len(data)
        hdr = self._out
        head = self._head
        cap = self._cap
        pos = head % cap
        if n <= cap - (head - hdr[_TAIL]) and pos + n <= cap:  # the fast path: one copy
            self._out_data[pos : pos + n] = data
            head += n
            self._head = head
            hdr[_HEAD] = head
            _acquire()  # fence(): the head store before the reader-waiting load
            _release()
            if hdr[_RWAIT]:
                os.eventfd_write(self._peer_r, 1)
            return
        self._write_slow(memoryview(data))

    def _write_refused(self) -> IPCError:
        if self._closed:
            return Closed(f"closed: cannot write to {self.where}: this side closed it")
        if self._eof_sent:
            return Closed(f"closed: cannot write to {self.where} after send_eof()")
        self._broken = True
        return self._gone_error("write to")

    def _write_slow(self, view: memoryview) -> None:
        """Wrap around the ring end, or wait for room, as often as needed."""
        cap = self._cap
        hdr = self._out
        out = self._out_data
        head = self._head
        while view:
            free = cap - (head - hdr[_TAIL])
            if not free:
                free = self._wait_space(head)
            n = min(free, len(view))
            pos = head % cap
            first = min(n, cap - pos)
            out[pos : pos + first] = view[:first]
            if first < n:
                out[: n - first] = view[first:n]
            head += n
            self._head = head
            hdr[_HEAD] = head
            fence()
            if hdr[_RWAIT]:
                os.eventfd_write(self._peer_r, 1)
            view = view[n:]

    def _wait_space(self, head: int) -> int:
        hdr = self._out
        cap = self._cap
        for _ in range(self.spin):
            free = cap - (head - hdr[_TAIL])
            if free:
                return free
        deadline = self._deadline()
        while True:
            if self._peer_gone:
                self._broken = True
                raise self._gone_error("write to")
            hdr[_WWAIT] = 1
            fence()
            free = cap - (head - hdr[_TAIL])
            if free:
                hdr[_WWAIT] = 0
                return free
            self._sleep(self._poll_w, self._my_w, deadline, "write to")
            hdr[_WWAIT] = 0
            free = cap - (head - hdr[_TAIL])
            if free:
                return free

    # --- sleeping ----------------------------------------------------------------------

    def _deadline(self) -> float | None:
        return None if self._timeout is None else time.monotonic() + self._timeout

    def _sleep(self, poller: select.poll, efd: int, deadline: float | None, op: str) -> None:
        """Poll our eventfd and the liveness socket; Closed, Timeout, or notes a dead peer."""
        if self._closed:
            raise Closed(f"closed while waiting to {op.split()[0]}: {self.where}")
        wait = BACKSTOP if deadline is None else min(BACKSTOP, deadline - time.monotonic())
        ready = poller.poll(max(0, int(wait * 1000)) + 1) if wait > 0 else []
        if self._closed:
            raise Closed(f"closed while waiting to {op.split()[0]}: {self.where}")
        for fd, _events in ready:
            if fd == self._sock_fd:
                self._note_peer_gone()
            else:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(efd)
        if not ready and deadline is not None and time.monotonic() >= deadline:
            raise Timeout(f"timed out: {op} {self.where} after {self._timeout} s")

    def _check_peer(self) -> None:
        """A zero-wait look at the liveness socket (for non-blocking reads)."""
        if not self._peer_gone and self._poll_sock():
            self._note_peer_gone()

    def _note_peer_gone(self) -> None:
        """The socket polled ready: the peer closed it, after a refusal's reason, if any."""
        self._peer_gone = True
        try:
            why = self._sock.recv(256, socket.MSG_DONTWAIT)
        except OSError:
            return
        if why:
            self._refusal = why.decode(errors="replace")

    def _gone_error(self, op: str) -> IPCError:
        if self._refusal:
            return RemoteProtocolError(f"the shm listener at {self.where} refused: {self._refusal}")
        return PeerClosed(f"peer closed: {op} {self.where}")

    def _poll_sock(self) -> bool:
        probe = select.poll()
        probe.register(self._sock_fd, select.POLLIN)
        return any(ev & _POLLDONE for _, ev in probe.poll(0))

    # --- ending ------------------------------------------------------------------------

    def send_eof(self) -> None:
        self._check_open("send eof on")
        if self._eof_sent:
            return
        self._eof_sent = True
        hdr = self._out
        hdr[_EOF] = 1
        fence()
        if hdr[_RWAIT]:
            os.eventfd_write(self._peer_r, 1)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for fd in (self._my_r, self._my_w):  # wake our own blocked reader and writer
            os.eventfd_write(fd, 1)
        self._sock.close()  # what the peer sees; the memory and eventfds go in __del__
        if self._epoll is not None:
            self._epoll.close()

    def __del__(self) -> None:
        if getattr(self, "_efds", None) is None:
            return
        for fd in self._efds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._efds = []
        with contextlib.suppress(BufferError, OSError, ValueError):
            self._mem.release()

    def fileno(self) -> int:
        """An epoll descriptor that polls readable when a read would not block (after
        ``try_read`` returned None): data, EOF, or a dead peer."""
        self._check_open("poll")
        if self._epoll is None:
            with translating("create an epoll for", self.where):
                self._epoll = select.epoll(2, select.EPOLL_CLOEXEC)
                self._epoll.register(self._my_r, select.EPOLLIN)
                self._epoll.register(self._sock_fd, select.EPOLLIN)
        return self._epoll.fileno()

    @property
    def timeout(self) -> float | None:
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        value = check_timeout(value)
        self._check_open("set a timeout on")
        self._timeout = value

    @property
    def ring_size(self) -> int:
        return self._cap


# --- making the memory and the pair -----------------------------------------------------


def _create(ring: int, label: str) -> tuple[_Memory, list[int]]:
    """A sealed memfd of two rings, mapped, and four non-blocking eventfds.

    The caller hands ``memory.memfd`` on (or maps it again), then closes it with
    ``memory.drop_memfd()``; the mapping keeps its own descriptor."""
    with translating("create shared memory for", label):
        memfd = os.memfd_create(f"ipcnet {label}"[:240], os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(memfd, 2 * (HEADER + ring))
            fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, _SEALS)
            memory = _Memory(memfd, ring)
        except BaseException:
            os.close(memfd)
            raise
        efds: list[int] = []
        try:
            for _ in range(4):
                efds.append(os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK))
        except BaseException:
            for fd in efds:
                os.close(fd)
            memory.release()
            raise
    return memory, efds


def shm_pair(ring: int = DEFAULT_RING) -> tuple[ShmStream, ShmStream]:
    """Two connected ends in this process; fork, and each process closes the other's end."""
    ring = ring_size(ring, "shm_pair()")
    memory, efds = _create(ring, "shm-pair")
    with translating("create", "shm-pair"):
        s0, s1 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    dup = [os.dup(fd) for fd in efds]  # each end owns (and finally closes) its own copies
    other = _Memory(memory.memfd, ring)
    memory.drop_memfd()
    return (
        ShmStream(memory, efds, s0, 0, "shm-pair:"),
        ShmStream(other, dup, s1, 1, "shm-pair:"),
    )


# --- rendezvous ------------------------------------------------------------------------


def _rendezvous(address: Address) -> Address:
    return Address("unix", path=address.path, abstract=address.abstract)


def connect(address: Address, timeout: float | None) -> ShmStream:
    """Connect to the listener's socket and hand it the memory and eventfds.

    No answer is awaited (so one thread may connect, then accept): a listener that refuses
    writes its reason and closes, and the first wait on this end reports it.
    """
    asked = address.option("ring")
    ring = ring_size(DEFAULT_RING if asked is None else asked, str(address))
    sock = unix.connect_socket(_rendezvous(address), timeout)
    where = str(address)
    try:
        memory, efds = _create(ring, where)
    except BaseException:
        sock.close()
        raise
    try:
        sock.settimeout(timeout)
        hello = _HELLO.pack(_MAGIC, _VERSION, ring)
        fdpass.send_fds(sock, hello, [memory.memfd, *efds], where)
        memory.drop_memfd()
        sock.settimeout(None)
    except BaseException:
        sock.close()
        for fd in efds:
            os.close(fd)
        memory.release()
        raise
    return ShmStream(memory, efds, sock, 0, where)


def listen(address: Address, backlog: int, mode: int, reuse_port: bool) -> ShmListener:
    """The registry's entry: a rendezvous socket that accepts shared-memory streams."""
    return ShmListener(address, backlog, mode)


class ShmListener(Listener[ShmStream]):
    """A unix socket that accepts shared-memory streams (the rendezvous).

    ``servable`` is False: the server's models drive SocketStreams (try_read/try_write on a
    socket); an shm stream is pollable for reading only (see ``ShmStream.fileno``).
    """

    servable: ClassVar[bool] = False

    def __init__(self, address: Address, backlog: int = 128, mode: int = 0o600) -> None:
        self.address = address
        self.where = str(address)
        self.max_ring = MAX_RING
        self.sock, self._cleanup = unix.bind_socket(_rendezvous(address), backlog, mode)
        self._closed = False
        self._blocked = 0  # threads inside accept(); only then does close() shut down
        self._handshaking: set[socket.socket] = set()  # accepted, no hello yet: close() ends

    def accept(self) -> ShmStream:
        if self._closed:
            raise Closed(f"closed: cannot accept on {self.where}: this side closed it")
        self._blocked += 1
        try:
            conn, _ = self.sock.accept()
        except OSError as exc:
            if self._closed:
                raise Closed(f"closed while accepting on {self.where}") from exc
            raise translate(exc, "accept on", self.where) from exc
        finally:
            self._blocked -= 1
        return self._handshake(conn)

    def try_accept(self) -> ShmStream | None:
        """The next queued peer, or None (after ``set_blocking(False)``)."""
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return None
        except OSError as exc:
            raise translate(exc, "accept on", self.where) from exc
        return self._handshake(conn)

    def _handshake(self, conn: socket.socket) -> ShmStream:
        """The peer's hello and descriptors; close() from another thread ends the wait
        (Closed, the Listener contract), not the handshake timeout."""
        peer = f"{self.where} peer"
        conn.setblocking(True)
        conn.settimeout(HANDSHAKE_TIMEOUT)
        fds: list[int] = []
        self._handshaking.add(conn)
        try:
            if self._closed:
                raise Closed(f"closed while accepting on {self.where}")
            try:
                data, fds = fdpass.recv_fds(conn, 64, 5, peer)
            except IPCError as exc:
                if isinstance(exc.__cause__, TimeoutError):
                    raise Timeout(f"timed out: {peer} sent no shm handshake") from exc
                raise
            if self._closed:
                raise Closed(f"closed while accepting on {self.where}")
            memory = self._check(conn, data, fds, peer)
            fds = fds[1:]  # _check closed the memfd once it was mapped
            conn.settimeout(None)
        except BaseException as exc:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            conn.close()
            if self._closed and not isinstance(exc, Closed):
                raise Closed(f"closed while accepting on {self.where}") from exc
            raise
        finally:
            self._handshaking.discard(conn)
        return ShmStream(memory, fds, conn, 1, peer)

    def _check(self, conn: socket.socket, data: bytes, fds: list[int], peer: str) -> _Memory:
        def refuse(why: str) -> RemoteProtocolError:
            with contextlib.suppress(OSError):
                conn.sendall(why.encode())
            return RemoteProtocolError(f"bad shm handshake from {peer}: {why}")

        if len(data) != _HELLO.size or len(fds) != 5:
            raise refuse(f"expected a {_HELLO.size}-byte hello and 5 descriptors")
        magic, version, ring = _HELLO.unpack(data)
        if magic != _MAGIC or version != _VERSION:
            raise refuse(f"not an ipcnet shm hello (version {version})")
        if not MIN_RING <= ring <= self.max_ring:
            raise refuse(f"ring of {ring} bytes is outside {MIN_RING}..{self.max_ring}")
        if ring % mmap.PAGESIZE:
            raise refuse(
                f"ring of {ring} bytes is not a whole number of {mmap.PAGESIZE}-byte pages"
            )
        memfd = fds[0]
        try:
            size = os.fstat(memfd).st_size
            seals = fcntl.fcntl(memfd, fcntl.F_GET_SEALS)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.EBADF):
                raise refuse("the first descriptor is not a memfd") from exc
            raise translate(exc, "check the memory from", peer) from exc
        if size != 2 * (HEADER + ring):
            raise refuse(f"memory of {size} bytes does not hold two {ring}-byte rings")
        if seals & (fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW) != (
            fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
        ):
            raise refuse("the memory is not sealed against resizing")
        if seals & (fcntl.F_SEAL_WRITE | _SEAL_FUTURE_WRITE):  # no shared writable mapping
            raise refuse("the memory is sealed against writing")
        with translating("map the memory from", peer):
            memory = _Memory(memfd, ring)
        memory.drop_memfd()
        return memory

    def bridge(self) -> SocketListener:
        """This listener as a SocketListener, for the server's models (which drive sockets):
        a thread accepts shm peers and joins each to a fresh unix socket connection by two
        copying threads (exact half-close both ways); closing the result closes this too.
        The direct API (connect/accept Channels) is the fast path; this one costs a copy."""
        from ipcnet.transports.sockets import SocketListener

        name = Address("unix", path=f"ipcnet-shm-bridge-{os.getpid()}-{id(self):x}", abstract=True)
        inner, _ = unix.bind_socket(name, 128, 0o600)
        threading.Thread(target=self._bridge, args=(name,), daemon=True).start()
        return SocketListener(inner, self.address, cleanup=self.close)

    def _bridge(self, name: Address) -> None:
        while True:
            try:
                stream = self.accept()
            except Closed:
                return
            except IPCError:
                continue  # a bad handshake: that peer was told why; keep accepting
            try:
                sock = unix.connect_socket(name, 10.0)
            except IPCError:
                stream.close()
                return  # the server closed its side of the bridge
            join = _Join(stream, sock)
            for pump in (_shm_to_socket, _socket_to_shm):
                threading.Thread(target=pump, args=(join,), daemon=True).start()

    def set_blocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def timeout(self) -> float | None:
        return self.sock.gettimeout()

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        seconds = check_timeout(value)  # a negative one has expired (0: do not wait)
        if self._closed:
            raise Closed(f"closed: cannot set a timeout on {self.where}: this side closed it")
        self.sock.settimeout(None if seconds is None else max(0.0, seconds))

    @property
    def local_address(self) -> Address | None:
        return self.address

    @property
    def closed(self) -> bool:
        return self._closed

    def abandon(self) -> None:
        self._closed = True
        self.sock.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._blocked:  # wake a thread blocked in accept(); never a forked copy's parent
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        for conn in list(self._handshaking):  # and one waiting for a peer's hello: its
            with contextlib.suppress(OSError):  # thread closes the socket (no reuse under it)
                conn.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._cleanup()


# --- the bridge's two copying threads (one per direction) --------------------------------


class _Join:
    """A bridged connection: the stream, its socket, and how many directions still run."""

    def __init__(self, stream: ShmStream, sock: socket.socket) -> None:
        self.stream, self.sock = stream, sock
        self.running = 2
        self.lock = threading.Lock()

    def done(self, failed: bool) -> None:
        with self.lock:
            self.running = 0 if failed else self.running - 1
            last = self.running == 0
        if last:
            self.stream.close()
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()


def _shm_to_socket(join: _Join) -> None:
    buf = memoryview(bytearray(64 * 1024))
    try:
        while n := join.stream.read_into(buf):
            join.sock.sendall(buf[:n], socket.MSG_NOSIGNAL)
        join.sock.shutdown(socket.SHUT_WR)
    except (IPCError, OSError):
        join.done(failed=True)
        return
    join.done(failed=False)


def _socket_to_shm(join: _Join) -> None:
    buf = memoryview(bytearray(64 * 1024))
    try:
        while n := join.sock.recv_into(buf):
            join.stream.write(buf[:n])
        join.stream.send_eof()
    except (IPCError, OSError):
        join.done(failed=True)
        return
    join.done(failed=False)
