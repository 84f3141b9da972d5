"""Servers under stress: stopping, limits, EMFILE, leaks, zombies, crashes, dead workers."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

import ipcnet
from ipcnet import errors
from serverkit import (
    Server,
    child_states,
    children,
    count_fds,
    count_threads,
    cpu_seconds,
    serving,
    start_slow,
)

BLOCKING_AND_LOOPS = ["iterative", "thread", "pool", "epoll", "asyncio", "forkconc", "prefork"]


@pytest.mark.parametrize("model", BLOCKING_AND_LOOPS)
def test_stop_finishes_in_flight_work_and_closes_idle(model: str) -> None:
    server = start_slow(model, 10.0, "tcp://127.0.0.1:0")
    url = server.url("tcp")
    try:
        busy = ipcnet.connect(url, timeout=10)
        idle = None if model == "iterative" else ipcnet.connect(url, timeout=10)
        if idle is not None:
            idle.write(b"hi\n")
            assert idle.readline() == b"hi\n"
        busy.write(b"sleep 1\n")
        time.sleep(0.3)  # the job is running
        server.proc.send_signal(signal.SIGTERM)
        if idle is not None:
            assert idle.read() == b""  # the idle connection is closed at once
        assert busy.readline() == b"slept 1\n"  # the in-flight job finishes
        assert busy.read() == b""
        assert server.proc.wait(10) == 0
    finally:
        server.stop()


@pytest.mark.parametrize("model", ["thread", "epoll", "asyncio", "prefork"])
def test_second_signal_forces(model: str) -> None:
    server = start_slow(model, 60.0, "tcp://127.0.0.1:0")
    try:
        with ipcnet.connect(server.url("tcp"), timeout=10) as busy:
            busy.write(b"hi\n")  # a worker has this connection (prefork: not only the kernel)
            assert busy.readline() == b"hi\n"
            busy.write(b"sleep 30\n")
            time.sleep(0.3)
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert server.proc.poll() is None, "stopped although a 30 s job runs and grace is 60 s"
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.wait(10) == 0
            assert time.monotonic() - started < 10
    finally:
        server.stop()


def test_stop_signals_until_the_end_still_exit_0() -> None:
    """SIGTERM after SIGTERM until the process is gone (a manager that repeats itself):
    each one is the stop, a force, or too late; none makes the exit a death by SIGTERM,
    not even one arriving while the interpreter shuts down, where CPython puts SIG_DFL
    back for Python handlers."""
    argv = [sys.executable, "-m", "ipcnet", "serve", "echo", "tcp://127.0.0.1:0"]
    for _ in range(3):
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None and "listening on" in proc.stderr.readline()
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.0005)
        assert proc.wait(5) == 0


def test_a_stop_while_prefork_forks_its_workers_reaches_every_worker() -> None:
    """SIGTERM while the master is still forking (systemd stopping a unit that has just
    started): each worker must hear it. A worker forked as the signal came was never
    told, or lost it in CPython's after-fork set-up, and served on until --grace ran out
    (then SIGKILL): the stop took 30 s instead of a moment."""
    argv = [sys.executable, "-m", "ipcnet", "serve", "echo", "tcp://127.0.0.1:0"]
    argv += ["--model", "prefork", "--workers", "8", "--grace", "30"]
    for attempt in range(8):
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None and "listening on" in proc.stderr.readline()
            spawned = f"/proc/{proc.pid}/task/{proc.pid}/children"
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # some of the eight forked, not all
                with open(spawned) as f:
                    if len(f.read().split()) > attempt % 4:
                        break
            time.sleep(attempt * 0.002)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0, f"attempt {attempt}"
        finally:
            if proc.poll() is None:  # hung: its workers, then itself
                for worker in children(proc.pid):
                    os.kill(worker, signal.SIGKILL)
                proc.kill()
                proc.wait()


def test_a_prefork_worker_that_never_stops_is_killed_when_grace_ends() -> None:
    """--grace bounds a stop even for a worker that cannot answer SIGTERM (stopped, stuck
    in a C call): the master waited for it in a blocking waitpid(2) for ever."""
    argv = [sys.executable, "-m", "ipcnet", "serve", "echo", "tcp://127.0.0.1:0"]
    argv += ["--model", "prefork", "--workers", "2", "--grace", "1"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    stuck = 0
    try:
        assert proc.stderr is not None and "listening on" in proc.stderr.readline()
        deadline = time.monotonic() + 10
        while len(workers := children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        stuck = workers[0]
        os.kill(stuck, signal.SIGSTOP)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(8) == 0  # 1 s of grace, then SIGKILL
        assert not os.path.exists(f"/proc/{stuck}")  # killed and reaped
    finally:
        if proc.poll() is None:
            for worker in children(proc.pid):
                os.kill(worker, signal.SIGKILL)
            proc.kill()
            proc.wait()


def test_prefork_worker_takes_systemds_sigterm_and_the_masters_as_one_stop() -> None:
    """systemd (KillMode=control-group) sends SIGTERM to every process of the unit, and
    the master forwards its own: a worker gets two. The second must not force its stop:
    the job in flight still answers, and the server exits 0."""
    server = start_slow("prefork", 60.0, "tcp://127.0.0.1:0")
    try:
        with ipcnet.connect(server.url("tcp"), timeout=10) as busy:
            busy.write(b"hi\n")  # a worker has this connection
            assert busy.readline() == b"hi\n"
            busy.write(b"sleep 1\n")
            time.sleep(0.2)
            for worker in children(server.proc.pid):
                os.kill(worker, signal.SIGTERM)  # systemd's, first
            time.sleep(0.2)
            server.proc.send_signal(signal.SIGTERM)  # the master's, forwarded
            assert busy.readline() == b"slept 1\n"
        assert server.proc.wait(20) == 0
    finally:
        server.stop()


def _limit_fds(n: int):  # type: ignore[no-untyped-def]
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


@pytest.mark.parametrize("model", ["thread", "pool", "epoll", "asyncio"])
def test_accept_survives_emfile_without_spinning(model: str) -> None:
    extra = ("--queue", "200")  # pool: a queue long enough to run out of fds first
    with serving(
        "echo", "tcp://127.0.0.1:0", model=model, extra=extra, preexec_fn=_limit_fds(40)
    ) as server:
        url = server.url("tcp")
        port = int(url.rsplit(":", 1)[1])
        hogs = []
        for _ in range(60):  # more connections than the server has descriptors
            s = socket.socket()
            s.connect(("127.0.0.1", port))
            hogs.append(s)
        time.sleep(0.3)
        before = cpu_seconds(server.proc.pid)
        time.sleep(1.0)
        spent = cpu_seconds(server.proc.pid) - before
        assert spent < 0.5, f"the server burnt {spent:.2f} CPU-seconds in 1 s while out of fds"
        for s in hogs:
            s.close()
        deadline = time.monotonic() + 10
        while True:  # once descriptors are free again, it serves
            try:
                with ipcnet.connect(url, timeout=2) as ch:
                    ch.write(b"back")
                    ch.send_eof()
                    assert ch.read() == b"back"
                    break
            except errors.IPCError:
                assert time.monotonic() < deadline, "never served again after EMFILE"
                time.sleep(0.1)
    assert any("too many open files" in line for line in server.log), server.log


def _stats(path: str) -> dict[str, object]:
    with ipcnet.connect(f"unix://{path}", timeout=5) as ch:
        return json.loads(ch.read())  # type: ignore[no-any-return]


@pytest.mark.parametrize("model", ["thread", "pool", "epoll", "asyncio", "forkconc"])
def test_max_conns_refuses_explicitly(model: str) -> None:
    stats = f"/tmp/ipcnet-stats-{uuid.uuid4().hex[:8]}.sock"
    extra = ("--max-conns", "2", "--stats", f"unix://{stats}")
    with serving("echo", "tcp://127.0.0.1:0", model=model, extra=extra) as server:
        url = server.url("tcp")
        held = [ipcnet.connect(url, timeout=10) for _ in range(2)]
        for ch in held:  # both are really being served
            ch.write(b"x")
            assert ch.read(1) == b"x"
        with ipcnet.connect(url, timeout=10) as third:
            try:
                assert third.read() == b"", "the third connection was served"
            except errors.Reset:
                pass  # closed with data unread: also a refusal
        snapshot = _stats(stats)
        assert snapshot["refused"] == 1, snapshot
        assert snapshot["active"] == 2, snapshot
        for ch in held:
            ch.close()


@pytest.mark.parametrize("model", ["iterative", "thread", "epoll", "asyncio", "fork"])
def test_idle_timeout(model: str) -> None:
    with serving(
        "echo", "tcp://127.0.0.1:0", model=model, extra=("--idle-timeout", "0.5")
    ) as server:
        with ipcnet.connect(server.url("tcp"), timeout=10) as ch:
            ch.write(b"a")
            assert ch.read(1) == b"a"
            started = time.monotonic()
            assert ch.read() == b""  # closed by the server
            assert 0.3 < time.monotonic() - started < 5


def test_no_zombies_after_200_forked_connections() -> None:
    with serving("echo", "tcp://127.0.0.1:0", model="forkconc") as server:
        url = server.url("tcp")
        for i in range(200):
            with ipcnet.connect(url, timeout=10) as ch:
                ch.write(b"%d" % i)
                ch.send_eof()
                assert ch.read() == b"%d" % i
        deadline = time.monotonic() + 5
        while True:
            live = child_states(server.proc.pid)
            zombies = [pid for pid, st in live.items() if st == "Z"]
            if not live:
                break
            assert time.monotonic() < deadline, f"{len(live)} children left, {len(zombies)} zombies"
            time.sleep(0.05)


@pytest.mark.parametrize("model", ["thread", "pool", "epoll", "asyncio"])
def test_no_fd_or_thread_leak_after_2000_connections(model: str) -> None:
    """A descriptor or thread kept per connection would show as ~2000 more of them."""
    with serving("echo", "tcp://127.0.0.1:0", model=model) as server:
        url = server.url("tcp")
        host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])

        def one() -> None:
            with socket.create_connection((host, port)) as s:
                s.sendall(b"ping")
                s.shutdown(socket.SHUT_WR)
                assert s.recv(16) == b"ping"

        one()
        time.sleep(0.2)
        fds, threads = count_fds(server.proc.pid), count_threads(server.proc.pid)
        for _ in range(2_000):
            one()
        time.sleep(0.5)
        assert count_fds(server.proc.pid) <= fds
        assert count_threads(server.proc.pid) <= threads


@pytest.mark.parametrize("model", ["iterative", "fork", "thread", "pool", "epoll", "asyncio"])
def test_crashing_handler_is_logged_and_the_server_keeps_serving(model: str) -> None:
    server = start_slow(model, 5.0, "tcp://127.0.0.1:0")
    try:
        with ipcnet.connect(server.url("tcp"), timeout=10) as ch:
            ch.write(b"boom\n")
            try:
                assert ch.read() == b""
            except errors.Reset:
                pass
        with ipcnet.connect(server.url("tcp"), timeout=10) as ch:
            ch.write(b"still here\n")
            assert ch.readline() == b"still here\n"
    finally:
        assert server.stop() == 0
    assert any("the handler crashed on purpose" in line for line in server.log)


def test_prefork_respawns_a_killed_worker() -> None:
    with serving("echo", "tcp://127.0.0.1:0", model="prefork") as server:
        deadline = time.monotonic() + 10
        while len(workers := children(server.proc.pid)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        victim = workers[0]
        os.kill(victim, signal.SIGKILL)
        while True:
            now = children(server.proc.pid)
            if len(now) == 2 and victim not in now:
                break
            assert time.monotonic() < deadline, f"workers now {now}"
            time.sleep(0.05)
        for _ in range(20):
            with ipcnet.connect(server.url("tcp"), timeout=10) as ch:
                ch.write(b"ok")
                ch.send_eof()
                assert ch.read() == b"ok"
    assert any("respawning" in line for line in server.log)


def test_prefork_workers_stop_when_the_master_is_killed() -> None:
    """SIGKILL leaves the master no chance to forward a stop: the workers must notice on
    their own (PR_SET_PDEATHSIG) instead of serving on as orphans."""
    with serving("echo", "tcp://127.0.0.1:0", model="prefork") as server:
        deadline = time.monotonic() + 10
        while len(workers := children(server.proc.pid)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
        alive = list(workers)
        try:
            while alive := [pid for pid in alive if os.path.exists(f"/proc/{pid}")]:
                assert time.monotonic() < deadline, f"orphaned workers still run: {alive}"
                time.sleep(0.05)
        finally:
            for pid in alive:
                os.kill(pid, signal.SIGKILL)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", int(server.url("tcp").rpartition(":")[2])), 2)
        server.proc.returncode = 0  # SIGKILLed on purpose: serving() checks a clean exit


PIDS_CGROUP = "/sys/fs/cgroup/pids"  # cgroup v1's pids controller (root can make groups)


def _stderr_until(server: Server, text: str, seconds: float = 20) -> str:
    """The server's stderr read (raw, unbuffered) until ``text`` is in it."""
    import select

    assert server.proc.stderr is not None
    fd, got, deadline = server.proc.stderr.fileno(), b"", time.monotonic() + seconds
    while text.encode() not in got:
        left = deadline - time.monotonic()
        assert left > 0 and server.proc.poll() is None, got.decode()
        if select.select([fd], [], [], left)[0]:
            got += os.read(fd, 65536)
    return got.decode()


