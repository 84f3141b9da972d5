"""Benchmark of the socket inspector against ss, netstat and psutil on a live table.

Role: open N established loopback TCP sockets (N/2 connections, both ends in this
process), then time, several rounds each, with output sent to /dev/null:
  CLI:     ``ipcnet sockets -tan`` / ``-tanp``  vs  ``ss -tan`` / ``ss -tanp`` / ``netstat -tanp``
  library: ``list_sockets(["tcp"])`` / ``owners=True``  vs  ``psutil.net_connections("tcp")``
and print medians, ranges and the ratios the goals name, as a Markdown table.
Rules: results, not assertions; tools that are missing are reported as such; the soft
RLIMIT_NOFILE is raised as needed and never above the hard limit.

    python -m ipcnet.bench.inspector [--sizes 1000,10000] [--rounds 7]
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable

from ipcnet.bench.harness import Result, emit, parser, progress

Timing = list[float]


def _open_connections(n_sockets: int) -> tuple[socket.socket, list[socket.socket]]:
    need = n_sockets + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise SystemExit(f"need {need} fds, the hard RLIMIT_NOFILE is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    addr = listener.getsockname()
    socks: list[socket.socket] = []
    for _ in range(n_sockets // 2):
        c = socket.create_connection(addr)
        s, _ = listener.accept()
        socks += [c, s]
    return listener, socks


def _time_cmd(argv: list[str], rounds: int, env: dict[str, str]) -> Timing:
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    out = []  # timed after one warm-up run, as a user's second run would be
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False
        )
        out.append(time.perf_counter() - t)
    return out


def _time_call(fn: Callable[[], object], rounds: int) -> Timing:
    fn()  # warm: imports, /etc/services, caches
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _fmt(t: Timing | None) -> str:
    if not t:
        return "n/a"
    return f"{statistics.median(t) * 1000:.1f} ms ({min(t) * 1000:.1f}-{max(t) * 1000:.1f})"


def _ratio(a: Timing | None, b: Timing | None) -> str:
    if not a or not b:
        return "n/a"
    return f"{statistics.median(a) / statistics.median(b):.2f}x"


def _psutil(rounds: int) -> Timing | None:
    try:
        import psutil  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return None
    return _time_call(lambda: psutil.net_connections("tcp"), rounds)


def run_size(n: int, rounds: int, step: Callable[[str], None]) -> dict[str, Timing | None]:
    from ipcnet.inspector import list_sockets

    listener, socks = _open_connections(n)
    env = dict(os.environ)
    # an installed command runs from cached bytecode; without this each run would compile
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    import ipcnet

    src = os.path.dirname(os.path.dirname(os.path.abspath(ipcnet.__file__)))
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    py = [os.path.join(os.path.dirname(sys.executable), "ipcnet"), "sockets"]
    if not os.path.exists(py[0]):
        py = [sys.executable, "-m", "ipcnet", "sockets"]
    res: dict[str, Timing | None] = {}
    try:
        count = len([r for r in list_sockets(["tcp"]) if r.state == "ESTABLISHED"])
        print(
            f"# {n} sockets requested, {count} ESTABLISHED tcp sockets in the table",
            file=sys.stderr,
        )
        tools: dict[str, Callable[[], Timing | None]] = {
            "ipcnet sockets -tan": lambda: _time_cmd([*py, "-tan"], rounds, env),
            "ipcnet sockets -tanp": lambda: _time_cmd([*py, "-tanp"], rounds, env),
        }
        for argv in (["ss", "-tan"], ["ss", "-tanp"], ["netstat", "-tanp"]):
            tools[" ".join(argv)] = lambda a=argv: (  # type: ignore[misc]
                _time_cmd(a, rounds, env) if shutil.which(a[0]) else None
            )
        tools["list_sockets(tcp)"] = lambda: _time_call(lambda: list_sockets(["tcp"]), rounds)
        tools["list_sockets(tcp, owners)"] = lambda: _time_call(
            lambda: list_sockets(["tcp"], owners=True), rounds
        )
        tools["psutil.net_connections(tcp)"] = lambda: _psutil(rounds)
        for name, timed in tools.items():
            step(f"{n} sockets: {name}")
            res[name] = timed()
    finally:
        linger = struct.pack("ii", 1, 0)  # close with RST: leave no TIME_WAIT for the next size
        for s in socks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.close()
        listener.close()
    return res


def report(results: dict[int, dict[str, Timing | None]], rounds: int) -> str:
    sizes = sorted(results)
    lines = [
        f"Median wall time of {rounds} rounds (min-max); CLI runs include Python start-up.",
        "",
        "| tool | " + " | ".join(f"{n} sockets" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for name in results[sizes[0]]:
        lines.append(f"| `{name}` | " + " | ".join(_fmt(results[n][name]) for n in sizes) + " |")
    lines += [
        "",
        "| goal | " + " | ".join(f"{n}" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for label, a, b in GOALS:
        lines.append(
            f"| {label} | " + " | ".join(_ratio(results[n][a], results[n][b]) for n in sizes) + " |"
        )
    return "\n".join(lines)


GOALS = (
    ("CLI without pids / `ss -tan` (goal <= 1.0x)", "ipcnet sockets -tan", "ss -tan"),
    ("library without pids / `ss -tan` (goal <= 1.0x)", "list_sockets(tcp)", "ss -tan"),
    ("CLI with pids / `ss -tanp` (goal <= 1.0x)", "ipcnet sockets -tanp", "ss -tanp"),
    ("library with pids / `ss -tanp` (goal <= 1.0x)", "list_sockets(tcp, owners)", "ss -tanp"),
    (
        "library with pids / psutil (goal <= 0.5x)",
        "list_sockets(tcp, owners)",
        "psutil.net_connections(tcp)",
    ),
    ("CLI with pids / `netstat -tanp`", "ipcnet sockets -tanp", "netstat -tanp"),
)


def results(timings: dict[int, dict[str, Timing | None]]) -> list[Result]:
    """One case per size and goal: ipcnet's tool beside the peer tool, in seconds."""
    out = []
    for n, res in timings.items():
        for _, a, b in GOALS:
            case = f"{n}: {a.removeprefix('ipcnet ')} vs {b.split('(')[0]}"
            for name in (a, b):
                peer = "ipcnet " + name if name.startswith("list_sockets") else name
                out.append(Result(case, peer, "s", res[name] or [], lower_is_better=True))
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser("inspector")
    p.add_argument("--sizes", default="1000,10000", help="socket counts (default 1000,10000)")
    p.add_argument("--rounds", type=int, default=7, help="rounds per tool (default 7)")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    with progress(len(sizes) * 8, "inspector") as step:
        timings = {n: run_size(n, args.rounds, step) for n in sizes}
    text = report(timings, args.rounds)
    emit(args, results(timings), "inspector: seconds per listing", text=text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
