"""``ipcnet bench rpc``: JSON-RPC calls/s and latency beside multiprocessing.connection,
pyzmq (REQ/REP, DEALER/ROUTER) and xmlrpc; framing throughput beside multiprocessing.

Role: one load client (this process) against one server process per peer, the same
100-byte call everywhere (send 100 bytes, get them back), over tcp and unix. Rules: the
server and the client are pinned to different CPUs (when there are two); every run is
bounded by ``--seconds``; each case runs ``--repeat`` times, rounds interleaved across
peers, and the median and range are reported; c=10 means 10 calls in flight (ipcnet
pipelines them on one connection from one thread; multiprocessing uses 10 connections
and 10 threads; DEALER keeps 10 requests outstanding; REQ/REP and xmlrpc are c=1 only).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ipcnet.bench import harness
from ipcnet.bench.harness import Result, free_port, pin, rounds

PAYLOAD = "x" * 100
READY = re.compile(r"^ready (\S+)", re.M)


def echo(data: str) -> str:
    """Return the argument (the benchmark's call)."""
    return data


def bench_methods() -> Any:
    from ipcnet import rpc

    methods = rpc.Methods()
    methods.add(echo, inline=False)
    return methods


# --- the servers (run as: python -m ipcnet.bench.rpc --server PEER ADDRESS) --------------


def _ready(address: str) -> None:
    print(f"ready {address}", flush=True)


def _mp_address(url: str) -> Any:
    if url.startswith("unix://"):
        return url.removeprefix("unix://")
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    return (host, int(port))


def server_mp(url: str) -> None:
    from multiprocessing.connection import Listener

    family = "AF_UNIX" if url.startswith("unix://") else "AF_INET"
    with Listener(_mp_address(url), family=family) as listener:
        _ready(url)

        def serve(conn: Any) -> None:
            try:
                while True:
                    conn.send_bytes(conn.recv_bytes())
            except (EOFError, OSError):
                conn.close()

        while True:
            threading.Thread(target=serve, args=(listener.accept(),), daemon=True).start()


def _zmq_url(url: str) -> str:
    return "ipc://" + url.removeprefix("unix://") if url.startswith("unix://") else url


def server_zmq_rep(url: str) -> None:
    import zmq

    sock = zmq.Context().socket(zmq.REP)
    sock.bind(_zmq_url(url))
    _ready(url)
    while True:
        sock.send(sock.recv())


def server_zmq_router(url: str) -> None:
    import zmq

    sock = zmq.Context().socket(zmq.ROUTER)
    sock.bind(_zmq_url(url))
    _ready(url)
    while True:
        sock.send_multipart(sock.recv_multipart())


def server_xmlrpc(url: str) -> None:
    from socketserver import ThreadingMixIn
    from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

    class Server(ThreadingMixIn, SimpleXMLRPCServer):
        daemon_threads = True

    class Handler(SimpleXMLRPCRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as ServerProxy expects

        def log_message(self, *args: Any) -> None:
            pass

    host, port = _mp_address(url)
    server = Server((host, port), Handler, logRequests=False, allow_none=True)
    server.register_function(echo, "echo")  # type: ignore[arg-type]
    _ready(url)
    server.serve_forever()


def server_ipcnet(url: str, model: str) -> None:
    from ipcnet.drivers import ServeConfig
    from ipcnet.rpc import serve

    serve(bench_methods(), [url], ServeConfig(model=model, workers=2), ready=lambda c: _ready(url))


SERVERS: dict[str, Callable[[str], None]] = {
    "mp": server_mp,
    "zmq-rep": server_zmq_rep,
    "zmq-router": server_zmq_router,
    "xmlrpc": server_xmlrpc,
}


# --- the clients: each returns (calls done, per-call latencies at c=1) -------------------


def _loop(seconds: float, one: Callable[[], Any]) -> tuple[int, list[float]]:
    lat: list[float] = []
    end = time.perf_counter() + seconds
    clock = time.perf_counter
    while True:
        t0 = clock()
        one()
        t1 = clock()
        lat.append(t1 - t0)
        if t1 > end:
            return len(lat), lat


def client_ipcnet(
    url: str, conc: int, seconds: float, threads: bool = False
) -> tuple[int, list[float]]:
    from ipcnet import rpc

    with rpc.connect(url) as client:
        assert client.echo(PAYLOAD) == PAYLOAD
        if conc == 1:
            return _loop(seconds, lambda: client.request("echo", [PAYLOAD]) and None)
        if threads:
            return _threads(conc, seconds, lambda: client.request("echo", [PAYLOAD]))
        window = [client.submit("echo", [PAYLOAD]) for _ in range(conc)]
        done = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for i in range(conc):
                window[i].result()
                window[i] = client.submit("echo", [PAYLOAD])
            done += conc
        for p in window:
            p.result()
        return done, []


def _threads(conc: int, seconds: float, call: Callable[[], Any]) -> tuple[int, list[float]]:
    counts = [0] * conc
    end = time.perf_counter() + seconds

    def work(i: int) -> None:
        while time.perf_counter() < end:
            call()
            counts[i] += 1

    pool = [threading.Thread(target=work, args=(i,)) for i in range(conc)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts), []


def client_mp(url: str, conc: int, seconds: float) -> tuple[int, list[float]]:
    from multiprocessing.connection import Client

    family = "AF_UNIX" if url.startswith("unix://") else "AF_INET"
    data = json.dumps({"method": "echo", "params": [PAYLOAD]}).encode()[:100].ljust(100)
    conns = [Client(_mp_address(url), family=family) for _ in range(conc)]
    try:
        if conc == 1:
            c = conns[0]

            def one() -> None:
                c.send_bytes(data)
                c.recv_bytes()

            return _loop(seconds, one)
        counts = [0] * conc
        end = time.perf_counter() + seconds

        def work(i: int) -> None:
            c = conns[i]
            while time.perf_counter() < end:
                c.send_bytes(data)
                c.recv_bytes()
                counts[i] += 1

        pool = [threading.Thread(target=work, args=(i,)) for i in range(conc)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return sum(counts), []
    finally:
        for c in conns:
            c.close()


def client_zmq_rep(url: str, conc: int, seconds: float) -> tuple[int, list[float]]:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.connect(_zmq_url(url))
    data = PAYLOAD.encode()
    try:

        def one() -> None:
            sock.send(data)
            sock.recv()

        return _loop(seconds, one)
    finally:
        sock.close(linger=0)
        ctx.term()


def client_zmq_dealer(url: str, conc: int, seconds: float) -> tuple[int, list[float]]:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(_zmq_url(url))
    data = PAYLOAD.encode()
    try:
        if conc == 1:

            def one() -> None:
                sock.send(data)
                sock.recv()

            return _loop(seconds, one)
        for _ in range(conc):
            sock.send(data)
        done = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            sock.recv()
            sock.send(data)
            done += 1
        for _ in range(conc):
            sock.recv()
        return done, []
    finally:
        sock.close(linger=0)
        ctx.term()


def client_xmlrpc(url: str, conc: int, seconds: float) -> tuple[int, list[float]]:
    from xmlrpc.client import ServerProxy

    host, port = _mp_address(url)
    proxy = ServerProxy(f"http://{host}:{port}/", allow_none=True)
    with proxy:
        return _loop(seconds, lambda: proxy.echo(PAYLOAD) and None)


# --- orchestration -----------------------------------------------------------------------


@dataclass
class Case:
    peer: str  # row label
    transport: str
    conc: int
    server: list[str]  # argv after "--server"
    client: Callable[[str, int, float], tuple[int, list[float]]]
    rates: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)


def _url(transport: str, tmp: str) -> str:
    if transport == "tcp":
        return f"tcp://127.0.0.1:{free_port()}"
    return f"unix://{tmp}/{uuid.uuid4().hex[:8]}.sock"


def cases(model: str, transports: list[str]) -> list[Case]:
    out: list[Case] = []
    for t in transports:
        ours = ["ipcnet", model]
        out += [
            Case(f"ipcnet ({model})", t, 1, ours, client_ipcnet),
            Case(f"ipcnet ({model}) pipelined", t, 10, ours, client_ipcnet),
            Case(
                f"ipcnet ({model}) 10 threads",
                t,
                10,
                ours,
                lambda u, c, s: client_ipcnet(u, c, s, threads=True),
            ),
            Case("multiprocessing.connection", t, 1, ["mp"], client_mp),
            Case("multiprocessing.connection", t, 10, ["mp"], client_mp),
            Case("pyzmq REQ/REP", t, 1, ["zmq-rep"], client_zmq_rep),
            Case("pyzmq DEALER/ROUTER", t, 1, ["zmq-router"], client_zmq_dealer),
            Case("pyzmq DEALER/ROUTER", t, 10, ["zmq-router"], client_zmq_dealer),
        ]
        if t == "tcp":
            out.append(Case("xmlrpc (stdlib)", t, 1, ["xmlrpc"], client_xmlrpc))
    return out


def run_rpc(seconds: float, repeat: int, model: str, transports: list[str]) -> list[Result]:
    """calls/s and p50/p99 latency of every case, ``repeat`` interleaved rounds."""
    pin(1)
    todo = cases(model, transports)
    out = {
        (id(c), k): Result(f"{c.transport} c={c.conc} {k}", c.peer, u, lower_is_better=k != "")
        for c in todo
        for k, u in (("", "calls/s"), ("p50", "µs"), ("p99", "µs"))
    }
    with tempfile.TemporaryDirectory(prefix="ipcnet-bench-") as tmp:

        def one(case: Case) -> None:
            url = _url(case.transport, tmp)
            argv = [sys.executable, "-m", "ipcnet.bench.rpc", "--server", *case.server, url]
            log = os.path.join(tmp, "server.log")
            with harness.Server(argv, log, ready=READY, cpu=0):
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


def _frames_ours(size: int, seconds: float) -> float:
    """Frames/s one way over a socketpair: MessageChannel (u32 length) send -> recv."""
    import ipcnet
    from ipcnet.framing import LengthPrefixed, MessageChannel

    a, b = ipcnet.socketpair()
    payload = b"x" * size
    pid = os.fork()
    if pid == 0:  # the writer
        b.close()
        pin(0)
        out = MessageChannel(a, LengthPrefixed())
        end = time.perf_counter() + seconds
        try:
            while time.perf_counter() < end:
                for _ in range(100):
                    out.send(payload)
            out.send_eof()
        finally:
            os._exit(0)
    a.close()
    inp = MessageChannel(b, LengthPrefixed())
    t0 = time.perf_counter()
    n = sum(1 for _ in inp)
    rate = n / (time.perf_counter() - t0)
    inp.close()
    os.waitpid(pid, 0)
    return rate


def _frames_mp(size: int, seconds: float) -> float:
    from multiprocessing import Pipe

    a, b = Pipe(duplex=True)  # a socketpair, as ours
    payload = b"x" * size
    pid = os.fork()
    if pid == 0:
        b.close()
        pin(0)
        end = time.perf_counter() + seconds
        try:
            while time.perf_counter() < end:
                for _ in range(100):
                    a.send_bytes(payload)
            a.close()
        finally:
            os._exit(0)
    a.close()
    n = 0
    t0 = time.perf_counter()
    try:
        while True:
            b.recv_bytes()
            n += 1
    except EOFError:
        pass
    rate = n / (time.perf_counter() - t0)
    b.close()
    os.waitpid(pid, 0)
    return rate


def run_framing(seconds: float, repeat: int) -> list[Result]:
    """Frames/s one way, ipcnet's MessageChannel beside multiprocessing's Connection."""
    pin(1)
    out: dict[tuple[int, Callable[[int, float], float]], Result] = {}
    for size in (100, 65536):
        out[(size, _frames_ours)] = Result(f"framing {size} B", "ipcnet MessageChannel", "frames/s")
        out[(size, _frames_mp)] = Result(f"framing {size} B", "multiprocessing", "frames/s")

    def one(key: tuple[int, Callable[[int, float], float]]) -> None:
        out[key].samples.append(key[1](key[0], seconds))

    rounds(list(out), repeat, one, "framing", lambda k: f"{k[0]} B {out[k].peer}")
    return list(out.values())


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser("rpc")
    parser.add_argument("--seconds", type=float, default=1.0, help="per case and round (1)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (3)")
    from ipcnet.drivers import MODELS, first

    model = first(threaded=True)  # handlers block: a thread per connection
    parser.add_argument(
        "--model", default=model, choices=list(MODELS), help=f"ipcnet server model ({model})"
    )
    parser.add_argument("--transports", default="tcp,unix", help="tcp,unix")
    parser.add_argument("--skip-framing", action="store_true", help="only the calls")
    parser.add_argument("--server", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.server:
        *what, url = args.server
        if what[0] == "ipcnet":
            server_ipcnet(url, what[1])
        else:
            SERVERS[what[0]](url)
        return 0
    print(
        f"cpus: {sorted(os.sched_getaffinity(0))}; python {sys.version.split()[0]}", file=sys.stderr
    )
    results = run_rpc(args.seconds, args.repeat, args.model, args.transports.split(","))
    results += [] if args.skip_framing else run_framing(args.seconds, args.repeat)
    harness.emit(args, results, "rpc: calls/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
