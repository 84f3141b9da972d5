"""Peer echo servers for ``ipcnet bench models``: the registry, their commands, shared bits.

Run one: ``python -m ipcnet.bench.peers NAME URL``. Rules: correct echo (partial writes,
EOF) on plain sockets, TCP_NODELAY, ``... echo listening on URL`` on stderr when ready,
exit 0 on SIGTERM; ``epoll_echo.c`` is compiled at bench time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

C_SOURCE = Path(__file__).with_name("epoll_echo.c")
BUF_SIZE = 256 * 1024


@dataclass(frozen=True)
class Peer:
    name: str
    title: str  # what the tables call it
    module: str  # ipcnet.bench.peers.MODULE has serve(name, listener)
    concurrent: bool = True  # False: serves one connection at a time (c>1 would stall)


PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer("tcpserver", "TCPServer", "socketservers", concurrent=False),
        Peer("threadingtcpserver", "ThreadingTCPServer", "socketservers"),
        Peer("forkingtcpserver", "ForkingTCPServer", "socketservers"),
        Peer("asyncio-streams", "asyncio streams", "asyncio_echo"),
        Peer("asyncio-protocol", "asyncio Protocol", "asyncio_echo"),
        Peer("uvloop-protocol", "uvloop Protocol", "asyncio_echo"),
        Peer("selectors", "selectors loop", "selectors_echo"),
        Peer("c-epoll", "C epoll", ""),
    )
}


def unavailable(name: str) -> str | None:
    """Why peer ``name`` cannot run here, or None when it can."""
    if name == "uvloop-protocol":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "uvloop is not importable (pip install uvloop)"
    return "no C compiler (cc) on PATH" if name == "c-epoll" and find_cc() is None else None


def find_cc() -> str | None:
    return shutil.which(os.environ.get("CC", "cc"))


def build_c_echo(folder: str | os.PathLike[str]) -> Path:
    """Compile epoll_echo.c with ``cc -O2`` into ``folder`` (reused if already there)."""
    binary, cc = Path(folder) / "epoll_echo", find_cc()
    if binary.exists():
        return binary
    if cc is None:
        raise RuntimeError("no C compiler (cc) on PATH")
    done = subprocess.run([cc, "-O2", "-o", binary, C_SOURCE], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cc failed on {C_SOURCE.name}:\n{done.stderr.strip()}")
    return binary


def _where(url: str) -> tuple[socket.AddressFamily, str, int | str]:
    from ipcnet.addresses import parse

    a = parse(url)
    if a.scheme in ("tcp", "tcp4") and a.host:
        return socket.AF_INET, a.host, int(a.port or 0)
    if a.scheme == "unix" and a.path and not a.abstract:
        return socket.AF_UNIX, a.path, ""
    raise SystemExit(f"peers take tcp://IPv4:PORT or unix:///path, not {url}")


def c_argv(binary: str | os.PathLike[str], url: str) -> list[str]:
    """The C server's command line for an ipcnet URL (tcp://IPv4:PORT or unix:///path)."""
    _, where, port = _where(url)
    return [str(binary), "tcp", where, str(port)] if port != "" else [str(binary), "unix", where]


def command(name: str, url: str, build_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """argv that starts peer ``name`` on ``url``; the C peer runs directly when built."""
    if name == "c-epoll" and build_dir is not None:
        return c_argv(build_c_echo(build_dir), url)
    return [sys.executable, "-m", "ipcnet.bench.peers", name, url]


class Stop(BaseException):  # not Exception: socketserver catches those in handlers
    """Raised by the SIGTERM handler (``stop_on_sigterm``) to leave a blocking serve loop."""


def stop_on_sigterm() -> None:
    def stop(signum: int, frame: object) -> None:
        raise Stop

    signal.signal(signal.SIGTERM, stop)


def ready(name: str, sock: socket.socket) -> None:
    where = sock.getsockname()
    url = f"tcp://{where[0]}:{where[1]}" if sock.family == socket.AF_INET else f"unix://{where}"
    print(f"peer {name}: echo listening on {url}", file=sys.stderr, flush=True)


def nodelay(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import importlib
    import tempfile

    p = argparse.ArgumentParser(prog="python -m ipcnet.bench.peers", description="one peer")
    p.add_argument("name", choices=list(PEERS))
    p.add_argument("url", help="tcp://127.0.0.1:PORT (0 picks one) or unix:///PATH")
    args = p.parse_args(argv)
    if why := unavailable(args.name):
        print(f"peer {args.name}: skipped: {why}", file=sys.stderr)
        return 3
    family, where, port = _where(args.url)
    if args.name == "c-epoll":  # build it in a temporary folder, pass SIGTERM on
        with tempfile.TemporaryDirectory(prefix="ipcnet-cpeer-") as folder:
            proc = subprocess.Popen(c_argv(build_c_echo(folder), args.url))
            signal.signal(signal.SIGTERM, lambda signum, frame: proc.terminate())
            return proc.wait()
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((where, port) if family == socket.AF_INET else where)
    listener.listen(1024)
    try:
        importlib.import_module(f"ipcnet.bench.peers.{PEERS[args.name].module}").serve(
            args.name, listener
        )
    finally:
        listener.close()
        if family == socket.AF_UNIX and os.getpid() == PARENT:
            os.unlink(where)
    return 0


PARENT = os.getpid()
