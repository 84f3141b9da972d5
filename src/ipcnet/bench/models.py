"""``ipcnet bench models``: every ipcnet server model beside its peers, under one echo load.

Role: each server in turn (ours: ``ipcnet serve echo``; peers from ``ipcnet.bench.peers``)
on one CPU, ``bench echo``'s load on another; one table with each model's ratio to the
peers its traits pick, then the goals. Rules: every server started here is stopped here.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from ipcnet.bench import harness
from ipcnet.bench.harness import (
    CPUS,
    Result,
    Server,
    emit,
    listof,
    parser,
    pin,
    positive,
    rounds,
    table,
)

READY = re.compile(r"listening on (\S+)")
Key = tuple[str, str, int, int]  # name, transport, size, conns


@dataclass(frozen=True)
class Contender:
    name: str  # a model, or a peer of ipcnet.bench.peers.PEERS
    ours: bool
    concurrent: bool = True  # False: one connection at a time, so only c=1 runs
    peers: tuple[str, ...] = ()  # ours: the peers it is compared with, first = main one

    @property
    def label(self) -> str:
        from ipcnet.bench.peers import PEERS

        return f"ipcnet {self.name}" if self.ours else PEERS[self.name].title


def _peers(name: str) -> tuple[str, ...]:
    """The peers a model is compared with (first = main one), chosen by its traits."""
    from ipcnet.drivers import DEFAULT_MODEL, info

    m = info(name)
    if m.nests:
        return ("c-epoll", "uvloop-protocol")
    if m.awaits:
        return ("uvloop-protocol", "c-epoll", "asyncio-protocol")
    if m.forks or m.threaded or m.serial:
        return (
            "forkingtcpserver" if m.forks else "threadingtcpserver" if m.threaded else "tcpserver",
        )
    return ("selectors", "c-epoll") if name == DEFAULT_MODEL else ("selectors",)


def contenders() -> list[Contender]:
    """The peers, then every model of the registry (fork serves one connection at a time)."""
    from ipcnet.bench.peers import PEERS
    from ipcnet.drivers import MODELS

    return [Contender(p.name, False, p.concurrent) for p in PEERS.values()] + [
        Contender(n, True, not m.serial, _peers(n)) for n, m in MODELS.items()
    ]


def _argv(c: Contender, url: str, folder: str, a: argparse.Namespace) -> list[str]:
    from ipcnet.bench.peers import command
    from ipcnet.drivers import info

    if not c.ours:
        return command(c.name, url, folder if c.name == "c-epoll" else None)
    model = info(c.name)
    argv = [sys.executable, "-m", "ipcnet", "serve", "echo", url, "--model", c.name]
    workers = a.workers or (max(a.conns) if model.threaded else None)  # a thread per conn
    if model.sized and workers:
        argv += ["--workers", str(workers)]
    return argv + (["--inner", a.inner] if model.nests and a.inner else [])


def measure_all(
    a: argparse.Namespace, servers: list[Contender], failed: list[str]
) -> dict[Key, Result]:
    """Every server under every load, ``repeat`` interleaved rounds: one Result per load."""
    sizes, conns, unix = a.sizes, a.conns, a.unix
    cases = [(s, t) for s in servers for t in ("tcp", "unix") if t == "tcp" or s.name in unix]
    out: dict[Key, Result] = {}
    for (c, t), size, n in ((case, size, n) for case in cases for size in sizes for n in conns):
        extra = {"name": c.name, "transport": t, "size": size, "conns": n, "errors": []}
        out[c.name, t, size, n] = Result(
            f"{t} {size // 1024}k c={n}", c.label, "msgs/s", extra=extra
        )
    with tempfile.TemporaryDirectory(prefix="ipcnet-bm-", dir="/tmp") as folder:
        if any(c.name == "c-epoll" for c in servers):
            from ipcnet.bench.peers import build_c_echo

            try:
                build_c_echo(folder)  # fails early, not per round; removed with the folder
            except RuntimeError as exc:  # a cc that cannot build it: the others still run
                failed.append(f"C epoll did not start: {exc}")
                cases = [case for case in cases if case[0].name != "c-epoll"]

        def serve(case: tuple[Contender, str]) -> None:
            c, t = case
            url = f"unix://{folder}/{c.name}.sock" if t == "unix" else "tcp://127.0.0.1:0"
            argv = _argv(c, url, folder, a)
            try:
                server = Server(argv, f"{folder}/{c.name}-{t}.log", ready=READY, cpu=a.server_cpu)
            except RuntimeError as exc:
                failed.append(f"{c.label} over {t} did not start: {exc}")
                return
            try:
                for size in sizes:
                    for n in conns:
                        _load(out[c.name, t, size, n], c, server, a)
            finally:
                if (status := server.stop()) != 0:
                    failed.append(f"{c.label} over {t}: exit status {status} on SIGTERM")

        label = lambda case: f"{case[0].label} over {case[1]}"  # noqa: E731
        rounds(cases, a.repeat, serve, "models", label, quiet=a.quiet)
    return out


def _load(row: Result, c: Contender, server: Server, a: argparse.Namespace) -> None:
    """One load: its samples and figures added to ``row`` if every byte came back."""
    from ipcnet.bench.echo import EchoError, measure

    n, size = row.extra["conns"], row.extra["size"]
    if n > 1 and not c.concurrent:
        row.note = "serves one connection at a time"
        return
    try:
        load: dict[str, Any] = {"conns": n, "seconds": a.seconds, "size": size, "cpu": a.load_cpu}
        r = measure(server.url, server_pid=server.pid, **load)
    except EchoError as exc:
        r = Result("", "", "", extra={"ok": False, "errors": [str(exc)]})
    row.extra["errors"] += [e for e in r.extra["errors"] if e not in row.extra["errors"]]
    if r.extra["ok"]:
        row.samples += r.samples
        row.per_cpu_s += r.per_cpu_s
        for k in ("mb_per_s", "p50_ms", "p99_ms", "client_cpu_s", "server_cpu_s"):
            row.extra.setdefault(k, []).extend(r.extra[k])


def _compare(out: dict[Key, Result], known: dict[str, Contender]) -> None:
    """Each model's ratio to its peers, in its note (msgs/s, then per server CPU-second)."""
    for (name, t, size, n), r in out.items():
        if not r.samples:
            r.note = r.note or "; ".join(r.extra["errors"][:1])
        for peer in known[name].peers if r.samples else ():
            other = out.get((peer, t, size, n))
            if other is not None and other.samples:
                vs = {"msgs_per_s": _ratio(r, other), "msgs_per_cpu_s": _ratio(r, other, True)}
                r.extra.setdefault("vs", {})[other.peer] = vs
        if "vs" in r.extra:
            r.note = ", ".join(f"{_x(v['msgs_per_s'])} {p}" for p, v in r.extra["vs"].items())


