"""Issue 14's two benchmarks, each one command printing one Markdown table.

  scaling: prefork 1 -> 2 workers for a 1 KiB file over keep-alive (wrk -t1 -c64), with one
           shared listener and with --reuse-port, beside nginx 1 -> 2 workers.
  upgrade: a rolling SIGUSR2 upgrade (one every --every s) under a bounded wrk load
           (-t1 -c32 for --duration s), keep-alive and Connection: close, shared listener
           and --reuse-port: load, duration, upgrades, requests, failures.

Usage (from the worktree; a quiet machine; wrk and nginx installed, `make bench` does it):
  PYTHONPATH=$PWD/src .venv/bin/python scripts/bench_scale.py scaling --runs 5 --duration 10
  PYTHONPATH=$PWD/src .venv/bin/python scripts/bench_scale.py upgrade --runs 3 --duration 30

CPU placement on a 2-CPU machine (--wrk-cpu, default the last CPU): the load client is
pinned to one CPU and the server may use every CPU, at 1 worker and at 2 alike, so only
the worker count changes between the two columns. One worker then runs on the CPU wrk
leaves free; the second competes with wrk for the other, so the ratio measures how much
of the machine a second worker adds *with the load client on it* (there is no third CPU
for wrk). nginx is measured the same way: its ratio shows what this machine allows.
Rules: every server is started and stopped here (by its own pid); files go to one
temporary directory, removed at the end; the medians and ranges of --runs runs.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ipcnet.bench.harness import CPUS, Server, free_port
from ipcnet.bench.http import _nginx_conf

_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_REQS = re.compile(r"(\d+) requests in ([\d.]+)(m?s)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_SERVING = re.compile(r"new master pid (\d+) is serving")


# wrk sends PIPELINE requests per write (HTTP/1.1 pipelining): on 2 cores the load's own
# CPU per request caps what a second worker can add, and pipelining cuts it
_PIPELINE_LUA = """init = function(args)
  local r = {}
  for i = 1, %d do r[i] = wrk.format(nil, "/1k.bin") end
  req = table.concat(r)
end
request = function() return req end
"""


def wrk(
    port: int, seconds: float, cpu: int, conns: int, close: bool = False, pipeline: int = 1
) -> str:
    argv = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s"]
    argv += ["--timeout", "10s", *(["-H", "Connection: close"] if close else [])]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if pipeline > 1:
            script.write(_PIPELINE_LUA % pipeline)
            script.flush()
            argv += ["-s", script.name]
        argv.append(f"http://127.0.0.1:{port}/1k.bin")
        return subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout


def server_argv(kind: str, workers: int, tmp: Path, root: Path, port: int, args: Any) -> list[str]:
    if kind == "nginx":
        conf = _nginx_conf(tmp, root, port)
        conf.write_text(
            conf.read_text().replace("worker_processes 1;", f"worker_processes {workers};")
        )
        return ["nginx", "-c", str(conf), "-p", str(tmp)]
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(root), f"tcp://127.0.0.1:{port}"]
    argv += ["--model", "prefork", "--workers", str(workers), "--inner", args.inner, "-q"]
    return argv + (["--reuse-port"] if kind == "reuse-port" else [])


def scaling(args: Any, root: Path) -> None:
    names = {"shared": "ipcnet prefork", "reuse-port": "ipcnet prefork --reuse-port"}
    print(
        f"1 KiB keep-alive, wrk -t1 -c{args.conns} -d{args.duration:g}s on CPU {args.wrk_cpu}"
        f"{f', {args.pipeline} requests pipelined per write' if args.pipeline > 1 else ''}, "
        f"server on CPUs {','.join(map(str, CPUS))}; requests/s, median (min..max) of "
        f"{args.runs} runs; inner model {args.inner}\n"
    )
    print("| server | 1 worker | 2 workers | 2 / 1 |\n|---|---|---|---|")
    for kind in ("shared", "reuse-port", "nginx"):
        medians, cells = [], []
        for workers in (1, 2):
            values = []
            for _ in range(args.runs):
                with tempfile.TemporaryDirectory() as t:
                    port = free_port()
                    argv = server_argv(kind, workers, Path(t), root, port, args)
                    with Server(argv, f"{t}/log", port=port):
                        out = wrk(
                            port, args.duration, args.wrk_cpu, args.conns, pipeline=args.pipeline
                        )
                    found = _RPS.search(out)
                    values.append(float(found.group(1)) if found else 0.0)
            medians.append(statistics.median(values))
            cells.append(f"{medians[-1]:,.0f} ({min(values):,.0f}..{max(values):,.0f})")
        ratio = medians[1] / medians[0] if medians[0] else 0.0
        print(f"| {names.get(kind, kind)} | {cells[0]} | {cells[1]} | {ratio:.2f}x |", flush=True)


def failures(out: str) -> int:
    """wrk's socket errors (connect, read, write, timeout) and non-2xx/3xx answers."""
    errors = _SOCKET_ERRORS.search(out)
    non2xx = _NON_2XX.search(out)
    return (sum(map(int, errors.groups())) if errors else 0) + (
        int(non2xx.group(1)) if non2xx else 0
    )


