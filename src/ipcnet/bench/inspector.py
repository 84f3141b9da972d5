"""``ipcnet bench inspector``: the socket inspector beside ss, netstat and psutil.

Role: N established loopback TCP sockets, then each tool timed (output to /dev/null; CLI
runs include start-up), one case per goal. Rules: missing tools are reported; the soft
RLIMIT_NOFILE is raised as needed, never above the hard limit.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable

from ipcnet.bench.harness import Result, emit, listof, parser, positive, progress

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


def _run(argv: list[str], env: dict[str, str]) -> Callable[[], object]:
    out = subprocess.DEVNULL
    return lambda: subprocess.run(argv, stdout=out, stderr=out, env=env)


def _time_call(fn: Callable[[], object], rounds: int) -> Timing:
    fn()  # warm (imports, caches): timed as a user's second run would be
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def run_size(n: int, rounds: int, step: Callable[[str], None]) -> dict[str, Timing | None]:
    import ipcnet
    from ipcnet.inspector import list_sockets

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    src = os.path.dirname(os.path.dirname(os.path.abspath(ipcnet.__file__)))  # as installed:
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))  # cached pyc
    py = [os.path.join(os.path.dirname(sys.executable), "ipcnet"), "sockets"]
    if not os.path.exists(py[0]):
        py = [sys.executable, "-m", "ipcnet", "sockets"]
    tools: dict[str, Callable[[], object] | None] = {
        "ipcnet sockets -tan": _run([*py, "-tan"], env),
        "ipcnet sockets -tanp": _run([*py, "-tanp"], env),
    }
    for tool in ("ss -tan", "ss -tanp", "netstat -tanp"):
        tools[tool] = _run(tool.split(), env) if shutil.which(tool.split()[0]) else None
    tools["list_sockets(tcp)"] = lambda: list_sockets(["tcp"])
    tools["list_sockets(tcp, owners)"] = lambda: list_sockets(["tcp"], owners=True)
    try:
        import psutil  # type: ignore[import-untyped,unused-ignore]

        tools["psutil.net_connections(tcp)"] = lambda: psutil.net_connections("tcp")
    except ImportError:
        tools["psutil.net_connections(tcp)"] = None
    listener, socks = _open_connections(n)
    try:
        count = len([r for r in list_sockets(["tcp"]) if r.state == "ESTABLISHED"])
        print(f"# {n} sockets requested, {count} ESTABLISHED tcp sockets", file=sys.stderr)
        res: dict[str, Timing | None] = {}
        for name, fn in tools.items():
            step(f"{n} sockets: {name}")
            res[name] = None if fn is None else _time_call(fn, rounds)
    finally:
        linger = struct.pack("ii", 1, 0)  # close with RST: leave no TIME_WAIT for the next size
        for s in socks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.close()
        listener.close()
    return res


GOALS = (  # ours, theirs, the goal (ours / theirs in time)
    ("ipcnet sockets -tan", "ss -tan", 1.0),
    ("list_sockets(tcp)", "ss -tan", 1.0),
    ("ipcnet sockets -tanp", "ss -tanp", 1.0),
    ("list_sockets(tcp, owners)", "ss -tanp", 1.0),
    ("list_sockets(tcp, owners)", "psutil.net_connections(tcp)", 0.5),
    ("ipcnet sockets -tanp", "netstat -tanp", None),
)


def results(timings: dict[int, dict[str, Timing | None]]) -> list[Result]:
    """One case per size and goal: ipcnet's tool beside the peer tool, in seconds."""
    out = []
    for n, res in timings.items():
        for a, b, goal in GOALS:
            case = f"{n}: {a.removeprefix('ipcnet ')} vs {b.split('(')[0]}"
            for name in (a, b):
                peer = "ipcnet " + name if name.startswith("list_sockets") else name
                out.append(Result(case, peer, "s", res[name] or [], lower_is_better=True))
            out[-1].note = f"goal: ipcnet takes <= {goal:g}x its time" if goal else ""
            out[-1].note += "" if res[b] else "not installed"
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser("inspector")
    p.add_argument(
        "--sizes",
        type=listof(positive(int)),
        default="1000,10000",
        help="socket counts (%(default)s)",
    )
    p.add_argument("--rounds", type=positive(int), default=7, help="rounds per tool (default 7)")
    args = p.parse_args(argv)
    with progress(len(args.sizes) * 8, "inspector") as step:
        timings = {n: run_size(n, args.rounds, step) for n in args.sizes}
    emit(args, results(timings), "inspector: seconds per listing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
