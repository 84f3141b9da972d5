"""Behind a load balancer, differentially: what ipcnet does at a stop, an upgrade and a
reload, beside what nginx does (and what sd_notify(3) specifies) in the same situation.

The harness behind these cases (HAProxy in mode http with keep-alive to the servers,
nginx as the reference backend, a bounded keep-alive load through a graceful stop, a
--drain-delay, a SIGUSR2 upgrade, a SIGHUP and a SIGKILLed worker) found the defects
each case pins down:
- a prefork master kept its copies of the listening sockets open until its last worker
  drained, so during a graceful stop the kernel went on completing handshakes that
  nobody would accept: a balancer's connections and checks hung for up to --grace, then
  met a reset. nginx's master closes its listeners when the stop begins: refused at once;
- after a SIGUSR2 hand-over the old master, having told systemd ``MAINPID=<new>``, went
  on to send ``STOPPING=1``. Under ``NotifyAccess=all`` (docs/haproxy.md's recipe)
  systemd accepts it and puts the unit into deactivating: at TimeoutStopSec it kills the
  new master too (and its WATCHDOG=1 would vouch for a new master that hangs). The old
  master is no longer the main process and says nothing more.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipcnet.testing import free_port
from serverkit import Server, _start, children, serving
from test_scale import _log_says, _stop_both

BOUND = 10.0  # seconds a liveness wait may take before the case fails


def _serve_http(root: Path, port: int, *extra: str) -> Server:
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(root), f"tcp://127.0.0.1:{port}"]
    return _start([*argv, "-q", *extra], 1)


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
    except ConnectionResetError:  # queued as the last listener closed: look again
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


def _notifications(sock: socket.socket) -> tuple[int, list[str]]:
    """One sd_notify datagram and its sender's pid (SCM_CREDENTIALS, as systemd reads it)."""
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = struct.unpack("3i", ancillary[0][2])[0]
    return pid, data.decode().split("\n")


@pytest.mark.parametrize("model", [["epoll"], ["prefork", "--workers", "1"]], ids=lambda m: m[0])
def test_after_a_sigusr2_hand_over_the_old_master_tells_systemd_nothing_more(
    model: list[str], tmp_path: Path
) -> None:
    """sd_notify(3): MAINPID= names the service's main process; once the old master said
    ``MAINPID=<new>`` its own ``STOPPING=1`` (or WATCHDOG=1) would speak for a service it
    no longer is."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.settimeout(BOUND)
    argv = [sys.executable, "-m", "ipcnet", "serve", "echo", f"tcp://127.0.0.1:{free_port()}"]
    argv += ["--model", *model]
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"))
    logfile = tmp_path / "log"
    with logfile.open("w") as err:  # the new master inherits it: a file, not a pipe
        old = subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL, env=env)
    new_pid = 0
    try:
        pid, lines = _notifications(sock)
        assert pid == old.pid and "READY=1" in lines  # listening
        os.kill(old.pid, signal.SIGUSR2)
        new_pid = int(_log_says(logfile, r"new master pid (\d+) is serving").group(1))
        assert old.wait(BOUND) == 0
        sock.setblocking(False)
        said: list[list[str]] = []
        while True:
            try:
                pid, lines = _notifications(sock)
            except BlockingIOError:
                break
            if pid == old.pid:
                said.append(lines)
        assert said and said[0] == [f"MAINPID={new_pid}"], said
        assert said[1:] == [], "the old master spoke after MAINPID=<new>"
    finally:
        sock.close()
        _stop_both(old, new_pid)


@pytest.mark.parametrize("model", ["epoll", "thread", "pool", "forkconc", "prefork"])
def test_connections_queued_when_the_stop_comes_are_served_not_reset(model: str) -> None:
    """gunicorn #3397 (issue 14): connections the kernel had queued on the listener when a
    graceful stop began were reset when it closed the listener (the server is stopped
    with SIGSTOP meanwhile, so they wait in the backlog; SIGTERM is handled first when it
    goes on). Now what is queued is accepted before the listener closes, and served."""
    with serving("echo", "tcp://127.0.0.1:0", model=model) as server:
        if model == "prefork":  # both workers listen (a stopped master is not enough)
            deadline = time.monotonic() + 10
            while len(children(server.proc.pid)) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        pids = (
            [server.proc.pid, *children(server.proc.pid)]
            if model == "prefork"
            else [server.proc.pid]
        )
        host, port = server.url("tcp").removeprefix("tcp://").rsplit(":", 1)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        clients = []
        try:
            for i in range(5):
                sock = socket.create_connection((host, int(port)), timeout=20)
                sock.sendall(b"queued %d\n" % i)
                sock.shutdown(socket.SHUT_WR)
                clients.append(sock)
            for pid in pids:
                os.kill(pid, signal.SIGTERM)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        got = []
        for sock in clients:
            with sock:
                data = b""
                try:
                    while chunk := sock.recv(100):
                        data += chunk
                except ConnectionResetError:
                    data += b"<reset>"
                got.append(data)
        assert got == [b"queued %d\n" % i for i in range(5)]
        assert server.proc.wait(20) == 0
