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
