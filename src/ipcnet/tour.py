"""The seeds' tour, runnable: one message through each IPC mechanism and back.

Role: for each transport, fork a child that plays the other process (it echoes one
message), time the round trip in the parent, and name the kernel objects the parent used
(``fd N -> socket:[inode]`` from /proc/self/fd, as seed 004 reads them). Rules: every child
is waited for (no zombies), and killed first when the stop is interrupted; every temporary
path is removed; one failing transport is
reported in its row and the tour goes on.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from ipcnet.channel import Channel, connect, listen, open_datagram, pipe, socketpair
from ipcnet.errors import IPCError, NoSuchSocket
from ipcnet.transports import DatagramEndpoint, procfs

MESSAGE = b"hello through the kernel\n"
ROUNDS = 21  # round trips per transport; the median is shown (the first one wakes the child)


@dataclass(frozen=True)
class Stop:
    transport: str
    sent: int
    received: int
    seconds: float
    objects: tuple[str, ...]
    error: str | None = None


def kernel_object(fd: int) -> str:
    """What /proc/self/fd says descriptor ``fd`` is: socket:[N], pipe:[N] or a path."""
    try:
        target = procfs.readlink(f"/proc/self/fd/{fd}")
    except IPCError:
        target = None
    return f"fd {fd} -> {target or '?'}"


_CHILDREN: set[int] = set()  # forked and not yet reaped


def _child(work: Callable[[], None]) -> int:
    """Fork; the child runs ``work`` and exits 0 (1 on any error) without returning."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    _CHILDREN.add(pid)
    return pid


def _reap(pid: int) -> None:
    """Wait for a child; if an exception is on its way out of the stop (Ctrl-C, or a signal
    sent to this process alone, as ``timeout -s INT`` sends it), kill the child first: it
    may be waiting for a peer that will now never come (an accept, a read), and the
    tour waited for it forever."""
    if sys.exc_info()[0] is not None:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    _CHILDREN.discard(pid)


def run_stop(name: str) -> Stop:
    """One stop of the tour; if anything ends it early, even between a fork and the
    ``try`` that reaps the child, every child it left is killed and reaped."""
    try:
        return STOPS[name]()
    except BaseException:
        for pid in list(_CHILDREN):
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
        raise


def _echo(inbox: Channel, outbox: Channel) -> None:
    for line in inbox:
        outbox.write(line)


def _echo_peer(ch: Channel) -> None:
    _echo(ch, ch)


def _time_stream(name: str, out: Channel, back: Channel, objects: tuple[str, ...]) -> Stop:
    times, reply = [], b""
    for _ in range(ROUNDS):
        start = time.perf_counter()
        out.write(MESSAGE)
        reply = back.readline()
        times.append(time.perf_counter() - start)
        if reply != MESSAGE:
            break
    ok = reply == MESSAGE
    return Stop(
        name,
        len(MESSAGE),
        len(reply),
        statistics.median(times),
        objects,
        None if ok else "wrong reply",
    )


@contextmanager
def _scratch_dir() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="ipcnet-tour-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def pipe_and_fork() -> Stop:
    down_r, down_w = pipe()
    up_r, up_w = pipe()

    def child() -> None:
        down_w.close()
        up_r.close()
        _echo(down_r, up_w)

    pid = _child(child)
    down_r.close()
    up_w.close()
    try:
        objs = (kernel_object(down_w.fileno()), kernel_object(up_r.fileno()))
        return _time_stream("pipe+fork", down_w, up_r, objs)
    finally:
        down_w.close()
        up_r.close()
        _reap(pid)


def fifo() -> Stop:
    with _scratch_dir() as folder:
        down, up = f"fifo://{folder}/down", f"fifo://{folder}/up"
        os.mkfifo(f"{folder}/down", 0o600)
        os.mkfifo(f"{folder}/up", 0o600)

        def child() -> None:
            with listen(down) as inbox:
                inbox.timeout = 10
                with inbox.accept() as reader, connect(up, connect_timeout=10) as writer:
                    _echo(reader, writer)

        pid = _child(child)
        try:
            with connect(down, connect_timeout=10) as out, listen(up) as inbox:
                inbox.timeout = 10
                with inbox.accept() as back:
                    objs = (kernel_object(out.fileno()), kernel_object(back.fileno()))
                    return _time_stream("fifo", out, back, objs)
        finally:
            _reap(pid)


