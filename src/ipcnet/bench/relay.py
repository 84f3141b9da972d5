"""``ipcnet bench relay``: ``ipcnet relay`` beside socat, HAProxy and nginx stream.

Role: two measurements, every contender in the same run on the same machine.
- throughput: one client sends SIZE bytes (sendfile(2) from a file in /dev/shm) through the
  relay to one sink, which receives them into a preallocated buffer; the clock runs from
  the client's connect to the sink's EOF; the sink then checks the sha256 of what it got
  (outside the clock) against the file's. ``direct`` is the same client and sink with no
  relay between. The relay's CPU time per GiB (its processes' user + system time, from
  /proc) is reported too: on a shared machine it is steadier than the wall clock;
- short connections: clients connect through the relay to a C epoll echo server, write
  1 KiB, read 1 KiB back, close, for SECONDS; connections per second.
Rules: the relay runs alone on the last CPU (taskset), clients, sink and echo server on the
others; rounds interleave the contenders (the harness's ``rounds``); medians and ranges in
the harness's one schema. A contender whose program is missing is reported, not hidden.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from ipcnet.bench.harness import (
    CPUS,
    Child,
    Result,
    Server,
    emit,
    free_port,
    parser,
    positive,
    process_tree_cpu,
)
from ipcnet.bench.harness import rounds as run_rounds
from ipcnet.bench.peers import build_c_echo, c_argv, find_cc

MiB = 1 << 20
CONTENDERS = {  # name: the label of its rows
    "direct": "direct (no relay)",
    "ipcnet": "ipcnet relay",
    "ipcnet-copy": "ipcnet relay --no-splice",
    "socat": "socat",
    "socat-b1m": "socat -b 1M",
    "haproxy": "HAProxy",
    "nginx": "nginx stream",
}
NGINX_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


def missing(name: str) -> str | None:
    needed = {"socat-b1m": "socat"}.get(name, name)
    if name not in ("direct", "ipcnet", "ipcnet-copy") and shutil.which(needed) is None:
        return f"{needed} not installed"
    if name == "nginx" and not Path(NGINX_MODULE).exists():
        return "libnginx-mod-stream not installed"
    return None


def start(name: str, port: int, target: int, folder: str, more: list[str]) -> Server | None:
    """Start contender ``name`` relaying 127.0.0.1:port to 127.0.0.1:target (None: direct)
    on the last CPU; ``more``: options for ipcnet relay."""
    if name == "direct":
        return None
    cfg = Path(folder) / name
    if name in ("ipcnet", "ipcnet-copy"):
        argv = [sys.executable, "-m", "ipcnet", "relay", "-q", f"tcp://127.0.0.1:{port}",
                f"tcp://127.0.0.1:{target}"]  # fmt: skip
        if name == "ipcnet-copy":
            argv.append("--no-splice")
        argv += more
    elif name.startswith("socat"):
        argv = ["socat"] + (["-b", "1048576"] if name == "socat-b1m" else [])
        argv += [f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"TCP:127.0.0.1:{target}"]
    elif name == "haproxy":
        cfg.write_text(textwrap.dedent(f"""\
            global
                maxconn 4000
                nbthread 1
                tune.pipesize 1048576
            defaults
                mode tcp
                option splice-request
                option splice-response
                timeout connect 5s
                timeout client 60s
                timeout server 60s
            frontend f
                bind 127.0.0.1:{port}
                default_backend b
            backend b
                server s 127.0.0.1:{target}
            """))  # fmt: skip
        argv = ["haproxy", "-db", "-f", str(cfg)]
    elif name == "nginx":
        cfg.mkdir(exist_ok=True)
        (cfg / "nginx.conf").write_text(textwrap.dedent(f"""\
            load_module {NGINX_MODULE};
            worker_processes 1;
            daemon off;
            pid {cfg}/nginx.pid;
            error_log {cfg}/error.log;
            events {{ worker_connections 4000; }}
            stream {{
                server {{
                    listen 127.0.0.1:{port} reuseport;
                    proxy_pass 127.0.0.1:{target};
                }}
            }}
            """))  # fmt: skip
        argv = ["nginx", "-p", str(cfg), "-c", str(cfg / "nginx.conf")]
    else:
        raise ValueError(f"unknown contender {name!r}")
    return Server(argv, f"{folder}/{name}.log", port=port, cpu=-1, timeout=10)


def _cpu(relay: Server | None) -> float:
    return process_tree_cpu(relay.pid) if relay is not None else 0.0


def throughput_once(
    name: str, size: int, source: Path, digest: str, folder: str, more: list[str]
) -> tuple[float, float]:
    """(bytes per second, the relay's CPU seconds) through ``name`` for one run (sha256
    checked)."""
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(1)
    sink_port = sink.getsockname()[1]
    port = free_port()
    relay = start(name, port, sink_port, folder, more)
    try:

        def receive(ready: Callable[[], None]) -> tuple[float, int, bool]:
            buf = bytearray(size + 1)
            view = memoryview(buf)
            ready()
            conn, _ = sink.accept()
            got = 0
            while n := conn.recv_into(view[got:]):
                got += n
            end = time.monotonic()
            conn.close()
            return end, got, got == size and hashlib.sha256(view[:got]).hexdigest() == digest

        def send(ready: Callable[[], None]) -> float:
            with open(source, "rb") as f, socket.socket() as s:
                begin = time.monotonic()
                s.connect(("127.0.0.1", port if relay is not None else sink_port))
                sent = 0
                while sent < size:
                    sent += os.sendfile(s.fileno(), f.fileno(), sent, size - sent)
                s.shutdown(socket.SHUT_WR)
                s.recv(1)  # the relay closes once the sink did
            return begin

        sink_child = Child(receive, 0)
        sink_child.wait_ready()
        sink.close()
        cpu_before = _cpu(relay)
        began = Child(send, 0).result()
        end, got, ok = sink_child.result()
        used = _cpu(relay) - cpu_before
        if not ok:
            raise RuntimeError(f"{name}: {got} bytes, sha256 differs or short")
        return size / (end - began), used
    finally:
        sink.close()
        if relay is not None:
            relay.stop(10)


def connections_once(
    name: str, seconds: float, echo_port: int, folder: str, clients: int, more: list[str]
) -> tuple[float, float]:
    """(connections per second, the relay's CPU ms per connection) through ``name``
    (connect, 1 KiB each way, close)."""
    port = free_port()
    relay = start(name, port, echo_port, folder, more)
    target = port if relay is not None else echo_port
    try:

        def loop(ready: Callable[[], None]) -> int:
            payload, done, end = b"k" * 1024, 0, time.monotonic() + seconds
            while time.monotonic() < end:
                with socket.create_connection(("127.0.0.1", target)) as s:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    s.sendall(payload)
                    got = 0
                    while got < len(payload):
                        if not (n := len(s.recv(4096))):
                            raise RuntimeError("short echo")
                        got += n
                done += 1
            return done

        before = _cpu(relay)
        kids = [
            Child(loop, i % max(1, len(CPUS) - 1)) for i in range(clients)
        ]  # not the relay's CPU
        total = sum(k.result() for k in kids)
        time.sleep(0.2)  # the last connections' children are reaped (socat)
        return total / seconds, (_cpu(relay) - before) * 1000 / max(1, total)
    finally:
        if relay is not None:
            relay.stop(10)


def _source(folder: str, mib: int) -> tuple[Path, str]:
    """SIZE MiB of random data in ``folder``, no two MiB alike; its sha256."""
    source, block, digest = Path(folder) / "source", os.urandom(MiB), hashlib.sha256()
    with open(source, "wb") as f:
        for i in range(mib):
            chunk = block[i % 256 :] + block[: i % 256]
            f.write(chunk)
            digest.update(chunk)
    return source, digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    p = parser("relay")
    p.add_argument(
        "--size", type=positive(int), default=1024, metavar="MIB", help="MiB per run (1024)"
    )
    p.add_argument("--rounds", type=positive(int), default=3, help="rounds per contender (3)")
    p.add_argument("--seconds", type=positive(float), default=2.0, help="per connection round (2)")
    p.add_argument("--clients", type=positive(int), default=2, help="connection clients (2)")
    p.add_argument(
        "--only", default=",".join(CONTENDERS), help=f"contenders ({','.join(CONTENDERS)})"
    )
    p.add_argument("--skip", choices=("throughput", "connections"), help="leave one out")
    p.add_argument("--relay-args", default="", metavar="ARGS", help="more options for ipcnet relay")
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    if unknown := [n for n in names if n not in CONTENDERS]:
        p.error(f"unknown contender {unknown[0]!r} (known: {', '.join(CONTENDERS)})")
    more, kinds = (
        args.relay_args.split(),
        [k for k in ("throughput", "connections") if k != args.skip],
    )
    if "connections" in kinds and find_cc() is None:
        kinds.remove("connections")
        print(
            "bench relay: connections skipped: no C compiler for the echo server", file=sys.stderr
        )
    size, cells = args.size * MiB, {}
    for n in names:
        label, why = CONTENDERS[n], missing(n)
        for key, case, unit in (
            ("gib_s", f"{args.size} MiB through", "GiB/s"),
            ("cpu_gib", f"{args.size} MiB relay CPU", "cpu-s/GiB"),
            ("conns_s", "1 KiB connections", "conns/s"),
            ("cpu_conn", "1 KiB connections relay CPU", "cpu-ms/conn"),
        ):
            cells[n, key] = Result(
                case,
                label,
                unit,
                lower_is_better=key.startswith("cpu"),
                note=f"skipped: {why}" if why else "",
            )
    todo = [(k, n) for k in kinds for n in names if not missing(n)]
    with (
        tempfile.TemporaryDirectory(prefix="ipcnet-bench-relay-", dir="/dev/shm") as shm,
        tempfile.TemporaryDirectory(prefix="ipcnet-bench-relay-") as folder,
    ):
        source, digest = _source(shm, args.size) if "throughput" in kinds else (Path(), "")
        echo = None
        binary = None
        try:
            binary = build_c_echo(folder) if "connections" in kinds else None
        except RuntimeError as exc:  # a cc that cannot build it: throughput still runs
            print(f"bench relay: connections skipped: {exc}", file=sys.stderr)
            todo = [case for case in todo if case[0] != "connections"]
        if binary is not None:
            echo_port = free_port()
            echo = Server(
                c_argv(binary, f"tcp://127.0.0.1:{echo_port}"),
                f"{folder}/echo.log",
                port=echo_port,
                cpu=0,
            )

        def one(case: tuple[str, str]) -> None:
            kind, n = case
            if kind == "throughput":
                rate, used = throughput_once(n, size, source, digest, folder, more)
                cells[n, "gib_s"].samples.append(rate / 2**30)
                cells[n, "cpu_gib"].samples.append(used / (size / 2**30))
            else:
                rate, ms = connections_once(n, args.seconds, echo_port, folder, args.clients, more)
                cells[n, "conns_s"].samples.append(rate)
                cells[n, "cpu_conn"].samples.append(ms)
                time.sleep(0.5)  # let TIME_WAIT settle a little

        try:
            run_rounds(todo, args.rounds, one, "relay", lambda case: f"{case[0]} {case[1]}")
        finally:
            if echo is not None:
                echo.stop()
    results = sorted(cells.values(), key=lambda r: (r.case.startswith("1 KiB"), r.unit, not r.ours))
    emit(args, [r for r in results if r.samples or r.note], "relay: ipcnet relay beside its peers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
