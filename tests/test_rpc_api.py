"""The methods the RPC tests serve (``ipcnet rpc serve test_rpc_api:methods``), and helpers.

No tests here: this module is imported by the server processes and by the other
test_rpc_* modules.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ipcnet import rpc
from serverkit import Server, _start

HERE = Path(__file__).resolve().parent
methods = rpc.Methods()
_gate = threading.Event()


@methods.method
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@methods.method(inline=True)
def echo(value: Any = None) -> Any:
    return value


@methods.method
def greet(name: str, *, greeting: str = "hello") -> str:
    return f"{greeting}, {name}"


@methods.method
def sleep(seconds: float) -> float:
    time.sleep(min(seconds, 5.0))
    return seconds


@methods.method
def boom() -> None:
    raise ValueError("the handler failed on purpose")


@methods.method
def block() -> str:
    """Wait (in a worker) until another connection calls release."""
    if not _gate.wait(20):
        return "timed out"
    _gate.clear()
    return "released"


@methods.method
def release() -> bool:
    _gate.set()
    return True


@methods.method
async def slow_add(a: int, b: int, delay: float = 0.01) -> int:
    await asyncio.sleep(delay)
    return a + b


_agate: asyncio.Event | None = None


@methods.method
async def ablock() -> str:
    """Await (on the loop) until arelease is called: only one loop can do this."""
    global _agate
    _agate = _agate or asyncio.Event()
    await asyncio.wait_for(_agate.wait(), 20)
    _agate.clear()
    return "released"


@methods.method
async def arelease() -> bool:
    global _agate
    _agate = _agate or asyncio.Event()
    _agate.set()
    return True


@methods.method
def pid() -> int:
    return os.getpid()


@methods.method
def not_json() -> Any:
    return {1, 2, 3}  # a set: the codec cannot encode it


@contextmanager
def rpc_server(
    *addresses: str, model: str = "epoll", extra: tuple[str, ...] = ()
) -> Iterator[Server]:
    """``ipcnet rpc serve test_rpc_api:methods ADDRESSES --model MODEL``, stopped by SIGTERM."""
    argv = [
        sys.executable,
        "-m",
        "ipcnet",
        "rpc",
        "serve",
        "test_rpc_api:methods",
        *addresses,
        "--model",
        model,
        "--workers",
        "2",
        *extra,
    ]
    server = _start(argv, len(addresses), cwd=str(HERE))
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, "\n".join(server.log)


def stdio_command(*extra: str) -> str:
    """An exec: address that runs this API's server on the child's stdin/stdout."""
    return (
        f"exec:env PYTHONPATH={HERE} {sys.executable} -m ipcnet rpc serve "
        f"test_rpc_api:methods stdio: {' '.join(extra)}"
    ).rstrip()


def test_serve_takes_a_frame_limit_as_make_service_and_the_cli_do() -> None:
    """``rpc.serve`` had no ``max_frame`` (``make_service``, ``rpc.connect`` and ``ipcnet
    rpc serve --max-frame`` have it): a library server could not bound its requests. And
    with a limit this small the over-long request was not answered at all: its error,
    which says how long the line was, is over 100 bytes; it now goes with the bare
    standard message (JSON-RPC §5.1), silence only where not even that fits."""
    import json

    import ipcnet

    methods = rpc.Methods()
    methods.add(lambda text: text, name="echo")
    cores: list[Any] = []
    up = threading.Event()

    def ready(core: Any) -> None:
        cores.append(core)
        up.set()

    thread = threading.Thread(
        target=rpc.serve,
        args=(methods, ["tcp://127.0.0.1:0"]),
        kwargs={"max_frame": 100, "ready": ready},
        daemon=True,
    )
    thread.start()
    assert up.wait(10)
    try:
        with ipcnet.connect(str(cores[0].bound[0]), timeout=10) as ch:
            small = b'{"jsonrpc":"2.0","method":"echo","params":["x"],"id":1}\n'
            ch.write(small)
            assert json.loads(ch.readline())["result"] == "x"
            big = small.replace(b'"x"', b'"' + b"x" * 100 + b'"')
            ch.write(big)
            assert json.loads(ch.readline())["error"]["code"] == rpc.INVALID_REQUEST
            ch.write(small)  # the connection lives on
            assert json.loads(ch.readline())["result"] == "x"
    finally:
        cores[0].request_stop()
        thread.join(10)
    assert not thread.is_alive()
