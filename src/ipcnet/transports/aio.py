"""Any stream address for asyncio programs, opened by the same code as for blocking ones.

Role: ``open_async(address)`` runs ``open_stream`` in a worker thread (connecting blocks:
getaddrinfo, the TCP handshake, a fifo waiting for its reader), then hands the descriptors
over to the running loop: a socket to ``create_connection(sock=...)``, pipe ends to
``connect_read_pipe``/``connect_write_pipe``. Rules, those of a blocking Channel:
- the errors are the blocking client's (``Refused``, ``NoSuchSocket``, ``Timeout``...),
  and every OSError asyncio raises while reading, writing or closing is translated here,
  like any transport's; a write to a pipe whose reader left is ``PeerClosed``;
- ``read(n)`` returns b"" if and only if the peer ended its direction; ``write()`` returns
  once the kernel holds every byte (the loop's buffer is empty: nothing is left for close
  to wait for or lose); ``send_eof()`` ends our direction only;
- after ``close()`` every call raises ``Closed``, and a read or write blocked at the time
  wakes with ``Closed``; close never waits for a peer that does not read: bytes still
  queued (a write blocked or cancelled) are dropped, as a blocking close drops what an
  interrupted write left; a cancelled close closes at once (trio's rule for aclose);
- ``close()`` then runs what the transport would have run on close (an exec: child is
  waited for and, if it lingers, terminated), in a worker thread, even when cancelled;
- ``open_async`` cancelled while its thread connects closes what the thread opens.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable

from ipcnet.addresses import Address
from ipcnet.errors import Closed, IPCError, PeerClosed, Unsupported
from ipcnet.transports import detaches, open_stream
from ipcnet.transports.base import StreamTransport
from ipcnet.transports.oserrors import translate

READ_LIMIT = 64 * 1024


class AsyncStream:
    """A connected stream driven by the running asyncio loop."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        where: str,
        read_side: asyncio.BaseTransport | None = None,
        after_close: Callable[[], None] | None = None,
        write_reader: asyncio.StreamReader | None = None,
    ) -> None:
        self.where = where
        self._reader = reader
        self._writer = writer
        self._read_side = read_side  # a pipe's read end, when it is not the writer's transport
        self._after_close = after_close
        # where the write side's transport files its error (a pipe's write end has its own)
        self._write_reader = write_reader or reader
        self._closed = False
        self._eof_sent = False
        # write() waits until the loop's buffer is empty, as a blocking write until the
        # kernel took it all: what is queued at close is only a blocked or cancelled write's
        writer.transport.set_write_buffer_limits(high=0)

    async def read(self, n: int) -> bytes:
        """Up to n bytes; b"" at EOF."""
        if self._closed:
            raise Closed(f"closed: cannot read from {self.where}: this side closed it")
        try:
            return await self._reader.read(n)
        except OSError as exc:
            raise translate(exc, "read from", self.where) from exc

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of data: return once the kernel holds it, or raise."""
        if self._closed or self._eof_sent:
            raise self._closed_error("write to")
        writer = self._writer
        if writer.transport.is_closing():  # asyncio would drop the bytes (and log it)
            raise self._lost("write to")
        try:
            writer.write(data)
            await writer.drain()
        except OSError as exc:
            raise self._lost("write to", exc) from exc
        if self._closed:  # close() aborted the transport while this write waited
            raise Closed(f"closed while waiting to write: {self.where}")

    async def send_eof(self) -> None:
        """End our direction (the peer reads EOF); reading still works. Idempotent."""
        if self._closed:
            raise Closed(f"closed: cannot send EOF on {self.where}: this side closed it")
        if self._eof_sent:
            return
        self._eof_sent = True
        transport = self._writer.transport
        if self._read_side is not None:  # a pipe: its write end closes
            transport.close()
        elif not transport.is_closing():
            try:
                self._writer.write_eof()  # after what is queued (nothing: see write)
            except OSError as exc:
                raise translate(exc, "send EOF on", self.where) from exc

    def _closed_error(self, op: str) -> Closed:
        if self._closed:
            return Closed(f"closed: cannot {op} {self.where}: this side closed it")
        return Closed(f"closed: cannot {op} {self.where} after send_eof()")

    def _lost(self, op: str, exc: BaseException | None = None) -> IPCError:
        """The error of a write side the loop found broken: its cause when asyncio kept
        one (its "Connection lost" says nothing), else a pipe's reader left."""
        if self._closed:
            return Closed(f"closed while waiting to write: {self.where}")
        cause = self._write_reader.exception()
        if isinstance(cause, OSError):
            return translate(cause, op, self.where)
        if self._read_side is not None or exc is None:  # a pipe closes quietly on EPIPE
            return PeerClosed(f"peer closed: {op} {self.where}")
        return translate(exc, op, self.where)

    async def close(self) -> None:
        """Close both directions; errors from a connection already broken are moot."""
        first = not self._closed
        self._closed = True
        transport = self._writer.transport
        if first:
            # wake a read blocked now (the transport's EOF would have looked like the peer's)
            self._reader.set_exception(Closed(f"closed while reading: {self.where}"))
            if transport.get_write_buffer_size():
                transport.abort()  # a blocked or cancelled write's bytes: dropped
            transport.close()
            if self._read_side is not None:
                self._read_side.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass  # the peer broke it first: closing has nothing left to report
        except asyncio.CancelledError:
            transport.abort()
            self._finish()  # in its thread all the same, not waited for
            raise
        await asyncio.shield(self._finish())  # cancelled, the steps run all the same

    def _finish(self) -> asyncio.Future[None]:
        """Run the transport's own close steps in a worker thread, once (the future is
        never cancelled: a job cancelled before its thread took it would never run)."""
        after, self._after_close = self._after_close, None
        loop = asyncio.get_running_loop()
        if after is None:
            done: asyncio.Future[None] = loop.create_future()
            done.set_result(None)
            return done
        return loop.run_in_executor(None, after)


