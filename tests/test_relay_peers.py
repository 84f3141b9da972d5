"""``ipcnet relay`` with real peers: socat and OpenBSD nc on both sides, HAProxy in both
PROXY protocol roles, a blackholed target in a network namespace, 100 slow readers."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ipcnet.protocols.proxy import ProxyHeaderReader
from ipcnet.testing import free_port, netns
from relay_helpers import RelayProcess, env, recv_all, relay_process, rss_kib, server

needs_socat = pytest.mark.skipif(shutil.which("socat") is None, reason="socat not installed")
needs_nc = pytest.mark.skipif(shutil.which("nc") is None, reason="nc not installed")
needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy missing")


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on port {port}") from None
            time.sleep(0.05)


@needs_socat
@needs_nc
def test_nc_client_socat_server_reply_two_seconds_after_eof() -> None:
    port = free_port()
    backend = subprocess.Popen(
        # -t 10: socat itself would close 0.5 s after the EOF (alpine-docker/socat #22)
        [
            "socat",
            "-t",
            "10",
            f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr",
            "SYSTEM:'wc -c; sleep 2; echo late reply'",
        ]
    )
    try:
        with relay_process("tcp://127.0.0.1:0", f"tcp://127.0.0.1:{port}") as relay:
            time.sleep(0.2)
            out = subprocess.run(
                ["nc", "-N", "127.0.0.1", str(relay.port)],
                input=b"x" * 100_000,
                capture_output=True,
                timeout=20,
                check=True,
            )
            assert out.stdout.split() == [b"100000", b"late", b"reply"]
            lines = relay.wait_lines(1)
        assert "client eof first, then server eof" in lines[-1], lines
        assert "up 100000 B" in lines[-1]
    finally:
        backend.kill()
        backend.wait()


@needs_socat
@needs_nc
def test_socat_client_nc_server_through_a_unix_socket(short_tmp: Path) -> None:
    """socat sends 300 KB into a unix socket; the relay carries it to ``nc -l -N``, which
    half-closed first (its stdin is empty): the other direction still gets everything.
    (nc is only the receiver here: ``nc -l`` stops sending once its peer's EOF arrives, a
    behaviour of nc's own, with or without a relay between.)"""
    port = free_port()
    payload = os.urandom(300_000)
    (short_tmp / "payload").write_bytes(payload)
    backend = subprocess.Popen(
        ["nc", "-N", "-l", "127.0.0.1", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not _listening(port):
            time.sleep(0.05)
        path = short_tmp / "front.sock"
        with relay_process(f"unix://{path}", f"tcp://127.0.0.1:{port}", "--once") as relay:
            with open(short_tmp / "payload", "rb") as stdin:
                out = subprocess.run(
                    ["socat", "-t", "10", "-", f"UNIX-CONNECT:{path}"],
                    stdin=stdin,
                    capture_output=True,
                    timeout=20,
                    check=True,
                )
            assert relay.proc.wait(10) == 0  # --once: exits when its connection ended
        assert out.stdout == b""
        got = backend.communicate(timeout=10)[0]
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        assert not path.exists()
    finally:
        backend.kill()
        backend.wait()
        (short_tmp / "payload").unlink()


def _listening(port: int) -> bool:
    with open("/proc/net/tcp") as f:
        return any(f":{port:04X} " in line and line.split()[3] == "0A" for line in f)


@needs_nc
def test_exec_target_from_the_cli_with_nc() -> None:
    with relay_process("tcp://127.0.0.1:0", "exec:tr a-z A-Z") as relay:
        for word in (b"hello", b"relay"):
            out = subprocess.run(
                ["nc", "-N", "127.0.0.1", str(relay.port)],
                input=word,
                capture_output=True,
                timeout=10,
                check=True,
            )
            assert out.stdout == word.upper()


def test_a_hundred_slow_readers_memory_stays_flat() -> None:
    """100 clients that read nothing, each behind a server that sends 64 MiB as fast as it
    can: the relay holds at most its pipes per connection, so the servers stall (they
    could push only what the kernel's socket buffers hold) and the relay's memory does not
    grow with what they would send."""
    size = 64 << 20
    sent: dict[int, int] = {}
    block = os.urandom(64 << 10)

    def firehose(conn: socket.socket) -> None:
        me = threading.get_ident()
        sent[me] = 0
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
        while sent[me] < size:
            conn.sendall(block)
            sent[me] += len(block)
        conn.shutdown(socket.SHUT_WR)

    with (
        server(firehose) as backend,
        relay_process("tcp://127.0.0.1:0", backend.url, "-q") as relay,
    ):
        clients = []
        for i in range(100):
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # slow: reads nothing
            c.connect(("127.0.0.1", relay.port))
            clients.append(c)
            if i == 0:
                while not sent:
                    time.sleep(0.01)
                time.sleep(0.5)
                before = rss_kib(relay.proc.pid)
        deadline = time.monotonic() + 30
        while len(sent) < 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        after = rss_kib(relay.proc.pid)
        assert len(sent) == 100
        assert max(sent.values()) < size  # the relay stopped reading from the fast writers
        assert after - before < 16 * 1024, f"rss grew {after - before} KiB for 99 connections"
        for c in clients[:2]:  # and what was held back arrives whole once they read
            c.settimeout(30)
            assert len(recv_all(c)) == size
        for c in clients:
            c.close()


NETNS_CODE = r"""
import socket, subprocess, threading, time, json
import ipcnet, ipcnet.relay
subprocess.run(["ip", "addr", "add", "10.77.0.1/24", "dev", "lo"], check=True)
subprocess.run(["nft", "add", "table", "inet", "t"], check=True)
subprocess.run(["nft", "add", "chain", "inet", "t", "in",
                "{ type filter hook input priority 0; }"], check=True)
# the blackholed target: every packet to port 9 on 10.77.0.1 is dropped, so a SYN gets no
# answer at all (no RST, no ICMP): only the connect timeout ends the attempt
subprocess.run(["nft", "add", "rule", "inet", "t", "in", "ip", "daddr", "10.77.0.1",
                "tcp", "dport", "9", "drop"], check=True)
good = socket.socket(); good.bind(("127.0.0.1", 0)); good.listen()
def serve():
    c, _ = good.accept()
    c.sendall(c.recv(100).upper()); c.close()
threading.Thread(target=serve, daemon=True).start()
targets = ["tcp://10.77.0.1:9", f"tcp://127.0.0.1:{good.getsockname()[1]}"]
with ipcnet.relay("tcp://127.0.0.1:0", targets, connect_timeout=0.5) as relay:
    c = socket.create_connection(("127.0.0.1", relay.address.port))
    c.sendall(b"through")
    print(c.recv(100).decode())
    print(json.dumps(relay.status()["connect_failures"]))
"""


def test_blackholed_target_times_out_and_the_next_one_serves() -> None:
    if (reason := netns.unavailable()) or shutil.which("nft") is None:
        pytest.skip(reason or "nft is needed for a drop rule in a network namespace")
    with netns.namespaces("ipcnet-relay") as (name,):
        r = subprocess.run(
            netns.in_ns(name, sys.executable, "-c", NETNS_CODE),
            capture_output=True,
            text=True,
            env=env(),
            timeout=30,
        )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["THROUGH", '{"tcp://10.77.0.1:9": 1}']


# --- PROXY protocol against HAProxy, both roles ------------------------------------------


class HeaderBackend:
    """Reads a PROXY header with ipcnet's parser, answers with the source it names."""

    def __init__(self) -> None:
        self.seen: list[object] = []

        def handle(conn: socket.socket) -> None:
            reader = ProxyHeaderReader()
            header = None
            while header is None:
                data = conn.recv(4096)
                if not data:
                    return
                header = reader.feed(data)
            body = reader.rest + recv_all(conn)
            self.seen.append(header.source)
            conn.sendall(f"{header.source}|".encode() + body)

        self.server = server(handle)
        self.srv = self.server.__enter__()


def _haproxy(config: str, port: int) -> subprocess.Popen[bytes]:
    tmp = Path(tempfile.mkdtemp(prefix="ipcr"))
    (tmp / "haproxy.cfg").write_text(textwrap.dedent(config))
    proc = subprocess.Popen(
        ["haproxy", "-db", "-f", str(tmp / "haproxy.cfg")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_port(port, proc)
    return proc


DEFAULTS = """
    global
        maxconn 100
    defaults
        mode tcp
        timeout connect 5s
        timeout client 10s
        timeout server 10s
"""


@needs_haproxy
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_relay_send_proxy_in_front_of_haproxy_accept_proxy(version: str) -> None:
    """client -> ipcnet relay --send-proxy -> HAProxy accept-proxy -> backend: the backend
    sees the client's own address, passed on by HAProxy from the header we wrote."""
    backend = HeaderBackend()
    hport = free_port()
    proc = _haproxy(
        DEFAULTS
        + f"""
    frontend f
        bind 127.0.0.1:{hport} accept-proxy
        default_backend b
    backend b
        server s 127.0.0.1:{backend.srv.port} send-proxy-v2
    """,
        hport,
    )
    try:
        with relay_process(
            "tcp://127.0.0.1:0", f"tcp://127.0.0.1:{hport}", "--send-proxy", version
        ) as relay:
            with socket.create_connection(("127.0.0.1", relay.port), 10) as c:
                c.sendall(b"payload")
                c.shutdown(socket.SHUT_WR)
                answer = recv_all(c)
                ours = c.getsockname()
        assert answer == f"{ours}|payload".encode()
    finally:
        proc.terminate()
        proc.wait(10)
        backend.server.__exit__(None, None, None)


@needs_haproxy
@pytest.mark.parametrize("version", ["send-proxy", "send-proxy-v2"])
def test_haproxy_send_proxy_in_front_of_relay_accept_proxy(version: str) -> None:
    """client -> HAProxy send-proxy(-v2) -> ipcnet relay --accept-proxy --send-proxy v2 ->
    backend: the relay read HAProxy's header and names the real client onward."""
    backend = HeaderBackend()
    with relay_process(
        "tcp://127.0.0.1:0", backend.srv.url, "--accept-proxy", "--send-proxy", "v2"
    ) as relay:
        hport = free_port()
        proc = _haproxy(
            DEFAULTS
            + f"""
        frontend f
            bind 127.0.0.1:{hport}
            default_backend b
        backend b
            server s 127.0.0.1:{relay.port} {version}
        """,
            hport,
        )
        try:
            with socket.create_connection(("127.0.0.1", hport), 10) as c:
                c.sendall(b"via haproxy")
                c.shutdown(socket.SHUT_WR)
                answer = recv_all(c)
                ours = c.getsockname()
            assert answer == f"{ours}|via haproxy".encode()
            lines = relay.wait_lines(2)
            assert any(f"{ours[0]}:{ours[1]} (via " in line for line in lines), lines
        finally:
            proc.terminate()
            proc.wait(10)
            backend.server.__exit__(None, None, None)


def test_accept_proxy_refuses_missing_malformed_and_too_long_headers() -> None:
    backend = HeaderBackend()
    with relay_process(
        "tcp://127.0.0.1:0",
        backend.srv.url,
        "--accept-proxy",
        "--send-proxy",
        "v1",
        "--connect-timeout",
        "1",
    ) as relay:
        cases = [
            b"GET / HTTP/1.0\r\n\r\n",  # no header: never guessed at
            b"PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n",  # a field missing
            b"PROXY TCP4 " + b"1" * 120 + b"\r\n",  # longer than 107 bytes
            b"PROXY TCP4 1.2.3.4",  # never finished: the deadline refuses it
        ]
        for data in cases:
            with socket.create_connection(("127.0.0.1", relay.port), 10) as c:
                c.sendall(data)
                try:
                    assert c.recv(100) == b""
                except ConnectionResetError:
                    pass
        with socket.create_connection(("127.0.0.1", relay.port), 10) as c:
            c.sendall(b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\nhello")
            c.shutdown(socket.SHUT_WR)
            assert recv_all(c) == b"('192.0.2.1', 1234)|hello"  # the header's client, passed on
        lines = relay.wait_lines(5)
    refused = [line for line in lines if "client refused" in line]
    assert len(refused) == 4, lines
    assert "expected a proxy protocol v1 or v2 header" in refused[0]
    assert backend.seen and len(backend.seen) == 1
    backend.server.__exit__(None, None, None)


def test_relay_process_stops_gracefully_on_sigterm() -> None:
    relay = RelayProcess("tcp://127.0.0.1:0", "tcp://127.0.0.1:9")
    assert relay.stop() == 0  # a stop asked for is a clean exit, as nginx and HAProxy make it
