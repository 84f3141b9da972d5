"""``ipcnet bench echo URL``: a closed-loop load client for any echo server.

Role: CONNS connections, spread over forked worker processes, each sends SIZE bytes, reads
back exactly SIZE bytes, compares them with what it sent, records the round-trip time and
sends again, until the deadline; then msgs/s, MB/s, latency percentiles and the CPU-seconds
of client and (``--server-pid``) server. ``measure()`` is the library entry point
(``ipcnet bench models`` uses it).
Rules: every echoed byte is verified (each connection has its own pattern and consecutive
messages differ, so stale or crossed data is caught); every wait is bounded (a stalled
server is reported, never waited on forever); connections are opened with
``ipcnet.connect()`` (clear errors), then driven through the raw socket, the fastest path
(``--client channel`` drives the Channel API instead, to compare); workers are forked
before any thread exists and always reaped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    import socket
    from array import array

    from ipcnet.channel import Channel

KiB = 1024
VARIANTS = 4  # messages per connection cycle through this many different payloads
STALL_TIMEOUT = 10.0  # seconds without a reply before a connection counts as stalled
BLOCKING_MAX = 128 * KiB  # above this a blocking send-then-read loop could deadlock


class EchoError(Exception):
    """The load could not run (nothing listens, bad address, a worker died)."""


@dataclass
class EchoResult:
    """One load run. Rates count only round trips completed inside the window."""

    url: str
    size: int
    conns: int
    processes: int
    client: str  # "raw" sockets or ipcnet "channel"s
    seconds: float  # the measured window
    msgs: int  # round trips completed and verified inside the window
    msgs_per_s: float
    mb_per_s: float  # echoed payload, one direction, 10**6 bytes per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    client_cpu_s: float  # user+system of the worker processes during the window
    server_cpu_s: float | None  # user+system of --server-pid and its descendants
    verified: bool  # every echoed byte matched
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verified and not self.errors

    @property
    def msgs_per_server_cpu_s(self) -> float | None:
        if not self.server_cpu_s:
            return None
        return self.msgs / self.server_cpu_s

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["msgs_per_server_cpu_s"] = self.msgs_per_server_cpu_s
        return data


# --- the server's CPU time from /proc ----------------------------------------------------


def process_tree_cpu(pid: int) -> float:
    """CPU-seconds (user+system, plus reaped children's) of ``pid`` and its descendants.

    Children that already exited count through their parent's cutime/cstime (once the
    parent has waited for them) or as zombies (until then).
    """
    from ipcnet.errors import IPCError
    from ipcnet.transports import procfs

    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    own: dict[int, int] = {}
    for name in procfs.listdir("/proc") or ():
        if not name.isdigit():
            continue
        try:
            stat = procfs.read_bytes(f"/proc/{name}/stat")
        except IPCError:
            continue  # unreadable: not ours to count
        if stat is None:
            continue  # exited meanwhile
        fields = stat[stat.rindex(b")") + 2 :].split()
        # fields[0] is field 3 (state): ppid is field 4; utime..cstime are fields 14..17
        p = int(name)
        children.setdefault(int(fields[1]), []).append(p)
        own[p] = sum(int(x) for x in fields[11:15])
    if pid not in own:
        raise EchoError(f"no process {pid} (--server-pid)")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += own.get(p, 0)
        todo.extend(children.get(p, ()))
    return total / ticks


# --- one worker process ------------------------------------------------------------------


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


@dataclass
class _WorkerReport:
    msgs: int = 0
    cpu_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    latencies: bytes = b""  # array('d') of seconds, machine order


def _cpu_self() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _run_blocking(
    conn_id: int, sock: socket.socket, ch: Channel | None, size: int, deadline: float
) -> tuple[int, array[float], list[str]]:
    """One connection, blocking calls: send, read until SIZE bytes, compare, repeat."""
    from array import array

    msgs = _patterns(conn_id, size)
    lat: array[float] = array("d")
    record = lat.append
    buf = bytearray(size)
    view = memoryview(buf)
    clock = time.perf_counter
    sendall, recv_into = sock.sendall, sock.recv_into
    if ch is not None:
        sendall, recv_into = ch.write, ch.readinto  # type: ignore[assignment]
    n = 0
    count = 0
    while True:
        msg = msgs[n % VARIANTS]
        t0 = clock()
        sendall(msg)
        got = recv_into(buf)
        while got < size:
            k = recv_into(view[got:])
            if k == 0:
                return (
                    count,
                    lat,
                    [f"server closed connection {conn_id} after {got} of {size} bytes"],
                )
            got += k
        t1 = clock()
        if buf != msg:
            return count, lat, [_mismatch(conn_id, n, msg, buf)]
        n += 1
        if t1 > deadline:
            return count, lat, []
        record(t1 - t0)
        count += 1


def _conn_states(first_id: int, socks: list[socket.socket], size: int) -> dict[int, list[Any]]:
    """Per fd, non-blocking: [conn_id, socket, patterns, message number, send view,
    received, t0, buf, view of buf] (a list: the hot loop indexes it)."""
    state: dict[int, list[Any]] = {}
    for i, sock in enumerate(socks):
        sock.setblocking(False)
        buf = bytearray(size)
        patterns = _patterns(first_id + i, size)
        state[sock.fileno()] = [first_id + i, sock, patterns, 0, None, 0, 0.0, buf, memoryview(buf)]
    return state


def _run_multiplexed(
    first_id: int, socks: list[socket.socket], size: int, deadline: float
) -> tuple[int, array[float], list[str]]:
    """Several connections (or big messages) in one process: one epoll, non-blocking."""
    import select
    from array import array

    lat: array[float] = array("d")
    clock = time.perf_counter
    ep = select.epoll()
    IN, OUT = select.EPOLLIN, select.EPOLLOUT
    state = _conn_states(first_id, socks, size)
    count = 0
    errors: list[str] = []
    active = len(state)

    def start(fd: int, s: list[Any]) -> None:
        msg = s[2][s[3] % VARIANTS]
        s[5] = 0
        s[6] = clock()
        try:
            sent = s[1].send(msg)
        except BlockingIOError:
            sent = 0
        if sent < size:
            s[4] = memoryview(msg)[sent:]
            ep.modify(fd, IN | OUT)
        else:
            s[4] = None

    try:
        for fd, s in state.items():
            ep.register(fd, IN)
            start(fd, s)
        while active:
            events = ep.poll(STALL_TIMEOUT)
            if not events:
                errors.append(f"no reply for {STALL_TIMEOUT:g} s (is the server serving?)")
                break
            for fd, ev in events:
                s = state[fd]
                if ev & OUT and s[4] is not None:
                    try:
                        sent = s[1].send(s[4])
                    except BlockingIOError:
                        sent = 0
                    s[4] = s[4][sent:] if sent < len(s[4]) else None
                    if s[4] is None:
                        ep.modify(fd, IN)
                if not ev & (IN | select.EPOLLERR | select.EPOLLHUP):
                    continue
                try:
                    k = s[1].recv_into(s[8][s[5] :])
                except BlockingIOError:
                    continue
                if k == 0:
                    errors.append(f"server closed connection {s[0]} after {s[5]} of {size} bytes")
                    ep.unregister(fd)
                    active -= 1
                    continue
                s[5] += k
                if s[5] < size:
                    continue
                t1 = clock()
                msg = s[2][s[3] % VARIANTS]
                if s[7] != msg:
                    errors.append(_mismatch(s[0], s[3], msg, s[7]))
                    return count, lat, errors
                s[3] += 1
                if t1 > deadline:
                    ep.unregister(fd)
                    active -= 1
                    continue
                lat.append(t1 - s[6])
                count += 1
                start(fd, s)
    finally:
        ep.close()
    return count, lat, errors


def _worker(
    url: str,
    first_id: int,
    nconns: int,
    size: int,
    cpu: int | None,
    client: str,
    connect_timeout: float,
    out: BinaryIO,
    go_fd: int,
) -> None:
    """Body of a forked worker: connect, say ready, wait for go, run, report, exit."""
    import pickle
    import socket
    import struct

    from ipcnet import connect
    from ipcnet.errors import Busy, IPCError

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    channels: list[Channel] = []
    try:
        for _ in range(nconns):
            channels.append(connect(url, connect_timeout=connect_timeout))
    except IPCError as exc:
        out.write(f"error: {exc}\n".encode())
        out.flush()
        return
    socks = []
    for ch in channels:
        sock = socket.socket(fileno=os.dup(ch.fileno()))
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # a bounded wait without Python's timeout mode (which polls before every call)
        stall = struct.pack("ll", int(STALL_TIMEOUT), 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, stall)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, stall)
        socks.append(sock)
    out.write(b"ready\n")
    out.flush()
    go = os.read(go_fd, 16)
    if len(go) != 16:
        return  # the parent gave up
    start, deadline = struct.unpack("dd", go)
    time.sleep(max(0.0, start - time.perf_counter()))
    cpu0 = _cpu_self()
    report = _WorkerReport()
    try:
        if nconns == 1 and (size <= BLOCKING_MAX or client == "channel"):
            chosen = channels[0] if client == "channel" else None
            count, lat, errors = _run_blocking(first_id, socks[0], chosen, size, deadline)
        else:
            count, lat, errors = _run_multiplexed(first_id, socks, size, deadline)
        report.msgs, report.latencies, report.errors = count, lat.tobytes(), errors
    except (OSError, IPCError) as exc:
        stalled = isinstance(exc, BlockingIOError | TimeoutError | Busy)
        why = f"no reply for {STALL_TIMEOUT:g} s" if stalled else str(exc) or type(exc).__name__
        report.errors.append(f"connection {first_id}..{first_id + nconns - 1}: {why}")
    report.cpu_s = _cpu_self() - cpu0
    for sock in socks:
        sock.close()
    for ch in channels:
        ch.close()
    pickle.dump(report, out)
    out.flush()


# --- the coordinator ---------------------------------------------------------------------


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def measure(
    url: str,
    *,
    conns: int = 1,
    seconds: float = 2.0,
    size: int = KiB,
    processes: int | None = None,
    cpu: int | None = None,
    server_pid: int | None = None,
    client: str = "raw",
    connect_timeout: float = 5.0,
) -> EchoResult:
    """Run one closed-loop load against the echo server at ``url``.

    ``processes`` defaults to 1 when pinned to one ``cpu`` (one epoll loop is the cheapest
    client there), else min(conns, CPUs). Raises EchoError when the load cannot start;
    verification and stall errors come back in ``EchoResult.errors``.
    """
    from array import array

    from ipcnet.addresses import parse
    from ipcnet.errors import IPCError

    try:
        parse(url)
    except IPCError as exc:
        raise EchoError(str(exc)) from None
    if conns < 1 or size < 1 or seconds <= 0:
        raise EchoError("conns, size and seconds must be positive")
    if client not in ("raw", "channel"):
        raise EchoError(f"unknown client {client!r} (raw or channel)")
    if cpu is not None and cpu not in os.sched_getaffinity(0):
        raise EchoError(f"cpu {cpu} is not available to this process")
    if processes is None:
        processes = 1 if cpu is not None else min(conns, len(os.sched_getaffinity(0)))
    if client == "channel":
        processes = conns  # the Channel API is blocking: one connection per process
    processes = max(1, min(processes, conns))
    if server_pid is not None:
        process_tree_cpu(server_pid)  # fail early on a wrong pid

    shares = [conns // processes + (1 if i < conns % processes else 0) for i in range(processes)]
    reports, server_cpu = _drive(
        url, shares, size, seconds, cpu, client, connect_timeout, server_pid
    )
    lat: array[float] = array("d")
    for rep in reports:
        lat.frombytes(rep.latencies)
    ordered = sorted(lat)
    msgs = sum(r.msgs for r in reports)
    errors = [e for r in reports for e in r.errors]
    return EchoResult(
        url=url,
        size=size,
        conns=conns,
        processes=processes,
        client=client,
        seconds=seconds,
        msgs=msgs,
        msgs_per_s=msgs / seconds,
        mb_per_s=msgs * size / seconds / 1e6,
        p50_ms=_percentile(ordered, 50) * 1e3,
        p90_ms=_percentile(ordered, 90) * 1e3,
        p99_ms=_percentile(ordered, 99) * 1e3,
        max_ms=(ordered[-1] if ordered else 0.0) * 1e3,
        client_cpu_s=sum(r.cpu_s for r in reports),
        server_cpu_s=server_cpu,
        verified=not any(e.startswith("echo mismatch") for e in errors),
        errors=errors,
    )


def _drive(
    url: str,
    shares: list[int],
    size: int,
    seconds: float,
    cpu: int | None,
    client: str,
    connect_timeout: float,
    server_pid: int | None,
) -> tuple[list[_WorkerReport], float | None]:
    """Fork one worker per share of the connections, start them together, collect their
    reports and the server's CPU-seconds over the window; always reap every worker."""
    import struct

    workers: list[tuple[int, BinaryIO, int]] = []  # pid, result reader, go writer
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        first = 0
        for share in shares:
            job = (url, first, share, size, cpu, client, connect_timeout)
            workers.append(_fork_worker(workers, *job))
            first += share
        problems = []
        for _, reader, _ in workers:
            line = reader.readline().decode(errors="replace").strip()
            if line != "ready":
                problems.append(line.removeprefix("error: ") or "a load worker died")
        if problems:
            raise EchoError(problems[0])
        start = time.perf_counter() + 0.05
        deadline = start + seconds
        for _, _, go_w in workers:
            os.write(go_w, struct.pack("dd", start, deadline))
        time.sleep(max(0.0, start - time.perf_counter()))
        server0 = process_tree_cpu(server_pid) if server_pid is not None else 0.0
        time.sleep(max(0.0, deadline - time.perf_counter()))
        server1 = process_tree_cpu(server_pid) if server_pid is not None else 0.0
        reports = [_report(reader) for _, reader, _ in workers]
        return reports, None if server_pid is None else server1 - server0
    finally:
        for _, reader, go_w in workers:
            reader.close()
            os.close(go_w)
        for pid, _, _ in workers:
            _reap(pid, timeout=STALL_TIMEOUT + 5)


