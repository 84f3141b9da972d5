"""A graceful stop in the middle of a streaming session ends it with a lingering close.

A server that closes a TCP connection with the client's bytes still unread sends an RST
instead of a FIN, and the RST makes the client's kernel throw away what it had received
and not yet read: the client loses the tail of its echo and reads ECONNRESET instead of
EOF (RFC 9112 §9.6; nginx's lingering_close). So a SIGTERM in mid-stream must half-close
after the last byte echoed, drop what the client still sends, and close at its EOF.

The case is made certain rather than likely: the echo of a first chunk waits unread in
the client's socket; then the server's process group is stopped (SIGSTOP) while the
client queues more than one read of input and the server gets SIGTERM; the master runs
again first, alone, until every process serving a connection (a fork child, a prefork
worker) has the SIGTERM it forwards pending; only then does the group go on, so each
process that serves meets the stop and the unread input together, before it reads.
The client then goes on streaming until it reads EOF, sends one more chunk (it could not
know yet) and its own EOF: a server that closed instead of lingering answers that chunk
with an RST, which the client sees once the server has exited.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from serverkit import Server, children, serving

GRACE = 20  # the stop must end by the client's EOF, long before this
FIRST = 16 * 1024  # echoed, and left unread in the client's socket
QUEUED = 256 * 1024  # at most this much queued while the server is stopped
LIMIT = 256 * 1024 * 1024  # the client stops sending here if it never meets EOF
READ_SIZE = 64 * 1024  # one read of the server (drivers.core.READ_SIZE)
PERIOD = 251  # the stream is 0, 1, ... 250, 0, 1, ...: a lost or moved chunk shows
BASE = bytes(range(PERIOD))

# one model of each family and stop path: threads (and the drain thread's FIN), a forked
# child, a readiness loop, asyncio, prefork workers (select/poll share epoll's loop,
# forkconc and iterative the blocking drive's lingering, pool the thread models' drain;
# all ten pass, and fail without the lingering close: the suite's time buys these five)
MODELS = ["thread", "fork", "epoll", "asyncio", "prefork"]


def _status(pid: int) -> dict[str, str]:
    """/proc/PID/status as fields; empty once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:
        return {}


def _stopped(pid: int) -> bool:
    """Every thread of ``pid`` is stopped (or it is gone)."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    return all(_status(int(tid)).get("State", "T").startswith("T") for tid in threads)


def _sigterm_pending(pid: int) -> bool:
    """SIGTERM waits for (stopped) process ``pid``, or it is gone."""
    status = _status(pid)
    if not status:
        return True
    pending = int(status["ShdPnd"], 16) | int(status["SigPnd"], 16)
    return bool(pending & 1 << (signal.SIGTERM - 1))


def _until(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GRACE  # a guard against a hang, not a measure
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


@contextmanager
def _stopped_then_terminated(server: Server) -> Iterator[None]:
    """The server's processes are stopped in the block; then SIGTERM (see the module).
    A stop is only asked by SIGSTOP: each process stops once it next runs, so the block
    begins once all are stopped (a SIGTERM meeting a SIGSTOP not yet taken goes first)."""
    master = server.proc.pid
    pgid = os.getpgid(master)
    serving_ones = children(master)  # fork's child, prefork's workers; none: threads
    os.killpg(pgid, signal.SIGSTOP)
    try:
        _until(lambda: all(map(_stopped, [master, *serving_ones])), "the server did not stop")
        yield
        os.kill(master, signal.SIGTERM)
        os.kill(master, signal.SIGCONT)
        _until(lambda: all(map(_sigterm_pending, serving_ones)), "no SIGTERM forwarded")
    finally:
        os.killpg(pgid, signal.SIGCONT)


def _pattern(offset: int, size: int) -> bytes:
    """Bytes ``offset`` to ``offset + size`` of the stream the client sends."""
    start = offset % PERIOD
    return (BASE * ((start + size) // PERIOD + 1))[start : start + size]


def _queue(sock: socket.socket, offset: int, limit: int) -> int:
    """Send what the kernel takes without blocking (the server is stopped): the offset
    reached."""
    sock.setblocking(False)
    try:
        while offset < limit:
            offset += sock.send(_pattern(offset, READ_SIZE))
    except BlockingIOError:
        pass
    return offset


def _stream_to_eof(sock: socket.socket, offset: int) -> bytearray:
    """Go on sending, as a client with more to say does, and read the echo until EOF;
    then one more chunk (sent before it could know) and our EOF: a server that closed
    instead of lingering answers that chunk with an RST."""
    echoed = bytearray()
    while True:
        writing = [sock] if offset < LIMIT else []
        readable, writable, _ = select.select([sock], writing, [], GRACE)
        assert readable or writable, "no echo and no room to send"
        if readable:
            data = sock.recv(READ_SIZE)
            if not data:
                break
            echoed += data
        else:
            offset += sock.send(_pattern(offset, READ_SIZE))
    sock.setblocking(True)
    sock.sendall(_pattern(offset, READ_SIZE))
    sock.shutdown(socket.SHUT_WR)  # the EOF that ends the server's lingering
    return echoed


@pytest.mark.parametrize("model", MODELS)
def test_sigterm_mid_stream_reads_every_echoed_byte_then_eof(model: str) -> None:
    extra = ("--grace", str(GRACE))
    with serving(
        "echo", "tcp://127.0.0.1:0", model=model, extra=extra, start_new_session=True
    ) as server:
        host, _, port = server.url("tcp").removeprefix("tcp://").rpartition(":")
        with socket.create_connection((host, int(port)), timeout=GRACE) as sock:
            sock.sendall(_pattern(0, FIRST))
            # the echo is in our socket, unread (an RST would throw it away)
            assert len(sock.recv(FIRST, socket.MSG_PEEK | socket.MSG_WAITALL)) == FIRST
            with _stopped_then_terminated(server):
                offset = _queue(sock, FIRST, QUEUED)
            sock.settimeout(GRACE)
            assert offset > FIRST + READ_SIZE  # more than the server reads at once waits
            try:
                echoed = _stream_to_eof(sock, offset)
                assert server.proc.wait(GRACE) == 0  # ended by our EOF, within its grace
                assert sock.recv(1) == b""  # its sockets are closed: no RST came either
            except (ConnectionResetError, BrokenPipeError) as exc:
                pytest.fail(f"{model}: the stop reset the connection ({exc})")
            except OSError as exc:  # shutdown() after an RST: ENOTCONN
                pytest.fail(f"{model}: the stop reset the connection ({exc})")
            assert len(echoed) >= FIRST, model
            assert echoed == _pattern(0, len(echoed)), model  # each byte echoed, in order