async def open_async(
    address: Address, connect_timeout: float | None = 30.0, limit: int = READ_LIMIT
) -> AsyncStream:
    """Connect to a stream address (tcp, unix, exec:, fifo, stdio, fd://...) for asyncio."""
    if not detaches(address):  # said before connecting, not after a handshake
        raise Unsupported(
            f"cannot hand {address} over to an event loop (for TLS from asyncio, give "
            "asyncio.open_connection an ssl context)"
        )
    opening = _Opening()
    loop = asyncio.get_running_loop()
    try:
        transport = await loop.run_in_executor(None, opening.run, address, connect_timeout)
    except asyncio.CancelledError:
        late = opening.abandon()
        if late is not None:  # opened, not yet taken: closed in a thread (exec: waits)
            loop.run_in_executor(None, late.close)
        raise
    try:
        return await _adopt(transport, limit)
    except BaseException:
        transport.close()
        raise


class _Opening:
    """An open_stream in a worker thread, whose caller may stop waiting (cancelled): the
    transport it opens then is closed by whichever side comes second."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._abandoned = False
        self._transport: StreamTransport | None = None

    def run(self, address: Address, connect_timeout: float | None) -> StreamTransport:
        transport = open_stream(address, connect_timeout)
        with self._lock:
            if not self._abandoned:
                self._transport = transport
                return transport
        transport.close()
        raise Closed(f"closed: the connect to {address} was cancelled")

    def abandon(self) -> StreamTransport | None:
        """Stop waiting; the transport opened already, if any (the caller closes it)."""
        with self._lock:
            self._abandoned = True
            transport, self._transport = self._transport, None
        return transport


async def _adopt(transport: StreamTransport, limit: int) -> AsyncStream:
    loop = asyncio.get_running_loop()
    where = transport.where
    reader = asyncio.StreamReader(limit=limit)
    protocol = asyncio.StreamReaderProtocol(reader)
    handed = transport.detach()
    files = [os.fdopen(fd, "rb" if fd == handed.read_fd else "wb", buffering=0)
             for fd in (handed.read_fd, handed.write_fd) if fd is not None]  # fmt: skip
    read_side: asyncio.BaseTransport | None = None
    try:
        if handed.sock is not None:
            sock_side, _ = await loop.create_connection(lambda: protocol, sock=handed.sock)
            writer = asyncio.StreamWriter(sock_side, protocol, reader, loop)
            return AsyncStream(reader, writer, where, after_close=handed.after_close)
        if len(files) != 2:
            raise Unsupported(f"{where} is one-way; an asyncio stream needs both directions")
        read_side, _ = await loop.connect_read_pipe(lambda: protocol, files[0])
        write_reader = asyncio.StreamReader()  # held here: the protocol keeps a weak ref
        write_protocol = asyncio.StreamReaderProtocol(write_reader)
        write_side, _ = await loop.connect_write_pipe(lambda: write_protocol, files[1])
    except BaseException as exc:
        # undo the hand-over: the loop's pipe transport (if any) first, then the files
        if read_side is not None:
            read_side.close()
        for file in files:
            file.close()
        if handed.sock is not None:
            handed.sock.close()
        if handed.after_close is not None:
            handed.after_close()
        if isinstance(exc, OSError):
            raise translate(exc, "hand over", where) from exc
        if isinstance(exc, ValueError):  # not a stream socket, a pipe or a tty
            raise Unsupported(f"cannot drive {where} from asyncio: {exc}") from exc
        raise
    writer = asyncio.StreamWriter(write_side, write_protocol, None, loop)
    return AsyncStream(reader, writer, where, read_side, handed.after_close, write_reader)