def _ratio(a: Result, b: Result, cpu: bool = False) -> float | None:
    x, y = (a.per_cpu_s, b.per_cpu_s) if cpu else (a.samples, b.samples)
    if not (x and y and (d := statistics.median(y))):
        return None  # not run, or a peer that echoed nothing in a very short load
    return statistics.median(x) / d


def goals(out: dict[Key, Result]) -> list[dict[str, object]]:
    """The issue's goals: each a geometric mean of ratios over the loads both sides ran."""
    from ipcnet.bench.peers import PEERS
    from ipcnet.drivers import DEFAULT_MODEL, MODELS, first

    def goal(text: str, target: float, a: str, b: str, **only: Any) -> dict[str, object]:
        ta, load = only.get("ta", "tcp"), only.get("load")
        pairs = [
            (r, out[b, "tcp", s, n])
            for (m, t, s, n), r in out.items()
            if (m, t) == (a, ta) and load in (None, (s, n)) and (b, "tcp", s, n) in out
        ]
        mean = [
            _geomean([q for x, y in pairs if (q := _ratio(x, y, cpu))]) for cpu in (False, True)
        ]
        where = f"tcp, 1 KiB, c={load[1]}" if load else "geometric mean of all loads"
        g = dict(text=text, target=target, ratio=mean[0], cpu_ratio=mean[1], where=where)
        return g | {"met": None if mean[0] is None else mean[0] >= target}

    aio, k10 = first(awaits=True), (1024, 10)
    gs = [
        goal(f"{aio} driver >= 1.0x uvloop Protocol", 1.0, aio, "uvloop-protocol", load=k10),
        goal(f"{aio} driver >= 0.9x C epoll server", 0.9, aio, "c-epoll", load=k10),
        goal(f"{DEFAULT_MODEL} driver >= 1.0x selectors loop", 1.0, DEFAULT_MODEL, "selectors"),
    ]
    for n, m in MODELS.items():
        if m.threaded or (m.forks and not m.nests):
            peer = "threadingtcpserver" if m.threaded else "forkingtcpserver"
            gs.append(goal(f"{n} >= 1.0x {PEERS[peer].title}", 1.0, n, peer))
    return gs + [
        goal(f"{m}: unix about 2x tcp", 2.0, m, m, ta="unix") for m in (DEFAULT_MODEL, aio)
    ]


