"""The notes' IPC against the specs and peers written by others (issue 13, audit).

Peers: posix_ipc (another binding of the same mq_*/sem_* calls), libc's sigqueue(3) through
ctypes (a real-time signal with a value, as a C sender would send it). Specs: signal(7)
(standard signals coalesce, real-time ones queue in order with their values),
sem_overview(7) (names are "/somename"; SEM_VALUE_MAX), mq_open(3) (limits, and EMFILE for
RLIMIT_MSGQUEUE), mq_overview(7) (priority order, unlink semantics).
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import textwrap
import uuid

import posix_ipc
import pytest

import ipcnet
from ipcnet import errors

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _unique_name(unlink):
    """A unique name (no leading '/'), removed by ``unlink`` after the test whatever happened."""
    name = f"ipcnet-t-{uuid.uuid4().hex}"
    yield name
    try:
        unlink("/" + name)
    except posix_ipc.ExistentialError:
        pass


@pytest.fixture
def qname():
    yield from _unique_name(posix_ipc.unlink_message_queue)


@pytest.fixture
def sname():
    yield from _unique_name(posix_ipc.unlink_semaphore)


def test_realtime_signals_by_name_and_number_queue_with_their_values() -> None:
    # a child interpreter: signalfd needs the signals blocked in every thread
    code = """
        import ctypes, os, signal, ipcnet
        class SigVal(ctypes.Union):
            _fields_ = [("sival_int", ctypes.c_int), ("sival_ptr", ctypes.c_void_p)]
        libc = ctypes.CDLL(None, use_errno=True)
        rt1 = int(signal.SIGRTMIN) + 1
        with ipcnet.signals("USR1", "RTMIN+1", signal.SIGRTMIN + 2, "SIGRTMAX-1") as source:
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGUSR1)  # a standard signal: these coalesce
            for value in (7, -5, 9):  # a real-time one: each queues, with its value, in order
                assert libc.sigqueue(os.getpid(), rt1, SigVal(sival_int=value)) == 0
            ipcnet.send_signal(os.getpid(), "RTMIN+2")
            ipcnet.send_signal(os.getpid(), int(signal.SIGRTMAX) - 1)
            source.timeout = 0.2
            got = []
            try:
                for event in source:
                    got.append(f"{event.name}:{event.value}:{event.code}")
            except ipcnet.errors.Timeout:
                pass
            print(" ".join(got))
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, "PYTHONPATH": SRC},
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().split() == [
        "SIGUSR1:0:0",  # SI_USER, once
        "SIGRTMIN+1:7:-1",  # SI_QUEUE
        "SIGRTMIN+1:-5:-1",
        "SIGRTMIN+1:9:-1",
        "SIGRTMIN+2:0:0",
        "SIGRTMAX-1:0:0",
    ]


def test_unknown_signals_are_refused_clearly() -> None:
    for bad in ("RTMIN+99", 33, "NOPE"):
        with pytest.raises(errors.InvalidAddress, match="unknown signal"):
            ipcnet.send_signal(os.getpid(), bad)


def test_semaphore_names_take_the_posix_leading_slash_and_meet_posix_ipc(sname) -> None:
    sem = ipcnet.Semaphore("/" + sname, value=0)  # sem_overview(7) spells it "/somename"
    same = ipcnet.Semaphore(sname, create=False)
    peer = posix_ipc.Semaphore("/" + sname)
    try:
        peer.release()
        same.acquire(timeout=5)
        sem.release()
        peer.acquire(0)
        assert sem.value == same.value == peer.value == 0
    finally:
        peer.close()
        same.close()
        sem.close()
    with pytest.raises(errors.InvalidAddress, match="no '/' inside"):
        ipcnet.Semaphore("/a/b")


def test_semaphore_values_are_bounded_by_sem_value_max(sname) -> None:
    top = posix_ipc.SEMAPHORE_VALUE_MAX
    sem = ipcnet.Semaphore(sname, value=top)
    try:
        with pytest.raises(errors.LimitExceeded, match=f"at its maximum value {top}"):
            sem.release()  # sem_post(3): EOVERFLOW, which posix_ipc raises as a bare OSError
        assert sem.value == top
    finally:
        sem.close()
    for bad in (-1, top + 1):
        with pytest.raises(errors.LimitExceeded, match=f"value {bad} out of range 0..{top}"):
            ipcnet.SharedSemaphore(bad)
        with pytest.raises(errors.LimitExceeded, match=f"value {bad} out of range 0..{top}"):
            ipcnet.Semaphore(sname + "x", value=bad)
    with pytest.raises(posix_ipc.ExistentialError):
        posix_ipc.Semaphore("/" + sname + "x")  # nothing was made


