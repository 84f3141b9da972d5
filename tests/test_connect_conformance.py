"""`ipcnet connect`, the address grammar and the socket transports, checked where an audit
against socat, OpenBSD nc and the kernel's rules found them wrong.

Each test was written failing first: a reply lost when the peer stopped reading, a crash
or a vague message for a bad host name, an abstract name of the kernel's full length
refused, errors that did not name the part of the address at fault, closed standard
descriptors taken over by the socket, and a descriptor number reused under a reader.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import ipcnet
from ipcnet.errors import Closed

IPCNET = [sys.executable, "-m", "ipcnet", "connect"]


# --- the close race: a descriptor number must not be reused under a reader ---------------


def test_close_before_a_reader_polls_does_not_let_it_watch_a_reused_descriptor() -> None:
    """close() runs after a reader counted itself blocked but before it polls: the number
    must stay ours until the reader leaves, or poll would watch whatever took it."""
    a, b = ipcnet.socketpair()
    transport = a.transport
    fd = transport.fileno()
    real = transport._poll  # type: ignore[attr-defined]
    taken: list[socket.socket] = []

    class CloseFirst:  # the reader is inside read(), about to poll: close() comes now
        def poll(self, timeout: int) -> list[tuple[int, int]]:
            closer = threading.Thread(target=a.close)
            closer.start()
            closer.join()
            taken.extend(socket.socketpair())  # the lowest free numbers: fd, if it was freed
            return real.poll(timeout)  # type: ignore[no-any-return]

    transport._poll = CloseFirst()  # type: ignore[attr-defined]
    a.timeout = 10  # the old code waited here on the new socket: fail, do not hang
    try:
        with pytest.raises(Closed):
            a.read(10)
        assert fd not in [s.fileno() for s in taken], "the descriptor was reused under a reader"
        with pytest.raises(OSError):  # and closed once the reader left
            os.fstat(fd)
    finally:
        b.close()
        for s in taken:
            s.close()


# --- no reply lost when the peer stops reading (issue 10's rule, the other way round) ----


def _unix_peer_that_stops_reading(path: str) -> threading.Thread:
    """Reads 10 bytes, stops reading (shutdown SHUT_RD: the client's writes get EPIPE),
    then, later, answers and closes."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def serve() -> None:
        with listener, listener.accept()[0] as conn:
            conn.recv(10)
            conn.shutdown(socket.SHUT_RD)
            threading.Event().wait(0.3)  # the client's writes fail meanwhile
            conn.sendall(b"refused: too big\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("kind", ["unix", "exec"])
def test_a_peer_that_stops_reading_still_gets_its_answer_through(kind: str, tmp_path: Path) -> None:
    """The peer stops reading our 4 MiB, then answers: the answer is printed, and the exit
    status says the upload failed (socat prints nothing; nc -N prints it, exits 0)."""
    if kind == "unix":
        url = f"unix://{tmp_path}/s"
        peer = _unix_peer_that_stops_reading(f"{tmp_path}/s")
    else:
        url = "exec:sh -c 'exec 0<&-; sleep 0.3; echo refused: too big'"
    out = subprocess.run([*IPCNET, url], input=os.urandom(4 << 20), capture_output=True, timeout=60)
    if kind == "unix":
        peer.join(10)
    assert out.stdout == b"refused: too big\n"
    assert out.returncode == 1
    assert out.stderr.decode().startswith("ipcnet connect: peer closed: write to ")
