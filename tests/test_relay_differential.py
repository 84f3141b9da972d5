"""``ipcnet relay``'s data path, differentially: what socat, HAProxy and nginx stream do.

The differential pass (generated payloads 0..16 MiB with random chunking and pauses,
half-closes each way, resets from either side, refusing, closing and non-reading targets,
balancing and failover, 500 connections at once, udp against socat and nginx) found the
relay byte-exact and in line with its peers except where this file says; each case here
failed before its fix.

- one connection's end must not hold up the others: socat forks per connection and HAProxy
  and nginx never wait on anything but sockets, so a connection ending never delays
  another; ipcnet's event-loop models (epoll, the default, select, poll, asyncio) closed
  an exec: target's side in the loop, and that close waits for the child to exit (then
  terminates and kills it): every other connection froze for up to 4 s;
- a target that answers, then stops reading while the client still uploads, is heard out
  by a direct connection (its answer, then the end), and by HAProxy and nginx between
  sockets; ipcnet took the broken pipe (an exec: child, a unix server) for a reset and
  reset the client at once, with the answer lost;
- ``--balance roundrobin`` rotates in HAProxy and nginx; under ipcnet's fork and forkconc
  models every connection went to the first target (each forked child advanced its own
  copy of the turn).

Every case runs in this process (no relay to start): one exec: command does what the
first line of each connection asks.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import ipcnet
import ipcnet.relay
from ipcnet.addresses import parse
from ipcnet.drivers.handover import Watch
from ipcnet.relay.pump import Bridge, end_for
from ipcnet.relay.targets import Targets
from ipcnet.transports import open_stream
from ipcnet.transports.sockets import stream_for
from relay_helpers import recv_all

# the first line picks what the child does: "hold" closes its stdout and lives on, deaf
# to SIGTERM (a child slow to exit); "answer" stops reading (closes its stdin) and sends
# the answer file; anything else is echoed back by cat
CHILD = (
    'exec:sh -c \'read x; case "$x" in '
    'hold) echo $$ > {tmp}/pid; trap "" TERM; exec sleep 60 >&-;; '
    "answer) exec cat {tmp}/answer <&-;; "
    'esac; echo "$x"; exec cat\''
)
LINGER_0 = b"\1\0\0\0\0\0\0\0"  # SO_LINGER on, 0 s: close() sends a reset
ANSWER = os.urandom(100_000)


@pytest.fixture(scope="module")
def child() -> Iterator[tuple[str, Path]]:
    """The exec: target and its folder (the answer file, the pid of a "hold" child)."""
    tmp = Path(tempfile.mkdtemp(prefix="ipcnet-rd-", dir="/tmp"))
    (tmp / "answer").write_bytes(ANSWER)
    try:
        yield CHILD.format(tmp=tmp), tmp
    finally:
        shutil.rmtree(tmp)


def _ask(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line)
    got = b""
    while not got.endswith(b"\n"):
        chunk = sock.recv(4096)
        assert chunk, f"eof after {got!r}"
        got += chunk
    return got


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


ENDINGS = ["both eof", "client reset"]


def test_an_exec_child_slow_to_exit_holds_up_no_other_connection(
    child: tuple[str, Path],
) -> None:
    """Connections to exec: children in one event loop (a selector, as the epoll, select
    and poll models run them): one ends (both ways by EOF, or by a client reset) while
    its child lives on, and another still gets its echo at once, while that child is
    still there (before, the loop waited for it: 2 s, then SIGTERM, 2 s more, then
    SIGKILL, and only then the echo came)."""
    target, tmp = child
    pairs = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        for _ in range(1 + len(ENDINGS)):  # tcp, so that a client can reset
            ours = socket.create_connection(listener.getsockname(), 20)
            theirs = stream_for(listener.accept()[0], "tcp://client")
            upstream = end_for(open_stream(parse(target), 5))
            pairs.append((Bridge(end_for(theirs), upstream), ours))
    selector = selectors.DefaultSelector()
    running = threading.Event()
    running.set()

    def loop() -> None:
        for bridge, _ in pairs:
            Watch(bridge, selector, lambda watch: None).step()
        while running.is_set():
            for key, _ in selector.select(0.05):
                key.data.step()

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        other = pairs[0][1]
        assert _ask(other, b"first\n") == b"first\n"
        for ending, (_, ending_one) in zip(ENDINGS, pairs[1:], strict=True):
            ending_one.sendall(b"hold\n")
            assert ending_one.recv(10) == b"", ending  # the child closed its stdout: eof
            pid = int((tmp / "pid").read_text())  # written before it closed its stdout
            try:
                if ending == "client reset":
                    ending_one.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
                else:
                    ending_one.shutdown(socket.SHUT_WR)
                ending_one.close()
                for n in range(3):  # the loop goes on serving the other connection ...
                    assert _ask(other, b"%d\n" % n) == b"%d\n" % n, ending
                assert _alive(pid), ending  # ... before it is done with the child
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        other.shutdown(socket.SHUT_WR)
        assert recv_all(other) == b""
        other.close()
    finally:
        running.clear()
        thread.join(10)
        selector.close()


UPLOADS = [0, 1 << 20, 8 << 20]  # bytes the client sends after its line


def test_a_target_that_answers_then_stops_reading_is_heard_out(
    child: tuple[str, Path],
) -> None:
    """A target that answers, then stops reading (an exec: child that closed its stdin or
    exited, a unix server that closed) while the client still uploads: its answer reaches
    the client whole, then the end, as from the same server without a relay (the
    client's unread upload makes the relay's close a reset, as the server's kernel
    does). Before, the broken pipe was taken for a reset: the client was reset at once
    and the answer lost (socat's EXEC gets it across most of the time)."""
    with ipcnet.relay("tcp://127.0.0.1:0", child[0]) as relay:
        for upload in UPLOADS:
            _hear_out(int(relay.address.port or 0), upload)


def _hear_out(port: int, upload: int) -> None:
    with socket.create_connection(("127.0.0.1", port), 20) as c:
        pusher = threading.Thread(target=_push, args=(c, upload))
        pusher.start()
        got = bytearray()
        with contextlib.suppress(ConnectionResetError):
            while chunk := c.recv(1 << 16):
                got += chunk
        pusher.join(20)
    assert bytes(got) == ANSWER, (upload, len(got))


def _push(sock: socket.socket, size: int) -> None:
    block = b"u" * (1 << 16)
    with contextlib.suppress(OSError):
        sock.sendall(b"answer\n")
        for _ in range(size // len(block)):
            sock.sendall(block)
        sock.shutdown(socket.SHUT_WR)


def test_roundrobin_turns_are_taken_across_forked_children() -> None:
    """``--balance roundrobin`` under the fork models: each connection is served (its
    target chosen) in a child forked for it, and the turn must move for all of them, as
    HAProxy's and nginx's (with a shared zone) do across threads and processes. The turn
    was each child's own copy: every connection went to the first target."""
    targets = Targets([f"tcp://127.0.0.1:{port}" for port in (1, 2, 3)], "roundrobin")
    firsts = []
    for _ in range(4):  # a child per connection, as the fork models do
        read, write = os.pipe()
        if (pid := os.fork()) == 0:
            os.write(write, str(targets.order()[0].port).encode())
            os._exit(0)
        os.close(write)
        firsts.append(int(os.read(read, 16)))
        os.close(read)
        os.waitpid(pid, 0)
    firsts.append(int(targets.order()[0].port or 0))  # and in the parent, the next turn
    assert firsts == [1, 2, 3, 1, 2]