@pytest.mark.skipif(
    not os.access(PIDS_CGROUP, os.W_OK), reason=f"needs a writable {PIDS_CGROUP} (root)"
)
def test_a_prefork_master_that_cannot_fork_a_worker_serves_on_and_tries_again() -> None:
    """The master is put in a pids cgroup that is full, and a worker is killed: its fork
    fails (EAGAIN, as RLIMIT_NPROC or a unit's TasksMax= make it). The master exited with
    a BlockingIOError traceback, and its other worker with it; now it logs, the other
    worker serves, and the slot is forked once the cgroup has room."""
    group = f"{PIDS_CGROUP}/ipcnet-test-{uuid.uuid4().hex[:8]}"
    with serving("echo", "tcp://127.0.0.1:0", model="prefork") as server:
        deadline = time.monotonic() + 10
        while len(workers := children(server.proc.pid)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.mkdir(group)
        try:
            with open(f"{group}/cgroup.procs", "w") as f:
                f.write(str(server.proc.pid))  # the master only: its workers stay out
            with open(f"{group}/pids.current") as f, open(f"{group}/pids.max", "w") as g:
                g.write(f.read().strip())  # no room for one more task
            os.kill(workers[0], signal.SIGKILL)
            said = _stderr_until(server, "cannot start worker")
            assert "resource temporarily unavailable: fork a child for worker" in said
            host, port = server.url("tcp").removeprefix("tcp://").rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(b"still served\n")
                assert sock.recv(100) == b"still served\n"
            with open(f"{group}/pids.max", "w") as g:
                g.write("max")
            _stderr_until(server, "started at last")
            assert len(children(server.proc.pid)) == 2
        finally:
            _remove_group(group)


def _remove_group(group: str) -> None:
    """Move the group's processes (the master, and a worker it forked there) back to the
    root group, then remove it."""
    for _ in range(100):
        with open(f"{group}/cgroup.procs") as f:
            pids = f.read().split()
        for pid in pids:
            try:
                with open(f"{PIDS_CGROUP}/cgroup.procs", "w") as f:
                    f.write(pid)
            except ProcessLookupError:
                pass  # it ended meanwhile
        try:
            os.rmdir(group)
            return
        except OSError:  # a process forked in it meanwhile: move that one too
            time.sleep(0.01)
    os.rmdir(group)


def test_prefork_boot_failure_stops_the_master() -> None:
    code = (
        "import sys\n"
        "from ipcnet.drivers import serve, ServeConfig\n"
        "from ipcnet.drivers.prefork import BootFailure\n"
        "from ipcnet.protocols.simple import Echo\n"
        "try:\n"
        "    serve(Echo(), ['tcp://127.0.0.1:0'], ServeConfig(model='prefork', inner='no-such-model', workers=3))\n"
        "except BootFailure as exc:\n"
        "    print('boot failure:', exc); sys.exit(3)\n"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 3, out.stderr
    assert "boot failure: worker" in out.stdout
    assert out.stderr.count("failed at start") == 1  # no respawn storm


def test_trace_tells_the_kernel_steps() -> None:
    with serving("echo", "tcp://127.0.0.1:0", model="iterative", extra=("--trace",)) as server:
        with ipcnet.connect(server.url("tcp"), timeout=10) as ch:
            ch.write(b"hello\n")
            ch.send_eof()
            assert ch.read() == b"hello\n"
        time.sleep(0.2)
    text = "\n".join(server.log)
    for step in (
        "socket() -> fd",
        "bind(fd",
        "listen(fd",
        "accept(fd",
        "read(fd",
        "-> 6 bytes",
        "write(fd",
        "0 bytes (EOF",
        "close(fd",
    ):
        assert step in text, f"{step!r} missing from the trace:\n{text}"


def test_stats_socket_counts() -> None:
    stats = f"/tmp/ipcnet-stats-{uuid.uuid4().hex[:8]}.sock"
    with serving(
        "echo", "tcp://127.0.0.1:0", model="epoll", extra=("--stats", f"unix://{stats}")
    ) as server:
        for _ in range(3):
            with ipcnet.connect(server.url("tcp"), timeout=10) as ch:
                ch.write(b"12345")
                ch.send_eof()
                ch.read()
        time.sleep(0.1)
        snap = _stats(stats)
    assert snap["accepted"] == 3 and snap["handled"] == 3 and snap["active"] == 0
    assert snap["bytes_in"] == 15 and snap["bytes_out"] == 15
    assert snap["model"] == "epoll" and snap["service"] == "echo"


def test_threaded_in_process_use() -> None:
    """The library can run a server in a thread and stop it with request_stop()."""
    from ipcnet.drivers import ServeConfig, serve
    from ipcnet.protocols.simple import Echo

    cores = []
    ready = threading.Event()
    t = threading.Thread(
        target=serve,
        args=(Echo(), ["tcp://127.0.0.1:0"], ServeConfig(model="epoll")),
        kwargs={"ready": lambda core: (cores.append(core), ready.set())},
    )
    t.start()
    assert ready.wait(10)
    core = cores[0]
    with ipcnet.connect(core.bound[0], timeout=5) as ch:
        ch.write(b"in-process")
        ch.send_eof()
        assert ch.read() == b"in-process"
    core.request_stop()
    t.join(10)
    assert not t.is_alive()
