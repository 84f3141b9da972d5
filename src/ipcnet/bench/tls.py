"""``ipcnet bench tls``: bulk throughput of a tls:// channel beside a plain ``ssl.SSLSocket`` loop.

Role: move SIZE bytes in CHUNK-sized writes from a forked writer (the TLS client) to the
reading parent (the TLS server), once through ipcnet (``connect("tls://...")`` /
``listen(...).accept()``, ``write`` / ``readinto``) and once through Python's own
``SSLSocket`` (``sendall`` / ``recv_into``), with the same certificate and the same
contexts, so the same TLS version and cipher; rounds interleaved. Rules: writer and reader
are pinned to different CPUs when there are two; every byte count is checked; the time
includes the handshake (negligible at 1 GiB); medians and ranges are reported.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time

from ipcnet.bench.harness import Result, emit, parse_size, parser, positive, rounds
from ipcnet.bench.harness import pin as _pin
from ipcnet.bench.transports import GiB
from ipcnet.channel import connect, listen
from ipcnet.transports.tls import TLSOptions, client_context, server_context
from ipcnet.transports.tls.devcert import make


def _ipcnet_run(folder: str, size: int, chunk: int) -> tuple[float, str]:
    cert, key = f"{folder}/server.pem", f"{folder}/server-key.pem"
    with listen("tls://127.0.0.1:0", cert=cert, key=key) as server:
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _child(lambda: _ipcnet_write(str(server.address), folder, size, chunk))
        _pin(0)
        reader = server.accept()
    buf = memoryview(bytearray(chunk))
    got = 0
    with reader:
        while n := reader.readinto(buf):
            got += n
        seconds = time.perf_counter() - start
        cipher = f"{reader.transport.version} {reader.transport.cipher}"  # type: ignore[attr-defined]
    _check(pid, got, size)
    return size / seconds / GiB, cipher


def _ipcnet_write(url: str, folder: str, size: int, chunk: int) -> None:
    block = memoryview(os.urandom(chunk))
    with connect(url, ca=f"{folder}/ca.pem", sni="localhost") as ch:
        left = size
        while left > 0:
            n = min(chunk, left)
            ch.write(block[:n])
            left -= n
        ch.send_eof()


def _plain_run(folder: str, size: int, chunk: int) -> tuple[float, str]:
    sctx = server_context(TLSOptions(cert=f"{folder}/server.pem", key=f"{folder}/server-key.pem"))
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _child(lambda: _plain_write(port, folder, size, chunk))
        _pin(0)
        conn, _ = server.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = memoryview(bytearray(chunk))
    got = 0
    with sctx.wrap_socket(conn, server_side=True) as tls:
        while n := tls.recv_into(buf):
            got += n
        seconds = time.perf_counter() - start
        cipher = f"{tls.version()} {(tls.cipher() or ('?',))[0]}"
        tls.unwrap()  # our close_notify answers the writer's: its unwrap() returns
    _check(pid, got, size)
    return size / seconds / GiB, cipher


def _plain_write(port: int, folder: str, size: int, chunk: int) -> None:
    cctx = client_context(TLSOptions(ca=f"{folder}/ca.pem"))
    block = memoryview(os.urandom(chunk))
    raw = socket.create_connection(("127.0.0.1", port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with cctx.wrap_socket(raw, server_hostname="localhost") as tls:
        left = size
        while left > 0:
            n = min(chunk, left)
            tls.sendall(block[:n])
            left -= n
        tls.unwrap()  # close_notify (the reader's clean EOF), then wait for the reader's


def _child(work: object) -> None:
    code = 1
    try:
        _pin(1)
        work()  # type: ignore[operator]
        code = 0
    finally:
        os._exit(code)


def _check(pid: int, got: int, size: int) -> None:
    _, status = os.waitpid(pid, 0)
    if got != size or status != 0:
        raise RuntimeError(f"tls: moved {got} of {size} bytes, writer status {status}")


def measure(size: int, chunk: int, n: int) -> tuple[list[Result], list[str]]:
    """GiB/s of a tls:// channel and of a plain ssl.SSLSocket loop, ``n`` interleaved
    rounds; and the ciphers negotiated (one, the same for both)."""
    results = {
        "ipcnet": Result("tls", "ipcnet tls://", "GiB/s"),
        "plain": Result("tls", "ssl.SSLSocket", "GiB/s"),
    }
    ciphers: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="ipcnet-bench-tls-") as folder:
        make(folder)

        def one(mode: str) -> None:
            speed, cipher = (_ipcnet_run if mode == "ipcnet" else _plain_run)(folder, size, chunk)
            results[mode].samples.append(speed)
            ciphers.add(cipher)

        rounds(list(results), n, one, "tls", str)
    return list(results.values()), sorted(ciphers)


def main(argv: list[str] | None = None) -> int:
    p = parser("tls")
    p.add_argument(
        "--size", type=parse_size, default=GiB, help="bytes per transfer (default 1 GiB)"
    )
    p.add_argument(
        "--chunk", type=parse_size, default=64 * 1024, help="bytes per write and read (64 KiB)"
    )
    p.add_argument("--rounds", type=positive(int), default=5, help="transfers per mode (default 5)")
    args = p.parse_args(argv)
    results, ciphers = measure(args.size, args.chunk, args.rounds)
    if not args.json:
        print(f"{args.size / GiB:g} GiB in {args.chunk // 1024} KiB writes, {', '.join(ciphers)}")
    emit(args, results, "tls: GiB/s", {"cipher": ciphers})
    return 0


if __name__ == "__main__":
    sys.exit(main())