def _report(reader: BinaryIO) -> _WorkerReport:
    import pickle

    try:
        report: _WorkerReport = pickle.load(reader)
    except EOFError:
        return _WorkerReport(errors=["a load worker died (see its traceback)"])
    return report


def _fork_worker(
    workers: list[tuple[int, BinaryIO, int]],
    url: str,
    first: int,
    share: int,
    size: int,
    cpu: int | None,
    client: str,
    connect_timeout: float,
) -> tuple[int, BinaryIO, int]:
    """Fork the worker of connections ``first``.. ``first + share - 1``: pid, reader, go fd."""
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 0
        try:
            os.close(r)
            os.close(go_w)
            for _, other, other_go in workers:
                other.close()
                os.close(other_go)
            with os.fdopen(w, "wb") as out:
                _worker(url, first, share, size, cpu, client, connect_timeout, out, go_r)
        except BaseException:
            code = 1
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(w)
    os.close(go_r)
    return pid, os.fdopen(r, "rb"), go_w


def _reap(pid: int, timeout: float) -> None:
    """Wait for a worker; kill it if it outlives ``timeout``."""
    import signal

    end = time.monotonic() + timeout
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return
        time.sleep(0.01)


# --- command line ------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """'1024', '1k', '10KiB', '1M' -> bytes (k and M are binary)."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = {"k": KiB, "m": KiB * KiB}.get(t[-1:], 1)
    try:
        value = int(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 1024, 10k, 1M)") from None
    if value < 1:
        raise argparse.ArgumentTypeError("size must be at least 1 byte")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL", help="echo server: tcp://HOST:PORT or unix:///PATH")
    parser.add_argument("-c", "--conns", type=int, default=1, help="connections (default 1)")
    parser.add_argument(
        "-d", "--seconds", type=float, default=5.0, help="length of the run (default 5)"
    )
    parser.add_argument(
        "-s", "--size", type=parse_size, default=KiB, help="bytes per message (default 1k)"
    )
    parser.add_argument(
        "-P",
        "--processes",
        type=int,
        help="load processes (default 1 with --cpu, else min(CONNS, CPUs))",
    )
    parser.add_argument("--cpu", type=int, help="pin the load processes to this CPU")
    parser.add_argument(
        "--server-pid",
        type=int,
        metavar="PID",
        help="also report the CPU-seconds of this process and its descendants",
    )
    parser.add_argument(
        "--client",
        choices=("raw", "channel"),
        default="raw",
        help="drive raw sockets (default, fastest) or ipcnet Channels",
    )


