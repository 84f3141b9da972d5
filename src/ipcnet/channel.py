"""Channel: any stream transport as a file-like object, and the functions that open one.

Role: the layer users touch. ``connect(url)``, ``listen(url).accept()``, ``pipe()``,
``socketpair()``, ``spawn(cmd)`` and ``stdio()`` all give Channels with one contract:
- ``read(n)`` returns 1..n bytes, or ``b""`` if and only if the peer ended its direction;
  ``read()`` (``n`` -1 or None) reads to EOF. ``readinto``, ``read_exactly``, ``readline``,
  ``readlines`` and line iteration share one small read-ahead buffer (only ``readline``
  fills it). Unlike io's buffered readers, ``read(n)`` and ``readinto`` do not wait for
  more than one arrival (as ``socket.recv``); ``read_exactly`` does. A read that gathers
  (``read_exactly``, ``read()``, ``readlines``, ``readline``) and is ended by a Timeout
  (or ``Interrupted``) keeps what it had read ahead: the next read starts with it.
- ``write(data)`` writes all of it or raises, unbuffered (``flush()`` has nothing to do);
  ``send_eof()`` half-closes; ``close()`` is idempotent and wakes a blocked reader.
- After ``close()`` every call but ``close`` and ``closed`` raises ``Closed`` (a
  ValueError, as io's closed files raise), read-ahead bytes or not; so does ``with``.
- Arguments are checked before anything waits, as io checks them: a size that is not an
  integer is a TypeError (never truncated), a read-only ``readinto`` buffer too; a timeout
  when it is set (``transports.base.check_timeout``: NaN is a ValueError, infinity None).
- A Channel, a Listener and what they hold cannot be pickled (TypeError, as a socket):
  they are descriptors of this process; a child gets them by fork.
Errors are the ipcnet tree (``ipcnet.errors``).
Rules: no system calls here; everything goes through the transport.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from ipcnet import transports
from ipcnet.addresses import Address, parse
from ipcnet.errors import (
    Closed,
    IncompleteRead,
    Interrupted,
    LimitExceeded,
    Timeout,
    Unsupported,
)
from ipcnet.transports import DatagramEndpoint, StreamTransport
from ipcnet.transports.base import check_count, check_timeout, refuse_pickle

READ_ALL_CHUNK = 64 * 1024
LINE_LIMIT = 64 * 1024


class Channel:
    """A byte stream to another process: read and write it like a file."""

    def __init__(
        self, transport: StreamTransport, process: subprocess.Popen[bytes] | None = None
    ) -> None:
        self.transport = transport
        #: the child process, for channels to exec: addresses and from spawn()
        self.process = process or transport.process
        self._ahead = bytearray()
        self._scratch: memoryview | None = None

    # --- reading -----------------------------------------------------------------------

    def read(self, n: int | None = -1) -> bytes:
        """Up to ``n`` bytes (at least one), ``b""`` at EOF; ``n`` < 0 or None reads to EOF."""
        if type(n) is not int:
            if n is None:
                return self._read_all()
            n = check_count(n, "read() size")  # a float is refused, not truncated
        if n < 0:
            return self._read_all()
        if self._ahead or n == 0:
            self._check_open("read from")
            data = bytes(self._ahead[:n])
            del self._ahead[:n]
            return data
        return self.transport.read(n)

    def readinto(self, buf: bytearray | memoryview) -> int:
        """Fill ``buf`` with up to len(buf) bytes; 0 only at EOF (or for an empty buffer)."""
        view = memoryview(buf).cast("B")
        if view.readonly:
            raise TypeError(
                f"readinto() needs a read-write bytes-like object, not {type(buf).__name__}"
            )
        if self._ahead or not view:
            self._check_open("read from")
            n = min(len(view), len(self._ahead))
            view[:n] = self._ahead[:n]
            del self._ahead[:n]
            return n
        return self.transport.read_into(view)

    @property
    def buffered(self) -> int:
        """Bytes already read ahead (by ``readline``) that the next reads hand out first."""
        return len(self._ahead)

    def read_exactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or ``IncompleteRead`` (with the partial data) at EOF."""
        n = check_count(n, "read_exactly() size")
        self._check_open("read from")
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            try:
                k = self.readinto(view[got:])
            except (Timeout, Interrupted):
                self._ahead[:0] = view[:got]  # nothing is lost: the next read has it
                raise
            if k == 0:
                raise IncompleteRead(
                    f"eof after {got} of {n} bytes from {self.transport.where}",
                    partial=bytes(buf[:got]),
                    expected=n,
                )
            got += k
        return bytes(buf)

    def readline(self, limit: int | None = LINE_LIMIT) -> bytes:
        """One line including its b"\\n"; the unterminated rest at EOF; b"" at EOF.

        A line longer than ``limit`` raises LimitExceeded and its bytes stay unread (io's
        readline would cut it: here a bound refuses, never cuts); ``limit`` < 0 or None
        sets no bound.
        """
        if type(limit) is not int and limit is not None:
            limit = check_count(limit, "readline() limit")
        if limit is None or limit < 0:  # (closed: close() dropped the read-ahead, and the
            limit = sys.maxsize  # transport's read says Closed; no check per line here)
        start = 0
        while True:
            end = self._ahead.find(b"\n", start)
            if end >= 0:
                if end + 1 > limit:
                    break
                line = bytes(self._ahead[: end + 1])
                del self._ahead[: end + 1]
                return line
            if len(self._ahead) > limit:
                break
            start = len(self._ahead)
            if self._scratch is None:
                self._scratch = memoryview(bytearray(READ_ALL_CHUNK))
            got = self.transport.read_into(self._scratch)
            if got == 0:
                line = bytes(self._ahead)
                self._ahead.clear()
                return line
            self._ahead += self._scratch[:got]
        raise LimitExceeded(f"line longer than {limit} bytes from {self.transport.where}")

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """The lines to EOF, as ``readline()`` reads them; with ``hint`` > 0, no more lines
        once their total length exceeds ``hint`` (as io's readlines)."""
        lines: list[bytes] = []
        total = 0
        try:
            for line in self:
                lines.append(line)
                total += len(line)
                if hint is not None and 0 < hint < total:
                    break
        except (Timeout, Interrupted):
            self._ahead[:0] = b"".join(lines)  # nothing is lost: the next read has them
            raise
        return lines

    def __iter__(self) -> Channel:
        self._check_open("read from")
        return self

    def __next__(self) -> bytes:
        if line := self.readline():
            return line
        raise StopIteration

    def _read_all(self) -> bytes:
        parts = [bytes(self._ahead)]
        self._ahead.clear()
        try:
            while chunk := self.read(READ_ALL_CHUNK):
                parts.append(chunk)
        except (Timeout, Interrupted):
            self._ahead[:0] = b"".join(parts)  # nothing is lost: the next read has it
            raise
        return b"".join(parts)

    # --- writing and closing -----------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` (blocking while the peer's buffer is full) or raise."""
        self.transport.write(data)

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None:
        """Write each of ``lines`` in turn (no separators are added, as io's writelines)."""
        self._check_open("write to")
        for line in lines:
            self.transport.write(line)

    def flush(self) -> None:
        """Nothing to do (``write`` leaves nothing buffered here); Closed once closed."""
        self._check_open("flush")

    def send_eof(self) -> None:
        """End our direction (shutdown(SHUT_WR), or close a pipe's write end)."""
        self.transport.send_eof()

    def close(self) -> None:
        """Close; a second close does nothing; a thread blocked in this channel wakes.
        The read-ahead goes too: nothing is read from a closed Channel."""
        self.transport.close()
        self._ahead.clear()

    @property
    def closed(self) -> bool:
        return self.transport.closed

    def fileno(self) -> int:
        self._check_open("get the descriptor of")
        return self.transport.fileno()

    def readable(self) -> bool:
        """Whether this end reads (False for a pipe's write end), as io's readable()."""
        self._check_open("ask about")
        return self.transport.readable

    def writable(self) -> bool:
        """Whether this end writes (False for a pipe's read end), as io's writable()."""
        self._check_open("ask about")
        return self.transport.writable

    def seekable(self) -> bool:
        """Always False: a stream has no position to seek to."""
        self._check_open("ask about")
        return False

    def isatty(self) -> bool:
        """Whether this is a terminal, as io's isatty() (``stdio:`` or ``fd://N`` may be)."""
        self._check_open("ask about")
        return self.transport.isatty()

    def __reduce_ex__(self, protocol: object) -> Any:
        raise refuse_pickle(self, self.transport.where)

    def _check_open(self, op: str) -> None:
        if self.transport.closed:
            raise Closed(f"closed: cannot {op} {self.transport.where}: this side closed it")

    def __enter__(self) -> Channel:
        self._check_open("use")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Channel {self.transport.where} {state}>"

    # --- properties and options --------------------------------------------------------

    @property
    def timeout(self) -> float | None:
        """Seconds a blocking call may wait before raising Timeout; None waits forever."""
        return self.transport.timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        value = check_timeout(value)
        self._check_open("set a timeout on")
        self.transport.timeout = value

    @property
    def local_address(self) -> Address | None:
        return self.transport.local_address

    @property
    def peer_address(self) -> Address | None:
        return self.transport.peer_address

    @property
    def nodelay(self) -> bool:
        return bool(self.transport.get_option("nodelay"))

    @nodelay.setter
    def nodelay(self, on: bool) -> None:
        self.transport.set_option("nodelay", int(on))

    @property
    def keepalive(self) -> bool:
        return bool(self.transport.get_option("keepalive"))

    @keepalive.setter
    def keepalive(self, on: bool) -> None:
        self.transport.set_option("keepalive", int(on))

    @property
    def recv_buffer_size(self) -> int:
        """The kernel's receive buffer (SO_RCVBUF, as getsockopt reports it)."""
        return self.transport.get_option("recv_buffer")

    @property
    def send_buffer_size(self) -> int:
        """The kernel's send buffer (SO_SNDBUF, as getsockopt reports it)."""
        return self.transport.get_option("send_buffer")

    # --- descriptor passing (issue 13) ---------------------------------------------------

    def send_fds(self, data: bytes | memoryview, fds: Sequence[int]) -> None:
        """Send ``data`` (at least one byte) with descriptors attached (SCM_RIGHTS).

        Unix stream and seqpacket channels only; the descriptors stay open here too.
        """
        from ipcnet.transports import fdpass

        fdpass.send_fds(self._unix_socket(), data, fds, self.transport.where)

    def recv_fds(self, n: int = READ_ALL_CHUNK, max_fds: int = 16) -> tuple[bytes, list[int]]:
        """Up to ``n`` bytes (b"" at EOF) and the descriptors that came with them (yours
        to close). More than ``max_fds`` raises LimitExceeded, with all of them closed.
        Bytes already read ahead by readline() come first, without descriptors."""
        from ipcnet.transports import fdpass

        sock = self._unix_socket()
        if self._ahead and n > 0:
            return self.read(n), []
        return fdpass.recv_fds(sock, n, max_fds, self.transport.where)

    def _unix_socket(self) -> socket.socket:
        sock = getattr(self.transport, "sock", None)
        if not isinstance(sock, socket.socket):
            raise Unsupported(f"descriptor passing needs a unix socket channel, not {self}")
        return sock

    # --- end descriptor passing ----------------------------------------------------------


