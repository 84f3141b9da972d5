"""The socketserver peers: TCPServer, ThreadingTCPServer, ForkingTCPServer (and their unix
twins) with a handler that echoes through ``recv_into`` a preallocated buffer."""

from __future__ import annotations

import os
import socket
import socketserver

from ipcnet.bench.peers import BUF_SIZE, Stop, nodelay, ready, stop_on_sigterm


class EchoHandler(socketserver.BaseRequestHandler):
    request: socket.socket

    def handle(self) -> None:
        nodelay(self.request)
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


CLASSES: dict[str, tuple[type[socketserver.TCPServer], type[socketserver.TCPServer]]] = {
    "tcpserver": (socketserver.TCPServer, socketserver.UnixStreamServer),
    "threadingtcpserver": (socketserver.ThreadingTCPServer, socketserver.ThreadingUnixStreamServer),
    "forkingtcpserver": (socketserver.ForkingTCPServer, ForkingUnixStreamServer),
}


def serve(name: str, listener: socket.socket) -> None:
    cls = CLASSES[name][listener.family == socket.AF_UNIX]
    server = cls(listener.getsockname(), EchoHandler, bind_and_activate=False)
    server.socket.close()
    server.socket = listener  # bound already
    listener.listen(server.request_queue_size)  # socketserver's own backlog (5)
    parent = os.getpid()
    stop_on_sigterm()
    ready(name, listener)
    try:
        server.serve_forever()
    except Stop:
        if os.getpid() != parent:  # a forked handler got the signal: just go
            os._exit(0)
