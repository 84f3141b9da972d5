"""``ipcnet bench transports``: bulk throughput of each transport, ipcnet beside a plain loop.

Role: move SIZE bytes in CHUNK-sized writes from a forked writer to the reading parent,
once through ipcnet Channels (``write`` / ``readinto``) and once through a plain
``os.write`` / ``os.read`` loop on descriptors of the same kind and options (pipe size,
TCP_NODELAY), rounds interleaved so both see the same machine. Rules: writer and reader
are pinned to different CPUs when there are two; every byte count is checked; medians and
ranges are reported.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ipcnet.channel import Channel, connect, listen, pipe, socketpair
from ipcnet.transports.pipes import PIPE_SIZE

GiB = 1 << 30
KINDS = ("pipe", "fifo", "socketpair", "unix", "tcp", "shm")


@dataclass
class Result:
    kind: str
    ours: list[float]
    plain: list[float]

    def row(self) -> dict[str, object]:
        ours, plain = statistics.median(self.ours), statistics.median(self.plain)
        return {
            "transport": self.kind,
            "ipcnet_gib_s": round(ours, 3),
            "ipcnet_range": [round(min(self.ours), 3), round(max(self.ours), 3)],
            "plain_gib_s": round(plain, 3),
            "plain_range": [round(min(self.plain), 3), round(max(self.plain), 3)],
            "ratio": round(ours / plain, 3),
        }


_CPUS = sorted(os.sched_getaffinity(0))  # read once: a pinned parent's own mask is one CPU


def _pin(cpu: int) -> None:
    cpus = _CPUS
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})


# --- descriptor pairs for the plain loop: (read fd, write fd), blocking ------------------


def _plain_fds(kind: str, folder: str) -> tuple[int, int]:
    if kind == "shm":  # shm has no plain descriptor loop: its goal is beating a plain pipe
        kind = "pipe"
    if kind == "pipe":
        r, w = os.pipe()
        fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
        return r, w
    if kind == "fifo":
        path = os.path.join(folder, "plain-fifo")
        os.mkfifo(path)
        r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        w = os.open(path, os.O_WRONLY)
        os.set_blocking(r, True)
        fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)  # as ipcnet's fifos
        os.unlink(path)
        return r, w
    if kind == "socketpair":
        a, b = socket.socketpair()
        return a.detach(), b.detach()
    family, addr = (
        (socket.AF_UNIX, os.path.join(folder, "plain.sock"))
        if kind == "unix"
        else (socket.AF_INET, ("127.0.0.1", 0))
    )
    server = socket.socket(family)
    server.bind(addr)
    server.listen(1)
    client = socket.socket(family)
    client.connect(server.getsockname())
    conn, _ = server.accept()
    server.close()
    if kind == "tcp":  # the same socket options as ipcnet's tcp channels
        for s in (client, conn):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if kind == "unix":
        os.unlink(addr)  # type: ignore[arg-type]
    return conn.detach(), client.detach()


def _ipcnet_channels(kind: str, folder: str) -> tuple[Channel, Channel]:
    if kind == "pipe":
        return pipe()
    if kind == "shm":  # the shared-memory ring (issue 13)
        from ipcnet.channel import shm_pair

        return shm_pair()
    if kind == "fifo":
        url = f"fifo://{folder}/fifo"
        with listen(url) as inbox:  # accept() blocks in open(2) until the writer opens
            inbox.timeout = 10
            opened: list[Channel] = []
            opener = threading.Thread(
                target=lambda: opened.append(connect(url, connect_timeout=10))
            )
            opener.start()
            reader = inbox.accept()
            opener.join()
        return reader, opened[0]
    if kind == "socketpair":
        return socketpair()
    url = f"unix://{folder}/ipcnet.sock" if kind == "unix" else "tcp://127.0.0.1:0"
    with listen(url) as server:
        writer = connect(server.address)
        reader = server.accept()
    return reader, writer


# --- one run -------------------------------------------------------------------------------


def _run(kind: str, mode: str, size: int, chunk: int, folder: str) -> float:
    """GiB/s of one transfer; the writer is a forked child, the parent reads."""
    if mode == "plain":
        rfd, wfd = _plain_fds(kind, folder)
        read_side: Callable[[], int] = lambda: _plain_read(rfd, chunk)  # noqa: E731
        close_reader: Callable[[], None] = lambda: os.close(rfd)  # noqa: E731
        write_side: Callable[[], None] = lambda: _plain_write(wfd, size, chunk)  # noqa: E731
        close_writer: Callable[[], None] = lambda: os.close(wfd)  # noqa: E731
    else:
        reader, writer = _ipcnet_channels(kind, folder)
        read_side = lambda: _ipcnet_read(reader, chunk)  # noqa: E731
        close_reader = reader.close
        write_side = lambda: _ipcnet_write(writer, size, chunk)  # noqa: E731
        close_writer = writer.close
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _pin(1)
            close_reader()
            write_side()
            close_writer()
            code = 0
        finally:
            os._exit(code)
    close_writer()
    _pin(0)
    got = read_side()
    seconds = time.perf_counter() - start
    close_reader()
    _, status = os.waitpid(pid, 0)
    if got != size or status != 0:
        raise RuntimeError(f"{kind}/{mode}: moved {got} of {size} bytes, writer status {status}")
    return size / seconds / GiB


def _plain_write(fd: int, size: int, chunk: int) -> None:
    data = memoryview(b"x" * chunk)
    left = size
    while left:
        view = data[: min(chunk, left)]
        while view:
            n = os.write(fd, view)
            view = view[n:]
            left -= n


def _plain_read(fd: int, chunk: int) -> int:
    total = 0
    while data := os.read(fd, chunk):
        total += len(data)
    return total


def _ipcnet_write(ch: Channel, size: int, chunk: int) -> None:
    data = memoryview(b"x" * chunk)
    left = size
    while left:
        n = min(chunk, left)
        ch.write(data[:n])
        left -= n


def _ipcnet_read(ch: Channel, chunk: int) -> int:
    buf = bytearray(chunk)
    total = 0
    while n := ch.readinto(buf):
        total += n
    return total


def measure(kinds: tuple[str, ...], size: int, chunk: int, rounds: int) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory(prefix="ipcnet-bench-") as folder:
        for kind in kinds:
            result = Result(kind, [], [])
            for i in range(rounds):
                order = ("ipcnet", "plain") if i % 2 == 0 else ("plain", "ipcnet")
                for mode in order:
                    speed = _run(kind, mode, size, chunk, folder)
                    (result.ours if mode == "ipcnet" else result.plain).append(speed)
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ipcnet bench transports", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=GiB, help="bytes per transfer (default 1 GiB)")
    parser.add_argument(
        "--chunk", type=int, default=64 * 1024, help="bytes per write (default 64 KiB)"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="transfers per mode and transport (default 5)"
    )
    parser.add_argument(
        "--only", choices=KINDS, action="append", help="only this transport (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def run(args: argparse.Namespace) -> int:
    kinds = tuple(args.only or KINDS)
    results = measure(kinds, args.size, args.chunk, args.rounds)
    rows = [r.row() for r in results]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"{args.size / GiB:g} GiB in {args.chunk // 1024} KiB writes, {args.rounds} rounds, "
        f"median GiB/s [min-max]; writer and reader on different CPUs"
    )
    print(f"{'transport':<11} {'ipcnet':>22} {'plain os.read/write':>22} {'ratio':>6}")
    for row in rows:
        ours = (
            f"{row['ipcnet_gib_s']:.2f} [{row['ipcnet_range'][0]:.2f}-{row['ipcnet_range'][1]:.2f}]"  # type: ignore[index]
        )
        plain = (
            f"{row['plain_gib_s']:.2f} [{row['plain_range'][0]:.2f}-{row['plain_range'][1]:.2f}]"  # type: ignore[index]
        )
        print(f"{row['transport']:<11} {ours:>22} {plain:>22} {row['ratio']:>6.2f}")
    if "shm" in kinds:
        print("shm's plain column is a plain pipe loop (shm has no descriptor loop of its own)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