class Listener:
    """A bound, listening address; ``accept()`` waits for the next peer."""

    def __init__(self, transport: transports.Listener[StreamTransport]) -> None:
        self.transport = transport

    @property
    def address(self) -> Address:
        """The address as asked for, with the real port when port 0 was asked."""
        return self.transport.address

    @property
    def local_address(self) -> Address | None:
        """The kernel's view of the bound address (getsockname)."""
        return self.transport.local_address

    @property
    def timeout(self) -> float | None:
        return self.transport.timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self.transport.timeout = value

    def accept(self) -> Channel:
        return Channel(self.transport.accept())

    def fileno(self) -> int:
        """The listening descriptor; Closed once closed (io's rule, not socket's -1)."""
        if self.transport.closed:
            raise Closed(
                f"closed: cannot get the descriptor of {self.address}: this side closed it"
            )
        return self.transport.fileno()

    @property
    def closed(self) -> bool:
        return self.transport.closed

    def close(self) -> None:
        """Stop listening; remove the socket file listen() made (not in a forked child)."""
        self.transport.close()

    def abandon(self) -> None:
        """Close only this process's descriptor: for a forked child that serves one peer
        and must leave the parent's listener as it is."""
        self.transport.abandon()

    def __enter__(self) -> Listener:
        if self.transport.closed:
            raise Closed(f"closed: cannot use {self.address}: this side closed it")
        return self

    def __reduce_ex__(self, protocol: object) -> Any:
        raise refuse_pickle(self, str(self.address))

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Listener {self.address}{' closed' if self.closed else ''}>"