def socket_pair() -> Stop:
    a, b = socketpair()

    def child() -> None:
        a.close()
        _echo(b, b)

    pid = _child(child)
    b.close()
    try:
        return _time_stream("socketpair", a, a, (kernel_object(a.fileno()),))
    finally:
        a.close()
        _reap(pid)


def _listen_and_connect(name: str, url: str) -> Stop:
    with listen(url) as server:
        pid = _child(lambda: _echo_peer(server.accept()))
        try:
            with connect(server.address, connect_timeout=10) as ch:
                objs = (kernel_object(server.fileno()) + " (listening)", kernel_object(ch.fileno()))
                return _time_stream(name, ch, ch, objs)
        finally:
            _reap(pid)


def udp() -> Stop:
    with open_datagram("udp4://127.0.0.1:0", listen=True) as server:

        def child() -> None:
            for _ in range(ROUNDS):
                data, sender = server.recv()
                server.send(data, to=sender)

        pid = _child(child)
        try:
            with open_datagram(server.where, timeout=10) as client:
                return _time_datagram(
                    "udp", client, (kernel_object(server.fileno()), kernel_object(client.fileno()))
                )
        finally:
            _reap(pid)


def _time_datagram(name: str, client: DatagramEndpoint, objs: tuple[str, ...]) -> Stop:
    times, reply = [], b""
    for _ in range(ROUNDS):
        start = time.perf_counter()
        client.send(MESSAGE)
        reply, _ = client.recv()
        times.append(time.perf_counter() - start)
    ok = reply == MESSAGE
    return Stop(
        name,
        len(MESSAGE),
        len(reply),
        statistics.median(times),
        objs,
        None if ok else "wrong reply",
    )


def unix_socket() -> Stop:
    with _scratch_dir() as folder:  # the socket file goes with it, however the stop ends
        return _listen_and_connect("unix", f"unix://{folder}/tour.sock")


# --- the rest of seed 002 section 8: shared memory, queues, semaphores, signals (issue 13) ---


def shared_memory() -> Stop:
    from ipcnet.channel import shm_pair

    a, b = shm_pair(ring=65536)

    def child() -> None:
        a.close()
        _echo(b, b)

    pid = _child(child)
    b.close()
    try:
        memfd = next(
            (
                f"{kernel_object(int(fd))}"
                for fd in os.listdir("/proc/self/fd")
                if "memfd:" in _readlink(int(fd))
            ),
            "memfd ?",
        )
        return _time_stream("shm", a, a, (memfd, "eventfds only to wake a sleeper"))
    finally:
        a.close()
        _reap(pid)


def _readlink(fd: int) -> str:
    from ipcnet.transports import procfs

    return procfs.readlink(f"/proc/self/fd/{fd}") or ""


