"""``ipcnet bench echo URL``: the one closed-loop echo load client (``bench models`` uses it).

Role: CONNS connections over forked workers send SIZE bytes, read SIZE back and send again
until the deadline; msgs/s, MB/s, latency and client/server CPU. Rules: every echoed byte
is verified (patterns differ per connection and message); every wait is bounded.
"""

from __future__ import annotations

import math
import os
import select
import socket
import struct
import sys
import time
from array import array
from collections.abc import Callable
from typing import Any

from ipcnet.bench import harness
from ipcnet.bench.harness import CPUS, Child, Result, emit, parse_size, parser, progress, table

VARIANTS = 4  # messages per connection cycle through this many different payloads
STALL_TIMEOUT = 10.0  # seconds without a reply before a connection counts as stalled
BLOCKING_MAX = 128 * 1024  # above this a blocking send-then-read loop could deadlock
Run = tuple[int, "array[float]", list[str]]  # round trips, latencies (s), errors


class EchoError(Exception):
    """The load could not run (nothing listens, bad address, a worker died)."""


def _patterns(conn_id: int, size: int) -> list[bytes]:
    import random

    base = random.Random(f"ipcnet-echo-{conn_id}").randbytes(size + VARIANTS)
    return [base[i : i + size] for i in range(VARIANTS)]


def _mismatch(conn_id: int, n: int, sent: bytes, got: bytes | bytearray) -> str:
    i = next((k for k in range(len(sent)) if sent[k] != got[k]), len(sent))
    return (
        f"echo mismatch on connection {conn_id}, message {n}: byte {i} of {len(sent)} "
        f"differs (sent 0x{sent[i]:02x}, got 0x{got[i]:02x})"
    )


def _run_blocking(conn_id: int, sock: socket.socket, size: int, deadline: float) -> Run:
    """One connection, blocking calls: send, read until SIZE bytes, compare, repeat."""
    msgs, lat, buf = _patterns(conn_id, size), array("d"), bytearray(size)
    view, clock, record = memoryview(buf), time.perf_counter, lat.append
    sendall, recv_into = sock.sendall, sock.recv_into
    n = 0
    while True:
        msg = msgs[n % VARIANTS]
        t0 = clock()
        sendall(msg)
        got = recv_into(buf)
        while got < size:
            if not (k := recv_into(view[got:])):
                return n, lat, [f"server closed connection {conn_id} after {got} of {size} bytes"]
            got += k
        t1 = clock()
        if buf != msg:
            return n, lat, [_mismatch(conn_id, n, msg, buf)]
        if t1 > deadline:
            return n, lat, []
        record(t1 - t0)
        n += 1


def _run_multiplexed(first_id: int, socks: list[socket.socket], size: int, deadline: float) -> Run:
    """Several connections (or big messages) in one process: one epoll, non-blocking.
    Per fd: [conn_id, socket, patterns, message number, unsent view, received, t0, buf]."""
    lat, clock, ep, count, errors = array("d"), time.perf_counter, select.epoll(), 0, []
    IN, OUT = select.EPOLLIN, select.EPOLLOUT
    state: dict[int, list[Any]] = {}
    for i, sock in enumerate(socks):
        sock.setblocking(False)
        buf = bytearray(size)
        state[sock.fileno()] = [first_id + i, sock, _patterns(first_id + i, size), 0, None, 0]
        state[sock.fileno()] += [0.0, buf, memoryview(buf)]

    def send(fd: int, s: list[Any], data: memoryview) -> None:
        try:
            sent = s[1].send(data)
        except BlockingIOError:
            sent = 0
        was, s[4] = s[4], data[sent:] if sent < len(data) else None
        if (was is None) != (s[4] is None):  # no epoll_ctl per message
            ep.modify(fd, IN | OUT if s[4] is not None else IN)

    try:
        for fd, s in state.items():
            ep.register(fd, IN)
            s[6] = clock()
            send(fd, s, memoryview(s[2][0]))
        while state:
            if not (events := ep.poll(STALL_TIMEOUT)):
                errors.append(f"no reply for {STALL_TIMEOUT:g} s (is the server serving?)")
                break
            for fd, ev in events:
                s = state[fd]
                if ev & OUT and s[4] is not None:
                    send(fd, s, s[4])
                try:
                    k = s[1].recv_into(s[8][s[5] :]) if ev & ~OUT else None
                except BlockingIOError:
                    continue
                if k is None:
                    continue
                s[5] += k
                if k == 0:
                    errors.append(f"server closed connection {s[0]} after {s[5]} of {size} bytes")
                elif s[5] < size:
                    continue
                t1, msg = clock(), s[2][s[3] % VARIANTS]
                if k and s[7] != msg:
                    return count, lat, [*errors, _mismatch(s[0], s[3], msg, s[7])]
                if k == 0 or t1 > deadline:
                    ep.unregister(fd)
                    del state[fd]
                    continue
                lat.append(t1 - s[6])
                count, s[3], s[5], s[6] = count + 1, s[3] + 1, 0, t1
                send(fd, s, memoryview(s[2][s[3] % VARIANTS]))
    finally:
        ep.close()
    return count, lat, errors


