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
others; rounds interleave the contenders; medians and ranges are printed (JSON with
--json). A contender whose program is missing is reported as skipped, not hidden.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from ipcnet.bench.peers import build_c_echo, c_argv, find_cc

MiB = 1 << 20
CONTENDERS = (
    "direct",
    "ipcnet",
    "ipcnet-copy",
    "socat",
    "socat-b1m",
    "haproxy",
    "nginx",
)
NGINX_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"


def _cpus() -> tuple[list[str], list[int]]:
    """(taskset prefix for the relay, CPUs for the load)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return [], cpus
    return ["taskset", "-c", str(cpus[-1])], cpus[:-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    """True once something listens on 127.0.0.1:port (read from /proc: connecting to
    check would make the relay open a connection to the sink)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        return any(line.split()[1] == wanted and line.split()[3] == "0A" for line in f)


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not _listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the relay on port {port} did not start")
        time.sleep(0.02)


# --- the contenders --------------------------------------------------------------------


def missing(name: str) -> str | None:
    program = {"socat": "socat", "socat-b1m": "socat", "haproxy": "haproxy", "nginx": "nginx"}
    needed = program.get(name)
    if needed and shutil.which(needed) is None:
        return f"{needed} not installed"
    if name == "nginx" and not Path(NGINX_MODULE).exists():
        return "libnginx-mod-stream not installed"
    return None


RELAY_ARGS: list[str] = []  # extra options for the ipcnet contenders (--relay-args)


