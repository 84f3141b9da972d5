"""``ipcnet relay`` and ``ipcnet connect`` beside socat, HAProxy (mode tcp) and nginx stream:
how an exec: upstream's failure is reported, half-close and resets, a client gone before
the upstream connect completes, an upstream that accepts and closes or never accepts, UDP
replies from the address the client sent to and a 65507-byte datagram, and ``connect``
with binary data through a pipe.
"""

from __future__ import annotations

import logging
import shutil
import socket
import struct
import threading
import time

import pytest

import ipcnet.relay
from relay_helpers import RelayProcess, recv_all, relay_process, server

needs_socat = pytest.mark.skipif(shutil.which("socat") is None, reason="socat not installed")
needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy missing")
LINGER_0 = struct.pack("ii", 1, 0)


def _exchange(port: int, data: bytes = b"hi\n") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return recv_all(sock)


def _lines_with(relay: RelayProcess, text: str, timeout: float = 5) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := [line for line in relay.lines if text in line]:
            return found
        time.sleep(0.02)
    return []


# --- 5: an exec: upstream's exit status -------------------------------------------------

FAILING = {
    "exit 3": ("sh -c 'cat >/dev/null; echo bye; exit 3'", "exited with status 3"),
    "SIGSEGV": ("sh -c 'cat >/dev/null; echo bye; kill -SEGV $$'", "killed by signal 11"),
}


@pytest.mark.parametrize("model", ["epoll", "thread"])
def test_an_exec_upstream_that_fails_is_logged_with_its_status(model: str) -> None:
    """socat logs ``E waitpid(): child N exited with status 3`` for its SYSTEM:/EXEC:
    child, and ``ipcnet connect exec:...`` exits 1 naming the status; the relay said
    nothing of it: its line read "client eof first, then server eof" like a success. Now
    a line after the connection's names the child, its pid and how it failed; a child
    that exits 0 gets none."""
    for command, said in FAILING.values():
        with relay_process("tcp://127.0.0.1:0", f"exec:{command}", "-m", model) as relay:
            assert _exchange(relay.port) == b"bye\n"
            found = _lines_with(relay, said)
            assert found, (command, relay.lines)
            assert found[0].startswith("ipcnet relay: tcp://127.0.0.1:")
            assert f"-> exec:{command}: the child (pid " in found[0], found
            # the connection's own line came first
            assert relay.lines.index(found[0]) > 0, relay.lines
    with relay_process("tcp://127.0.0.1:0", "exec:cat", "-m", model) as relay:
        assert _exchange(relay.port) == b"hi\n"
        assert relay.wait_lines(1)
        time.sleep(0.3)
        assert not [line for line in relay.lines if "the child" in line], relay.lines


def _closing_children() -> bool:
    return any(t.name == "ipcnet-relay-child" for t in threading.enumerate())


def test_a_child_the_relay_stops_is_no_failure_of_its_own(caplog: pytest.LogCaptureFixture) -> None:
    """A child still running when the relay closes its connection (--idle-timeout here)
    is terminated by the relay: that SIGTERM is ours, not the child's failure."""
    caplog.set_level(logging.INFO, "ipcnet.relay")
    with ipcnet.relay("tcp://127.0.0.1:0", "exec:sleep 30", idle_timeout=0.3) as relay:
        with socket.create_connection(("127.0.0.1", int(relay.address.port or 0))) as sock:
            sock.settimeout(10)
            assert recv_all(sock) == b""
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and (relay.stats["active"] or _closing_children()):
            time.sleep(0.05)
    text = caplog.text
    assert "idle timeout" in text, text
    assert "the child" not in text, text


# --- 1: an upstream that accepts and closes at once ---------------------------------------


def _closes_at_once(conn: socket.socket) -> None:
    """Accepts and closes, reading nothing: what the client sends next is answered with
    an RST by the upstream's kernel."""


@pytest.mark.parametrize("model", ["epoll", "thread"])
def test_an_upstream_that_closes_at_once_and_resets_what_follows_is_logged_as_a_reset(
    model: str,
) -> None:
    """The client reads the EOF, writes once more (the upstream's kernel resets the relay's
    connection), then half-closes: shutting the upstream down fails with ENOTCONN, which
    the relay logged as "server error (transport endpoint is not connected ...)". A
    socket's own send_eof names it for what it is, "connection reset by peer: shut down"
    (``ipcnet connect`` says so in the same case); so does the relay's line now. (HAProxy's
    tcplog calls it a normal end, "--": it never looks at the shutdown's result.)"""
    with (
        server(_closes_at_once) as up,
        relay_process("tcp://127.0.0.1:0", up.url, "-m", model) as relay,
    ):
        with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
            assert sock.recv(10) == b""
            sock.sendall(b"late")
            time.sleep(0.2)  # the upstream's RST is in
            sock.shutdown(socket.SHUT_WR)
            line = relay.wait_lines(1)[-1]
    assert "server eof first, then server reset (connection reset by peer: shut down" in line, line
