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

import argparse
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


def run_size(n: int, rounds: int) -> dict[str, Timing | None]:
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
        res["ipcnet sockets -tan"] = _time_cmd([*py, "-tan"], rounds, env)
        res["ipcnet sockets -tanp"] = _time_cmd([*py, "-tanp"], rounds, env)
        for name, argv in (
            ("ss -tan", ["ss", "-tan"]),
            ("ss -tanp", ["ss", "-tanp"]),
            ("netstat -tanp", ["netstat", "-tanp"]),
        ):
            res[name] = _time_cmd(argv, rounds, env) if shutil.which(argv[0]) else None
        res["list_sockets(tcp)"] = _time_call(lambda: list_sockets(["tcp"]), rounds)
        res["list_sockets(tcp, owners)"] = _time_call(
            lambda: list_sockets(["tcp"], owners=True), rounds
        )
        try:
            import psutil  # type: ignore[import-untyped,unused-ignore]
        except ImportError:
            res["psutil.net_connections(tcp)"] = None
        else:
            res["psutil.net_connections(tcp)"] = _time_call(
                lambda: psutil.net_connections("tcp"), rounds
            )
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
    goals = (
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
    for label, a, b in goals:
        lines.append(
            f"| {label} | " + " | ".join(_ratio(results[n][a], results[n][b]) for n in sizes) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="ipcnet bench inspector",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sizes", default="1000,10000", help="socket counts (default 1000,10000)")
    p.add_argument("--rounds", type=int, default=7, help="rounds per tool (default 7)")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    results = {n: run_size(n, args.rounds) for n in sizes}
    print(report(results, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
