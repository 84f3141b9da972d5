"""Servers on shm:// and mq:// (issue 13, items 1 and 2): every model serves them."""

from __future__ import annotations

import time
import uuid

import pytest

import ipcnet
from ipcnet.transports import mq
from serverkit import serving

MODELS = ["iterative", "thread", "pool", "epoll", "asyncio", "fork", "prefork"]


@pytest.mark.parametrize("model", MODELS)
def test_echo_over_shm_under_every_model(model: str) -> None:
    url = f"shm://@ipcnet-serve-{uuid.uuid4().hex}"
    with serving("echo", url, model=model):
        for i in range(2):  # two connections in turn: the listener keeps accepting
            with ipcnet.connect(url, timeout=20) as ch:
                payload = f"hello {i} through shared memory\n".encode() * 1000
                ch.write(payload)
                ch.send_eof()
                assert ch.read() == payload


@pytest.mark.parametrize("model", ["epoll", "thread"])
def test_a_server_drains_a_message_queue(model: str) -> None:
    url = f"mq:///ipcnet-serve-{uuid.uuid4().hex}"
    try:
        with serving("discard", url, model=model):
            with ipcnet.open_datagram(url, timeout=10) as sender:
                for _ in range(5):
                    sender.send(b"for the server")
            deadline = time.monotonic() + 20
            while mq.message_count(url) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert mq.message_count(url) == 0  # the server read every message
    finally:
        mq.remove(url)