def message_queue() -> Stop:
    from ipcnet.transports import mq

    names = [f"mq:///ipcnet-tour-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    ends: list[DatagramEndpoint] = []  # a signal may end the stop between any two lines:
    try:  # every queue made is closed and removed (a queue left holds the user's quota)
        for name, listen in zip(names * 2, (True, True, False, False), strict=True):
            ends.append(open_datagram(name, listen=listen, timeout=10))
        down_in, up_in, down_out, up_out = ends

        def child() -> None:
            for _ in range(ROUNDS):
                up_out.send(down_in.recv()[0])

        pid = _child(child)
        try:
            objs = (
                f"{kernel_object(down_out.fileno())} (queue descriptor)",
                kernel_object(up_in.fileno()),
            )
            return _time_datagram_pair("mq", down_out, up_in, objs)
        finally:
            _reap(pid)
    finally:
        for end in ends:
            end.close()
        for name in names:
            with suppress(NoSuchSocket):  # not made: the signal came first
                mq.remove(name)


def _time_datagram_pair(
    name: str, out: DatagramEndpoint, back: DatagramEndpoint, objs: tuple[str, ...]
) -> Stop:
    times, reply = [], b""
    for _ in range(ROUNDS):
        start = time.perf_counter()
        out.send(MESSAGE)
        reply, _ = back.recv()
        times.append(time.perf_counter() - start)
    return Stop(
        name,
        len(MESSAGE),
        len(reply),
        statistics.median(times),
        objs,
        None if reply == MESSAGE else "wrong reply",
    )


def semaphore(workers: int = 4, rounds: int = 250) -> Stop:
    """N processes add 1 to a counter in shared memory, each under the semaphore."""
    import mmap
    import struct

    from ipcnet.transports.semaphore import SharedSemaphore

    sem = SharedSemaphore(1)
    counter = mmap.mmap(-1, 8, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)

    def work() -> None:
        for _ in range(rounds):
            with sem:
                (n,) = struct.unpack_from("q", counter)
                struct.pack_into("q", counter, 0, n + 1)

    start = time.perf_counter()
    pids: list[int] = []
    try:
        for _ in range(workers):
            pids.append(_child(work))
    finally:
        for pid in pids:
            _reap(pid)
    seconds = time.perf_counter() - start
    total = int(struct.unpack_from("q", counter)[0])
    want = workers * rounds
    sem.close()
    text = f"{workers} processes x {rounds} increments under one semaphore: total {total}"
    return Stop(
        "semaphore",
        want,
        total,
        seconds,
        (text,),
        None if total == want else f"lost updates: {total} of {want}",
    )


def signal_child() -> Stop:
    """The parent signals a child; the child says who signalled it (signalfd)."""
    from ipcnet.transports.signals import send_signal, signals

    ready_r, ready_w = os.pipe()
    said_r, said_w = os.pipe()

    def child() -> None:
        with signals(signal.SIGUSR1) as source:
            os.write(ready_w, b"r")
            event = source.read(timeout=10)
            os.write(said_w, f"{event.name} from pid {event.pid} uid {event.uid}".encode())

    pid = _child(child)
    try:
        os.read(ready_r, 1)
        start = time.perf_counter()
        send_signal(pid, signal.SIGUSR1)
        said = os.read(said_r, 200).decode()
        seconds = time.perf_counter() - start
    finally:
        _reap(pid)
        for fd in (ready_r, ready_w, said_r, said_w):
            os.close(fd)
    want = f"SIGUSR1 from pid {os.getpid()} uid {os.getuid()}"
    return Stop(
        "signal",
        1,
        1 if said == want else 0,
        seconds,
        (f"child {pid} says: {said}",),
        None if said == want else f"child said {said!r}",
    )


# --- end of the issue 13 stops ---


STOPS: dict[str, Callable[[], Stop]] = {
    "pipe+fork": pipe_and_fork,
    "fifo": fifo,
    "socketpair": socket_pair,
    "unix": unix_socket,
    "unix abstract": lambda: _listen_and_connect(
        "unix abstract", f"unix://@ipcnet-tour-{uuid.uuid4().hex[:12]}"
    ),
    "tcp4": lambda: _listen_and_connect("tcp4", "tcp4://127.0.0.1:0"),
    "tcp6": lambda: _listen_and_connect("tcp6", "tcp6://[::1]:0"),
    "udp": udp,
    "shm": shared_memory,  # issue 13: the rest of seed 002 section 8
    "mq": message_queue,
    "semaphore": semaphore,
    "signal": signal_child,
}


def _xdp() -> Stop:  # issue 16: XDP drops a datagram, then a live rule lets it through
    from ipcnet.xdp import scene

    return Stop("udp+xdp", *scene.run(MESSAGE))


if os.geteuid() == 0 and shutil.which("clang"):  # root with the compiler: offer it
    STOPS["udp+xdp"] = _xdp


def run_tour() -> Iterator[Stop]:
    """Each stop in turn; an unavailable transport (no IPv6, say) becomes a row with its error."""
    for name in STOPS:
        try:
            yield run_stop(name)
        except IPCError as exc:
            yield Stop(name, len(MESSAGE), 0, 0.0, (), str(exc))
