"""DaemonPool, the worker threads of the event-loop models: a job never waits behind a
blocked one while the limit allows another thread, and the limit holds."""

from __future__ import annotations

import threading

from ipcnet.drivers.jobs import DaemonPool


def test_a_job_never_waits_behind_a_blocked_one_below_the_limit() -> None:
    # the race: a thread counted as waiting takes the *first* job and blocks in it, while
    # the second job, submitted in that moment, finds "a waiting thread" and starts none
    for _ in range(500):
        pool = DaemonPool(2)
        gate = threading.Event()
        first = pool.submit(gate.wait, 10)
        second = pool.submit(lambda: "ran")
        try:
            assert second.result(timeout=5) == "ran"
        finally:
            gate.set()
        assert first.result(timeout=5) is True
        pool.shutdown()


def test_the_limit_holds_and_queued_jobs_run_in_turn() -> None:
    pool = DaemonPool(2)
    gates = [threading.Event() for _ in range(2)]
    running = threading.Semaphore(0)

    def hold(i: int) -> int:
        running.release()
        gates[i].wait(10)
        return i

    held = [pool.submit(hold, i) for i in range(2)]
    for _ in range(2):
        assert running.acquire(timeout=5)
    queued = pool.submit(lambda: "after")
    assert not queued.done() and len(pool._threads) == 2  # no third thread
    gates[0].set()
    assert queued.result(timeout=5) == "after"
    gates[1].set()
    assert [f.result(timeout=5) for f in held] == [0, 1]
    pool.shutdown()


def test_idle_threads_end_and_a_job_submitted_as_one_gives_up_still_runs() -> None:
    """With ``idle_exit`` (the relay's connect pool: a burst of hung connects must not
    leave its threads for ever), a thread that waited that long ends; a job submitted in
    the moment it gave up, while submit still counted it idle, is run all the same."""
    pool = DaemonPool(4, idle_exit=0.005)
    gate = threading.Event()
    burst = [pool.submit(gate.wait, 10) for _ in range(4)]
    gate.set()
    assert all(f.result(timeout=5) for f in burst)
    for i in range(150):
        threading.Event().wait(0.005 * (i % 3))  # now and then, just as threads give up
        assert pool.submit(lambda: "ran").result(timeout=5) == "ran"
    deadline = threading.Event()
    for _ in range(100):
        if not pool._threads:
            break
        deadline.wait(0.02)
    assert pool._threads == []  # every idle thread ended
    assert pool.submit(lambda: "again").result(timeout=5) == "again"
    pool.shutdown()
