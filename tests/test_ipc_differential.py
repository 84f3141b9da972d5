"""The notes' local IPC objects against the kernel and posix_ipc, from a differential pass.

A throw-away harness fed generated names, sizes, attributes, priorities, signal bursts and
forged peers to ipcnet and to the references (posix_ipc, the kernel's own calls and files,
util-linux's lsipc/ipcmk) and listed every disagreement; these are the ones where ipcnet was
wrong. References: signal(7) (a handler that returns resumes the program: PEP 475 retries
the call, and a timeout stays one deadline), fifo(7) (open(2) of a socket is ENXIO, as for
a fifo without a reader), mq_overview(7) and mq_open(3) (a queue name is any bytes but '/'
and NUL; ENOSPC is queues_max), memfd_create(2) (F_SEAL_WRITE forbids a writable shared
mapping), kill(1) (``-s 10``), util-linux ipcrm (removes a SysV set under its users), and
the Listener contract of ``transports.base`` (close() wakes a blocked accept()).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import mmap
import os
import signal
import socket
import struct
import subprocess
import threading
import uuid

import posix_ipc
import pytest

import ipcnet
from ipc_helpers import in_child
from ipcnet import errors
from ipcnet.inspector import ipc
from ipcnet.transports import mq
from test_ipcs import _mqueue_mount

STORM_CAP = 5000  # signals: far more than the waits below take, so reaching it is a failure


def _storm(then=None) -> tuple[int, int]:
    """A child that sends SIGUSR1 to us every millisecond until we close the returned
    descriptor or it has sent STORM_CAP; ``then()`` runs in it after 20 signals.
    Returns (its pid, the descriptor)."""
    target = os.getpid()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            import select

            for n in range(STORM_CAP):
                os.kill(target, signal.SIGUSR1)
                if n == 20 and then is not None:
                    then()
                if select.select([r], [], [], 0.001)[0]:
                    break
        finally:
            os._exit(0)
    os.close(r)
    return pid, w


def _outcome(call) -> str:
    try:
        call()
    except errors.IPCError as exc:
        return type(exc).__name__
    except Exception as exc:
        return f"raw {type(exc).__module__}.{type(exc).__name__}: {exc}"
    return "done"


def test_a_storm_of_handled_signals_changes_no_wait() -> None:
    # signal(7): a handler that returns resumes the program; each wait must either finish
    # or end at its one deadline (posix_ipc says SignalError; sem_timedwait and semtimedop
    # say EINTR, and a retry with the whole timeout again never ends while signals come)
    def run() -> str:
        signal.signal(signal.SIGUSR1, lambda *_: None)
        tag = uuid.uuid4().hex
        q = f"mq:///ipcnet-t-{tag}"
        sems: list[ipcnet.Semaphore | ipcnet.UndoSemaphore] = []
        with contextlib.ExitStack() as stack:
            receiver = stack.enter_context(ipcnet.open_datagram(f"{q}?depth=1", listen=True))
            stack.callback(mq.remove, q)
            sender = stack.enter_context(ipcnet.open_datagram(q))
            named = ipcnet.Semaphore(f"ipcnet-t-{tag}", 0)
            undo = ipcnet.UndoSemaphore(f"ipcnet-t-{tag}", 0)
            sems += [named, undo]
            for sem in sems:
                stack.callback(sem.close)
                stack.callback(sem.unlink)
            shared = ipcnet.SharedSemaphore(0)

            def late() -> None:  # in the storm child: what the untimed waits wait for
                with contextlib.suppress(errors.Busy), ipcnet.open_datagram(q, timeout=0) as end:
                    end.send(b"late")  # (never blocks the storm: the old code filled the queue)
                named.release()

            pid, stop = _storm(late)
            receiver.timeout = None
            got = [_outcome(receiver.recv), _outcome(lambda: named.acquire(None))]
            receiver.timeout = sender.timeout = 0.05
            cases = [
                receiver.recv,  # an empty queue
                lambda: sender.send(b"fills the queue"),
                lambda: sender.send(b"full"),
                lambda: named.acquire(0.05),
                lambda: shared.acquire(0.2),  # longer: a 50 ms pause of the storm ends the
                lambda: undo.acquire(0.2),  # old wait too, and it would pass
            ]
            storming = True
            for case in cases:
                outcome = _outcome(case)
                # still signalling? a wait that ends only once the storm has run out did
                # not keep its deadline (it began its whole timeout again at each EINTR)
                storming = storming and os.waitpid(pid, os.WNOHANG) == (0, 0)
                got.append(outcome if storming else f"{outcome} (after the storm)")
            os.close(stop)
            if storming:
                os.waitpid(pid, 0)
        return " | ".join(got)

    assert in_child(run) == " | ".join(
        ["done", "done", "Timeout", "done", "Timeout", "Timeout", "Timeout", "Timeout"]
    )


def test_signal_sources_closed_in_any_order_leave_the_others_blocked() -> None:
    # each source unblocks only what it blocked and no other open source still needs
    def run() -> str:
        blocked = lambda: sorted(signal.pthread_sigmask(signal.SIG_BLOCK, []))  # noqa: E731
        before = blocked()
        usr1 = ipcnet.signals("USR1")
        usr2 = ipcnet.signals("USR2")
        both = ipcnet.signals("USR1", "USR2")
        usr1.close()
        ipcnet.send_signal(os.getpid(), "USR1")  # still queued, not the default action
        ipcnet.send_signal(os.getpid(), "USR2")
        got = [both.read(timeout=5).name, both.read(timeout=5).name]
        both.close()
        still = signal.SIGUSR2 in blocked()
        usr2.close()
        return f"{got} {still} {blocked() == before}"

    assert in_child(run) == "['SIGUSR1', 'SIGUSR2'] True True"


@pytest.mark.parametrize("spelling", ["10", " 15 ", "35", str(int(signal.SIGRTMAX))])
def test_a_signal_number_in_a_string_is_that_signal_as_kill_takes_it(spelling) -> None:
    # kill -s 10 PID: a number is a number, as the error message itself offers
    with subprocess.Popen(["sleep", "60"]) as child:  # exec'd: every signal at its default
        try:
            ipcnet.send_signal(child.pid, "0")  # kill -0: only looks
            ipcnet.send_signal(child.pid, spelling)
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(10)
            child.kill()  # (a no-op once it has ended)
    assert child.returncode == -int(spelling)
    with pytest.raises(errors.InvalidAddress, match="unknown signal '99'"):
        ipcnet.send_signal(os.getpid(), "99")


@pytest.fixture
def odd_files(tmp_path):
    os.mkdir(tmp_path / "dir")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    yield tmp_path
    sock.close()


@pytest.mark.parametrize("kind", ["sock", "dir"])
def test_a_fifo_address_on_another_kind_of_file_is_not_a_fifo_at_once(odd_files, kind) -> None:
    # open(2) of a socket is ENXIO, as for a fifo with no reader: it used to wait the
    # whole connect timeout for a reader that cannot come; a directory was "Broken"
    url = f"fifo://{odd_files / kind}"
    with pytest.raises(errors.AddressInUse, match=f"^not a fifo: {url} is another kind of file$"):
        ipcnet.connect(url, connect_timeout=5)
    with pytest.raises(errors.AddressInUse, match="exists and is not a fifo"):
        ipcnet.listen(url)  # as listen already said


def test_closing_a_fifo_listener_wakes_a_blocked_accept(tmp_path) -> None:
    # the Listener contract (close() wakes a thread blocked in accept()); the fifo one
    # stayed in open(O_RDONLY) for ever, waiting for a writer, after its fifo was gone
    listener = ipcnet.listen(f"fifo://{tmp_path / 'f'}")
    outcome: list[BaseException] = []

    def accept() -> None:
        try:
            listener.accept()
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=accept)
    thread.start()
    while "ipcnet-fifo-open" not in {t.name for t in threading.enumerate()}:
        thread.join(0.001)  # until its opener is in open()
    listener.close()
    thread.join(10)
    assert not thread.is_alive()
    assert [type(e) for e in outcome] == [errors.Closed]
    assert not (tmp_path / "f").exists()


def test_an_undo_semaphore_removed_by_ipcrm_is_closed_for_every_use() -> None:
    # util-linux's ipcrm -s removes the set under us: acquire and release said "was
    # removed", value and last_pid a Broken "invalid argument"
    sem = ipcnet.UndoSemaphore(f"ipcnet-t-{uuid.uuid4().hex}", 1)
    subprocess.run(["ipcrm", "-s", str(sem._id)], check=True)
    uses = [
        lambda: sem.value,  # the same error as acquire's (checked below)
        lambda: sem.last_pid,
        lambda: sem.acquire(timeout=0),
        sem.release,
    ]
    assert [_outcome(use) for use in uses] == ["Closed"] * 4
    with pytest.raises(
        errors.Closed, match=r"^sysv semaphore 'ipcnet-t-.*' \(key 0x[0-9a-f]{8}\) was removed$"
    ):
        sem.acquire(timeout=0)


def _dev_shm_names() -> set[str]:
    return set(os.listdir("/dev/shm"))


@pytest.mark.parametrize(
    "make",
    [
        lambda name: ipcnet.Semaphore(name),
        lambda name: ipcnet.UndoSemaphore(name),
        lambda name: ipcnet.open_datagram(f"mq:///{name}", listen=True),
        lambda name: mq.remove(f"mq:///{name}"),
    ],
    ids=["semaphore", "undo-semaphore", "mq-listen", "mq-remove"],
)
def test_a_name_posix_ipc_cannot_spell_is_refused_before_anything_is_made(make) -> None:
    # a surrogate-escaped byte (os.fsdecode of b"\xff"): posix_ipc names objects in strict
    # UTF-8, so the semaphore raised a raw UnicodeEncodeError and the queue was made but
    # could not be removed through ipcnet again
    name = f"ipcnet-t-\udcff{uuid.uuid4().hex}"
    before = _dev_shm_names()
    with pytest.raises(errors.InvalidAddress, match="name is not valid UTF-8"):
        make(name)
    assert _dev_shm_names() - before == set()


def test_a_queue_whose_name_reads_as_a_query_is_listed_by_its_own_name() -> None:
    # '?' is a legal queue name character; the listing parsed "mq:///NAME" and either
    # failed (unknown option) or counted another queue ("q?depth=1" is queue "q")
    base = f"/ipcnet-t-{uuid.uuid4().hex}"
    queues = [posix_ipc.MessageQueue(base + suffix, posix_ipc.O_CREX) for suffix in ("", "?x")]
    queues.append(posix_ipc.MessageQueue(base + "?depth=1", posix_ipc.O_CREX))
    try:
        for n, queue in enumerate(queues):
            for _ in range(n):
                queue.send(b"m")
        with _mqueue_mount():
            rows = {r.name: r.messages for r in ipc.collect(["posix-mq"], [os.getpid()])[0]}
        assert [rows.get(q.name[1:]) for q in queues] == [0, 1, 2]
    finally:
        for queue in queues:
            queue.unlink()
            queue.close()


def test_a_message_is_measured_in_bytes_not_items() -> None:
    url = f"mq:///ipcnet-t-{uuid.uuid4().hex}"
    with ipcnet.open_datagram(f"{url}?msgsize=64", listen=True, timeout=5) as receiver:
        with ipcnet.open_datagram(url) as sender:
            receiver.unlink()
            with pytest.raises(errors.MessageTooLarge, match="80 bytes, the queue's limit is 64"):
                sender.send(memoryview(bytes(80)).cast("I"))  # 20 items of 4 bytes
            sender.send(memoryview(bytes(range(64))).cast("I"))
        assert receiver.recv()[0] == bytes(range(64))


def test_a_queue_over_queues_max_names_the_limit() -> None:
    # mq_open(3): ENOSPC is queues_max (posix_ipc's OSError has no errno): it was a Broken
    # "insufficient space"; in a private IPC namespace, whose limits are its own
    def run() -> str:
        import ctypes

        if ctypes.CDLL(None, use_errno=True).unshare(0x08000000) != 0:  # CLONE_NEWIPC
            return "skip"
        with open("/proc/sys/fs/mqueue/queues_max", "w") as f:
            f.write("1")
        with ipcnet.open_datagram("mq:///first?depth=1&msgsize=1", listen=True):
            try:
                ipcnet.open_datagram("mq:///second?depth=1&msgsize=1", listen=True)
            except errors.IPCError as exc:
                return f"{type(exc).__name__}: {exc}"
            finally:
                mq.remove("mq:///first")
        return "made"

    out = in_child(run)
    if out == "skip":
        pytest.skip("cannot make an IPC namespace here")
    assert out == (
        "LimitExceeded: cannot create mq:///second?depth=1&msgsize=1: "
        "the system holds its queues_max of 1 queues (/proc/sys/fs/mqueue/queues_max)"
    )


def _queue_descriptors(name: str) -> int:
    """How many of our descriptors are the queue ``name`` ("/name", as /proc shows it)."""
    gc.collect()
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # (the listing's own descriptor is gone)
            count += os.readlink(f"/proc/self/fd/{fd}") == name
    return count


def test_a_dropped_queue_end_gives_its_descriptor_back() -> None:
    # a socket dropped unclosed closes; posix_ipc's MessageQueue does not (its own choice)
    url = f"mq:///ipcnet-t-{uuid.uuid4().hex}"
    with ipcnet.open_datagram(url, listen=True) as receiver:
        try:
            ends = [ipcnet.open_datagram(url) for _ in range(3)]
            assert _queue_descriptors(url[5:]) == 4
            del ends
            assert _queue_descriptors(url[5:]) == 1
        finally:
            receiver.unlink()


def _forge(address: str, ring: int, seals: int) -> tuple[str, bytes]:
    """A peer's handshake with a memfd sealed with ``seals``: the listener's error, and
    the reason the peer was sent."""
    with ipcnet.listen(address) as listener:
        peer = socket.socket(socket.AF_UNIX)
        peer.connect("\0" + address[len("shm://@") :])
        memfd = os.memfd_create("forged", os.MFD_ALLOW_SEALING)
        efds = [os.eventfd(0) for _ in range(4)]
        try:
            os.ftruncate(memfd, 2 * (256 + ring))
            fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, seals)
            fds = struct.pack("5i", memfd, *efds)
            hello = struct.pack("<8sII", b"ipcnetSH", 1, ring)
            peer.sendmsg([hello], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
            with pytest.raises(errors.IPCError) as caught:
                listener.accept()
            peer.settimeout(5)
            return f"{type(caught.value).__name__}: {caught.value}", peer.recv(256)
        finally:
            peer.close()
            for fd in (memfd, *efds):
                os.close(fd)


_RESIZE = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
_FUTURE_WRITE = 0x10  # F_SEAL_FUTURE_WRITE (Linux 5.1; the fcntl module has it from 3.12)


@pytest.mark.parametrize(
    "ring, seals, why",
    [
        (4096, _RESIZE | fcntl.F_SEAL_WRITE, "the memory is sealed against writing"),
        (4096, _RESIZE | _FUTURE_WRITE, "the memory is sealed against writing"),
        (mmap.PAGESIZE + 8, _RESIZE, f"is not a whole number of {mmap.PAGESIZE}-byte pages"),
    ],
    ids=["seal-write", "seal-future-write", "not-whole-pages"],
)
def test_a_forged_shm_peer_is_refused_with_its_reason(ring, seals, why) -> None:
    # a write-sealed memfd cannot be mapped shared and writable (EPERM): that is the peer's
    # fault, refused and told like every other bad handshake, not our PermissionDenied
    error, reason = _forge(f"shm://@ipcnet-t-{uuid.uuid4().hex}", ring, seals)
    assert error.startswith("RemoteProtocolError: bad shm handshake") and why in error
    assert why in reason.decode()
