"""Peer echo servers: what ipcnet's drivers are measured against in ``ipcnet bench models``.

Role: one registry of the peers (stdlib socketserver, asyncio streams and Protocol, uvloop
Protocol, a plain ``selectors`` loop, and a C epoll server compiled at bench time), the
command that starts each one, and the C build step. Run one by hand with
``python -m ipcnet.bench.peers NAME URL`` (tcp://HOST:PORT or unix:///PATH; port 0 picks
one). Rules: every peer is a correct echo server (partial writes, EOF), uses plain sockets
and the stdlib (not ipcnet), prints ``... echo listening on URL`` to stderr when ready and
exits 0 on SIGTERM. The C source ships as ``epoll_echo.c``; a binary is never committed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

C_SOURCE = Path(__file__).with_name("epoll_echo.c")
C_BINARY = "epoll_echo"


@dataclass(frozen=True)
class Peer:
    name: str
    title: str  # what the table calls it
    concurrent: bool = True  # False: serves one connection at a time (c>1 would stall)


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer("tcpserver", "socketserver TCPServer", concurrent=False),
        Peer("threadingtcpserver", "socketserver ThreadingTCPServer"),
        Peer("forkingtcpserver", "socketserver ForkingTCPServer"),
        Peer("asyncio-streams", "asyncio streams"),
        Peer("asyncio-protocol", "asyncio Protocol"),
        Peer("uvloop-protocol", "uvloop Protocol"),
        Peer("selectors", "selectors loop"),
        Peer("c-epoll", "C epoll (cc -O2)"),
    )
}


def unavailable(name: str) -> str | None:
    """Why peer ``name`` cannot run here, or None when it can."""
    if name == "uvloop-protocol":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "uvloop is not importable (pip install uvloop)"
    if name == "c-epoll" and find_cc() is None:
        return "no C compiler (cc) on PATH"
    return None


def find_cc() -> str | None:
    return shutil.which(os.environ.get("CC", "cc"))


def build_c_echo(folder: str | os.PathLike[str]) -> Path:
    """Compile epoll_echo.c with ``cc -O2`` into ``folder`` (reused if already there)."""
    binary = Path(folder) / C_BINARY
    if binary.exists():
        return binary
    cc = find_cc()
    if cc is None:
        raise RuntimeError("no C compiler (cc) on PATH")
    done = subprocess.run(
        [cc, "-O2", "-o", str(binary), str(C_SOURCE)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"cc failed on {C_SOURCE.name}:\n{done.stderr.strip()}")
    return binary


def c_argv(binary: str | os.PathLike[str], url: str) -> list[str]:
    """The C server's command line for an ipcnet URL (tcp://IPv4:PORT or unix:///path)."""
    from ipcnet.addresses import parse

    address = parse(url)
    if address.scheme in ("tcp", "tcp4") and address.host:
        return [str(binary), "tcp", address.host, str(address.port)]
    if address.scheme == "unix" and address.path and not address.abstract:
        return [str(binary), "unix", address.path]
    raise ValueError(f"the C peer takes tcp://IPv4:PORT or unix:///path, not {url}")


def command(name: str, url: str, build_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """argv that starts peer ``name`` on ``url``; the C peer runs directly when built."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r} (known: {', '.join(PEERS)})")
    if name == "c-epoll" and build_dir is not None:
        return c_argv(build_c_echo(build_dir), url)
    return [sys.executable, "-m", "ipcnet.bench.peers", name, url]
