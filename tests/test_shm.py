"""shm:// streams: faults, options, rendezvous, and nothing left behind (issue 13, items 1 and 8).

The conformance battery runs on shm:// and shm_pair() in test_conformance.py (PAIR_MAKERS).
"""

from __future__ import annotations

import gc
import os
import select
import signal
import subprocess
import sys
import threading
import uuid

import pytest

import ipcnet
from ipc_helpers import as_other_user
from ipcnet import errors

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
CHILD_ENV = {**os.environ, "PYTHONPATH": SRC}


def _name() -> str:
    return f"shm://@ipcnet-t-{uuid.uuid4().hex}"


def _child(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], env=CHILD_ENV, stdout=subprocess.PIPE)


def _memfds() -> int:
    gc.collect()  # ends that earlier tests dropped
    return sum(
        1 for fd in os.listdir("/proc/self/fd") if "memfd:" in _readlink(f"/proc/self/fd/{fd}")
    )


def _dev_shm_held() -> set[str]:
    """The /dev/shm files this process maps or has open (not the whole directory, which
    other processes on the machine change at any time)."""
    fds = (_readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd"))
    with open("/proc/self/maps") as maps:
        mapped = (line.split(maxsplit=5)[-1].strip() for line in maps)
        return {p for p in (*fds, *mapped) if p.startswith("/dev/shm/")}


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def test_peer_killed_mid_write_is_incomplete_read_not_a_hang() -> None:
    url = _name() + "?ring=8192"
    with ipcnet.listen(url) as listener:
        listener.timeout = 20
        child = _child(
            "import ipcnet, sys\n"
            f"ch = ipcnet.connect({url!r})\n"
            "ch.write(b'x' * 100000)\n"  # blocks: the ring holds 8 KiB and nobody reads yet
        )
        try:
            server = listener.accept()
            server.timeout = 20
            assert server.read_exactly(4096) == b"x" * 4096  # the child is inside its write
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            with server, pytest.raises(errors.IncompleteRead) as caught:
                server.read_exactly(100000 - 4096)
            assert len(caught.value.partial) < 100000 - 4096  # what was in the ring, then EOF
        finally:
            child.kill()
            child.wait()


def test_writer_to_killed_reader_gets_peer_closed() -> None:
    url = _name() + "?ring=8192"
    with ipcnet.listen(url) as listener:
        listener.timeout = 20
        child = _child(f"import ipcnet, time\nch = ipcnet.connect({url!r})\ntime.sleep(60)\n")
        try:
            server = listener.accept()
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            server.timeout = 10
            with server:
                with pytest.raises(errors.PeerClosed, match="^peer closed: write to"):
                    for _ in range(10):
                        server.write(b"y" * 8192)  # the second fills the ring, then waits
                with pytest.raises(errors.PeerClosed):
                    server.write(b"z")  # and stays broken
        finally:
            child.kill()
            child.wait()


def test_shm_pair_across_fork() -> None:
    a, b = ipcnet.shm_pair(ring=16384)
    pid = os.fork()
    if pid == 0:  # the child echoes upper-cased, then ends
        try:
            a.close()
            data = b.read()
            b.write(data.upper())
            b.close()
        finally:
            os._exit(0)
    b.close()  # the parent drops the child's end, as with pipe()
    a.timeout = 20
    payload = b"hello through shared memory " * 2000  # several times the ring
    writer = threading.Thread(target=lambda: (a.write(payload), a.send_eof()))
    writer.start()
    assert a.read() == payload.upper()
    writer.join(10)
    a.close()
    assert os.waitpid(pid, 0)[1] == 0


def test_ring_size_option_and_bounds() -> None:
    url = _name() + "?ring=5000"
    with ipcnet.listen(url) as listener:
        client = ipcnet.connect(url)
        server = listener.accept()
        with client, server:
            assert client.transport.ring_size == 8192  # rounded up to whole pages
            client.timeout = 0.2
            client.write(b"a" * 8192)  # exactly fills the ring
            with pytest.raises(errors.Timeout, match="timed out: write to"):
                client.write(b"b")  # the writer blocks when the ring is full
    with pytest.raises(errors.LimitExceeded, match="ring size 1024 out of range"):
        ipcnet.connect(_name() + "?ring=1024")
    with pytest.raises(errors.LimitExceeded, match="out of range"):
        ipcnet.shm_pair(ring=1 << 30)
    with pytest.raises(errors.InvalidAddress, match="unknown option 'size'"):
        ipcnet.connect(_name() + "?size=1")


def test_listener_refuses_a_ring_over_its_limit() -> None:
    url = _name()
    with ipcnet.listen(url) as listener:
        listener.transport.max_ring = 65536
        client = ipcnet.connect(url + "?ring=1M")
        with pytest.raises(errors.RemoteProtocolError, match="outside"):
            listener.accept()
        client.timeout = 5
        with client, pytest.raises(errors.RemoteProtocolError, match="refused: ring of"):
            client.read(1)


def test_a_plain_unix_client_is_refused_with_a_reason() -> None:
    url = _name()
    with ipcnet.listen(url) as listener:
        with ipcnet.connect("unix://" + url[len("shm://") :]) as plain:
            plain.write(b"GET / HTTP/1.0\r\n\r\n")
            with pytest.raises(errors.RemoteProtocolError, match="bad shm handshake"):
                listener.accept()
            plain.timeout = 5
            assert b"expected a 16-byte hello" in plain.read()


def test_no_listener_is_refused() -> None:
    with pytest.raises(errors.Refused):
        ipcnet.connect(_name())
    with pytest.raises(errors.NoSuchSocket):
        ipcnet.connect("shm:///tmp/ipcnet-no-such-dir-xyz/sock")


def test_path_form_leaves_nothing_behind(short_tmp) -> None:
    path = short_tmp / "ring"
    before_shm = _dev_shm_held()
    before_memfds = _memfds()
    with ipcnet.listen(f"shm://{path}") as listener:
        assert path.exists()
        client = ipcnet.connect(f"shm://{path}")
        server = listener.accept()
        assert _memfds() == before_memfds + 2  # each end's mapping holds one while open
        client.write(b"ping")
        assert server.read(4) == b"ping"
        client.close()
        server.close()
    assert not path.exists()
    del client, server
    assert _memfds() == before_memfds
    assert _dev_shm_held() <= before_shm  # memfds have no name (another test may free one)


def test_try_read_and_fileno_poll_readable() -> None:
    a, b = ipcnet.shm_pair()
    with a, b:
        assert a.transport.try_read(10) is None  # empty: arms the waiting flag
        fd = a.fileno()
        assert select.select([fd], [], [], 0)[0] == []
        b.write(b"wake")
        assert select.select([fd], [], [], 10)[0] == [fd]
        assert a.transport.try_read(10) == b"wake"
        assert a.transport.try_read(10) is None
        assert select.select([fd], [], [], 0)[0] == []  # disarmed and drained: not spinning
        b.send_eof()
        assert select.select([fd], [], [], 10)[0] == [fd]
        assert a.transport.try_read(10) == b""


def test_read_timeout_and_close_then_use() -> None:
    a, b = ipcnet.shm_pair()
    a.timeout = 0.1
    with pytest.raises(errors.Timeout, match="timed out: read from shm-pair:"):
        a.read(1)
    a.close()
    b.close()
    with pytest.raises(errors.Closed):
        a.write(b"x")


def test_close_without_eof_reads_as_eof() -> None:
    """The liveness socket carries no data after the handshake: a peer's close is EOF."""
    url = _name()
    with ipcnet.listen(url) as listener:
        client = ipcnet.connect(url)
        server = listener.accept()
        client.write(b"last")
        client.close()  # no send_eof: closing is enough, as for a socket
        server.timeout = 10
        assert server.read() == b"last"
        server.close()


def test_bad_names_and_another_users_rendezvous(short_tmp) -> None:
    with pytest.raises(errors.InvalidAddress, match="over the limit of 107"):
        ipcnet.connect("shm://@" + "n" * 120)
    with pytest.raises(errors.InvalidAddress, match="empty abstract socket name"):
        ipcnet.connect("shm://@")
    url = f"shm://{short_tmp}/private"
    with ipcnet.listen(url):  # the rendezvous socket file is 0600, ours

        def connect_it() -> str:
            ipcnet.connect(url)
            return "connected"

        assert as_other_user(connect_it).startswith("PermissionDenied: permission denied")
