"""``ipcnet bench models``: every ipcnet server model beside its peers, under one load.

Role: start each server in turn (ours: ``python -m ipcnet serve echo URL --model M``; the
peers from ``ipcnet.bench.peers``), pinned to one CPU, drive it with the same closed-loop
load from ``ipcnet.bench.echo`` pinned to another CPU, and print one table: throughput,
latency, server CPU-seconds, messages per server CPU-second and the ratio of each model to
its peer(s), then the project's goals, met or missed.
Rules: bounded in count and time (each load stops by itself, each start and stop has a
deadline); every server started here is stopped here: SIGTERM, then SIGKILL to its whole
process group, also on errors and Ctrl-C; nothing is left in the temporary folder.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ipcnet.bench import harness
from ipcnet.bench.harness import Result, emit

if TYPE_CHECKING:
    from ipcnet.bench.echo import EchoResult

KiB = 1024
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
READY = re.compile(r"listening on (\S+)")


@dataclass(frozen=True)
class Server:
    """One server to measure: one of our models or one peer."""

    kind: str  # "ours" or "peer"
    name: str  # model name, or peer name in ipcnet.bench.peers.PEERS
    concurrent: bool = True  # False: one connection at a time, so only c=1 runs
    peers: tuple[str, ...] = ()  # ours: the peers it is compared with, first = main one

    @property
    def label(self) -> str:
        return self.name if self.kind == "ours" else f"peer:{self.name}"


def _peers(name: str) -> tuple[str, ...]:
    """The peers a model is compared with (first = main one), chosen by its traits."""
    from ipcnet.drivers import DEFAULT_MODEL, info

    m = info(name)
    if m.nests:
        return ("c-epoll", "uvloop-protocol")
    if m.awaits:
        return ("uvloop-protocol", "c-epoll", "asyncio-protocol")
    if m.forks:
        return ("forkingtcpserver",)
    if m.threaded:
        return ("threadingtcpserver",)
    if m.serial:
        return ("tcpserver",)
    return ("selectors", "c-epoll") if name == DEFAULT_MODEL else ("selectors",)


def our_servers() -> tuple[Server, ...]:
    """Every model of the registry (fork waits for each child, the seed's protection: one
    connection at a time, like iterative)."""
    from ipcnet.drivers import MODELS

    return tuple(
        Server("ours", name, concurrent=not m.serial, peers=_peers(name))
        for name, m in MODELS.items()
    )


def unix_default() -> tuple[str, ...]:
    from ipcnet.drivers import DEFAULT_MODEL, first

    return (DEFAULT_MODEL, first(awaits=True), "selectors", "uvloop-protocol", "c-epoll")


def peer_servers() -> tuple[Server, ...]:
    from ipcnet.bench.peers import PEERS

    return tuple(Server("peer", p.name, concurrent=p.concurrent) for p in PEERS.values())


@dataclass
class Row:
    """One load against one server: the medians over the repeats, plus their range."""

    server: str  # label
    kind: str
    name: str
    transport: str
    size: int
    conns: int
    msgs_per_s: float = 0.0
    msgs_per_s_range: tuple[float, float] = (0.0, 0.0)
    mb_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    server_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    msgs_per_cpu_s: float | None = None  # messages per server CPU-second
    runs: int = 0
    errors: list[str] = field(default_factory=list)
    ratios: dict[str, dict[str, float | None]] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def load(self) -> tuple[str, int, int]:
        return (self.transport, self.size, self.conns)


def serve_available() -> str | None:
    """None when ``python -m ipcnet serve`` exists, else why not."""
    import subprocess

    try:
        done = subprocess.run(
            [sys.executable, "-m", "ipcnet", "serve", "--help"],
            capture_output=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        return "ipcnet serve --help did not answer"
    if done.returncode != 0:
        return "ipcnet serve is not available in this build"
    return None


def server_argv(
    server: Server,
    url: str,
    build_dir: str,
    workers: int | None,
    inner: str,
    pool_workers: int = 10,
) -> list[str]:
    from ipcnet.bench.peers import command

    if server.kind == "peer":
        return command(server.name, url, build_dir if server.name == "c-epoll" else None)
    from ipcnet.drivers import info

    model = info(server.name)
    argv = [sys.executable, "-m", "ipcnet", "serve", "echo", url, "--model", server.name]
    if workers is not None and model.sized:
        argv += ["--workers", str(workers)]
    elif model.sized and model.threaded:  # a pool thread holds a connection: one per conn
        argv += ["--workers", str(pool_workers)]
    if model.nests and inner:
        argv += ["--inner", inner]
    return argv


# --- the run -------------------------------------------------------------------------------


@dataclass
class Config:
    sizes: list[int]
    conns: list[int]
    seconds: float
    repeat: int
    server_cpu: int | None
    load_cpu: int | None
    servers: list[Server]
    unix: set[str]  # server names that also run over unix sockets
    workers: int | None = None
    inner: str = ""  # the --inner model of a nesting model ("" = its default)
    quiet: bool = False


def _pick_cpus(server_cpu: int, load_cpu: int) -> tuple[int | None, int | None, str]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, f"only CPU {cpus[0]} is available: server and load share it"
    s, c = cpus[server_cpu % len(cpus)], cpus[load_cpu % len(cpus)]
    return s, c, f"server pinned to CPU {s}, load client to CPU {c}"


def _available(cfg: Config) -> tuple[list[Server], list[dict[str, str]]]:
    """The servers that can run here, and why the others cannot."""
    from ipcnet.bench.peers import unavailable

    servers, skipped = [], []
    no_serve = serve_available() if any(s.kind == "ours" for s in cfg.servers) else None
    for s in cfg.servers:
        why = unavailable(s.name) if s.kind == "peer" else no_serve
        if why:
            skipped.append({"server": s.label, "why": why})
        else:
            servers.append(s)
    return servers, skipped


@dataclass
class _Run:
    """What one round of ``measure_all`` fills in."""

    cfg: Config
    folder: str
    step: Callable[[str], None]
    rows: dict[tuple[str, str, int, int], Row] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def serve(self, server: Server, transport: str) -> None:
        """Start ``server`` over ``transport``, run every load against it, stop it."""
        from ipcnet.bench.harness import CPUS
        from ipcnet.bench.harness import Server as Process

        cfg, folder = self.cfg, self.folder
        url = "tcp://127.0.0.1:0"
        if transport == "unix":
            url = f"unix://{folder}/{server.kind}-{server.name}.sock"
        label = f"{server.label} over {transport}"
        argv = server_argv(server, url, folder, cfg.workers, cfg.inner, max(cfg.conns))
        log = os.path.join(folder, f"{server.kind}-{server.name}-{transport}.log")
        try:
            cpu = None if cfg.server_cpu is None else CPUS.index(cfg.server_cpu)
            running = Process(argv, log, ready=READY, cpu=cpu, timeout=START_TIMEOUT)
        except RuntimeError as exc:
            self.failures.append({"server": label, "error": f"did not start: {exc}"})
            return
        try:
            for size, conns in itertools.product(cfg.sizes, cfg.conns):
                self.step(f"{label} {size} B c={conns}")
                key = (server.label, transport, size, conns)
                row = Row(server.label, server.kind, server.name, transport, size, conns)
                self.load(self.rows.setdefault(key, row), server, running)
                if running.proc.poll() is not None:
                    break
        finally:
            status = running.stop(STOP_TIMEOUT)
        if status != 0:
            self.failures.append({"server": label, "error": f"exit status {status} on SIGTERM"})

    def load(self, row: Row, server: Server, running: Any) -> None:
        from ipcnet.bench.echo import EchoError, measure

        if row.conns > 1 and not server.concurrent:
            row.errors = ["serves one connection at a time"]
            return
        try:
            result = measure(
                running.url,
                conns=row.conns,
                seconds=self.cfg.seconds,
                size=row.size,
                cpu=self.cfg.load_cpu,
                server_pid=running.pid,
            )
        except EchoError as exc:
            row.errors.append(str(exc))
            return
        _add_sample(row, result)


def measure_all(cfg: Config) -> tuple[list[Row], list[dict[str, str]], list[dict[str, Any]]]:
    """Run every server under every load, ``repeat`` interleaved rounds; rows, skips, failures."""
    import tempfile
    from contextlib import nullcontext

    from ipcnet.bench.harness import progress
    from ipcnet.bench.peers import build_c_echo

    servers, skipped = _available(cfg)
    with tempfile.TemporaryDirectory(prefix="ipcnet-bm-", dir="/tmp") as folder:
        if any(s.name == "c-epoll" for s in servers):
            try:
                build_c_echo(folder)
            except RuntimeError as exc:
                skipped.append({"server": "peer:c-epoll", "why": str(exc)})
                servers = [s for s in servers if s.name != "c-epoll"]
        runs = [
            (s, t) for s in servers for t in ("tcp", "unix") if t == "tcp" or s.name in cfg.unix
        ]
        total = len(runs) * cfg.repeat * len(cfg.sizes) * len(cfg.conns)
        quiet = nullcontext(lambda label: None)
        with quiet if cfg.quiet else progress(total, "models") as step:
            state = _Run(cfg, folder, step)
            for round_no in range(cfg.repeat):
                # alternate the order between rounds so slow drift hits every server alike
                for server, transport in runs if round_no % 2 == 0 else runs[::-1]:
                    state.serve(server, transport)
    out = list(state.rows.values())
    for row in out:
        _summarize(row)
    _add_ratios(out, {s.name: s for s in cfg.servers})
    return out, skipped, state.failures


def _add_sample(row: Row, r: EchoResult) -> None:
    row.samples.append(
        {
            "msgs_per_s": r.msgs_per_s,
            "mb_per_s": r.mb_per_s,
            "p50_ms": r.p50_ms,
            "p99_ms": r.p99_ms,
            "server_cpu_s": r.server_cpu_s,
            "client_cpu_s": r.client_cpu_s,
            "msgs_per_cpu_s": r.msgs_per_server_cpu_s,
            "ok": r.ok,
        }
    )
    row.errors.extend(e for e in r.errors if e not in row.errors)


def _summarize(row: Row) -> None:
    good = [s for s in row.samples if s["ok"]]
    row.runs = len(good)
    if not good:
        return

    def med(key: str) -> float:
        return float(statistics.median(s[key] for s in good))

    row.msgs_per_s = med("msgs_per_s")
    rates = [s["msgs_per_s"] for s in good]
    row.msgs_per_s_range = (min(rates), max(rates))
    row.mb_per_s = med("mb_per_s")
    row.p50_ms = med("p50_ms")
    row.p99_ms = med("p99_ms")
    row.client_cpu_s = med("client_cpu_s")
    cpus = [s["server_cpu_s"] for s in good if s["server_cpu_s"] is not None]
    row.server_cpu_s = statistics.median(cpus) if cpus else None
    effs = [s["msgs_per_cpu_s"] for s in good if s["msgs_per_cpu_s"]]
    row.msgs_per_cpu_s = statistics.median(effs) if effs else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _add_ratios(rows: list[Row], known: dict[str, Server]) -> None:
    by_key = {(r.kind, r.name, r.load): r for r in rows}
    for row in rows:
        if row.kind != "ours" or not row.runs:
            continue
        for peer in known[row.name].peers if row.name in known else ():
            other = by_key.get(("peer", peer, row.load))
            if other is None or not other.runs:
                continue
            row.ratios[peer] = {
                "msgs_per_s": _ratio(row.msgs_per_s, other.msgs_per_s),
                "msgs_per_cpu_s": _ratio(row.msgs_per_cpu_s, other.msgs_per_cpu_s),
            }


# --- goals ---------------------------------------------------------------------------------


@dataclass
class Goal:
    text: str
    target: float
    ratio: float | None = None  # throughput ratio (the goal's measure)
    cpu_ratio: float | None = None  # the same ratio in messages per server CPU-second
    where: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.ratio is None else self.ratio >= self.target


def _geomean(values: list[float]) -> float | None:
    import math

    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def goals(rows: list[Row]) -> list[Goal]:
    def find(kind: str, name: str, transport: str, size: int, conns: int) -> Row | None:
        for r in rows:
            if (r.kind, r.name, r.load) == (kind, name, (transport, size, conns)) and r.runs:
                return r
        return None

    out: list[Goal] = []

    def pair(text: str, target: float, model: str, peer: str, size: int, conns: int) -> None:
        a, b = find("ours", model, "tcp", size, conns), find("peer", peer, "tcp", size, conns)
        g = Goal(text, target, where=f"tcp, {size // KiB} KiB, c={conns}")
        if a and b:
            g.ratio = _ratio(a.msgs_per_s, b.msgs_per_s)
            g.cpu_ratio = _ratio(a.msgs_per_cpu_s, b.msgs_per_cpu_s)
        out.append(g)

    def across(text: str, target: float, model: str, peer: str) -> None:
        """Geometric mean over every tcp load both ran; the worst load goes in ``where``."""
        pairs = []
        for a in rows:
            if a.kind == "ours" and a.name == model and a.transport == "tcp" and a.runs:
                b = find("peer", peer, "tcp", a.size, a.conns)
                if b:
                    pairs.append((a, b))
        g = Goal(text, target, where="geometric mean of all tcp loads")
        ratios = [r for a, b in pairs if (r := _ratio(a.msgs_per_s, b.msgs_per_s))]
        cpu = [r for a, b in pairs if (r := _ratio(a.msgs_per_cpu_s, b.msgs_per_cpu_s))]
        g.ratio, g.cpu_ratio = _geomean(ratios), _geomean(cpu)
        if ratios:
            worst = min(pairs, key=lambda ab: _ratio(ab[0].msgs_per_s, ab[1].msgs_per_s) or 0)
            g.where += (
                f" (worst {min(ratios):.2f} at {worst[0].size // KiB} KiB c={worst[0].conns})"
            )
        out.append(g)

    from ipcnet.drivers import DEFAULT_MODEL, MODELS, first

    aio = first(awaits=True)
    pair(f"{aio} driver >= 1.0x uvloop Protocol", 1.0, aio, "uvloop-protocol", KiB, 10)
    pair(f"{aio} driver >= 0.9x C epoll server", 0.9, aio, "c-epoll", KiB, 10)
    across(f"{DEFAULT_MODEL} driver >= 1.0x selectors loop", 1.0, DEFAULT_MODEL, "selectors")
    for model in (n for n, m in MODELS.items() if m.threaded):
        across(f"{model} >= 1.0x ThreadingTCPServer", 1.0, model, "threadingtcpserver")
    for model in (n for n, m in MODELS.items() if m.forks and not m.nests):
        across(f"{model} >= 1.0x ForkingTCPServer", 1.0, model, "forkingtcpserver")
    for model in (DEFAULT_MODEL, aio):
        pairs = []
        for a in rows:
            if a.kind == "ours" and a.name == model and a.transport == "unix" and a.runs:
                b = find("ours", model, "tcp", a.size, a.conns)
                if b:
                    pairs.append((a, b))
        g = Goal(f"{model}: unix about 2x tcp", 2.0, where="geometric mean of all loads")
        g.ratio = _geomean([r for a, b in pairs if (r := _ratio(a.msgs_per_s, b.msgs_per_s))])
        g.cpu_ratio = _geomean(
            [r for a, b in pairs if (r := _ratio(a.msgs_per_cpu_s, b.msgs_per_cpu_s))]
        )
        out.append(g)
    return out


# --- output ----------------------------------------------------------------------------------


SHORT = {
    "tcpserver": "TCPServer",
    "threadingtcpserver": "ThreadingTCPServer",
    "forkingtcpserver": "ForkingTCPServer",
    "asyncio-streams": "asyncio streams",
    "asyncio-protocol": "asyncio Protocol",
    "uvloop-protocol": "uvloop Protocol",
    "selectors": "selectors loop",
    "c-epoll": "C epoll",
}


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: list[Row]) -> str:
    head = (
        f"{'transport':<9} {'size':>6} {'c':>3}  {'server':<24} {'msgs/s':>9} {'MB/s':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'cli CPU-s':>9} {'srv CPU-s':>9} {'msgs/CPU-s':>10}  "
        f"ratio vs peer "
        f"(msgs/s, msgs/CPU-s)"
    )
    lines = [head, "-" * len(head)]
    order = sorted(rows, key=lambda r: (r.transport, r.size, r.conns, r.kind != "peer", r.name))
    last: tuple[str, int, int] | None = None
    for r in order:
        if last is not None and r.load != last:
            lines.append("")
        last = r.load
        name = f"peer {SHORT.get(r.name, r.name)}" if r.kind == "peer" else r.name
        size = f"{r.size // KiB}k" if r.size % KiB == 0 else str(r.size)
        if not r.runs:
            why = "; ".join(r.errors[:1]) or "no result"
            lines.append(f"{r.transport:<9} {size:>6} {r.conns:>3}  {name:<24} n/a: {why}")
            continue
        ratios = "  ".join(
            f"{SHORT.get(p, p)} {_f(v['msgs_per_s'], '.2f')}, {_f(v['msgs_per_cpu_s'], '.2f')}"
            for p, v in r.ratios.items()
        )
        lines.append(
            f"{r.transport:<9} {size:>6} {r.conns:>3}  {name:<24} {r.msgs_per_s:>9,.0f} "
            f"{r.mb_per_s:>7.1f} {r.p50_ms:>7.3f} {r.p99_ms:>7.3f} {r.client_cpu_s:>9.2f} "
            f"{_f(r.server_cpu_s, '.2f'):>9} {_f(r.msgs_per_cpu_s, ',.0f'):>10}  {ratios}"
        )
    return "\n".join(lines)


def format_goals(gs: list[Goal]) -> str:
    lines = ["goals (throughput ratio; in brackets the same ratio per server CPU-second):"]
    for g in gs:
        state = {True: "met", False: "MISSED", None: "not measured"}[g.met]
        ratio = "-" if g.ratio is None else f"{g.ratio:.2f}x"
        cpu = "" if g.cpu_ratio is None else f" [{g.cpu_ratio:.2f}x]"
        lines.append(f"  {state:<12} {g.text}: {ratio}{cpu}  ({g.where})")
    return "\n".join(lines)


# --- command line --------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    from ipcnet.bench.echo import parse_size

    return [parse_size(t) for t in text.split(",") if t]


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes", type=_sizes, default=[KiB, 10 * KiB, 100 * KiB], help="default 1k,10k,100k"
    )
    parser.add_argument("--conns", type=_ints, default=[1, 10], help="default 1,10")
    parser.add_argument(
        "-d", "--seconds", type=float, default=2.0, help="seconds per load (default 2)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds; medians and ranges are reported"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="only this model or peer (repeatable; e.g. epoll, c-epoll)",
    )
    parser.add_argument("--no-peers", action="store_true", help="run only our models")
    parser.add_argument("--no-ours", action="store_true", help="run only the peers")
    unix = ",".join(unix_default())
    parser.add_argument(
        "--unix",
        default=unix,
        help=f"models and peers that also run over unix sockets (default {unix})",
    )
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU for servers (default 0)")
    parser.add_argument("--load-cpu", type=int, default=1, help="CPU for the load (default 1)")
    parser.add_argument(
        "--workers",
        type=int,
        help="--workers for pool and prefork (default: pool gets max(CONNS), prefork its own)",
    )
    from ipcnet.drivers import DEFAULT_MODEL, INNER_MODELS

    parser.add_argument(
        "--inner",
        default=DEFAULT_MODEL,
        choices=INNER_MODELS,
        help=f"--inner model for prefork (default {DEFAULT_MODEL})",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    servers: list[Server] = []
    if not args.no_peers:
        servers += peer_servers()
    if not args.no_ours:
        servers += our_servers()
    if args.only:
        known = {s.name for s in (*our_servers(), *peer_servers())}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            print(
                f"ipcnet bench models: unknown {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})",
                file=sys.stderr,
            )
            return 2
        servers = [s for s in servers if s.name in args.only]
    server_cpu, load_cpu, pinning = _pick_cpus(args.server_cpu, args.load_cpu)
    cfg = Config(
        sizes=args.sizes,
        conns=args.conns,
        seconds=args.seconds,
        repeat=max(1, args.repeat),
        server_cpu=server_cpu,
        load_cpu=load_cpu,
        servers=servers,
        unix={n for n in args.unix.split(",") if n},
        workers=args.workers,
        inner=args.inner,
        quiet=args.quiet,
    )
    before = os.sched_getaffinity(0)
    if load_cpu is not None:
        os.sched_setaffinity(0, {load_cpu})  # this process samples /proc: keep it off the server
    started = time.monotonic()
    try:
        rows, skipped, failures = measure_all(cfg)
    finally:
        os.sched_setaffinity(0, before)
    elapsed = time.monotonic() - started
    gs = goals(rows)
    config = asdict(cfg) | {"servers": [s.label for s in cfg.servers], "unix": sorted(cfg.unix)}
    meta = {
        "config": config,
        "pinning": pinning,
        "elapsed_s": round(elapsed, 1),
        "goals": [asdict(g) | {"met": g.met} for g in gs],
        "skipped": skipped,
        "failures": failures,
    }
    text = (
        f"echo, closed loop, {args.seconds:g} s per load, {cfg.repeat} round(s), medians; "
        f"{pinning}; every echoed byte verified\n{format_table(rows)}\n\n{format_goals(gs)}\n"
        + "".join(f"skipped {s['server']}: {s['why']}\n" for s in skipped)
        + "".join(f"failed {f['server']}: {f['error']}\n" for f in failures)
        + f"({elapsed:.0f} s)"
    )
    emit(args, results(rows), "models: echo msgs/s", meta, text)
    bad_rows = [r for r in rows if r.errors and r.errors != ["serves one connection at a time"]]
    return 1 if failures or bad_rows else 0


def results(rows: list[Row]) -> list[Result]:
    """The rows in the harness's schema: msgs/s per load, ipcnet's models first."""
    out = []
    for r in sorted(rows, key=lambda r: (r.transport, r.size, r.conns, r.kind != "ours")):
        rates = [x["msgs_per_s"] for x in r.samples if x["ok"]]
        per_cpu = [x["msgs_per_cpu_s"] for x in r.samples if x["ok"] and x["msgs_per_cpu_s"]]
        case = f"{r.transport} {r.size // KiB}k c={r.conns}"
        peer = f"ipcnet {r.name}" if r.kind == "ours" else SHORT.get(r.name, r.name)
        extra = {k: v for k, v in asdict(r).items() if k != "samples"}
        note = "; ".join(r.errors[:1])
        out.append(Result(case, peer, "msgs/s", rates, per_cpu, note=note, extra=extra))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser("models")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