def format_result(r: EchoResult) -> str:
    lines = [
        f"{r.url}: {r.conns} conn(s) in {r.processes} process(es), {r.size} B messages, "
        f"{r.seconds:g} s, {r.client} client",
        f"  {r.msgs} msgs  {r.msgs_per_s:,.0f} msgs/s  {r.mb_per_s:,.1f} MB/s",
        f"  latency ms: p50 {r.p50_ms:.3f}  p90 {r.p90_ms:.3f}  p99 {r.p99_ms:.3f}  "
        f"max {r.max_ms:.3f}",
        f"  client CPU {r.client_cpu_s:.2f} s",
    ]
    if r.server_cpu_s is not None:
        per = r.msgs_per_server_cpu_s
        lines[-1] += f"  server CPU {r.server_cpu_s:.2f} s" + (
            f"  ({per:,.0f} msgs per server CPU-second)" if per else ""
        )
    lines.append("  every echoed byte verified" if r.verified else "  VERIFICATION FAILED")
    lines.extend(f"  error: {e}" for e in r.errors)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        result = measure(
            args.url,
            conns=args.conns,
            seconds=args.seconds,
            size=args.size,
            processes=args.processes,
            cpu=args.cpu,
            server_pid=args.server_pid,
            client=args.client,
        )
    except EchoError as exc:
        print(f"ipcnet bench echo: {exc}", file=sys.stderr)
        return 2
    if args.json or args.plot or args.markdown:
        from ipcnet.bench.harness import Result, emit

        per_cpu = [result.msgs_per_server_cpu_s] if result.msgs_per_server_cpu_s else []
        case = f"{result.size} B c={result.conns}"
        row = Result(case, args.url, "msgs/s", [result.msgs_per_s], per_cpu, extra=result.to_json())
        emit(args, [row], "echo: msgs/s")
    if not args.json:
        print(format_result(result))
    if not result.ok:
        for e in result.errors:
            print(f"ipcnet bench echo: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    from ipcnet.bench.harness import parser as bench_parser

    parser = bench_parser("echo")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