# --- opening ---------------------------------------------------------------------------


def connect(
    url: str | Address,
    *,
    timeout: float | None = None,
    connect_timeout: float | None = 30.0,
    **tls: Any,
) -> Channel:
    """Connect to a stream address: tcp, unix, unixpacket, fifo (write end), exec, stdio, fd.

    ``connect_timeout`` bounds establishing the channel (TCP handshake, waiting for a fifo
    reader); ``timeout`` then applies to each blocking read or write. tls:// and tls+unix://
    take TLS keywords (``ca=``, ``cert=``, ``key=``, ``sni=``, ``alpn=``, ``insecure=``,
    ``tls_min=``..., see ``ipcnet.transports.tls.TLSOptions``; ``tls=`` an SSLContext).
    """
    timeout = check_timeout(timeout)  # both before anything opens: a bad one leaks nothing
    connect_timeout = check_timeout(connect_timeout)
    if connect_timeout is not None and connect_timeout < 0:
        raise ValueError(f"connect_timeout must be 0 or more seconds, not {connect_timeout}")
    transport = transports.open_stream(parse(url), connect_timeout, **tls)
    transport.timeout = timeout
    return Channel(transport)


def listen(
    url: str | Address,
    *,
    backlog: int = 128,
    mode: int = 0o600,
    reuse_port: bool = False,
    **tls: Any,
) -> Listener:
    """Listen on a stream address; unix socket files and fifos get ``mode`` (0600).
    tls:// and tls+unix:// take ``cert=``, ``key=``, ``ca=``... as ``connect`` does."""
    return Listener(transports.open_listener(parse(url), backlog, mode, reuse_port, **tls))


