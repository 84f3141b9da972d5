"""A server's life under its operator, audit 6: signals and the service manager, checked
against sd_notify(3) / sd_watchdog_enabled(3) (a fake manager: a unix datagram socket
read with SO_PASSCRED, as systemd reads it) and nginx's and gunicorn's signal handling.

Each case pins a defect the audit found:
- after a SIGUSR2 upgrade the new master inherited ``WATCHDOG_PID=<old master>``, so
  sd_watchdog_enabled's rule ("only honoured if it matches our pid") kept it from ever
  pinging: systemd killed the service at WatchdogSec= after every upgrade;
- a stop (SIGTERM) while a SIGUSR2's new master was still starting stopped the old
  master and left the new one serving on as an orphan (on a unix socket whose file the
  stop had removed): a stop must stop the service;
- SIGQUIT (nginx's graceful stop; systemd's KillSignal=SIGQUIT in nginx-style units)
  was left to its default: the server dumped core, leaving its socket files behind and
  cutting the work in flight;
- a fork/forkconc connection child kept the master's SIGHUP and SIGUSR2 handlers: a
  SIGUSR2 reaching the process group made each child start a new master of its own;
- SIGUSR1 (nginx's and gunicorn's "reopen the log files", what a logrotate postrotate
  sends) killed every server, and ``--access-log FILE`` could not be reopened: after
  logrotate renamed it, the lines went on into the rotated file.
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

import ipcnet
from ipcnet.testing import free_port
from serverkit import _start, children, serving, start_slow
from test_scale import _alive, _log_says, _stop_both, _wait_for

BOUND = 10.0


def _manager(path: Path) -> socket.socket:
    """A fake service manager: NOTIFY_SOCKET, with the sender's credentials."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.settimeout(BOUND)
    return sock


def _notification(sock: socket.socket) -> tuple[int, list[str]]:
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
    return struct.unpack("3i", ancillary[0][2])[0], data.decode().split("\n")


def _ipcnet(*args: str) -> str:
    return " ".join([sys.executable, "-m", "ipcnet", *args])


def test_after_an_upgrade_the_new_master_pings_the_watchdog(tmp_path: Path) -> None:
    """systemd sets WATCHDOG_PID to the main pid; after MAINPID=<new> it expects the
    new master's WATCHDOG=1 (NotifyAccess=main accepts no other)."""
    sock = _manager(tmp_path / "notify")
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="200000")
    logfile = tmp_path / "log"
    command = _ipcnet("serve", "echo", "tcp://127.0.0.1:0", "--grace", "5")
    with logfile.open("w") as err:  # as systemd does: WATCHDOG_PID is the service's pid
        old = subprocess.Popen(["sh", "-c", f"WATCHDOG_PID=$$ exec {command}"], env=env, stderr=err)
    new_pid = 0
    try:
        pid, lines = _notification(sock)
        assert pid == old.pid and "READY=1" in lines
        assert _notification(sock) == (old.pid, ["WATCHDOG=1"])
        os.kill(old.pid, signal.SIGUSR2)
        new_pid = int(_log_says(logfile, r"new master pid (\d+) is serving").group(1))
        deadline = time.monotonic() + 2.0
        while True:
            assert time.monotonic() < deadline, "no WATCHDOG=1 from the new master"
            pid, lines = _notification(sock)
            if pid == new_pid and lines == ["WATCHDOG=1"]:
                break
    finally:
        sock.close()
        _stop_both(old, new_pid)


