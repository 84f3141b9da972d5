"""The Python peer echo servers, written the way a careful user of each library would.

Role: the yardsticks for ipcnet's drivers. Each ``serve_*`` function binds the address,
prints one ready line to stderr, echoes until SIGTERM, then closes and returns. Rules:
stdlib sockets only (never ipcnet), TCP_NODELAY on every TCP connection, ``recv_into`` a
preallocated buffer where the library allows it, partial writes kept and finished
before reading more, EOF closes the connection.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import socket
import socketserver
import sys
from collections.abc import Callable
from typing import Any

BUF_SIZE = 256 * 1024


class Bind:
    """Where to listen: (AF_INET, (host, port)) or (AF_UNIX, path)."""

    def __init__(self, url: str) -> None:
        from ipcnet.addresses import parse

        address = parse(url)
        if address.scheme in ("tcp", "tcp4") and address.host is not None:
            self.family = socket.AF_INET
            self.host = address.host or "0.0.0.0"
            self.port = int(address.port or 0)
            self.path = ""
        elif address.scheme == "unix" and address.path and not address.abstract:
            self.family = socket.AF_UNIX
            self.host, self.port, self.path = "", 0, address.path
        else:
            raise SystemExit(f"peers take tcp://IPv4:PORT or unix:///path, not {url}")

    @property
    def tcp(self) -> bool:
        return self.family == socket.AF_INET

    def url(self, sockname: Any) -> str:
        if self.tcp:
            return f"tcp://{sockname[0]}:{sockname[1]}"
        return f"unix://{self.path}"

    def cleanup(self) -> None:
        if not self.tcp:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def ready(name: str, url: str) -> None:
    print(f"peer {name}: echo listening on {url}", file=sys.stderr, flush=True)


def _nodelay(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Stop(BaseException):  # not Exception: socketserver catches those in handlers
    """Raised by the SIGTERM handler to leave a blocking serve loop."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


# --- socketserver --------------------------------------------------------------------------


class EchoHandler(socketserver.BaseRequestHandler):
    request: socket.socket

    def setup(self) -> None:
        _nodelay(self.request)

    def handle(self) -> None:
        buf = bytearray(BUF_SIZE)
        view = memoryview(buf)
        recv_into, sendall = self.request.recv_into, self.request.sendall
        try:
            while n := recv_into(buf):
                sendall(view[:n])
        except ConnectionError:
            pass


class ForkingUnixStreamServer(socketserver.ForkingMixIn, socketserver.UnixStreamServer):
    """socketserver.ForkingUnixStreamServer, which only exists from Python 3.12."""


SOCKETSERVERS: dict[str, tuple[type[socketserver.BaseServer], type[socketserver.BaseServer]]] = {
    "tcpserver": (socketserver.TCPServer, socketserver.UnixStreamServer),
    "threadingtcpserver": (
        socketserver.ThreadingTCPServer,
        socketserver.ThreadingUnixStreamServer,
    ),
    "forkingtcpserver": (socketserver.ForkingTCPServer, ForkingUnixStreamServer),
}


def serve_socketserver(name: str, bind: Bind) -> None:
    tcp_class, unix_class = SOCKETSERVERS[name]
    cls = tcp_class if bind.tcp else unix_class
    cls.allow_reuse_address = True  # type: ignore[attr-defined]
    address: Any = (bind.host, bind.port) if bind.tcp else bind.path
    server = cls(address, EchoHandler)
    parent = os.getpid()
    signal.signal(signal.SIGTERM, _raise_stop)
    ready(name, bind.url(server.server_address))
    try:
        server.serve_forever()
    except _Stop:
        if os.getpid() != parent:  # a forked handler got the signal: just go
            os._exit(0)
    finally:
        if os.getpid() == parent:
            server.server_close()
            bind.cleanup()


# --- asyncio -------------------------------------------------------------------------------