def test_queue_bytes_and_priorities_meet_posix_ipc_both_ways(qname) -> None:
    url = f"mq:///{qname}?depth=8&msgsize=128"
    with ipcnet.open_datagram(url, listen=True, timeout=5) as receiver:
        peer = posix_ipc.MessageQueue("/" + qname)
        try:
            for data, prio in ((b"a0", 0), (b"b5", 5), (b"c0", 0), (b"d5", 5), (b"e1", 1)):
                peer.send(data, priority=prio)
            got = [receiver.recv_with_priority() for _ in range(5)]
            # mq_overview(7): highest priority first, oldest first within a priority
            assert got == [(b"b5", 5), (b"d5", 5), (b"e1", 1), (b"a0", 0), (b"c0", 0)]
            with ipcnet.open_datagram(f"mq:///{qname}") as sender:
                sender.send(b"\x00\xff" * 64, priority=32767)
                sender.send(b"")
                assert peer.receive(0) == (b"\x00\xff" * 64, 32767)
                assert peer.receive(0) == (b"", 0)
                # unlinked: the name is gone, the open ends keep working ...
                receiver.unlink()
                sender.send(b"still here")
                assert receiver.recv()[0] == b"still here"
                # ... and the name makes a new, different queue
                with ipcnet.open_datagram(f"mq:///{qname}?depth=2&msgsize=16", listen=True) as new:
                    assert (new.depth, new.max_size) == (2, 16)
                    assert new.messages == 0
        finally:
            peer.close()


@pytest.mark.parametrize("option", ["depth=0", "msgsize=0"])
def test_a_zero_queue_limit_is_refused_not_the_default(qname, option) -> None:
    with pytest.raises(errors.LimitExceeded, match=f"{option} is outside 1.."):
        ipcnet.open_datagram(f"mq:///{qname}?{option}", listen=True)
    with pytest.raises(posix_ipc.ExistentialError):
        posix_ipc.MessageQueue("/" + qname)


def test_a_queue_over_rlimit_msgqueue_says_so(qname) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_MSGQUEUE)
    resource.setrlimit(resource.RLIMIT_MSGQUEUE, (1000, hard))
    try:
        with pytest.raises(errors.LimitExceeded, match="RLIMIT_MSGQUEUE \\(1000 bytes"):
            ipcnet.open_datagram(f"mq:///{qname}?depth=4&msgsize=4096", listen=True)
    finally:
        resource.setrlimit(resource.RLIMIT_MSGQUEUE, (soft, hard))


def test_a_negative_acquire_timeout_has_expired_for_every_kind(sname) -> None:
    # multiprocessing.Semaphore().acquire(timeout=-1) is False at once: the same here, for all
    sems = [
        ipcnet.Semaphore(sname, value=0),
        ipcnet.SharedSemaphore(0),
        ipcnet.UndoSemaphore(sname, value=0),
    ]
    try:
        for sem in sems:
            with pytest.raises(errors.Timeout, match="timed out: acquire"):
                sem.acquire(timeout=-1)
    finally:
        sems[2].unlink()
        for sem in sems:
            sem.close()


def test_a_zero_ring_is_refused_not_the_default() -> None:
    name = f"shm://@ipcnet-t-{uuid.uuid4().hex}"
    with ipcnet.listen(name):
        with pytest.raises(errors.LimitExceeded, match="ring size 0 out of range"):
            ipcnet.connect(f"{name}?ring=0")


def test_sd_notify_reaches_a_manager_and_refuses_a_relative_socket() -> None:
    from ipcnet.transports.notify import notify

    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"ipcnet-t-{uuid.uuid4().hex}"
    manager.bind("\0" + name)
    try:
        assert notify("READY=1", "STATUS=up", where="@" + name)
        assert manager.recv(4096) == b"READY=1\nSTATUS=up"
    finally:
        manager.close()
    # sd_notify(3) takes an absolute path or an abstract @name, and refuses the rest
    for bad in ("relative/sock", "@", "vsock-less"):
        with pytest.raises(errors.InvalidAddress, match="invalid NOTIFY_SOCKET"):
            notify("READY=1", where=bad)


def test_the_sending_end_of_a_queue_honours_its_timeout_on_recv(qname) -> None:
    # nothing ever arrives there: it is a silent peer, so recv times out (it used to hang)
    with ipcnet.open_datagram(f"mq:///{qname}", listen=True) as receiver:
        with ipcnet.open_datagram(f"mq:///{qname}", timeout=0.05) as sender:
            with pytest.raises(errors.Timeout, match="timed out: receive on"):
                sender.recv()
            sender.timeout = 0
            with pytest.raises(errors.Busy, match="this is the sending end"):
                sender.recv()
        receiver.unlink()


def test_a_forked_child_closing_its_copy_of_an_shm_listener_leaves_the_parents() -> None:
    # as with pipes and socket listeners: close() in a child must not shut the shared
    # listening socket down (it did, and the parent's accept failed with EINVAL)
    name = f"shm://@ipcnet-t-{uuid.uuid4().hex}"
    with ipcnet.listen(name) as listener:
        pid = os.fork()
        if pid == 0:
            listener.close()
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        with ipcnet.connect(name) as client, listener.accept() as server:
            client.write(b"still listening")
            assert server.read(15) == b"still listening"
