"""Semaphores across processes, timeouts, and what happens when a holder dies (issue 13, item 3)."""

from __future__ import annotations

import mmap
import os
import signal
import struct
import uuid

import pytest

import ipcnet
from ipc_helpers import as_other_user
from ipcnet import errors
from ipcnet.transports.semaphore import NAME_MAX


@pytest.fixture
def named():
    sems = []

    def make(value: int = 1, kind=ipcnet.Semaphore):
        sem = kind(f"ipcnet-t-{uuid.uuid4().hex}", value)
        sems.append(sem)
        return sem

    yield make
    for sem in sems:
        try:
            sem.unlink()
        except (errors.NoSuchSocket, errors.Closed):
            pass
        sem.close()


def _count_under(sem, workers: int = 4, rounds: int = 300) -> int:
    """N forked processes each add 1 to a shared counter ``rounds`` times, under ``sem``."""
    counter = mmap.mmap(-1, 8, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                for _ in range(rounds):
                    with sem:
                        (n,) = struct.unpack_from("q", counter)
                        os.sched_yield()  # invite a race, were the semaphore not there
                        struct.pack_into("q", counter, 0, n + 1)
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    return int(struct.unpack_from("q", counter)[0])


@pytest.mark.parametrize("kind", ["named", "shared", "undo"])
def test_exact_total_under_the_semaphore(kind, named) -> None:
    if kind == "shared":
        sem = ipcnet.SharedSemaphore(1)
    else:
        sem = named(1, ipcnet.Semaphore if kind == "named" else ipcnet.UndoSemaphore)
    assert _count_under(sem) == 4 * 300
    assert sem.value == 1


@pytest.mark.parametrize("kind", ["named", "shared", "undo"])
def test_acquire_timeout_and_counting(kind, named) -> None:
    if kind == "shared":
        sem = ipcnet.SharedSemaphore(2)
    else:
        sem = named(2, ipcnet.Semaphore if kind == "named" else ipcnet.UndoSemaphore)
    sem.acquire()
    sem.acquire(timeout=1)
    assert sem.value == 0
    with pytest.raises(errors.Timeout, match="timed out: acquire"):
        sem.acquire(timeout=0.05)
    sem.release()
    assert sem.value == 1


def test_killed_holder_of_a_posix_semaphore_keeps_its_count(named) -> None:
    """The honest answer: POSIX semaphores have no owner, so the unit is lost."""
    sem = named(1)
    pid = os.fork()
    if pid == 0:
        sem.acquire()
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    assert sem.value == 0
    with pytest.raises(errors.Timeout, match="UndoSemaphore gives it back"):
        sem.acquire(timeout=0.05)


def test_killed_holder_of_an_undo_semaphore_gives_it_back(named) -> None:
    sem = named(1, ipcnet.UndoSemaphore)
    pid = os.fork()
    if pid == 0:
        sem.acquire()
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    assert sem.value == 1  # the kernel undid the dead process's acquire
    assert sem.last_pid == pid  # and says who touched it last
    sem.acquire(timeout=1)
    sem.release()


def test_open_by_name_from_another_object(named) -> None:
    sem = named(0)
    other = ipcnet.Semaphore(sem.name, create=False)
    other.release()
    sem.acquire(timeout=1)
    other.close()


def test_undo_semaphore_removed_wakes_as_closed(named) -> None:
    sem = named(0, ipcnet.UndoSemaphore)
    sem.unlink()
    with pytest.raises(errors.Closed, match="was removed"):
        sem.acquire(timeout=0.5)


@pytest.mark.parametrize("kind", [ipcnet.Semaphore, ipcnet.UndoSemaphore])
def test_missing_and_bad_names(kind) -> None:
    with pytest.raises(errors.NoSuchSocket, match="create it first"):
        kind(f"ipcnet-missing-{uuid.uuid4().hex}", create=False)
    with pytest.raises(errors.InvalidAddress, match="no '/'"):
        kind("a/b")
    with pytest.raises(errors.InvalidAddress, match=f"over {NAME_MAX} bytes"):
        kind("n" * (NAME_MAX + 1))


def test_release_over_the_maximum(named) -> None:
    sem = named(32767, ipcnet.UndoSemaphore)
    with pytest.raises(errors.LimitExceeded, match="over its maximum"):
        sem.release()


def test_closed_semaphore_refuses_use() -> None:
    sem = ipcnet.SharedSemaphore(1)
    sem.close()
    sem.close()
    with pytest.raises(errors.Closed):
        sem.acquire()


def test_permission_denied_for_another_user(named) -> None:
    sem = named(1)  # mode 0600, ours

    def open_it() -> str:
        ipcnet.Semaphore(sem.name, create=False)
        return "opened"

    assert as_other_user(open_it).startswith("PermissionDenied: permission denied: open")
