"""Helpers for the socket inspector tests: real sockets in known states, subprocess env."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

import ipcnet
from ipcnet.inspector import SocketRow, list_sockets
from ipcnet.testing.netns import in_ns, ip, namespaces, unavailable

T = TypeVar("T")

SRC = str(Path(ipcnet.__file__).resolve().parent.parent)


def env() -> dict[str, str]:
    """Environment for a child Python that must import this ipcnet."""
    e = dict(os.environ)
    e["PYTHONPATH"] = SRC + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ipcnet", "sockets", *args],
        capture_output=True,
        text=True,
        env=env(),
        timeout=timeout,
        check=False,
    )


def wait_for(pred: Callable[[], T | None], timeout: float = 3.0, what: str = "condition") -> T:
    """The first true value ``pred`` returns; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def rows_on_port(port: int, source: str = "auto", owners: bool = False) -> list[SocketRow]:
    return list_sockets(["tcp"], port=port, source=source, owners=owners)  # type: ignore[arg-type]


def table(port: int, source: str, *wanted: tuple[str, int]) -> list[SocketRow]:
    """``rows_on_port`` from one read in which every (state, local port) of ``wanted`` shows.

    A dump taken while other tests open and close connections can miss a row that moved in
    the kernel's table (netlink and /proc alike): such a read is simply taken again."""

    def complete() -> list[SocketRow] | None:
        rows = rows_on_port(port, source)
        return rows if all(find(rows, state, lp) for state, lp in wanted) else None

    return wait_for(complete, what=f"rows {wanted} on port {port} ({source})")


def find(rows: list[SocketRow], state: str, local_port: int | None = None) -> list[SocketRow]:
    return [
        r for r in rows if r.state == state and (local_port is None or r.local_port == local_port)
    ]


class TcpConn:
    """A loopback listener with one accepted connection: client <-> server."""

    def __init__(self, host: str = "127.0.0.1", backlog: int = 7, family: int = socket.AF_INET):
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET6:
            self.listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.listener.bind((host, 0))
        self.listener.listen(backlog)
        self.port: int = self.listener.getsockname()[1]
        connect_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.client = socket.create_connection((connect_host, self.port))
        self.server, _ = self.listener.accept()
        self.client_port: int = self.client.getsockname()[1]

    def close(self) -> None:
        for s in (self.client, self.server, self.listener):
            s.close()


@contextmanager
def tcp_conn(**kw: object) -> Iterator[TcpConn]:
    c = TcpConn(**kw)  # type: ignore[arg-type]
    try:
        yield c
    finally:
        c.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextmanager
def netns(drop_route: str | None = None) -> Iterator[str]:
    """A fresh network namespace with lo up (skipped where none can be made); ``drop_route``:
    a prefix routed into lo, where nothing answers, so a SYN to it is dropped and the connect
    stays in SYN_SENT."""
    if reason := unavailable():
        pytest.skip(reason)
    with namespaces("ipcnet-test") as (name,):
        if drop_route:
            ip("-n", name, "route", "add", drop_route, "dev", "lo")
        yield name


def in_netns(name: str, code: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        in_ns(name, sys.executable, "-c", code),
        capture_output=True,
        text=True,
        env=env(),
        timeout=timeout,
        check=False,
    )
