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
