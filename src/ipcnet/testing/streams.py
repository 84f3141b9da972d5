"""The conformance battery for two-way streams.

Role: one function per promise of the Channel contract; ``check_stream_pair(make)`` runs
them all on fresh pairs from ``make``. Rules: every check uses real I/O between the two
ends (threads where both sides must run at once), bounds every wait, and raises
AssertionError with what it saw. Learned from trio's ``check_two_way_stream`` and
``check_half_closeable_stream``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from ipcnet.channel import Channel
from ipcnet.errors import Broken, Closed, Timeout

Pair = tuple[Channel, Channel]
MakePair = Callable[[], Pair]
WAIT = 10.0  # seconds any single check may wait for the other side


class _Worker(threading.Thread):
    """A thread that keeps its exception (or result) for the checker to look at."""

    def __init__(self, fn: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self._fn = fn
        self.result: object = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:
            self.error = exc

    def finish(self) -> object:
        self.join(WAIT)
        assert not self.is_alive(), "the other side did not finish in time"
        if self.error is not None:
            raise self.error
        return self.result


def _read_until_eof(ch: Channel, chunk_sizes: random.Random | None = None) -> bytes:
    parts: list[bytes] = []
    while True:
        n = chunk_sizes.randint(1, 70_000) if chunk_sizes else 65536
        data = ch.read(n)
        if data == b"":
            return b"".join(parts)
        assert 1 <= len(data) <= n, f"read({n}) returned {len(data)} bytes"
        parts.append(data)


def _write_chunks(ch: Channel, payload: bytes, rng: random.Random) -> None:
    view = memoryview(payload)
    while view:
        n = rng.randint(1, 70_000)
        ch.write(view[:n])
        view = view[n:]


def check_ordered_delivery(make: MakePair) -> None:
    """Many small writes arrive in order, none lost or duplicated."""
    a, b = make()
    with a, b:
        messages = [f"message {i}\n".encode() for i in range(2000)]

        def send_all() -> None:
            for m in messages:
                a.write(m)
            a.send_eof()

        writer = _Worker(send_all)
        lines = list(b)
        writer.finish()
        assert lines == messages, (
            f"got {len(lines)} lines, first bad at {_first_diff(lines, messages)}"
        )


def check_bulk_both_ways(make: MakePair, size: int = 1 << 20) -> None:
    """1 MiB each way at the same time, in random chunk sizes, arrives intact."""
    a, b = make()
    with a, b:
        rng = random.Random(size)
        to_b, to_a = rng.randbytes(size), rng.randbytes(size)

        def side(me: Channel, payload: bytes, seed: int) -> bytes:
            def send() -> None:
                _write_chunks(me, payload, random.Random(seed))
                me.send_eof()

            sender = _Worker(send)
            got = _read_until_eof(me, random.Random(seed + 1))
            sender.finish()
            return got

        other = _Worker(lambda: side(b, to_a, 2))
        got_a = side(a, to_b, 1)
        got_b = other.finish()
        assert got_b == to_b, f"b received {len(got_b)} of {size} bytes, or wrong bytes"  # type: ignore[arg-type]
        assert got_a == to_a, f"a received {len(got_a)} of {size} bytes, or wrong bytes"


def check_eof_exact(make: MakePair) -> None:
    """read() returns b"" if and only if EOF, and keeps returning it."""
    a, b = make()
    with a, b:
        a.write(b"x")
        assert b.read(10) == b"x"
        b.timeout = 0.2
        try:
            early = b.read(10)
        except Timeout:
            early = None  # nothing to read yet and no EOF: the right answer is to wait
        assert early is None, f"read() returned {early!r} before EOF"
        b.timeout = WAIT
        a.write(b"yz")
        a.send_eof()
        assert b.read_exactly(2) == b"yz"
        assert b.read(10) == b""
        assert b.read(10) == b"", "EOF is not sticky"
        assert b.read() == b""


def check_half_close(make: MakePair) -> None:
    """After a.send_eof(), b reads the data then EOF, and b -> a still works."""
    a, b = make()
    with a, b:
        a.timeout = b.timeout = WAIT
        a.write(b"last words")
        a.send_eof()
        a.send_eof()  # idempotent
        assert b.read() == b"last words"
        b.write(b"reply after eof")
        b.send_eof()
        assert a.read() == b"reply after eof"


def check_broken_after_peer_close(make: MakePair) -> None:
    """Writing after the peer closed raises Broken, and stays broken."""
    a, b = make()
    with a:
        b.close()
        deadline = time.monotonic() + WAIT
        chunk = b"z" * 4096
        while True:
            try:
                a.write(chunk)
            except Broken:
                break
            assert time.monotonic() < deadline, "writes kept succeeding after the peer closed"
            time.sleep(0.001)
        for _ in range(3):
            try:
                a.write(chunk)
            except Broken:
                continue
            raise AssertionError("a write succeeded after a Broken error")


def check_close_twice(make: MakePair) -> None:
    """close() twice is fine; using a closed channel raises Closed."""
    a, b = make()
    a.close()
    a.close()
    b.close()
    b.close()
    for op in (lambda: a.read(1), lambda: a.write(b"x"), a.send_eof):
        try:
            op()
        except Closed:
            continue
        raise AssertionError("a closed channel did not raise Closed")


def check_close_wakes_reader(make: MakePair) -> None:
    """A thread blocked in read() wakes with Closed when another thread closes the channel."""
    a, b = make()
    with b:
        reader = _Worker(lambda: a.read(100))
        time.sleep(0.1)
        assert reader.is_alive(), "read() returned although nothing was sent"
        a.close()
        reader.join(WAIT)
        assert not reader.is_alive(), "close() did not wake the blocked reader"
        assert isinstance(reader.error, Closed), f"blocked reader got {reader.error!r}, not Closed"


def _first_diff(a: list[bytes], b: list[bytes]) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


CHECKS: dict[str, Callable[[MakePair], None]] = {
    "ordered": check_ordered_delivery,
    "bulk-both-ways": check_bulk_both_ways,
    "eof-exact": check_eof_exact,
    "half-close": check_half_close,
    "broken-after-peer-close": check_broken_after_peer_close,
    "close-twice": check_close_twice,
    "close-wakes-reader": check_close_wakes_reader,
}


def check_stream_pair(make: MakePair) -> None:
    """Run every check on fresh pairs from ``make``."""
    for check in CHECKS.values():
        check(make)
