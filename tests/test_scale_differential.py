"""Behind a load balancer, differentially: what ipcnet does at a stop, an upgrade and a
reload, beside what nginx does (and what sd_notify(3) specifies) in the same situation.

The harness behind these cases (HAProxy in mode http with keep-alive to the servers,
nginx as the reference backend, a bounded keep-alive load through a graceful stop, a
--drain-delay, a SIGUSR2 upgrade, a SIGHUP and a SIGKILLed worker) found the defects
each case pins down:
- a prefork master kept its copies of the listening sockets open until its last worker
  drained, so during a graceful stop the kernel went on completing handshakes that
  nobody would accept: a balancer's connections and checks hung for up to --grace, then
  met a reset. nginx's master closes its listeners when the stop begins: refused at once.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

from ipcnet.testing import free_port
from serverkit import _start

BOUND = 10.0  # seconds a liveness wait may take before the case fails


def _serve_http(root: Path, port: int, *extra: str, **popen: object):  # type: ignore[no-untyped-def]
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(root), f"tcp://127.0.0.1:{port}"]
    return _start([*argv, "-q", *extra], 1, **popen)


def _held_download(port: int) -> socket.socket:
    """A client that asked for a big file and reads no more than the first bytes: its
    connection stays busy (output owed) through a graceful stop."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(BOUND)
    assert s.recv(12) == b"HTTP/1.1 200"
    return s


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    except TimeoutError:  # a full backlog drops the SYN: accepting still, for nobody
        pass
    return False


def test_prefork_stop_refuses_new_connections_while_workers_drain(tmp_path: Path) -> None:
    """nginx: at a graceful stop the master closes its listeners, so new connections are
    refused (a balancer retries elsewhere at once, its check fails fast) while a busy
    worker drains. ipcnet's prefork master kept them, and the kernel queued connections
    nobody accepted until the last worker ended. --reuse-port: slot 1's sockets are the
    shared layout's, the other slots' the master's alone."""
    (tmp_path / "big.bin").write_bytes(b"x" * (16 << 20))
    port = free_port()
    server = _serve_http(
        tmp_path, port, "--model", "prefork", "--workers", "2", "--reuse-port", "--grace", "60"
    )
    held = _held_download(port)
    try:
        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + BOUND
        while not _refused(port):
            assert time.monotonic() < deadline, "still accepting connections while it drains"
            time.sleep(0.01)
    finally:
        held.close()  # the busy worker's write fails: it ends, and so does the stop
        assert server.stop() == 0, "\n".join(server.log)
