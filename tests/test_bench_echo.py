"""The echo load client, the peer servers and ``ipcnet bench models``: function, not speed.

No assertion here is about how fast anything is; runs are a fraction of a second, on
ephemeral ports and unique paths, and every process started is stopped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ipcnet.bench import echo, harness, models
from ipcnet.bench.peers import PEERS, build_c_echo, c_argv, find_cc, unavailable
from ipcnet.testing.pairs import free_port

IPCNET = [sys.executable, "-m", "ipcnet"]

READY = re.compile(r"listening on (\S+)")

# An echo server that flips bit 0 of the first byte of every read.
BAD_ECHO = """
import socket, sys, threading
srv = socket.create_server(("127.0.0.1", 0))
print("bad echo listening on tcp://127.0.0.1:%d" % srv.getsockname()[1], file=sys.stderr, flush=True)
def serve(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(bytes([data[0] ^ 1]) + data[1:])
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


@contextmanager
def server(argv: list[str]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start a server that prints a ready line on stderr; yield (url, process); stop it."""
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        timer = threading.Timer(20, proc.kill)  # never hang on a silent server
        timer.start()
        line = proc.stderr.readline() if proc.stderr else ""
        timer.cancel()
        m = READY.search(line)
        assert m, f"no ready line: {line!r}"
        yield m.group(1), proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        if proc.stderr:
            proc.stderr.close()


def peer(name: str, url: str = "tcp://127.0.0.1:0") -> list[str]:
    return [sys.executable, "-m", "ipcnet.bench.peers", name, url]


def echo_roundtrip(url: str, payload: bytes) -> bytes:
    """Send payload from a thread while reading, half-close, read to EOF."""
    if url.startswith("tcp://"):
        host, port = url[len("tcp://") :].rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=10)
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        sock.connect(url[len("unix://") :])
    with sock:

        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        got = bytearray()
        while chunk := sock.recv(65536):
            got += chunk
        sender.join()
    return bytes(got)


# --- the load client -----------------------------------------------------------------------


def test_load_against_asyncio_protocol_peer_reports_json(capsys):
    with server(peer("asyncio-protocol")) as (url, proc):
        status = echo.main(
            [url, "-c", "3", "-d", "0.4", "-s", "3000", "--json", "--server-pid", str(proc.pid)]
        )
    (out,) = json.loads(capsys.readouterr().out)["results"]  # the harness's one schema
    assert status == 0
    assert out["unit"] == "msgs/s" and out["case"] == "3000 B c=3" and out["peer"] == url
    assert out["msgs"] > 0 and out["verified"] is True and out["errors"] == []
    assert out["samples"] == [out["msgs"] / 0.4] and out["mb_per_s"][0] > 0
    assert 0 < out["p50_ms"][0] <= out["p90_ms"][0] <= out["p99_ms"][0] <= out["max_ms"][0]
    assert out["server_cpu_s"][0] >= 0 and out["client_cpu_s"][0] > 0


def test_cli_over_unix_with_big_messages(short_tmp):
    url = f"unix://{short_tmp}/peer.sock"
    with server(peer("selectors", url)):
        done = subprocess.run(
            [*IPCNET, "bench", "echo", url, "-c", "2", "-d", "0.3", "-s", "200k", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["results"][0]["msgs"] > 0
        result = echo.measure(url, conns=1, seconds=0.3, size=300_000)  # multiplexed: > 128k
    assert result.extra["ok"] and result.extra["msgs"] > 0


def test_a_wrong_echo_is_reported_and_fails(capsys):
    with server([sys.executable, "-c", BAD_ECHO]) as (url, _):
        status = echo.main([url, "-c", "2", "-d", "0.3"])
        result = echo.measure(url, conns=1, seconds=0.3, size=100)
    err = capsys.readouterr().err
    assert status == 1
    assert "echo mismatch on connection" in err and "byte 0 of 1024" in err
    assert "Traceback" not in err
    assert not result.extra["verified"] and not result.extra["ok"]


def test_nothing_listening_is_a_clear_error(capsys):
    url = f"tcp://127.0.0.1:{free_port()}"
    assert echo.main([url, "-d", "0.2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ipcnet bench echo: connection refused")
    assert "Traceback" not in err


def test_a_bad_address_and_a_bad_size_are_clear_errors(capsys):
    assert echo.main(["nosuch://x", "-d", "0.2"]) == 2
    assert "ipcnet bench echo:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        echo.main(["tcp://127.0.0.1:9", "-s", "lots"])
    assert echo.main(["tcp://127.0.0.1:9", "--server-pid", str(2**22 + 12345)]) == 2
    assert "no process" in capsys.readouterr().err


def test_server_cpu_counts_the_process_tree():
    assert harness.process_tree_cpu(os.getpid()) > 0
    with pytest.raises(ValueError):
        harness.process_tree_cpu(2**22 + 12345)


@pytest.mark.parametrize(
    "text,size", [("1024", 1024), ("10k", 10240), ("100KiB", 102400), ("1M", 1 << 20)]
)
def test_sizes(text, size):
    assert harness.parse_size(text) == size


# --- the peers -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in PEERS if n != "c-epoll"])
def test_python_peers_echo_and_stop_on_sigterm(name, short_tmp):
    if unavailable(name):
        pytest.skip(unavailable(name))
    payload = os.urandom(300_000)
    with server(peer(name, f"unix://{short_tmp}/{name}.sock")) as (url, proc):
        assert echo_roundtrip(url, payload) == payload
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert not os.path.exists(f"{short_tmp}/{name}.sock")


@pytest.mark.skipif(find_cc() is None, reason="no C compiler (cc)")
def test_c_peer_compiles_echoes_and_stops(short_tmp):
    binary = build_c_echo(short_tmp)
    assert build_c_echo(short_tmp) == binary  # reused, not rebuilt
    payload = os.urandom(1 << 20)
    with server(c_argv(binary, "tcp://127.0.0.1:0")) as (url, proc):
        assert echo_roundtrip(url, payload) == payload
        assert echo.measure(url, conns=2, seconds=0.2, size=5000).extra["ok"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    sock_path = f"{short_tmp}/c.sock"
    with server(c_argv(binary, f"unix://{sock_path}")) as (url, proc):
        assert echo_roundtrip(url, payload) == payload
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert not os.path.exists(sock_path)
    os.unlink(binary)


# --- ipcnet bench models -------------------------------------------------------------------


def test_models_runs_peers_prints_json_and_leaves_nothing(capsys):
    only = ["--only", "selectors", "--only", "tcpserver", "--only", "epoll"]
    args = ["-d", "0.5", "--sizes", "1k", "--conns", "1,2", "--unix", "selectors"]
    status = models.main([*only, *args, "--json", "-q"])
    out = json.loads(capsys.readouterr().out)
    assert status == 0
    rows = {(r["peer"], r["case"]): r for r in out["results"]}
    assert set(rows) == {
        (peer, f"{t} 1k c={n}")
        for peer, t in [
            ("selectors loop", "tcp"),
            ("selectors loop", "unix"),
            ("TCPServer", "tcp"),
            ("ipcnet epoll", "tcp"),
        ]
        for n in (1, 2)
    }
    assert rows["TCPServer", "tcp 1k c=2"]["note"] == "serves one connection at a time"
    for key, row in rows.items():
        if key != ("TCPServer", "tcp 1k c=2"):
            assert len(row["samples"]) == 1 and row["median"] > 0 and row["errors"] == [], row
            assert row["p50_ms"] and row["server_cpu_s"]
            cpu = row["server_cpu_s"][0]  # in clock ticks: 0 if a loaded server got < 10 ms
            per_cpu = [pytest.approx(row["samples"][0] * 0.5 / cpu)] if cpu else []
            assert row["per_cpu_s"] == per_cpu, row  # messages (rate x 0.5 s) per CPU-s
    epoll = rows["ipcnet epoll", "tcp 1k c=2"]  # beside the peers its traits pick
    assert set(epoll["vs"]) == {"selectors loop"} and epoll["note"].endswith("x selectors loop")
    assert out["failures"] == [] and out["skipped"] == {} and len(out["goals"]) > 0
    assert live_children() == []


def live_children() -> list[int]:
    """Processes whose parent is this one and that are not zombies."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != b"Z":
                found.append(int(name))
    return found


def test_models_ratio_to_a_peer_that_echoed_nothing_is_missing_not_a_crash():
    """A very short load can end before a slow peer echoes anything: its median is 0."""
    ours = harness.Result("tcp 1k c=1", "ipcnet epoll", "msgs/s", [100.0], [5.0], extra={})
    peer = harness.Result("tcp 1k c=1", "selectors loop", "msgs/s", [0.0], [0.0], extra={})
    out = {("epoll", "tcp", 1024, 1): ours, ("selectors", "tcp", 1024, 1): peer}
    known = {"epoll": models.Contender("epoll", True, peers=("selectors",))}
    models._compare(out, known | {"selectors": models.Contender("selectors", False)})
    assert ours.extra["vs"] == {"selectors loop": {"msgs_per_s": None, "msgs_per_cpu_s": None}}
    assert ours.note == "- selectors loop"
