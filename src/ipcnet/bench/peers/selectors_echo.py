"""The plain ``selectors`` peer: one DefaultSelector (epoll), ``SelectorKey.data`` holds a
connection's unsent bytes (reading stops until they are written)."""

from __future__ import annotations

import selectors
import socket

from ipcnet.bench.peers import BUF_SIZE, Stop, nodelay, ready, stop_on_sigterm


def serve(name: str, listener: socket.socket) -> None:
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    view = memoryview(bytearray(BUF_SIZE))
    stop_on_sigterm()  # select() retries after EINTR (PEP 475)
    ready(name, listener)
    try:
        while True:
            for key, _ in sel.select():
                if key.data is None:
                    _accept(sel, listener)
                else:
                    _echo(sel, key.fileobj, key.data, view)  # type: ignore[arg-type]
    except Stop:
        pass
    for key in list(sel.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    sel.close()


def _accept(sel: selectors.BaseSelector, listener: socket.socket) -> None:
    try:
        while True:
            conn, _ = listener.accept()
            conn.setblocking(False)
            nodelay(conn)
            sel.register(conn, selectors.EVENT_READ, b"")
    except BlockingIOError:
        pass


def _echo(
    sel: selectors.BaseSelector, conn: socket.socket, pending: bytes, view: memoryview
) -> None:
    """Readable (nothing pending): read and send back; writable: send what is pending."""
    try:
        data = pending or view[: conn.recv_into(view)]
        if data:
            try:
                sent = conn.send(data)
            except BlockingIOError:
                sent = 0
            if sent < len(data) or pending:  # keep the rest; read only once all is written
                rest = bytes(data[sent:])
                sel.modify(conn, selectors.EVENT_WRITE if rest else selectors.EVENT_READ, rest)
            return
    except BlockingIOError:
        return
    except ConnectionError:
        pass
    sel.unregister(conn)
    conn.close()
