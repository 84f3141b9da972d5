"""A reader blocked on a unix stream socket sleeps until input comes (issue 17).

The kernel wakes a unix socket's wait queue whenever the peer consumes bytes this side
sent; a reader asleep in recv(2) there is woken for nothing (a context switch each time).
The thread's voluntary context switches, from /proc, show whether it was.
"""

from __future__ import annotations

import threading
import time

import ipcnet


def _switches(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc status")


def test_peer_consuming_our_bytes_does_not_wake_a_blocked_reader() -> None:
    a, b = ipcnet.socketpair()
    with a, b:
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(a.read(10)), daemon=True)
        reader.start()
        tid = reader.native_id
        assert tid is not None
        time.sleep(0.1)  # asleep in read
        before = _switches(tid)
        for _ in range(5):
            a.write(b"request")  # the other side reads it: the kernel reports write space
            assert b.read(100) == b"request"
        time.sleep(0.1)  # time for the reader to have been woken, if it was
        assert _switches(tid) == before, "the blocked reader was woken with no input"
        assert reader.is_alive() and not got
        b.write(b"reply")
        reader.join(5)
        assert got == [b"reply"]