def start(name: str, port: int, target: int, folder: str) -> subprocess.Popen[bytes] | None:
    """Start contender ``name`` relaying 127.0.0.1:port to 127.0.0.1:target (None: direct)."""
    if name == "direct":
        return None
    pin, _ = _cpus()
    cfg = Path(folder) / name
    if name in ("ipcnet", "ipcnet-copy"):
        argv = [sys.executable, "-m", "ipcnet", "relay", "-q", f"tcp://127.0.0.1:{port}",
                f"tcp://127.0.0.1:{target}"]  # fmt: skip
        if name == "ipcnet-copy":
            argv.append("--no-splice")
        argv += RELAY_ARGS
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
    proc = subprocess.Popen([*pin, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port, proc)
    return proc


def cpu_seconds(proc: subprocess.Popen[bytes] | None) -> float:
    """CPU time (user + system) of a contender and its children (nginx's worker, socat's
    child per connection), reaped children included (psutil, the bench extra)."""
    if proc is None:
        return 0.0
    import psutil  # type: ignore[import-untyped,unused-ignore]

    total = 0.0
    try:
        top = psutil.Process(proc.pid)
        processes = [top, *top.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:  # it ended meanwhile: its time is in its parent's children_*
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- throughput ------------------------------------------------------------------------


def _fork(body: Callable[[Callable[[], None]], bytes], cpu: int | None) -> tuple[int, int]:
    """Run ``body(ready)`` in a child (pinned to ``cpu``); returns once it called ``ready``:
    (pid, fd to read its answer from)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})

            def ready() -> None:
                os.write(w, b"R")

            os.write(w, body(ready))
        except BaseException as exc:
            os.write(w, json.dumps({"error": repr(exc)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    if os.read(r, 1) != b"R":
        os.waitpid(pid, 0)
        raise RuntimeError("a benchmark process failed before it was ready")
    return pid, r


def _collect(pid: int, fd: int) -> dict[str, object]:
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    answer: dict[str, object] = json.loads(data)
    if "error" in answer:
        raise RuntimeError(str(answer["error"]))
    return answer


def throughput_once(
    name: str, size: int, source: Path, digest: str, folder: str
) -> tuple[float, float]:
    """(bytes per second, the relay's CPU seconds) through ``name`` for one run (sha256
    checked)."""
    _, load = _cpus()
    cpu = load[0] if load else None
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(1)
    sink_port = sink.getsockname()[1]
    port = _free_port()
    proc = start(name, port, sink_port, folder)
    try:

        def receive(ready: Callable[[], None]) -> bytes:
            buf = bytearray(size + 1)
            view = memoryview(buf)
            ready()
            conn, _ = sink.accept()
            got = 0
            while n := conn.recv_into(view[got:]):
                got += n
            end = time.monotonic()
            conn.close()
            ok = got == size and hashlib.sha256(view[:got]).hexdigest() == digest
            return json.dumps({"end": end, "got": got, "ok": ok}).encode()

        def send(ready: Callable[[], None]) -> bytes:
            ready()
            with open(source, "rb") as f, socket.socket() as s:
                begin = time.monotonic()
                s.connect(("127.0.0.1", port if proc is not None else sink_port))
                sent = 0
                while sent < size:
                    sent += os.sendfile(s.fileno(), f.fileno(), sent, size - sent)
                s.shutdown(socket.SHUT_WR)
                s.recv(1)  # the relay closes once the sink did
            return json.dumps({"begin": begin}).encode()

        sink_pid, sink_fd = _fork(receive, cpu)
        sink.close()
        cpu_before = cpu_seconds(proc)
        client_pid, client_fd = _fork(send, cpu)
        began = _collect(client_pid, client_fd)["begin"]
        got = _collect(sink_pid, sink_fd)
        used = cpu_seconds(proc) - cpu_before
        if not got["ok"]:
            raise RuntimeError(f"{name}: {got['got']} bytes, sha256 differs or short")
        return size / (float(got["end"]) - float(began)), used  # type: ignore[arg-type]
    finally:
        sink.close()
        stop(proc)


# --- short connections -----------------------------------------------------------------


def connections_once(
    name: str, seconds: float, echo_port: int, folder: str, clients: int
) -> tuple[float, float]:
    """(connections per second, the relay's CPU ms per connection) through ``name``
    (connect, 1 KiB each way, close)."""
    _, load = _cpus()
    port = _free_port()
    proc = start(name, port, echo_port, folder)
    target = port if proc is not None else echo_port
    try:

        def loop(ready: Callable[[], None]) -> bytes:
            ready()
            payload = b"k" * 1024
            done = 0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                with socket.create_connection(("127.0.0.1", target)) as s:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    s.sendall(payload)
                    got = 0
                    while got < len(payload):
                        n = len(s.recv(4096))
                        if not n:
                            raise RuntimeError("short echo")
                        got += n
                done += 1
            return json.dumps({"done": done}).encode()

        before = cpu_seconds(proc)
        kids = [_fork(loop, load[i % len(load)] if load else None) for i in range(clients)]
        total = sum(int(_collect(pid, fd)["done"]) for pid, fd in kids)  # type: ignore[call-overload]
        time.sleep(0.2)  # the last connections' children are reaped (socat)
        return total / seconds, (cpu_seconds(proc) - before) * 1000 / max(1, total)
    finally:
        stop(proc)


# --- the command -----------------------------------------------------------------------


def _summary(values: list[float], scale: float) -> dict[str, object]:
    scaled = [v / scale for v in values]
    return {
        "median": round(statistics.median(scaled), 3),
        "range": [round(min(scaled), 3), round(max(scaled), 3)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ipcnet bench relay", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024, metavar="MIB", help="MiB per run (1024)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per contender (3)")
    parser.add_argument("--seconds", type=float, default=2.0, help="per connection round (2)")
    parser.add_argument("--clients", type=int, default=2, help="connection clients (2)")
    parser.add_argument(
        "--only", default=",".join(CONTENDERS), help=f"contenders ({','.join(CONTENDERS)})"
    )
    parser.add_argument("--skip", choices=("throughput", "connections"), help="leave one out")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument(
        "--relay-args", default="", metavar="ARGS", help="more options for ipcnet relay"
    )
    args = parser.parse_args(argv)
    RELAY_ARGS[:] = args.relay_args.split()
    names = [n for n in args.only.split(",") if n]
    for n in names:
        if n not in CONTENDERS:
            parser.error(f"unknown contender {n!r} (known: {', '.join(CONTENDERS)})")
    skipped = {n: why for n in names if (why := missing(n))}
    names = [n for n in names if n not in skipped]
    size = args.size * MiB
    results: dict[str, dict[str, object]] = {n: {} for n in names}
    with tempfile.TemporaryDirectory(prefix="ipcnet-bench-relay-", dir="/dev/shm") as shm:
        folder = tempfile.mkdtemp(prefix="ipcnet-bench-relay-")
        if args.skip != "throughput":
            source = Path(shm) / "source"
            block = os.urandom(MiB)
            digest = hashlib.sha256()
            with open(source, "wb") as f:
                for i in range(args.size):
                    chunk = block[i % 256 :] + block[: i % 256]  # no two MiB alike
                    f.write(chunk)
                    digest.update(chunk)
            rates: dict[str, list[float]] = {n: [] for n in names}
            cpus: dict[str, list[float]] = {n: [] for n in names}
            for _ in range(args.rounds):
                for n in names:
                    rate, used = throughput_once(n, size, source, digest.hexdigest(), folder)
                    rates[n].append(rate)
                    cpus[n].append(used / (size / 2**30))
                    _say(f"throughput {n}: {rate / 2**30:.2f} GiB/s, {cpus[n][-1]:.2f} cpu-s/GiB")
            source.unlink()
            for n in names:
                results[n]["gib_s"] = _summary(rates[n], 2**30)
                results[n]["cpu_s_per_gib"] = _summary(cpus[n], 1.0)
        if args.skip != "connections":
            if find_cc() is None:
                skipped["connections"] = "no C compiler for the echo server"
            else:
                echo_port = _free_port()
                binary = build_c_echo(folder)
                echo = subprocess.Popen(
                    c_argv(binary, f"tcp://127.0.0.1:{echo_port}"), stderr=subprocess.DEVNULL
                )
                _, load = _cpus()
                if load:
                    os.sched_setaffinity(echo.pid, {load[0]})
                try:
                    _wait_port(echo_port, echo)
                    per: dict[str, list[float]] = {n: [] for n in names}
                    cost: dict[str, list[float]] = {n: [] for n in names}
                    for _ in range(args.rounds):
                        for n in names:
                            rate, ms = connections_once(
                                n, args.seconds, echo_port, folder, args.clients
                            )
                            per[n].append(rate)
                            cost[n].append(ms)
                            _say(f"connections {n}: {rate:.0f}/s, {ms:.3f} cpu-ms each")
                            time.sleep(0.5)  # let TIME_WAIT settle a little
                    for n in names:
                        results[n]["conns_s"] = _summary(per[n], 1.0)
                        results[n]["cpu_ms_per_conn"] = _summary(cost[n], 1.0)
                finally:
                    echo.terminate()
                    echo.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    doc = {"size_mib": args.size, "rounds": args.rounds, "results": results, "skipped": skipped}
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _table(doc)
    return 0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _table(doc: dict[str, object]) -> None:
    results = doc["results"]
    assert isinstance(results, dict)
    keys = ("gib_s", "cpu_s_per_gib", "conns_s", "cpu_ms_per_conn")
    heads = ("GiB/s", "relay cpu-s/GiB", "conns/s", "relay cpu-ms/conn")
    print(f"{'contender':<12} " + " ".join(f"{h + ' median [range]':<28}" for h in heads))
    for name, row in results.items():
        cells = []
        for key in keys:
            cell = row.get(key)
            cells.append(f"{cell['median']} {cell['range']}" if cell else "-")
        print(f"{name:<12} " + " ".join(f"{c:<28}" for c in cells))
    skipped = doc["skipped"]
    assert isinstance(skipped, dict)
    for name, why in skipped.items():
        print(f"{name}: skipped ({why})")


if __name__ == "__main__":
    sys.exit(main())
