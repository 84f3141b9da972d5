"""``ipcnet bench transports``: bulk throughput of each transport, ipcnet beside a plain loop.

Role: SIZE bytes in CHUNK writes from a forked writer to the reading parent, through ipcnet
Channels and through ``os.write``/``os.read`` on descriptors of the same kind and options.
Rules: writer and reader on different CPUs; every byte count checked.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from ipcnet.bench.harness import Child, Result, emit, parse_size, parser, pin, positive, rounds
from ipcnet.channel import Channel, connect, listen, pipe, socketpair
from ipcnet.transports.pipes import PIPE_SIZE

GiB = 1 << 30
KINDS = ("pipe", "fifo", "socketpair", "unix", "tcp", "shm")


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
    """GiB/s of one transfer; the writer is a forked child on another CPU, the parent reads."""
    data = memoryview(b"x" * chunk)
    if mode == "plain":
        rfd, wfd = _plain_fds(kind, folder)
        readinto: Callable[[bytearray], int] = lambda b: len(os.read(rfd, chunk))  # noqa: E731
        close_reader: Callable[[], None] = lambda: os.close(rfd)  # noqa: E731
        close_writer: Callable[[], None] = lambda: os.close(wfd)  # noqa: E731
        write: Callable[[memoryview], int] = lambda v: os.write(wfd, v)  # noqa: E731
    else:
        reader, writer = _ipcnet_channels(kind, folder)
        readinto, close_reader, close_writer = reader.readinto, reader.close, writer.close

        def write(v: memoryview) -> int:
            writer.write(v)
            return len(v)

    buf = bytearray(chunk)

    def send(ready: Callable[[], None]) -> None:
        close_reader()
        left = size
        while left:
            left -= write(data[: min(chunk, left)])
        close_writer()

    start = time.perf_counter()
    child = Child(send, 1)
    close_writer()
    pin(0)
    got = 0
    while n := readinto(buf):
        got += n
    seconds = time.perf_counter() - start
    close_reader()
    child.result()
    if got != size:
        raise RuntimeError(f"{kind}/{mode}: moved {got} of {size} bytes")
    return size / seconds / GiB


def measure(kinds: tuple[str, ...], size: int, chunk: int, n: int) -> list[Result]:
    """Every transport, ipcnet and plain, in ``n`` interleaved rounds: GiB/s."""
    results = {
        (k, m): Result(k, "ipcnet" if m == "ipcnet" else "plain os.read/write", "GiB/s")
        for k in kinds
        for m in ("ipcnet", "plain")
    }
    with tempfile.TemporaryDirectory(prefix="ipcnet-bench-") as folder:

        def one(key: tuple[str, str]) -> None:
            results[key].samples.append(_run(*key, size, chunk, folder))

        rounds(list(results), n, one, "transports", lambda key: f"{key[0]} {key[1]}")
    for (kind, mode), r in results.items():
        if kind == "shm" and mode == "plain":
            r.note = "a pipe: shm has no fd loop"
    return list(results.values())


def main(argv: list[str] | None = None) -> int:
    p = parser("transports")
    p.add_argument(
        "--size", type=parse_size, default=GiB, help="bytes per transfer (default 1 GiB)"
    )
    p.add_argument(
        "--chunk", type=parse_size, default=64 * 1024, help="bytes per write (default 64 KiB)"
    )
    p.add_argument("--rounds", type=positive(int), default=5, help="rounds (default 5)")
    p.add_argument("--only", choices=KINDS, action="append", help="only this transport (repeat)")
    args = p.parse_args(argv)
    results = measure(tuple(args.only or KINDS), args.size, args.chunk, args.rounds)
    if not args.json:
        print(
            f"{args.size / GiB:g} GiB in {args.chunk // 1024} KiB writes, {args.rounds} rounds; "
            "writer and reader on different CPUs"
        )
    emit(args, results, "transports: GiB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
