"""The lecture notes' semantics, shown with real processes (no mocks)."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

import ipcnet
from ipcnet import errors


def _wait_child(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_parent_writes_child_reads_after_fork() -> None:
    """Seed 000 §3.1.2: each side closes the end it does not use."""
    reader, writer = ipcnet.pipe()
    result_r, result_w = ipcnet.pipe()
    pid = os.fork()
    if pid == 0:  # child: reads the message, reports it back
        try:
            writer.close()
            result_r.close()
            result_w.write(reader.read())
            os._exit(0)
        except BaseException:
            os._exit(1)
    reader.close()
    result_w.close()
    writer.write(b"Message in a pipe.\n")
    writer.close()
    assert result_r.read() == b"Message in a pipe.\n"
    assert _wait_child(pid) == 0


def test_eof_only_when_the_last_writer_closes() -> None:
    reader, writer = ipcnet.pipe()
    go_r, go_w = ipcnet.pipe()
    pid = os.fork()
    if pid == 0:  # child holds a copy of the write end until told to drop it
        reader.close()
        go_w.close()
        go_r.read(1)
        writer.write(b"from child")
        os._exit(0)
    go_r.close()
    writer.close()  # the parent's copy is gone, the child's is not: no EOF yet
    reader.timeout = 0.2
    with pytest.raises(errors.Timeout):
        reader.read(100)
    go_w.write(b"!")
    reader.timeout = 10
    assert reader.read() == b"from child"  # ... then EOF once the child exits
    assert _wait_child(pid) == 0


def test_broken_when_the_last_reader_closes() -> None:
    reader, writer = ipcnet.pipe()
    pid = os.fork()
    if pid == 0:
        writer.close()
        reader.close()
        os._exit(0)
    reader.close()
    assert _wait_child(pid) == 0
    with pytest.raises(errors.PeerClosed):
        writer.write(b"anyone?")


def test_writer_blocks_when_the_pipe_is_full_and_resumes() -> None:
    """Seed 000 §3: a bounded in-memory queue; the producer sleeps while it is full."""
    reader, writer = ipcnet.pipe()
    capacity = _pipe_capacity(writer.fileno())
    payload = os.urandom(capacity * 3)
    done = threading.Event()

    def produce() -> None:
        writer.write(payload)
        done.set()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    assert not done.wait(0.3), "the writer finished although nobody read"
    received = reader.read_exactly(len(payload))
    assert done.wait(10), "the writer did not resume after the reader drained the pipe"
    assert received == payload
    writer.close()
    reader.close()


def _pipe_capacity(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, getattr(fcntl, "F_GETPIPE_SZ", 1032))


def test_udp_keeps_boundaries_tcp_does_not() -> None:
    """Seed 004: recvfrom gets one datagram; recv on TCP gets whatever is queued."""
    with ipcnet.open_datagram("udp://127.0.0.1:0", listen=True, timeout=5) as server:
        with ipcnet.open_datagram(server.where) as client:
            for part in (b"ab", b"cd", b"ef"):
                client.send(part)
            assert [server.recv()[0] for _ in range(3)] == [b"ab", b"cd", b"ef"]
    with ipcnet.listen("tcp://127.0.0.1:0") as listener:
        with ipcnet.connect(listener.address) as c, listener.accept() as s:
            for part in (b"ab", b"cd", b"ef"):
                c.write(part)
            c.send_eof()
            time.sleep(0.05)
            assert s.read(100) == b"abcdef"  # three writes, one read: no boundaries


def test_unix_datagrams_are_reliable_and_ordered() -> None:
    """Seed 004: unlike UDP, unix datagrams are neither lost nor reordered."""
    name = f"unixgram://@ipcnet-{uuid.uuid4().hex}"
    count = 5000
    with ipcnet.open_datagram(name, listen=True, timeout=10) as server:
        with ipcnet.open_datagram(name) as client:
            got: list[bytes] = []
            t = threading.Thread(target=lambda: got.extend(server.recv()[0] for _ in range(count)))
            t.start()
            for i in range(count):
                client.send(b"%d" % i)  # blocks while the receiver's queue is full
            t.join(20)
    assert got == [b"%d" % i for i in range(count)]