SLOW_START = """
import os, sys, time
if os.environ.get("IPCNET_LISTEN_FDS"):  # the new master of an upgrade: a slow start
    time.sleep(float(sys.argv.pop(1)))
else:
    sys.argv.pop(1)
from ipcnet.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_stop_during_an_upgrade_stops_the_new_master_too(tmp_path: Path) -> None:
    script = tmp_path / "slow_start.py"
    script.write_text(SLOW_START)
    path = tmp_path / "s.sock"
    argv = [sys.executable, str(script), "3", "serve", "echo", f"unix://{path}", "--grace", "5"]
    logfile = tmp_path / "log"
    with logfile.open("w") as err:
        old = subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL)
    new_pid = 0
    try:
        _log_says(logfile, "listening on")
        os.kill(old.pid, signal.SIGUSR2)
        new_pid = int(_log_says(logfile, r"started a new master, pid (\d+)").group(1))
        os.kill(old.pid, signal.SIGTERM)
        assert old.wait(BOUND) == 0
        assert not _alive(new_pid), "the new master outlived the stopped service"
        assert not path.exists()
        assert "is serving" not in logfile.read_text()
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()
        if new_pid and _alive(new_pid):
            os.kill(new_pid, signal.SIGKILL)
            _wait_for(lambda: not _alive(new_pid), "killed")


@pytest.mark.parametrize("model", ["epoll", "thread", "forkconc", "asyncio", "prefork"])
def test_sigquit_is_a_graceful_stop(model: str, tmp_path: Path) -> None:
    """nginx: QUIT is the graceful shutdown (gunicorn's a quick one; neither dumps core):
    the job in flight answers, the socket file goes, the exit status is 0."""
    path = tmp_path / "s.sock"
    server = start_slow(model, 10.0, f"unix://{path}")
    try:
        with ipcnet.connect(f"unix://{path}", timeout=BOUND) as busy:
            busy.write(b"hi\n")  # a worker has this connection (prefork: not only the kernel)
            assert busy.readline() == b"hi\n"
            busy.write(b"sleep 0.5\n")
            time.sleep(0.2)
            server.proc.send_signal(signal.SIGQUIT)
            assert busy.readline() == b"slept 0.5\n"
        assert server.proc.wait(BOUND) == 0
        assert not path.exists()
    finally:
        server.stop()


@pytest.mark.parametrize("sig", [signal.SIGUSR2, signal.SIGHUP], ids=lambda s: s.name)
def test_a_connection_child_leaves_the_masters_signals_to_the_master(sig: int) -> None:
    with serving("echo", "tcp://127.0.0.1:0", model="forkconc") as server:
        with ipcnet.connect(server.url("tcp"), timeout=BOUND) as held:
            held.write(b"a\n")
            assert held.readline() == b"a\n"
            (child,) = children(server.proc.pid)
            os.kill(child, sig)  # as a signal to the whole process group reaches it
            time.sleep(0.5)
            held.write(b"b\n")
            assert held.readline() == b"b\n"
            assert children(server.proc.pid) == [child]  # no new master beside it
    said = "\n".join(server.log)
    assert "new master" not in said and "SIGHUP" not in said, said


def _get(port: int, target: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        while s.recv(65536):
            pass


@pytest.mark.parametrize("model", ["epoll", "thread", "prefork"])
def test_sigusr1_reopens_the_access_log_after_logrotate_moved_it(
    model: str, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("hi\n")
    log, port = tmp_path / "access.log", free_port()
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(tmp_path)]
    argv += [f"tcp://127.0.0.1:{port}", "--model", model, "--workers", "2"]
    server = _start([*argv, "--access-log", str(log)], 1)
    try:
        for i in range(4):  # prefork: some in each worker
            _get(port, f"/?before={i}")
        log.rename(tmp_path / "access.log.1")  # logrotate's rename, then its postrotate
        server.proc.send_signal(signal.SIGUSR1)
        _wait_for(lambda: log.exists(), "the log reopened")
        time.sleep(0.2)  # the workers' own reopen (prefork: the master passes it on)
        for i in range(4):
            _get(port, f"/?after={i}")
        _wait_for(lambda: log.read_text().count("after=") == 4, "four lines in the new file")
        assert "after=" not in (tmp_path / "access.log.1").read_text()
        assert (tmp_path / "access.log.1").read_text().count("before=") == 4
    finally:
        assert server.stop() == 0, server.log


@pytest.mark.parametrize("command", ["serve", "relay"])
def test_sigusr1_never_ends_a_server_without_a_log_file(command: str) -> None:
    port = free_port()
    if command == "serve":
        argv = [sys.executable, "-m", "ipcnet", "serve", "echo", f"tcp://127.0.0.1:{port}"]
    else:
        argv = [
            sys.executable,
            "-m",
            "ipcnet",
            "relay",
            f"tcp://127.0.0.1:{port}",
            "tcp://127.0.0.1:9",
        ]
    server = _start(argv, 1 if command == "serve" else 0)
    try:
        if command == "relay":  # its line: "ipcnet relay: LISTEN -> TARGET", once it listens
            assert server.proc.stderr is not None and "->" in server.proc.stderr.readline()
        server.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        assert server.proc.poll() is None, "SIGUSR1 ended the server"
    finally:
        assert server.stop() == 0, server.log


def test_a_server_started_with_stop_signals_blocked_still_hears_them() -> None:
    """The signal mask survives exec: a SIGUSR2's new master, started from a thread born
    while prefork's master held SIGTERM blocked around a fork, inherited it blocked; it
    and its workers (which restore the mask they were forked with) never stopped (the
    flaky test_an_upgrade_keeps_the_port_the_kernel_chose_for_port_0[prefork --reuse-port])."""
    argv = [sys.executable, "-m", "ipcnet", "serve", "echo", "tcp://127.0.0.1:0"]
    argv += ["--model", "prefork", "--workers", "2", "--grace", "2"]
    proc = subprocess.Popen(
        argv,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}),
    )
    try:
        assert proc.stderr is not None and "listening on" in proc.stderr.readline()
        _wait_for(lambda: len(children(proc.pid)) == 2, "two workers")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(BOUND) == 0
    finally:
        if proc.poll() is None:
            for worker in children(proc.pid):
                os.kill(worker, signal.SIGKILL)
            proc.kill()
            proc.wait()


def test_a_datagram_relay_speaks_to_its_service_manager_as_serve_does(tmp_path: Path) -> None:
    """A udp relay runs in its own loop, not under ServerCore: it said no READY=1 (a
    Type=notify unit never became ready), SIGHUP stopped it, and SIGUSR1 or SIGUSR2
    killed it. Now: READY=1 with its pid, a reload's RELOADING=1 then READY=1, the two
    user signals answered on stderr, STOPPING=1 and exit 0 at SIGTERM."""
    manager = _manager(tmp_path / "notify")
    argv = [sys.executable, "-m", "ipcnet", "relay", "udp://127.0.0.1:0", "udp://127.0.0.1:9"]
    env = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify"))
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        pid, lines = _notification(manager)
        assert pid == proc.pid and "READY=1" in lines and f"MAINPID={proc.pid}" in lines
        proc.send_signal(signal.SIGHUP)
        assert "RELOADING=1" in _notification(manager)[1]
        assert _notification(manager)[1] == ["READY=1"]
        for sig in (signal.SIGUSR1, signal.SIGUSR2):
            proc.send_signal(sig)
        time.sleep(0.3)
        assert proc.poll() is None, "a signal ended the relay"
        proc.send_signal(signal.SIGTERM)
        assert _notification(manager)[1] == ["STOPPING=1", "STATUS=stopping"]
        assert proc.wait(BOUND) == 0
        assert proc.stderr is not None and "SIGUSR2: nothing to do" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        manager.close()
