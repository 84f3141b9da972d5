"""Every service under every driver, over TCP and UNIX (datagrams over udp and unixgram)."""

from __future__ import annotations

import re
import uuid

import pytest

import ipcnet
from ipcnet.drivers import MODEL_HELP
from serverkit import serving

MODELS = list(MODEL_HELP)
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
