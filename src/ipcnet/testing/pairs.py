"""Connected Channel pairs over every stream transport, for tests and benchmarks.

Role: each maker returns ``(a, b)``, two Channels joined by one kernel mechanism, both
two-way. Rules: a maker that cannot work on this machine (no IPv6, no socat) raises
``Unavailable`` with the reason, so a test suite can skip with it; makers leave nothing
behind once both channels are closed (temporary paths live in a fresh directory).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import socket
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable

from ipcnet.addresses import parse
from ipcnet.channel import Channel, listen, socketpair, spawn
from ipcnet.channel import connect as connect_url
from ipcnet.errors import AddressNotAvailable
from ipcnet.transports import fifo, pipes

Pair = tuple[Channel, Channel]


class Unavailable(Exception):
    """This transport cannot be built on this machine; the message says why."""


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind to port 0, read it, close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _listen_connect(url: str) -> Pair:
    with listen(url) as listener:
        client = connect_url(listener.address, connect_timeout=5)
        server = listener.accept()
    return client, server


def tcp4_pair() -> Pair:
    return _listen_connect("tcp4://127.0.0.1:0")


def tcp6_pair() -> Pair:
    if not socket.has_ipv6:
        raise Unavailable("python was built without IPv6")
    try:
        return _listen_connect("tcp6://[::1]:0")
    except AddressNotAvailable as exc:
        raise Unavailable(f"no IPv6 loopback here: {exc}") from None


def _tmp_path(name: str) -> str:
    return os.path.join(tempfile.mkdtemp(prefix="ipcnet-"), name)


def unix_path_pair() -> Pair:
    path = _tmp_path("sock")
    try:
        return _listen_connect(f"unix://{path}")
    finally:
        os.rmdir(os.path.dirname(path))


def unix_abstract_pair() -> Pair:
    return _listen_connect(f"unix://@ipcnet-test-{uuid.uuid4().hex}")


def unixpacket_pair() -> Pair:
    return _listen_connect(f"unixpacket://@ipcnet-test-{uuid.uuid4().hex}")


def socketpair_pair() -> Pair:
    return socketpair()


def pipe_pair() -> Pair:
    a, b = pipes.make_pipe_pair()
    return Channel(a), Channel(b)


def fifo_pair() -> Pair:
    """Two named pipes, one per direction, opened by path as unrelated processes would."""
    folder = tempfile.mkdtemp(prefix="ipcnet-")
    ab, ba = os.path.join(folder, "a-to-b"), os.path.join(folder, "b-to-a")
    os.mkfifo(ab, 0o600)
    os.mkfifo(ba, 0o600)
    try:
        # open every read end first without blocking, then the write ends find readers
        a_read = pipes.PipeStream(
            os.open(ba, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), None, f"fifo://{ba}"
        )
        b_read = pipes.PipeStream(
            os.open(ab, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), None, f"fifo://{ab}"
        )
        a_write = fifo.open_fifo_writer(parse(f"fifo://{ab}"), 5)
        b_write = fifo.open_fifo_writer(parse(f"fifo://{ba}"), 5)
    finally:
        os.unlink(ab)
        os.unlink(ba)
        os.rmdir(folder)
    return (
        Channel(pipes.join_ends(a_read, a_write, f"fifo://{ba}+{ab}")),
        Channel(pipes.join_ends(b_read, b_write, f"fifo://{ab}+{ba}")),
    )


def exec_pair() -> Pair:
    """a talks to a child process on its stdin/stdout; the child relays to b over a socket.

    The child is ``python -m ipcnet connect unix://...``, so this also exercises the
    relay's half-close rules.
    """
    name = f"unix://@ipcnet-exec-{uuid.uuid4().hex}"
    with listen(name) as listener:
        listener.timeout = 20
        a = spawn([sys.executable, "-m", "ipcnet", "connect", name])
        try:
            b = listener.accept()
        except BaseException:
            a.close()
            raise
    return a, b


# --- shared memory (issue 13) ---


def shm_pair() -> Pair:
    """A shared-memory ring made through the rendezvous socket, as two processes would."""
    return _listen_connect(f"shm://@ipcnet-test-{uuid.uuid4().hex}")


def shm_local_pair() -> Pair:
    from ipcnet.channel import shm_pair as make

    return make()


# --- end shared memory ---

# --- TLS (issue 11): tls:// and tls+unix:// with a throwaway CA ---------------------------


@functools.cache
def _tls_files() -> tuple[str, str, str]:
    """(cert, key, ca): ``ipcnet cert``'s files, made once per process, removed at exit."""
    from ipcnet.transports.tls.devcert import make

    folder = tempfile.mkdtemp(prefix="ipcnet-tls-")
    atexit.register(shutil.rmtree, folder, True)
    issued = make(folder)
    return issued.cert, issued.key, issued.ca


def _tls_pair(url: str) -> Pair:
    cert, key, ca = _tls_files()
    box: list[Channel | BaseException] = []
    with listen(url, cert=cert, key=key, close_timeout=0.2) as listener:

        def accept() -> None:
            try:
                box.append(listener.accept())  # the server's handshake
            except BaseException as exc:
                box.append(exc)

        server = threading.Thread(target=accept, daemon=True)
        server.start()
        client = connect_url(listener.address, connect_timeout=5, ca=ca, sni="localhost",
                             close_timeout=0.2)  # fmt: skip
        server.join(10)
    got = box[0] if box else TimeoutError(f"no tls handshake on {url}")
    if isinstance(got, BaseException):
        client.close()
        raise got
    return client, got


def tls_pair() -> Pair:
    return _tls_pair("tls://127.0.0.1:0")


def tls_unix_pair() -> Pair:
    return _tls_pair(f"tls+unix://@ipcnet-test-{uuid.uuid4().hex}")


PAIR_MAKERS: dict[str, Callable[[], Pair]] = {
    "tcp4": tcp4_pair,
    "tcp6": tcp6_pair,
    "unix-path": unix_path_pair,
    "unix-abstract": unix_abstract_pair,
    "unixpacket": unixpacket_pair,
    "socketpair": socketpair_pair,
    "pipe-pair": pipe_pair,
    "fifo-pair": fifo_pair,
    "exec": exec_pair,
    "shm": shm_pair,
    "shm-pair": shm_local_pair,
    "tls": tls_pair,
    "tls+unix": tls_unix_pair,
}
