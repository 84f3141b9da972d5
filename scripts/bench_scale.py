"""Issue 14's benchmarks: prefork 1 -> 2 workers (shared listener and --reuse-port) beside
nginx 1 -> 2 workers, 1 KiB keep-alive with wrk; and a rolling SIGUSR2 upgrade under load.

Usage: PYTHONPATH=$PWD/src python scripts/bench_scale.py [--runs 3] [--duration 5]
Prints markdown for BENCHMARKS.md. Needs wrk and nginx (make bench installs them).
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

from ipcnet.bench.harness import Server, free_port
from ipcnet.bench.http import _nginx_conf

_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_REQS = re.compile(r"(\d+) requests in")


def wrk(port: int, seconds: float, cpus: str | None, close: bool = False) -> tuple[float, str]:
    argv = ["wrk", "-t1", "-c32", f"-d{seconds:g}s", "--timeout", "10s"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://127.0.0.1:{port}/1k.bin")
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    found = _RPS.search(out)
    return (float(found.group(1)) if found else 0.0), out


def server(kind: str, workers: int, tmp: Path, root: Path, port: int, reuse: bool) -> list[str]:
    if kind == "nginx":
        conf = _nginx_conf(tmp, root, port)
        conf.write_text(
            conf.read_text().replace("worker_processes 1;", f"worker_processes {workers};")
        )
        return ["nginx", "-c", str(conf), "-p", str(tmp)]
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(root), f"tcp://127.0.0.1:{port}"]
    inner = os.environ.get("BENCH_INNER", "asyncio")
    argv += ["--model", "prefork", "--workers", str(workers), "--inner", inner, "-q"]
    return argv + (["--reuse-port"] if reuse else [])


def scaling(runs: int, seconds: float, root: Path, pinned: bool) -> list[str]:
    server_cpus, wrk_cpus = ("0", "1") if pinned else ("0,1", "0,1")
    rows = []
    for kind, reuse in (("ipcnet", False), ("ipcnet", True), ("nginx", False)):
        medians = {}
        cells = []
        for workers in (1, 2):
            values = []
            for _ in range(runs):
                with tempfile.TemporaryDirectory() as t:
                    port = free_port()
                    argv = [
                        "taskset",
                        "-c",
                        server_cpus,
                        *server(kind, workers, Path(t), root, port, reuse),
                    ]
                    running = Server(argv, str(Path(t) / "log"), port=port)
                    try:
                        values.append(wrk(port, seconds, wrk_cpus)[0])
                    finally:
                        running.stop()
            medians[workers] = statistics.median(values)
            cells.append(f"{medians[workers]:,.0f} ({min(values):,.0f}..{max(values):,.0f})")
        name = f"{kind} prefork{' --reuse-port' if reuse else ''}" if kind == "ipcnet" else kind
        ratio = medians[2] / medians[1] if medians[1] else 0.0
        rows.append(f"| {name} | {cells[0]} | {cells[1]} | {ratio:.2f}x |")
    return rows


def upgrade_under_load(seconds: float, every: float, root: Path, close: bool) -> str:
    """wrk for ``seconds`` while the master is SIGUSR2-upgraded every ``every`` seconds."""
    with tempfile.TemporaryDirectory() as t:
        port = free_port()
        log = Path(t) / "log"
        argv = [*server("ipcnet", 2, Path(t), root, port, False), "--grace", "5"]
        with log.open("w") as err:
            first = subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while "listening on" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        load = subprocess.Popen(
            ["wrk", "-t1", "-c32", f"-d{seconds:g}s", "--timeout", "10s"]
            + (["-H", "Connection: close"] if close else [])
            + [f"http://127.0.0.1:{port}/1k.bin"],
            stdout=subprocess.PIPE,
            text=True,
        )
        master, upgrades = first.pid, 0
        started = time.monotonic()
        while time.monotonic() - started < seconds - every:
            time.sleep(every)
            os.kill(master, signal.SIGUSR2)
            upgrades += 1
            while len(re.findall(r"new master pid (\d+) is serving", log.read_text())) < upgrades:
                time.sleep(0.02)
            master = int(re.findall(r"new master pid (\d+) is serving", log.read_text())[-1])
        out, _ = load.communicate(timeout=seconds + 60)
        os.kill(master, signal.SIGTERM)
        first.wait(20)
        time.sleep(1)
    total = _REQS.search(out)
    errors = [line.strip() for line in out.splitlines() if "errors" in line or "Non-2xx" in line]
    mode = "Connection: close" if close else "keep-alive"
    count = total.group(1) if total else "?"
    return (
        f"| {mode} | wrk -t1 -c32 -d{seconds:g}s | {upgrades} | {count} | "
        f"{'; '.join(errors) or '0 errors, 0 non-2xx'} |"
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as t:
        root = Path(t)
        (root / "1k.bin").write_bytes(os.urandom(1024))
        head = "| server | 1 worker | 2 workers | 2 / 1 |\n|---|---|---|---|"
        for pinned in (False, True):
            where = "server on CPU 0, wrk on CPU 1" if pinned else "server and wrk share CPUs 0-1"
            print(f"\n{where}; requests/s, median (min..max) of {args.runs} runs\n\n{head}")
            print("\n".join(scaling(args.runs, args.duration, root, pinned)), flush=True)
        print(
            "\n| requests | load | upgrades | requests served | wrk errors |\n|---|---|---|---|---|"
        )
        for close in (True, False):
            print(upgrade_under_load(12.0, 2.0, root, close), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