def open_datagram(
    url: str | Address, *, listen: bool = False, max_size: int = 65536, timeout: float | None = None
) -> DatagramEndpoint:
    """A udp/unixgram endpoint: bound to ``url`` with listen=True, else connected to it."""
    timeout = check_timeout(timeout)  # before anything opens: a bad one leaks nothing
    endpoint = transports.open_datagram(parse(url), listen=listen, max_size=max_size)
    endpoint.timeout = timeout
    return endpoint


def pipe() -> tuple[Channel, Channel]:
    """pipe(2) as (reader, writer) Channels; fork and each side closes the end it does not use."""
    reader, writer = transports.make_pipe()
    return Channel(reader), Channel(writer)


def socketpair() -> tuple[Channel, Channel]:
    """socketpair(2): two connected, two-way Channels."""
    a, b = transports.make_socketpair()
    return Channel(a), Channel(b)


def spawn(
    command: str | bytes | os.PathLike[str] | Sequence[str | bytes | os.PathLike[str]],
) -> Channel:
    """Start a child process; write to its stdin and read its stdout through the Channel.

    ``command`` is a command line (split into words as a shell would, with no shell), or
    as subprocess takes it: a list of arguments (str, bytes, paths), or one program path.
    """
    if isinstance(command, str):
        return connect(f"exec:{command}")
    try:
        if isinstance(command, (bytes, os.PathLike)):
            words = [os.fsdecode(command)]
        else:
            words = [os.fsdecode(word) for word in command]
    except TypeError:
        raise TypeError(
            "spawn() takes a command: a string, or a list of arguments (str, bytes or "
            f"paths), not {command!r}"
        ) from None
    return connect(f"exec:{shlex.join(words)}")


def stdio() -> Channel:
    """This process's stdin (read) and stdout (write) as one Channel."""
    return connect("stdio:")


def shm_pair(ring: int = 1 << 20) -> tuple[Channel, Channel]:
    """Two Channels over a shared-memory ring (``ring`` bytes each way); fork, and each
    process closes the end it does not use, as with pipe()."""
    from ipcnet.transports import shm

    a, b = shm.shm_pair(ring)
    return Channel(a), Channel(b)
