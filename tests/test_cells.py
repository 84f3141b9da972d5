"""Counters shared across fork (transports/cells.py): a process killed in an update blocks
nobody, and nothing counted is lost.

The web server's request counters, the relay's and TLS's were one semaphore's
(multiprocessing.Lock) cells: a prefork worker or fork child killed while it held the
semaphore (the OOM killer, kill -9) left it taken, and every other process of the server
then waited for ever on its next request (nginx unlocks a dead worker's shared mutexes for
the same reason). Each process now writes a row of its own.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from ipcnet.httpd.metrics import Metrics
from ipcnet.relay.stats import RelayStats
from ipcnet.transports.cells import ROWS
from ipcnet.transports.tls.stats import TLSStats

# each kind: (make, update, total counted)
KINDS: dict[str, tuple[Callable[[], object], Callable[[object], None], Callable[[object], int]]] = {
    "http": (Metrics, lambda m: m.count(200, 10, 0.001), lambda m: m.snapshot()["requests"]),
    "relay": (
        lambda: RelayStats(["tcp://127.0.0.1:1"]),
        lambda s: s.add("total"),
        lambda s: s.snapshot()["total"],
    ),
    "tls": (TLSStats, lambda s: s.handshake("TLSv1.3", None), lambda s: s.snapshot()["handshakes"]),
}


def _finishes(update: Callable[[], None], seconds: float = 3.0) -> bool:
    thread = threading.Thread(target=update, daemon=True)  # left blocked if it hangs
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()


@pytest.mark.parametrize("kind", KINDS)
def test_a_process_killed_while_it_counts_blocks_no_other(kind: str) -> None:
    make, update, total = KINDS[kind]
    counters = make()
    for _ in range(20):
        pid = os.fork()
        if pid == 0:  # count as fast as it can until killed
            while True:
                update(counters)
        time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert _finishes(lambda: update(counters)), "a dead process's lock stopped the count"
    assert _finishes(lambda: total(counters))


@pytest.mark.parametrize("kind", KINDS)
def test_every_count_of_every_process_is_kept(kind: str) -> None:
    """More children than rows, some alive together, each counting 3 times: the totals
    have every count (the rows of ended processes are taken again, counts kept; past
    the free rows, the shared one)."""
    make, update, total = KINDS[kind]
    counters = make()
    update(counters)
    r, w = os.pipe()
    children = []
    for _ in range(ROWS + 10):  # all alive at once: every row taken, then the shared one
        pid = os.fork()
        if pid == 0:
            os.close(w)
            for _ in range(3):
                update(counters)
            os.read(r, 1)  # wait until the parent lets go
            os._exit(0)
        children.append(pid)
    os.close(r)
    deadline = time.monotonic() + 10
    while total(counters) < 1 + 3 * len(children) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.close(w)
    for pid in children:
        os.waitpid(pid, 0)
    for _ in range(ROWS):  # then one at a time: rows of ended processes are reused
        pid = os.fork()
        if pid == 0:
            update(counters)
            os._exit(0)
        os.waitpid(pid, 0)
    assert total(counters) == 1 + 3 * (ROWS + 10) + ROWS


@pytest.mark.parametrize("kind", KINDS)
def test_threads_of_one_process_lose_no_count(kind: str) -> None:
    make, update, total = KINDS[kind]
    counters = make()

    def work() -> None:
        for _ in range(5000):
            update(counters)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert total(counters) == 20000
