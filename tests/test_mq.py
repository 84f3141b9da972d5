"""mq:// POSIX message queues: the datagram contract, limits and faults (issue 13, items 2, 8)."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import threading
import uuid

import pytest

import ipcnet
from ipc_helpers import as_other_user
from ipcnet import errors
from ipcnet.transports import mq

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


@pytest.fixture
def name():
    """A unique queue name, removed after the test whatever happened."""
    url = f"mq:///ipcnet-t-{uuid.uuid4().hex}"
    yield url
    try:
        mq.remove(url)
    except errors.NoSuchSocket:
        pass


@pytest.fixture
def ends(name):
    receiver = ipcnet.open_datagram(f"{name}?depth=4&msgsize=256", listen=True, timeout=5)
    sender = ipcnet.open_datagram(name, timeout=5)
    yield sender, receiver
    sender.close()
    receiver.close()


def test_boundaries_are_kept(ends) -> None:
    sender, receiver = ends
    messages = [b"one", b"", b"three" * 50, bytes(range(256))]
    for m in messages:
        sender.send(m)
        data, who = receiver.recv()
        assert data == m and who is None  # one recv = one message; a queue names no sender


def test_priority_orders_messages(ends) -> None:
    sender, receiver = ends
    sender.send(b"low", priority=1)
    sender.send(b"high", priority=9)
    sender.send(b"default")
    assert receiver.recv_with_priority() == (b"high", 9)
    assert receiver.recv_with_priority() == (b"low", 1)
    assert receiver.recv_with_priority() == (b"default", 0)
    with pytest.raises(errors.LimitExceeded, match="priority 40000 out of range"):
        sender.send(b"x", priority=40000)


def test_priority_option_in_the_address(name) -> None:
    with ipcnet.open_datagram(name, listen=True, timeout=5) as receiver:
        with ipcnet.open_datagram(f"{name}?priority=7") as sender:
            sender.send(b"p")
        assert receiver.recv_with_priority() == (b"p", 7)


def test_full_queue_blocks_then_times_out_and_drops_nothing(ends) -> None:
    sender, receiver = ends
    for i in range(4):
        sender.send(b"%d" % i)
    sender.timeout = 0.1
    with pytest.raises(errors.Timeout, match=r"after 0.1 s \(the queue is full\)"):
        sender.send(b"overflow")
    sender.timeout = 0
    with pytest.raises(errors.Busy, match="queue full: .* holds 4 messages"):
        sender.send(b"overflow")
    assert receiver.messages == 4
    assert [receiver.recv()[0] for _ in range(4)] == [b"0", b"1", b"2", b"3"]


def test_a_blocked_send_proceeds_when_the_reader_takes_one(ends) -> None:
    sender, receiver = ends
    for _ in range(4):
        sender.send(b"fill")
    done = threading.Event()
    t = threading.Thread(target=lambda: (sender.send(b"late"), done.set()))
    t.start()
    assert not done.wait(0.1)
    receiver.recv()
    t.join(5)
    assert done.is_set()
    assert [receiver.recv()[0] for _ in range(4)][-1] == b"late"


def test_message_over_the_queue_limit(ends) -> None:
    sender, _ = ends
    with pytest.raises(errors.MessageTooLarge, match="257 bytes, the queue's limit is 256"):
        sender.send(b"x" * 257)


def test_depth_and_size_bounds_are_the_kernels(name) -> None:
    """mq_open(3) holds a process to msg_max and msgsize_max unless it has CAP_SYS_RESOURCE
    (then the kernel's ceilings bind it): ours accepts one over each exactly when the
    kernel does, and a refusal names the bound."""
    import posix_ipc

    for depth, size in ((mq.limit("msg_max") + 1, 16), (1, mq.limit("msgsize_max") + 1)):
        try:
            flags = posix_ipc.O_CREAT | posix_ipc.O_EXCL
            q = posix_ipc.MessageQueue(f"/ipcnet-k-{uuid.uuid4().hex}", flags, 0o600, depth, size)
            q.close()
            q.unlink()
            kernel = True
        except ValueError:  # EINVAL
            kernel = False
        try:
            ipcnet.open_datagram(f"{name}?depth={depth}&msgsize={size}", listen=True).close()
            mq.remove(name)
            ours = True
        except errors.LimitExceeded as exc:
            assert re.search(r"(depth|msgsize)=\d+ is outside 1\.\.\d+ \(/proc/sys/fs/mq", str(exc))
            ours = False
        assert ours == kernel, (depth, size)


def test_default_limits_are_the_systems(name) -> None:
    with ipcnet.open_datagram(name, listen=True) as receiver:
        assert receiver.depth == mq.limit("msg_default")
        assert receiver.max_size == mq.limit("msgsize_default")


@pytest.mark.parametrize(
    "url, why",
    [
        ("mq:///a/b", "cannot contain '/'"),
        ("mq:///" + "n" * 256, "over NAME_MAX"),
        ("mq://q", "expected mq:///name"),
        ("mq:///q?depth=x", "not a number"),
    ],
)
def test_bad_names(url: str, why: str) -> None:
    with pytest.raises(errors.InvalidAddress, match=why):
        ipcnet.open_datagram(url)


def test_missing_queue(name) -> None:
    with pytest.raises(errors.NoSuchSocket, match=r"no message queue .* \(listen on it first"):
        ipcnet.open_datagram(name)
    with pytest.raises(errors.NoSuchSocket):
        mq.remove(name)


def test_permission_denied_for_another_user(name) -> None:
    with ipcnet.open_datagram(name, listen=True):  # created 0600 by us

        def open_it() -> str:
            ipcnet.open_datagram(name)
            return "opened"

        assert as_other_user(open_it).startswith("PermissionDenied: permission denied: open mq:")


def test_close_wakes_a_blocked_recv(ends) -> None:
    _, receiver = ends
    receiver.timeout = None
    outcome: list[BaseException] = []

    def recv() -> None:
        try:
            receiver.recv()
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=recv)
    t.start()
    t.join(0.1)
    receiver.close()
    t.join(5)
    assert not t.is_alive()
    assert isinstance(outcome[0], errors.Closed)


def test_recv_timeout_and_pollable_descriptor(ends) -> None:
    sender, receiver = ends
    receiver.timeout = 0.05
    with pytest.raises(errors.Timeout, match="timed out: receive on"):
        receiver.recv()
    assert select.select([receiver.fileno()], [], [], 0)[0] == []
    sender.send(b"poll me")
    assert select.select([receiver.fileno()], [], [], 5)[0] == [receiver.fileno()]
    assert receiver.recv()[0] == b"poll me"


def test_ends_are_one_way(ends) -> None:
    sender, receiver = ends
    with pytest.raises(errors.Unsupported, match="receiving end"):
        receiver.send(b"x")
    with pytest.raises(errors.Unsupported, match="one destination"):
        sender.send(b"x", to="mq:///elsewhere")


def test_stream_functions_refuse_a_queue(name) -> None:
    with pytest.raises(errors.Unsupported, match="datagram address"):
        ipcnet.connect(name)


def test_queue_outlives_its_ends_until_removed(name) -> None:
    with ipcnet.open_datagram(name, listen=True) as receiver:
        with ipcnet.open_datagram(name) as sender:
            sender.send(b"kept")
    with ipcnet.open_datagram(name, listen=True, timeout=5) as receiver:
        assert receiver.recv()[0] == b"kept"
        receiver.unlink()
    with pytest.raises(errors.NoSuchSocket):
        ipcnet.open_datagram(name)


def test_cli_connect_sends_each_read_as_one_message(name) -> None:
    with ipcnet.open_datagram(name, listen=True, timeout=20) as receiver:
        proc = subprocess.run(
            [sys.executable, "-m", "ipcnet", "connect", "--linger", "0", name],
            input=b"hello queue\n",
            env={**os.environ, "PYTHONPATH": SRC},
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert receiver.recv()[0] == b"hello queue\n"
