"""The small services against RFC 862/863/867 and real clients, under every model.

What is checked here, with plain Python sockets as the peer:
- bad limits (--workers 0, --grace nan, ...) are refused by the command line;
- a server that closes first (daytime, RFC 867; a refusal over --max-conns) drops what
  the client already sent instead of closing with it unread: a close with unread input
  sends an RST, and the RST makes the client's kernel throw away the answer it had
  received (RFC 9112 §9.6 tells HTTP servers the same; nginx's lingering_close). The
  client's bytes are made to be queued before the server accepts by stopping the
  server's process group (SIGSTOP) while the client connects and writes, so every run
  meets the case, not one in a few;
- a UDP server bound to 0.0.0.0 answers from the address the datagram was sent to, which
  is the only source a connected client (nc -u, socat udp:) accepts.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ipcnet.cli import build_parser
from ipcnet.drivers import MODELS
from serverkit import Server, serving

DAYTIME = re.compile(rb"^\w+day, \w+ \d\d, \d{4} \d\d:\d\d:\d\d-UTC\r\n$")


def _connect(url: str) -> socket.socket:
    if url.startswith("unix://"):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        sock.connect(url.removeprefix("unix://"))
        return sock
    host, _, port = url.removeprefix("tcp://").rpartition(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _read_to_eof(sock: socket.socket) -> bytes:
    out = b""
    while data := sock.recv(65536):
        out += data
    return out


@contextmanager
def _frozen(server: Server) -> Iterator[None]:
    """The server's processes (master, workers, children) stopped until the block ends."""
    pgid = os.getpgid(server.proc.pid)
    os.killpg(pgid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pgid, signal.SIGCONT)


@pytest.mark.parametrize("model", list(MODELS))
def test_daytime_reaches_a_client_that_wrote_first(model: str) -> None:
    """RFC 867: 'any data received is thrown away'; the date must still arrive."""
    path = f"/tmp/ipcnet-dt-{uuid.uuid4().hex[:10]}.sock"
    with serving(
        "daytime", "tcp://127.0.0.1:0", f"unix://{path}", model=model, start_new_session=True
    ) as server:
        for url in server.addresses:
            with _frozen(server):
                sock = _connect(url)
                sock.sendall(b"what time is it?\r\n")  # queued before the server accepts
            with sock:
                assert DAYTIME.match(_read_to_eof(sock)), (model, url)


@pytest.mark.parametrize("model", ["thread", "epoll", "asyncio"])
def test_a_refused_connection_reads_eof_not_a_reset(model: str) -> None:
    extra = ("--max-conns", "1", "--workers", "1")
    with serving(
        "echo", "tcp://127.0.0.1:0", model=model, extra=extra, start_new_session=True
    ) as server:
        url = server.url("tcp")
        with _connect(url) as held:
            held.sendall(b"x")
            assert held.recv(1) == b"x"  # being served: the next one is over the limit
            with _frozen(server):
                refused = _connect(url)
                refused.sendall(b"let me in")
            with refused:
                assert _read_to_eof(refused) == b""


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--workers", "0"),  # a pool of no threads never served its queue
        ("--max-conns", "0"),  # every connection refused
        ("--queue", "-1"),
        ("--grace", "-1"),
        ("--grace", "nan"),
        ("--idle-timeout", "-5"),
    ],
)
def test_a_bad_limit_is_a_clear_error(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "echo", "tcp://127.0.0.1:0", option, value]
    with pytest.raises(SystemExit) as stopped:
        build_parser("serve").parse_args(argv)
    assert stopped.value.code == 2
    assert f"argument {option}: {value!r} is not a" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["iterative", "epoll", "asyncio"])
def test_a_wildcard_udp_server_answers_from_the_address_asked(model: str) -> None:
    """Bound to 0.0.0.0, the reply to a datagram sent to 127.0.0.2 must come from
    127.0.0.2: a connected client (nc -u, socat udp:) takes no other."""
    with serving("echo", "udp://0.0.0.0:0", model=model) as server:
        port = int(server.addresses[0].rpartition(":")[2])
        for host in ("127.0.0.1", "127.0.0.2"):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(10)
                sock.connect((host, port))
                sock.send(b"who answers?")
                assert sock.recvfrom(100) == (b"who answers?", (host, port))
