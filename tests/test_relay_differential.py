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
  terminates and kills it): every other connection froze for up to 4 s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path

from relay_helpers import recv_all, relay_process

# the first line picks what the child does: "hold" closes its stdout and lives on, deaf
# to SIGTERM (a child slow to exit), anything else is echoed back by cat
CHILD = (
    'exec:sh -c \'read x; if [ "$x" = hold ]; then echo $$ > {pid}; trap "" TERM; '
    'exec sleep 60 >&-; fi; echo "$x"; exec cat\''
)


LINGER_0 = b"\1\0\0\0\0\0\0\0"  # SO_LINGER on, 0 s: close() sends a reset


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


def test_an_exec_child_slow_to_exit_holds_up_no_other_connection(short_tmp: Path) -> None:
    """A connection to an exec: child ends (both ways by EOF, or by a client reset) while
    the child lives on: another connection, on the same event loop (the default model),
    still gets its echo at once, while the child is still there (before, the loop waited
    for it: 2 s, then SIGTERM, 2 s more, then SIGKILL, and only then the echo came)."""
    pidfile = short_tmp / "child.pid"
    with (
        relay_process("tcp://127.0.0.1:0", CHILD.format(pid=pidfile), "-q") as relay,
        socket.create_connection(("127.0.0.1", relay.port), 20) as other,
    ):
        assert _ask(other, b"first\n") == b"first\n"
        for ending in ENDINGS:
            ending_one = socket.create_connection(("127.0.0.1", relay.port), 20)
            ending_one.sendall(b"hold\n")
            assert ending_one.recv(10) == b"", ending  # the child closed its stdout: eof
            pid = int(pidfile.read_text())  # written before it closed its stdout
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