class EchoProtocol(asyncio.Protocol):
    """data_received -> transport.write; reading pauses while the write buffer is full."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


async def _stream_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while data := await reader.read(BUF_SIZE):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _serve_asyncio(name: str, bind: Bind, streams: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def on_term() -> None:
        if not stop.done():
            stop.set_result(None)

    loop.add_signal_handler(signal.SIGTERM, on_term)
    server: asyncio.AbstractServer
    if streams:
        if bind.tcp:
            server = await asyncio.start_server(_stream_echo, bind.host, bind.port, backlog=1024)
        else:
            server = await asyncio.start_unix_server(_stream_echo, bind.path, backlog=1024)
    elif bind.tcp:
        server = await loop.create_server(EchoProtocol, bind.host, bind.port, backlog=1024)
    else:
        server = await loop.create_unix_server(EchoProtocol, bind.path, backlog=1024)
    ready(name, bind.url(server.sockets[0].getsockname()))
    await stop
    server.close()
    bind.cleanup()


def serve_asyncio(name: str, bind: Bind) -> None:
    main = _serve_asyncio(name, bind, streams=name == "asyncio-streams")
    if name == "uvloop-protocol":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


# --- a plain selectors loop ----------------------------------------------------------------


def serve_selectors(name: str, bind: Bind) -> None:
    """One DefaultSelector (epoll); SelectorKey.data holds the unsent bytes of a connection."""
    listener = socket.socket(bind.family, socket.SOCK_STREAM)
    if bind.tcp:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((bind.host, bind.port))
    else:
        listener.bind(bind.path)
    listener.listen(1024)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    buf = bytearray(BUF_SIZE)
    view = memoryview(buf)
    signal.signal(signal.SIGTERM, _raise_stop)  # select() retries after EINTR (PEP 475)
    ready(name, bind.url(listener.getsockname()))

    def on_read(conn: socket.socket, key: selectors.SelectorKey) -> None:
        try:
            n = conn.recv_into(buf)
        except BlockingIOError:
            return
        except ConnectionError:
            n = 0
        if n == 0:
            sel.unregister(conn)
            conn.close()
            return
        try:
            sent = conn.send(view[:n])
        except BlockingIOError:
            sent = 0
        except ConnectionError:
            sel.unregister(conn)
            conn.close()
            return
        if sent < n:  # keep the rest; stop reading until it is written
            sel.modify(conn, selectors.EVENT_WRITE, bytes(view[sent:n]))

    def on_write(conn: socket.socket, key: selectors.SelectorKey) -> None:
        pending: bytes = key.data
        try:
            sent = conn.send(pending)
        except BlockingIOError:
            return
        except ConnectionError:
            sel.unregister(conn)
            conn.close()
            return
        if sent < len(pending):
            sel.modify(conn, selectors.EVENT_WRITE, pending[sent:])
        else:
            sel.modify(conn, selectors.EVENT_READ, on_read)

    try:
        _selectors_loop(sel, listener, on_read, on_write)
    except _Stop:
        pass
    for key in list(sel.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    sel.close()
    bind.cleanup()


def _selectors_loop(
    sel: selectors.BaseSelector,
    listener: socket.socket,
    on_read: Callable[[socket.socket, selectors.SelectorKey], None],
    on_write: Callable[[socket.socket, selectors.SelectorKey], None],
) -> None:
    while True:
        for key, _events in sel.select():
            conn: socket.socket = key.fileobj  # type: ignore[assignment]
            if key.data is None:
                try:
                    while True:
                        new, _ = listener.accept()
                        new.setblocking(False)
                        _nodelay(new)
                        sel.register(new, selectors.EVENT_READ, on_read)
                except BlockingIOError:
                    pass
            elif isinstance(key.data, bytes):
                on_write(conn, key)
            else:
                key.data(conn, key)


# --- the C peer, when run through this module ----------------------------------------------


def serve_c(name: str, bind: Bind, url: str) -> None:
    """Build the C server in a temporary folder, run it, pass SIGTERM on, clean up."""
    import subprocess
    import tempfile

    from ipcnet.bench.peers import build_c_echo, c_argv

    with tempfile.TemporaryDirectory(prefix="ipcnet-cpeer-") as folder:
        proc = subprocess.Popen(c_argv(build_c_echo(folder), url))
        signal.signal(signal.SIGTERM, lambda signum, frame: proc.terminate())
        while True:
            try:
                proc.wait()
                break
            except KeyboardInterrupt:
                proc.terminate()


SERVE: dict[str, Callable[[str, Bind], None]] = {
    "tcpserver": serve_socketserver,
    "threadingtcpserver": serve_socketserver,
    "forkingtcpserver": serve_socketserver,
    "asyncio-streams": serve_asyncio,
    "asyncio-protocol": serve_asyncio,
    "uvloop-protocol": serve_asyncio,
    "selectors": serve_selectors,
}


def main(argv: list[str] | None = None) -> int:
    import argparse

    from ipcnet.bench.peers import PEERS, unavailable

    parser = argparse.ArgumentParser(
        prog="python -m ipcnet.bench.peers", description="run one peer echo server"
    )
    parser.add_argument("name", choices=list(PEERS))
    parser.add_argument("url", help="tcp://127.0.0.1:PORT (0 picks one) or unix:///PATH")
    args = parser.parse_args(argv)
    why = unavailable(args.name)
    if why:
        print(f"peer {args.name}: skipped: {why}", file=sys.stderr)
        return 3
    bind = Bind(args.url)
    if args.name == "c-epoll":
        serve_c(args.name, bind, args.url)
    else:
        SERVE[args.name](args.name, bind)
    return 0
