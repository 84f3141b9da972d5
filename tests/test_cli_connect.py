"""`ipcnet connect` against a real peer nobody here wrote: socat."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest

from ipcnet.testing import free_port

IPCNET = [sys.executable, "-m", "ipcnet"]
pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")


def _ready(check) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError("socat did not start listening")


def _tcp_ready(port: int, family: int = socket.AF_INET) -> bool:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with open("/proc/net/tcp6" if family == socket.AF_INET6 else "/proc/net/tcp") as f:
        return any(f":{port:04X} " in line and line.split()[3] == "0A" for line in f) and bool(host)


def _unix_ready(name: str) -> bool:
    with open("/proc/net/unix") as f:
        return any(line.rstrip().endswith(name) for line in f)


def _socat(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["socat", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE
    )


def _connect(url: str, data: bytes, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*IPCNET, "connect", *extra, url], input=data, capture_output=True, timeout=30
    )


ECHO_SERVERS = {
    "tcp4": lambda port, name: (
        [f"TCP4-LISTEN:{port},bind=127.0.0.1,reuseaddr", "EXEC:cat"],
        f"tcp4://127.0.0.1:{port}",
    ),
    "tcp6": lambda port, name: (
        [f"TCP6-LISTEN:{port},bind=[::1],reuseaddr", "EXEC:cat"],
        f"tcp6://[::1]:{port}",
    ),
    "unix": lambda port, name: ([f"UNIX-LISTEN:/tmp/{name}", "EXEC:cat"], f"unix:///tmp/{name}"),
    "abstract": lambda port, name: ([f"ABSTRACT-LISTEN:{name}", "EXEC:cat"], f"unix://@{name}"),
    # -b: socat reads 8 KiB by default, which would cut our 64 KiB packets
    "unixpacket": lambda port, name: (
        ["-b", "65536", f"UNIX-LISTEN:/tmp/{name},type=5", "EXEC:cat"],
        f"unixpacket:///tmp/{name}",
    ),
}


@pytest.mark.parametrize("kind", list(ECHO_SERVERS))
def test_client_against_socat_echo(kind: str) -> None:
    if kind == "tcp6" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    port, name = free_port(), f"ipcnet-{uuid.uuid4().hex[:12]}"
    args, url = ECHO_SERVERS[kind](port, name)
    server = _socat(*args)
    try:
        if kind.startswith("tcp"):
            _ready(lambda: _tcp_ready(port, socket.AF_INET6 if kind == "tcp6" else socket.AF_INET))
        else:
            _ready(lambda: _unix_ready(name))
        payload = os.urandom(300_000)
        out = _connect(url, payload)
        assert out.returncode == 0, out.stderr
        assert out.stdout == payload  # half-close on stdin EOF let socat finish the echo
        assert out.stderr == b""
    finally:
        server.kill()
        server.wait()
        if os.path.exists(f"/tmp/{name}"):
            os.unlink(f"/tmp/{name}")


def test_listen_against_socat_client() -> None:
    port = free_port()
    ours = subprocess.Popen(
        [*IPCNET, "connect", "--listen", f"tcp://127.0.0.1:{port}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert ours.stdin is not None
    ours.stdin.write(b"from ipcnet\n")
    ours.stdin.close()
    _ready(lambda: _tcp_ready(port))
    client = subprocess.run(
        ["socat", "-", f"TCP4:127.0.0.1:{port}"],
        input=b"from socat\n",
        capture_output=True,
        timeout=30,
    )
    assert ours.wait(30) == 0
    out = ours.stdout.read()  # type: ignore[union-attr]
    assert client.stdout == b"from ipcnet\n"
    assert out == b"from socat\n"


def test_udp_against_socat() -> None:
    port = free_port(socket.SOCK_DGRAM)
    server = _socat(f"UDP4-RECVFROM:{port},bind=127.0.0.1,fork", "EXEC:cat")
    try:
        _ready(lambda: any(f":{port:04X} " in line for line in open("/proc/net/udp")))
        out = _connect(f"udp://127.0.0.1:{port}", b"one datagram\n")
        assert out.returncode == 0, out.stderr
        assert out.stdout == b"one datagram\n"
    finally:
        server.kill()
        server.wait()


def test_udp_listen_against_socat_client() -> None:
    port = free_port(socket.SOCK_DGRAM)
    ours = subprocess.Popen(
        [*IPCNET, "connect", "--listen", "--linger", "1", f"udp://127.0.0.1:{port}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _ready(lambda: any(f":{port:04X} " in line for line in open("/proc/net/udp")))
    client = _socat("-t", "2", "-", f"UDP4:127.0.0.1:{port}")
    assert client.stdin is not None
    client.stdin.write(b"ping\n")
    client.stdin.flush()
    time.sleep(0.3)
    out, err = ours.communicate(b"pong\n", timeout=30)
    client_out, _ = client.communicate(timeout=30)
    assert out == b"ping\n", err
    assert client_out == b"pong\n"
    assert ours.returncode == 0, err


def test_unixgram_against_socat() -> None:
    path = f"/tmp/ipcnet-{uuid.uuid4().hex[:12]}"
    server = _socat(f"UNIX-RECVFROM:{path},fork", "EXEC:cat")
    try:
        _ready(lambda: os.path.exists(path))
        out = _connect(f"unixgram://{path}", b"unix datagram\n")
        assert out.returncode == 0, out.stderr
        assert out.stdout == b"unix datagram\n"
    finally:
        server.kill()
        server.wait()
        if os.path.exists(path):
            os.unlink(path)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "tcp://127.0.0.1:{port}",
            "connection refused: nothing listens on tcp://127.0.0.1:{port} (is the server running?)",
        ),
        ("unix:///tmp/ipcnet-none-{port}", "no socket at unix:///tmp/ipcnet-none-{port}"),
        ("tcp://host", "invalid address 'tcp://host': missing port"),
        ("tpc://h:1", "invalid address 'tpc://h:1': unknown scheme 'tpc' (did you mean tcp://?)"),
        ("tcp://no-such-host.invalid:80", "cannot resolve tcp://no-such-host.invalid:80: "),
        ("exec:/nonexistent/cmd", "cannot run exec:/nonexistent/cmd: '/nonexistent/cmd' not found"),
    ],
)
def test_errors_are_one_line_and_exit_1(url: str, message: str) -> None:
    port = free_port()
    out = _connect(url.format(port=port), b"")
    assert out.returncode == 1
    err = out.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("ipcnet connect: " + message.format(port=port))