def upgrade_once(args: Any, root: Path, kind: str, close: bool) -> tuple[int, int, int, float]:
    """wrk for --duration s, a SIGUSR2 every --every s: (upgrades, requests, failures, s)."""
    with tempfile.TemporaryDirectory() as t:
        port = free_port()
        log = Path(t) / "log"
        argv = [*server_argv(kind, 2, Path(t), root, port, args), "--grace", "5"]
        with log.open("w") as err:  # the new masters inherit it: a file, not a pipe
            first = subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL)
        master, upgrades = first.pid, 0
        try:
            deadline = time.monotonic() + 15
            while "listening on" not in log.read_text():
                if time.monotonic() > deadline or first.poll() is not None:
                    raise RuntimeError(f"the server did not start: {log.read_text()}")
                time.sleep(0.05)
            load = subprocess.Popen(
                ["taskset", "-c", str(args.wrk_cpu), "wrk", "-t1", f"-c{args.conns}"]
                + [f"-d{args.duration:g}s", "--timeout", "10s"]
                + (["-H", "Connection: close"] if close else [])
                + [f"http://127.0.0.1:{port}/1k.bin"],
                stdout=subprocess.PIPE,
                text=True,
            )
            started = time.monotonic()
            while time.monotonic() - started < args.duration - args.every:
                time.sleep(args.every)
                os.kill(master, signal.SIGUSR2)
                upgrades += 1
                end = time.monotonic() + 30
                while len(_SERVING.findall(log.read_text())) < upgrades:
                    if time.monotonic() > end:
                        raise RuntimeError(f"upgrade {upgrades} not done: {log.read_text()}")
                    time.sleep(0.02)
                master = int(_SERVING.findall(log.read_text())[-1])
            out, _ = load.communicate(timeout=args.duration + 60)
        finally:
            os.kill(master, signal.SIGTERM)
            first.wait(20)
            end = time.monotonic() + 20
            while Path(f"/proc/{master}").exists() and time.monotonic() < end:
                time.sleep(0.05)
        found = _REQS.search(out)
        if found is None:
            raise RuntimeError(f"no wrk result: {out}")
        seconds = float(found.group(2)) / (1000 if found.group(3) == "ms" else 1)
        return upgrades, int(found.group(1)), failures(out), seconds


def upgrade(args: Any, root: Path) -> None:
    print(
        f"rolling SIGUSR2 upgrades every {args.every:g} s under wrk -t1 -c{args.conns} "
        f"-d{args.duration:g}s (1 KiB file, wrk on CPU {args.wrk_cpu}), prefork 2 workers, "
        f"inner {args.inner}, --grace 5; {args.runs} runs each\n"
    )
    print("| listener | mode | runs | upgrades | duration s | requests | failed |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("shared", "reuse-port"):
        for close in (False, True):
            rows = [upgrade_once(args, root, kind, close) for _ in range(args.runs)]
            mode = "Connection: close" if close else "keep-alive"
            ups = "/".join(str(r[0]) for r in rows)
            secs = "/".join(f"{r[3]:.1f}" for r in rows)
            reqs = "/".join(f"{r[1]:,}" for r in rows)
            failed = "/".join(str(r[2]) for r in rows)
            print(f"| {kind} | {mode} | {len(rows)} | {ups} | {secs} | {reqs} | {failed} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("bench", choices=("scaling", "upgrade"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=None, help="wrk seconds (10 / 30)")
    p.add_argument("--every", type=float, default=3.0, help="seconds between upgrades")
    p.add_argument("--conns", type=int, default=None, help="wrk connections (64 / 32)")
    p.add_argument("--inner", default="asyncio", help="the model each worker runs")
    p.add_argument(
        "--pipeline", type=int, default=1, help="scaling: requests wrk pipelines per write (1)"
    )
    p.add_argument("--wrk-cpu", type=int, default=CPUS[-1], help="the CPU wrk is pinned to")
    args = p.parse_args()
    scale = args.bench == "scaling"
    args.duration = args.duration or (10.0 if scale else 30.0)
    args.conns = args.conns or (64 if scale else 32)
    with tempfile.TemporaryDirectory() as t:
        root = Path(t)
        (root / "1k.bin").write_bytes(os.urandom(1024))
        (scaling if scale else upgrade)(args, root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
