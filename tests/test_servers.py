"""Every service under every driver, over TCP and UNIX (datagrams over udp and unixgram)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import uuid

import pytest

import ipcnet
from ipcnet.drivers import MODELS as REGISTRY
from serverkit import serving

MODELS = list(REGISTRY)
DAYTIME = re.compile(rb"^\w+day, \w+ \d\d, \d{4} \d\d:\d\d:\d\d-UTC\r\n$")


def _addresses() -> tuple[str, ...]:
    tag = uuid.uuid4().hex[:10]
    return (
        "tcp://127.0.0.1:0",
        f"unix:///tmp/ipcnet-s-{tag}.sock",
        "udp://127.0.0.1:0",
        f"unixgram:///tmp/ipcnet-g-{tag}.sock",
    )


def _stream(url: str, payload: bytes) -> bytes:
    with ipcnet.connect(url, timeout=10) as ch:
        if payload:
            ch.write(payload)
        ch.send_eof()
        return ch.read()


def _datagram(url: str, payload: bytes) -> bytes:
    with ipcnet.open_datagram(url, timeout=10) as ep:
        ep.send(payload)
        return ep.recv()[0]


PAYLOAD = bytes(range(256)) * 400  # 100 KiB, every byte value


@pytest.mark.parametrize("model", MODELS)
def test_echo(model: str) -> None:
    with serving("echo", *_addresses(), model=model) as server:
        for scheme in ("tcp", "unix"):
            assert _stream(server.url(scheme), PAYLOAD) == PAYLOAD
            assert _stream(server.url(scheme), b"") == b""
        for scheme in ("udp", "unixgram"):
            assert _datagram(server.url(scheme), b"one datagram") == b"one datagram"


@pytest.mark.parametrize("model", MODELS)
def test_increment(model: str) -> None:
    with serving("increment", *_addresses(), model=model) as server:
        expected = bytes((b + 1) & 0xFF for b in PAYLOAD)
        for scheme in ("tcp", "unix"):
            assert _stream(server.url(scheme), PAYLOAD) == expected
        for scheme in ("udp", "unixgram"):
            assert _datagram(server.url(scheme), b"HAL") == b"IBM"


@pytest.mark.parametrize("model", ["iterative", "epoll", "asyncio"])
def test_increment_once_like_the_seed(model: str) -> None:
    with serving("increment", "tcp://127.0.0.1:0", model=model, extra=("--once",)) as server:
        with ipcnet.connect(server.url("tcp"), timeout=10) as ch:
            ch.write(b"A")
            assert ch.read() == b"B"  # one byte back, then the server closes


@pytest.mark.parametrize("model", MODELS)
def test_discard(model: str) -> None:
    with serving("discard", *_addresses()[:2], model=model) as server:
        for scheme in ("tcp", "unix"):
            assert _stream(server.url(scheme), PAYLOAD) == b""


@pytest.mark.parametrize("model", MODELS)
def test_daytime(model: str) -> None:
    with serving("daytime", *_addresses(), model=model) as server:
        for scheme in ("tcp", "unix"):
            with ipcnet.connect(server.url(scheme), timeout=10) as ch:
                assert DAYTIME.match(ch.read())
        for scheme in ("udp", "unixgram"):
            assert DAYTIME.match(_datagram(server.url(scheme), b""))


@pytest.mark.parametrize("model", ["iterative", "thread", "epoll", "asyncio", "prefork"])
def test_serve_on_abstract_inherited_and_systemd_sockets(model: str) -> None:
    """unix://@name, fd://N and systemd:// (LISTEN_FDS) all serve like any address."""
    name = f"unix://@ipcnet-serve-{uuid.uuid4().hex[:10]}"
    with serving("echo", name, model=model) as server:
        assert _stream(server.url("unix"), b"abstract") == b"abstract"

    inherited = socket.create_server(("127.0.0.1", 0))
    port = inherited.getsockname()[1]
    launcher = (
        "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); "
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid())); "
        "os.execv(sys.executable, [sys.executable, '-m', 'ipcnet', 'serve', 'echo', "
        f"'systemd://', '--model', '{model}', '--workers', '2'])"
    )
    for argv in (
        [
            sys.executable,
            "-m",
            "ipcnet",
            "serve",
            "echo",
            f"fd://{inherited.fileno()}",
            "--model",
            model,
        ],
        [sys.executable, "-c", launcher, str(inherited.fileno())],
    ):
        proc = subprocess.Popen(
            argv, pass_fds=[inherited.fileno()], stderr=subprocess.PIPE, text=True
        )
        try:
            assert proc.stderr is not None
            assert "listening on" in proc.stderr.readline()
            assert _stream(f"tcp://127.0.0.1:{port}", b"inherited") == b"inherited"
        finally:
            proc.terminate()
            assert proc.wait(20) == 0
    inherited.close()