def _geomean(values: list[float]) -> float | None:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def main(argv: list[str] | None = None) -> int:
    from ipcnet.bench.peers import unavailable
    from ipcnet.drivers import DEFAULT_MODEL, INNER_MODELS, first

    unix = (DEFAULT_MODEL, first(awaits=True), "selectors", "uvloop-protocol", "c-epoll")
    p = parser("models")
    p.add_argument(
        "--sizes",
        type=listof(harness.parse_size),
        default="1k,10k,100k",
        help="message sizes (%(default)s)",
    )
    p.add_argument(
        "--conns", type=listof(positive(int)), default="1,10", help="connections (%(default)s)"
    )
    p.add_argument(
        "-d", "--seconds", type=positive(float), default=2.0, help="seconds per load (default 2)"
    )
    p.add_argument(
        "--repeat", type=positive(int), default=1, help="rounds; medians and ranges are reported"
    )
    everyone = contenders()
    names = sorted(c.name for c in everyone)
    p.add_argument(
        "--only", action="append", choices=names, metavar="NAME", help="only it (repeat)"
    )
    p.add_argument("--no-peers", action="store_true", help="run only our models")
    p.add_argument("--no-ours", action="store_true", help="run only the peers")
    p.add_argument(
        "--unix",
        type=listof(str),
        default=",".join(unix),
        help="models and peers also run over unix sockets (%(default)s)",
    )
    p.add_argument("--server-cpu", type=int, default=0, help="CPU for servers (default 0)")
    p.add_argument("--load-cpu", type=int, default=1, help="CPU for the load (default 1)")
    p.add_argument(
        "--workers", type=positive(int), help="--workers for pool and prefork (pool: max(CONNS))"
    )
    p.add_argument("--inner", default=DEFAULT_MODEL, choices=INNER_MODELS, help="prefork's --inner")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    wanted = {True: not args.no_ours, False: not args.no_peers}
    chosen = [c for c in everyone if wanted[c.ours] and c.name in (args.only or names)]
    skipped = {c.label: why for c in chosen if not c.ours and (why := unavailable(c.name))}
    started, before, failures = time.monotonic(), os.sched_getaffinity(0), list[str]()
    pin(args.load_cpu)  # this process samples /proc: keep it off the server
    try:
        out = measure_all(args, [c for c in chosen if c.label not in skipped], failures)
    finally:
        os.sched_setaffinity(0, before)
    _compare(out, {c.name: c for c in everyone})
    gs, cpus = goals(out), [CPUS[x % len(CPUS)] for x in (args.server_cpu, args.load_cpu)]
    pinning = f"server pinned to CPU {cpus[0]}, load client to CPU {cpus[1]}"
    if len(CPUS) < 2:
        pinning = f"only CPU {CPUS[0]} is available: server and load share it"
    results = sorted(out.values(), key=lambda r: (*_key(r), not r.ours))
    state = {True: "met", False: "MISSED", None: "not measured"}
    text = [f"echo, closed loop, {args.seconds:g} s per load, {args.repeat} round(s); {pinning}"]
    text += [table(results), "", "goals (throughput ratio; [per server CPU-second]):"]
    for g in gs:
        ratio = f"{_x(g['ratio'])} [{_x(g['cpu_ratio'])}]"
        text.append(f"  {state[g['met']]:<12} {g['text']}: {ratio}  ({g['where']})")  # type: ignore[index]
    text += [f"skipped {k}: {v}" for k, v in skipped.items()] + [f"failed {f}" for f in failures]
    text.append(f"every echoed byte verified ({time.monotonic() - started:.0f} s)")
    meta = {"pinning": pinning, "elapsed_s": round(time.monotonic() - started, 1), "goals": gs}
    meta |= {"skipped": skipped, "failures": failures}
    emit(args, results, "models: echo msgs/s", meta, "\n".join(text))
    return 1 if failures or any(r.extra["errors"] for r in results) else 0


def _key(r: Result) -> tuple[str, int, int]:
    return r.extra["transport"], r.extra["size"], r.extra["conns"]


def _x(value: object) -> str:
    return "-" if not isinstance(value, float) else f"{value:.2f}x"