def _worker(url: str, first_id: int, nconns: int, size: int, go_fd: int) -> Any:
    """Body of a forked worker: connect, say ready, wait for go, run; (msgs, cpu, lat, errors)."""
    import resource

    from ipcnet import connect
    from ipcnet.errors import Busy, IPCError

    def work(ready: Any) -> tuple[int, float, bytes, list[str]]:
        try:
            channels = [connect(url, connect_timeout=5.0) for _ in range(nconns)]
        except IPCError as exc:
            raise EchoError(str(exc)) from None
        stall = struct.pack("ll", int(STALL_TIMEOUT), 0)  # bounded, without Python's timeout
        socks = [socket.socket(fileno=os.dup(ch.fileno())) for ch in channels]
        for sock in socks:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, stall)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, stall)
        ready()
        if len(go := os.read(go_fd, 16)) != 16:
            return 0, 0.0, b"", ["the load was called off"]
        start, deadline = struct.unpack("dd", go)
        time.sleep(max(0.0, start - time.perf_counter()))
        cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        try:
            if nconns == 1 and size <= BLOCKING_MAX:
                count, lat, errors = _run_blocking(first_id, socks[0], size, deadline)
            else:
                count, lat, errors = _run_multiplexed(first_id, socks, size, deadline)
        except (OSError, IPCError) as exc:
            stalled = isinstance(exc, BlockingIOError | TimeoutError | Busy)
            why = f"no reply for {STALL_TIMEOUT:g} s" if stalled else str(exc) or repr(exc)
            count, lat, errors = 0, array("d"), [f"connection {first_id}..: {why}"]
        cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu0
        for sock in socks:
            sock.close()
        for ch in channels:
            ch.close()
        return count, cpu, lat.tobytes(), errors

    return work


