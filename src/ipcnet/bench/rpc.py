"""``ipcnet bench rpc``: JSON-RPC calls/s and latency beside multiprocessing.connection,
pyzmq, xmlrpc, Pyro5 and rpyc; framing beside multiprocessing.

Role: this process is the client of one server process per peer, the same 100-byte echo
call everywhere, over tcp and unix, pinned apart. c=10 is 10 calls in flight (ipcnet
pipelined or 10 threads; multiprocessing 10 connections; DEALER 10 outstanding).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ipcnet.bench import rpcpeers
from ipcnet.bench.harness import (
    Child,
    Result,
    Server,
    emit,
    free_port,
    listof,
    missing,
    parser,
    pin,
    positive,
    rounds,
)

PAYLOAD = "x" * 100
READY = re.compile(r"^ready (\S+)", re.M)
Client = Callable[[str, int, float], tuple[int, list[float]]]  # url, c, s -> calls, latencies
Opened = tuple[Callable[[str], Any], Callable[[], None]]  # call(PAYLOAD), close


def echo(data: str) -> str:
    """Return the argument (the benchmark's call)."""
    return data


# --- the servers (run as: python -m ipcnet.bench.rpc --server PEER URL) -------------------


def server_mp(url: str, ready: Callable[[], None]) -> None:
    from multiprocessing.connection import Listener

    def serve(conn: Any) -> None:
        try:
            while True:
                conn.send_bytes(conn.recv_bytes())
        except (EOFError, OSError):
            conn.close()

    with Listener(rpcpeers._where(url)) as listener:
        ready()
        while True:
            threading.Thread(target=serve, args=(listener.accept(),), daemon=True).start()


def _zmq(url: str) -> str:
    return "ipc://" + url.removeprefix("unix://") if url.startswith("unix://") else url


def server_zmq(url: str, ready: Callable[[], None], kind: str) -> None:
    import zmq

    sock = zmq.Context().socket(zmq.REP if kind == "rep" else zmq.ROUTER)
    sock.bind(_zmq(url))
    ready()
    while kind == "rep":
        sock.send(sock.recv())
    while True:
        sock.send_multipart(sock.recv_multipart())


def server_xmlrpc(url: str, ready: Callable[[], None]) -> None:
    from socketserver import ThreadingMixIn
    from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

    class Server(ThreadingMixIn, SimpleXMLRPCServer):
        daemon_threads = True

    class Handler(SimpleXMLRPCRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as ServerProxy expects

    server = Server(rpcpeers._where(url), Handler, logRequests=False, allow_none=True)  # type: ignore[arg-type]
    server.register_function(echo, "echo")  # type: ignore[arg-type]
    ready()
    server.serve_forever()


def server_ipcnet(url: str, ready: Callable[[], None], model: str) -> None:
    from ipcnet import rpc
    from ipcnet.drivers import ServeConfig

    methods = rpc.Methods()
    methods.add(echo, inline=False)
    rpc.serve(methods, [url], ServeConfig(model=model, workers=2), ready=lambda c: ready())


SERVERS: dict[str, Callable[..., None]] = {  # (url, ready, *more argv)
    "ipcnet": server_ipcnet,
    "mp": server_mp,
    "zmq": server_zmq,
    "xmlrpc": server_xmlrpc,
    "pyro5": rpcpeers.server_pyro,
    "rpyc": rpcpeers.server_rpyc,
}


# --- the clients --------------------------------------------------------------------------


def _loop(seconds: float, one: Callable[[], Any]) -> tuple[int, list[float]]:
    lat: list[float] = []
    end, clock = time.perf_counter() + seconds, time.perf_counter
    while True:
        t0 = clock()
        one()
        t1 = clock()
        lat.append(t1 - t0)
        if t1 > end:
            return len(lat), lat


def _threads(seconds: float, calls: Sequence[Callable[[], Any]]) -> tuple[int, list[float]]:
    counts, end = [0] * len(calls), time.perf_counter() + seconds

    def work(i: int) -> None:
        while time.perf_counter() < end:
            calls[i]()
            counts[i] += 1

    pool = [threading.Thread(target=work, args=(i,)) for i in range(len(calls))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts), []


def _window(seconds: float, conc: int, send: Callable[[], Any], wait: Callable[[Any], Any]) -> int:
    """``conc`` calls in flight: as each answer comes back, the next call goes out."""
    window, done, end = [send() for _ in range(conc)], 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for i in range(conc):
            wait(window[i])
            window[i] = send()
        done += conc
    for w in window:
        wait(w)
    return done


def opened(opener: Callable[[str], Opened]) -> Client:
    """A client with one connection per call in flight: c=1 timed, c>1 one thread each."""

    def client(url: str, conc: int, seconds: float) -> tuple[int, list[float]]:
        conns = [opener(url) for _ in range(conc)]
        try:
            calls = [functools.partial(call, PAYLOAD) for call, _ in conns]
            return _loop(seconds, calls[0]) if conc == 1 else _threads(seconds, calls)
        finally:
            for _, close in conns:
                close()

    return client


def client_ipcnet(mode: str) -> Client:
    def client(url: str, conc: int, seconds: float) -> tuple[int, list[float]]:
        from ipcnet import rpc

        with rpc.connect(url) as c:
            assert c.echo(PAYLOAD) == PAYLOAD
            call = lambda: c.request("echo", [PAYLOAD])  # noqa: E731
            if conc == 1:
                return _loop(seconds, call)
            if mode == "threads":
                return _threads(seconds, [call] * conc)
            return _window(
                seconds, conc, lambda: c.submit("echo", [PAYLOAD]), lambda p: p.result()
            ), []

    return client


def open_mp(url: str) -> Opened:
    import json
    from multiprocessing.connection import Client

    data = json.dumps({"method": "echo", "params": [PAYLOAD]}).encode()[:100].ljust(100)
    c = Client(rpcpeers._where(url))

    def call(_: str) -> bytes:  # the same 100 bytes, JSON-RPC shaped
        c.send_bytes(data)
        return c.recv_bytes()

    return call, c.close


def _zmq_socket(url: str, kind: str) -> Any:
    import zmq

    sock: Any = zmq.Context.instance().socket(zmq.REQ if kind == "req" else zmq.DEALER)
    sock.connect(_zmq(url))
    return sock


def open_zmq(url: str) -> Opened:
    sock, data = _zmq_socket(url, "req"), PAYLOAD.encode()
    return lambda _: (sock.send(data), sock.recv()), lambda: sock.close(linger=0)


def client_dealer(url: str, conc: int, seconds: float) -> tuple[int, list[float]]:
    sock, data = _zmq_socket(url, "dealer"), PAYLOAD.encode()
    try:
        if conc == 1:
            return _loop(seconds, lambda: (sock.send(data), sock.recv()))
        return _window(seconds, conc, lambda: sock.send(data), lambda _: sock.recv()), []
    finally:
        sock.close(linger=0)


def open_xmlrpc(url: str) -> Opened:
    from xmlrpc.client import ServerProxy

    proxy = ServerProxy(f"http://{url.removeprefix('tcp://')}/", allow_none=True)
    return proxy.echo, proxy("close")


# --- the cases ------------------------------------------------------------------------------


@dataclass
class Case:
    peer: str  # row label
    transport: str
    conc: int
    server: list[str]  # argv after "--server"
    client: Client
    needs: str = ""  # the module the peer is (skipped with a note when it is missing)


def cases(model: str, transports: list[str]) -> list[Case]:
    ours, out = ["ipcnet", model], []
    for t in transports:
        out += [
            Case(f"ipcnet ({model})", t, 1, ours, client_ipcnet("")),
            Case(f"ipcnet ({model}) pipelined", t, 10, ours, client_ipcnet("")),
            Case(f"ipcnet ({model}) 10 threads", t, 10, ours, client_ipcnet("threads")),
            Case("multiprocessing.connection", t, 1, ["mp"], opened(open_mp)),
            Case("multiprocessing.connection", t, 10, ["mp"], opened(open_mp)),
            Case("pyzmq REQ/REP", t, 1, ["zmq", "rep"], opened(open_zmq), "zmq"),
            Case("pyzmq DEALER/ROUTER", t, 1, ["zmq", "router"], client_dealer, "zmq"),
            Case("pyzmq DEALER/ROUTER", t, 10, ["zmq", "router"], client_dealer, "zmq"),
            Case("Pyro5", t, 1, ["pyro5"], opened(rpcpeers.client_pyro), "Pyro5"),
            Case("rpyc", t, 1, ["rpyc"], opened(rpcpeers.client_rpyc), "rpyc"),
        ]
        if t == "tcp":
            out.append(Case("xmlrpc (stdlib)", t, 1, ["xmlrpc"], opened(open_xmlrpc)))
    return out


def run_rpc(seconds: float, repeat: int, model: str, transports: list[str]) -> list[Result]:
    """calls/s and p50/p99 latency of every case, ``repeat`` interleaved rounds."""
    pin(1)
    every = cases(model, transports)
    out = {
        (id(c), k): Result(f"{c.transport} c={c.conc} {k}", c.peer, u, lower_is_better=k != "")
        for c in every
        for k, u in (("", "calls/s"), ("p50", "µs"), ("p99", "µs"))
    }
    for c in every:
        out[id(c), ""].note = missing(c.needs) if c.needs else ""
    todo = [c for c in every if not out[id(c), ""].note]
    with tempfile.TemporaryDirectory(prefix="ipcnet-bench-") as tmp:

        def one(case: Case) -> None:
            url = f"tcp://127.0.0.1:{free_port()}"
            if case.transport == "unix":
                url = f"unix://{tmp}/{uuid.uuid4().hex[:8]}.sock"
            argv = [sys.executable, "-m", "ipcnet.bench.rpc", "--server", *case.server, url]
            with Server(argv, os.path.join(tmp, "server.log"), ready=READY, cpu=0):
                done, lat = case.client(url, case.conc, seconds)
            out[(id(case), "")].samples.append(done / seconds)
            if lat:
                lat.sort()
                out[(id(case), "p50")].samples.append(lat[len(lat) // 2] * 1e6)
                out[(id(case), "p99")].samples.append(lat[int(len(lat) * 0.99)] * 1e6)

        rounds(todo, repeat, one, "rpc", lambda c: f"{c.transport} c={c.conc} {c.peer}")
    shown = [r for r in out.values() if r.samples or r.unit == "calls/s"]
    return sorted(shown, key=lambda r: (r.unit != "calls/s", r.case))


# --- framing throughput ------------------------------------------------------------------


def _frames(ours: bool, size: int, seconds: float) -> float:
    """Frames/s one way over a socketpair from a forked writer on another CPU: ipcnet's
    MessageChannel (u32 length) or multiprocessing's Connection."""
    from multiprocessing import Pipe

    import ipcnet
    from ipcnet.framing import LengthPrefixed, MessageChannel

    ends: tuple[Any, Any] = ipcnet.socketpair() if ours else Pipe(duplex=True)  # socketpairs
    a, b = ends
    if ours:
        out, inp = MessageChannel(a, LengthPrefixed()), MessageChannel(b, LengthPrefixed())
        send, finish, recv = out.send, out.send_eof, iter(inp).__next__
    else:
        send, finish, recv = a.send_bytes, a.close, b.recv_bytes
    payload = b"x" * size

    def write(ready: Callable[[], None]) -> None:
        b.close()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(100):
                send(payload)
        finish()

    writer = Child(write, 0)
    a.close()
    n, t0 = 0, time.perf_counter()
    try:
        while recv() is not None:
            n += 1
    except (EOFError, StopIteration):
        pass
    rate = n / (time.perf_counter() - t0)
    b.close()
    writer.result()
    return rate


def run_framing(seconds: float, repeat: int) -> list[Result]:
    """Frames/s one way, ipcnet's MessageChannel beside multiprocessing's Connection."""
    pin(1)
    out = {
        (size, ours): Result(f"framing {size} B", peer, "frames/s")
        for size in (100, 65536)
        for ours, peer in ((True, "ipcnet MessageChannel"), (False, "multiprocessing"))
    }

    def one(key: tuple[int, bool]) -> None:
        out[key].samples.append(_frames(key[1], key[0], seconds))

    rounds(list(out), repeat, one, "framing", lambda k: f"{k[0]} B {out[k].peer}")
    return list(out.values())


def main(argv: list[str] | None = None) -> int:
    from ipcnet.drivers import MODELS, first

    p = parser("rpc")
    p.add_argument("--seconds", type=positive(float), default=1.0, help="per case and round (1)")
    p.add_argument("--repeat", type=positive(int), default=3, help="rounds (3)")
    model = first(threaded=True)  # handlers block: a thread per connection
    p.add_argument("--model", default=model, choices=list(MODELS), help=f"ipcnet's ({model})")
    p.add_argument(
        "--transports",
        type=listof(str, ("tcp", "unix")),
        default="tcp,unix",
        help="tcp, unix or both (both)",
    )
    p.add_argument("--skip-framing", action="store_true", help="only the calls")
    p.add_argument("--server", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.server:
        *what, url = args.server
        ready = lambda: print(f"ready {url}", flush=True)  # noqa: E731
        SERVERS[what[0]](url, ready, *what[1:])
        return 0
    print(
        f"cpus: {sorted(os.sched_getaffinity(0))}; python {sys.version.split()[0]}", file=sys.stderr
    )
    results = run_rpc(args.seconds, args.repeat, args.model, args.transports)
    results += [] if args.skip_framing else run_framing(args.seconds, args.repeat)
    emit(args, results, "rpc: calls/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
