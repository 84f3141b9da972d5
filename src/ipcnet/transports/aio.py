"""Any stream address for asyncio programs, opened by the same code as for blocking ones.

Role: ``open_async(address)`` runs ``open_stream`` in a worker thread (connecting blocks:
getaddrinfo, the TCP handshake, a fifo waiting for its reader), then hands the descriptors
over to the running loop: a socket to ``create_connection(sock=...)``, pipe ends to
``connect_read_pipe``/``connect_write_pipe``. Rules: the errors are the blocking client's
(``Refused``, ``NoSuchSocket``, ``Timeout``...), and every OSError asyncio raises while
reading, writing or closing is translated here, like any transport's; ``close()`` then
runs what the transport would have run on close (an exec: child is waited for and, if it
lingers, terminated), in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from ipcnet.addresses import Address
from ipcnet.errors import Unsupported
from ipcnet.transports import open_stream
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
    ) -> None:
        self.where = where
        self._reader = reader
        self._writer = writer
        self._read_side = read_side  # a pipe's read end, when it is not the writer's transport
        self._after_close = after_close

    async def read(self, n: int) -> bytes:
        """Up to n bytes; b"" at EOF."""
        try:
            return await self._reader.read(n)
        except OSError as exc:
            raise translate(exc, "read from", self.where) from exc

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue data and wait while the kernel's buffer is full."""
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            raise translate(exc, "write to", self.where) from exc

    async def close(self) -> None:
        """Close both directions; errors from a connection already broken are moot."""
        self._writer.close()
        if self._read_side is not None:
            self._read_side.close()
        try:
            await self._writer.wait_closed()
        except OSError:
            pass  # the peer broke it first: closing has nothing left to report
        after, self._after_close = self._after_close, None
        if after is not None:
            await asyncio.to_thread(after)


async def open_async(
    address: Address, connect_timeout: float | None = 30.0, limit: int = READ_LIMIT
) -> AsyncStream:
    """Connect to a stream address (tcp, unix, exec:, fifo, stdio, fd://...) for asyncio."""
    transport = await asyncio.to_thread(open_stream, address, connect_timeout)
    try:
        return await _adopt(transport, limit)
    except BaseException:
        transport.close()
        raise


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
        write_protocol = asyncio.StreamReaderProtocol(asyncio.StreamReader())
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
    return AsyncStream(reader, writer, where, read_side, handed.after_close)