def measure(
    url: str,
    *,
    conns: int = 1,
    seconds: float = 2.0,
    size: int = 1024,
    processes: int | None = None,
    cpu: int | None = None,
    server_pid: int | None = None,
    wait: Callable[[float], None] | None = None,
) -> Result:
    """One closed-loop load against the echo server at ``url``: msgs/s, with MB/s, latency
    percentiles and CPU-seconds in ``extra`` (``ok``: verified and no errors). The load runs
    on the ``cpu``-th CPU (one process, one epoll loop), else on min(conns, CPUs).
    ``wait(until)`` sleeps while it runs (until that ``perf_counter()``)."""
    from ipcnet.addresses import parse
    from ipcnet.errors import IPCError

    try:
        parse(url)
    except IPCError as exc:
        raise EchoError(str(exc)) from None
    if conns < 1 or size < 1 or seconds <= 0:
        raise EchoError("conns, size and seconds must be positive")
    n = max(1, min(processes or (1 if cpu is not None else len(CPUS)), conns))
    shares = [conns // n + (1 if i < conns % n else 0) for i in range(n)]
    go_r, go_w = os.pipe()
    workers: list[Child] = []
    try:
        for i, share in enumerate(shares):
            workers.append(Child(_worker(url, sum(shares[:i]), share, size, go_r), cpu))
        for w in workers:
            try:
                w.wait_ready()
            except RuntimeError as exc:
                raise EchoError(str(exc).removeprefix("EchoError: ")) from None

        def server_cpu() -> float:
            return harness.process_tree_cpu(server_pid) if server_pid else 0.0

        start = time.perf_counter() + 0.05
        os.write(go_w, struct.pack("dd", start, start + seconds) * n)
        time.sleep(max(0.0, start - time.perf_counter()))
        server0 = server_cpu()
        (wait or _sleep_until)(start + seconds)
        server_s = server_cpu() - server0
        reports = [w.result() for w in workers]
    finally:
        os.close(go_w)
        for w in workers:
            w.stop()
        os.close(go_r)
    lat: array[float] = array("d")
    for r in reports:
        lat.frombytes(r[2])
    ordered = sorted(lat) or [0.0]
    msgs, errors = sum(r[0] for r in reports), [e for r in reports for e in r[3]]

    def ms(q: float) -> list[float]:
        return [ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))] * 1e3]

    extra: dict[str, Any] = {"mb_per_s": [msgs * size / seconds / 1e6], "msgs": msgs}
    extra |= {f"p{q}_ms": ms(q / 100) for q in (50, 90, 99)} | {"max_ms": [ordered[-1] * 1e3]}
    extra |= {"client_cpu_s": [sum(r[1] for r in reports)], "errors": errors}
    if server_pid:
        extra["server_cpu_s"] = [server_s]
    extra["verified"] = not any(e.startswith("echo mismatch") for e in errors)
    extra["ok"] = extra["verified"] and not errors
    per_cpu = [msgs / server_s] if server_pid and server_s else []
    case = f"{size} B c={conns}"
    return Result(case, url, "msgs/s", [msgs / seconds], per_cpu, extra=extra)


def _sleep_until(until: float) -> None:
    time.sleep(max(0.0, until - time.perf_counter()))


def _ticking(step: Callable[[str], None], seconds: float, url: str) -> Callable[[float], None]:
    """``measure``'s wait as a step of the progress bar each second of the load."""

    def wait(until: float) -> None:
        n = math.ceil(seconds)
        for k in range(1, n + 1):
            step(f"{url}, second {k} of {n}")
            _sleep_until(min(until, until - seconds + k))

    return wait


def main(argv: list[str] | None = None) -> int:
    p = parser("echo")
    p.add_argument("url", metavar="URL", help="echo server: tcp://HOST:PORT or unix:///PATH")
    p.add_argument("-c", "--conns", type=int, default=1, help="connections (default 1)")
    p.add_argument("-d", "--seconds", type=float, default=5.0, help="length of the run (5)")
    p.add_argument("-s", "--size", type=parse_size, default=1024, help="bytes per message (1k)")
    p.add_argument("-P", "--processes", type=int, help="load processes (min(CONNS, CPUs))")
    p.add_argument("--cpu", type=int, help="pin the load (one process) to this CPU")
    p.add_argument("--server-pid", type=int, metavar="PID", help="also this CPU time (+children)")
    args = p.parse_args(argv)
    try:
        if args.cpu is not None and args.cpu not in CPUS:
            raise EchoError(f"cpu {args.cpu} is not available to this process")
        if args.server_pid is not None and not os.path.exists(f"/proc/{args.server_pid}"):
            raise EchoError(f"no process {args.server_pid} (--server-pid)")
        cpu = None if args.cpu is None else CPUS.index(args.cpu)
        load = {k: getattr(args, k) for k in ("conns", "seconds", "size", "processes")}
        with progress(math.ceil(args.seconds), "echo") as step:
            wait = _ticking(step, args.seconds, args.url)
            result = measure(args.url, cpu=cpu, server_pid=args.server_pid, wait=wait, **load)
    except EchoError as exc:
        print(f"ipcnet bench echo: {exc}", file=sys.stderr)
        return 2
    verified = "every echoed byte verified" if result.extra["verified"] else "VERIFICATION FAILED"
    text = f"{args.seconds:g} s, {result.extra['msgs']} messages; {verified}"
    emit(args, [result], "echo: msgs/s", text=f"{table([result])}\n{text}")
    for e in result.extra["errors"]:
        print(f"ipcnet bench echo: {e}", file=sys.stderr)
    return 0 if result.extra["ok"] else 1
