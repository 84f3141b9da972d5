"""The asyncio peers: streams, a Protocol on asyncio's loop and the same Protocol on uvloop."""

from __future__ import annotations

import asyncio
import signal
import socket

from ipcnet.bench.peers import BUF_SIZE, nodelay, ready


class EchoProtocol(asyncio.Protocol):
    """data_received -> transport.write; reading pauses while the write buffer is full."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        nodelay(transport.get_extra_info("socket"))

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


async def _stream_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    nodelay(writer.get_extra_info("socket"))
    try:
        while data := await reader.read(BUF_SIZE):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _serve(name: str, listener: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: None if stop.done() else stop.set_result(None))
    server: asyncio.AbstractServer
    if name == "asyncio-streams":
        server = await asyncio.start_server(_stream_echo, sock=listener)
    else:
        server = await loop.create_server(EchoProtocol, sock=listener)
    ready(name, listener)
    await stop
    server.close()


def serve(name: str, listener: socket.socket) -> None:
    if name == "uvloop-protocol":
        import uvloop

        uvloop.run(_serve(name, listener))
    else:
        asyncio.run(_serve(name, listener))
