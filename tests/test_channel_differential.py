"""The Channel as a file: the same calls on the same bytes, compared with Python's io.

Each case feeds bytes (written in chunks, then EOF) and runs one call sequence on an
ipcnet socketpair and pipe Channel and on the reference, ``socket.makefile("rb")`` over a
real socketpair (an ``io.BufferedReader``); results and exception kinds must match call by
call. Calls are chosen where a 1..n ``read(n)`` (ipcnet's documented contract, as
``socket.recv``) cannot differ from a buffered reader's, and never a ``readline(limit)``
over its bound (ipcnet refuses such a line, io cuts it: documented in channel.py).
Besides the hand-written cases, seeded generated ones: random lines, split at random
points, read by random call sequences.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from typing import Any

import pytest

import ipcnet
from ipcnet.channel import Channel
from ipcnet.errors import Closed
from ipcnet.testing.pairs import Pair, Unavailable, shm_pair, tcp4_pair, tls_pair

Call = tuple[str, tuple[Any, ...]]
LINES = [b"alpha\n", b"be\n", b"\n", b"gamma delta\n", b"tail"]
DATA = b"".join(LINES)

CASES: dict[str, tuple[bytes, list[Call]]] = {
    # io: an operation on a closed file raises ValueError, whatever is buffered
    "read(n) after close, with read-ahead": (
        DATA,
        [("readline", ()), ("close", ()), ("read", (4,))],
    ),
    "read(0) after close": (DATA, [("close", ()), ("read", (0,))]),
    "readinto after close, with read-ahead": (
        DATA,
        [("readline", ()), ("close", ()), ("readinto", (4,))],
    ),
    "readline after close, with read-ahead": (
        DATA,
        [("readline", ()), ("close", ()), ("readline", ())],
    ),
    "read() after close": (DATA, [("close", ()), ("read", ())]),
    "fileno after close": (DATA, [("fileno", ()), ("close", ()), ("fileno", ())]),
    "iter and with after close": (DATA, [("close", ()), ("iter", ()), ("enter", ())]),
    "flush and readable after close": (DATA, [("close", ()), ("flush", ()), ("readable", ())]),
    # io: read(None) and readline(None or < 0) read without a bound
    "read(None)": (DATA, [("readline", ()), ("read", (None,)), ("read", (None,))]),
    "readline(-1), readline(None)": (
        DATA,
        [("readline", (-1,)), ("readline", (None,)), ("readline", (-5,))],
    ),
    # the rest of io's file API for a byte stream
    "readlines()": (DATA, [("readline", ()), ("readlines", ()), ("readlines", ())]),
    "readlines(hint)": (
        DATA,
        [("readlines", (6,)), ("readlines", (3,)), ("readlines", (0,)), ("read", ())],
    ),
    "next() to StopIteration": (
        b"x\ny",
        [("next", ()), ("next", ()), ("next", ()), ("next", ())],
    ),
    "list(iter) after a readline": (DATA, [("readline", ()), ("list", ()), ("read", (3,))]),
    "readable, seekable, flush": (b"z\n", [("readable", ()), ("seekable", ()), ("flush", ())]),
    "eof stays eof": (b"", [("read", (5,)), ("readline", ()), ("readlines", ()), ("read", ())]),
}

# calls whose result a buffered reader shares with ipcnet here: every byte is written before
# the first read, so even read(3) and readinto get all 3 bytes that are there
EXACT_CALLS: list[Call] = [
    ("readline", ()),
    ("readline", (None,)),
    ("readline", (-1,)),
    ("read", ()),
    ("read", (None,)),
    ("readlines", ()),
    ("readlines", (7,)),
    ("next", ()),
    ("close", ()),
    ("read", (3,)),
    ("readinto", (3,)),
    ("fileno", ()),
]


def _generated(seed: int) -> tuple[bytes, list[Call]]:
    rng = random.Random(seed)
    lines = [bytes(rng.choices(b"ab \n", k=rng.randint(0, 12))) for _ in range(rng.randint(0, 8))]
    # close only near the end, so that most of a sequence reads
    calls = [rng.choice(EXACT_CALLS[:8]) for _ in range(rng.randint(1, 6))]
    return b"".join(lines), calls + rng.sample(EXACT_CALLS, 3)


CASES.update({f"generated {seed}": _generated(seed) for seed in range(20)})


def _chunks(data: bytes) -> list[bytes]:
    """``data`` split at random points (seeded by the data, so that a case is repeatable)."""
    rng = random.Random(data)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 4))) if data else []
    return [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def _outcome(f: Any, name: str, args: tuple[Any, ...]) -> tuple[str, object]:
    try:
        if name == "readinto":
            buf = bytearray(args[0])
            return ("ok", bytes(buf[: f.readinto(buf)]))
        if name == "fileno":
            return ("ok", f.fileno() >= 0)
        if name == "iter":
            return ("ok", iter(f) is f)
        if name == "enter":
            return ("ok", f.__enter__() is f)
        if name == "next":
            return ("ok", next(f))
        if name == "list":
            return ("ok", list(f))
        return ("ok", getattr(f, name)(*args))
    except StopIteration:
        return ("StopIteration", None)
    except ValueError:
        return ("ValueError", None)


def _run(f: Any, calls: list[Call]) -> list[tuple[str, object]]:
    return [_outcome(f, name, args) for name, args in calls]


def _reference(data: bytes, calls: list[Call]) -> list[tuple[str, object]]:
    ours, peer = socket.socketpair()
    with peer:
        peer.sendall(data)
        peer.shutdown(socket.SHUT_WR)
        f = ours.makefile("rb")
        ours.close()
        with f:
            return _run(f, calls)


def _socketpair(data: bytes) -> Channel:
    a, b = ipcnet.socketpair()
    for chunk in _chunks(data):  # readline must join them
        b.write(chunk)
    b.close()
    return a


def _pipe(data: bytes) -> Channel:
    r, w = ipcnet.pipe()
    for chunk in _chunks(data):
        w.write(chunk)
    w.close()
    return r


@pytest.mark.parametrize("make", [_socketpair, _pipe], ids=["socketpair", "pipe"])
@pytest.mark.parametrize("case", list(CASES))
def test_channel_reads_like_an_io_file(case: str, make: Callable[[bytes], Channel]) -> None:
    data, calls = CASES[case]
    want = _reference(data, calls)
    ch = make(data)
    try:
        got = _run(ch, calls)
    finally:
        ch.close()
    assert got == want


def test_channel_writes_like_an_io_file() -> None:
    """writelines writes each item, no separators; flush is a no-op; after close, write,
    writelines and flush raise ValueError (a raw socket file, makefile("wb", buffering=0),
    does the same); a pipe's ends say which way they go."""
    a, b = ipcnet.socketpair()
    with b:
        a.writelines([b"one\n", bytearray(b"two"), memoryview(b"\nthree")])
        a.flush()
        a.close()
        assert b.read() == b"one\ntwo\nthree"
    for call in (lambda: a.write(b"x"), lambda: a.writelines([]), a.flush):
        with pytest.raises(ValueError, match=r"^closed: cannot \w+ (to )?socketpair:"):
            call()
    r, w = ipcnet.pipe()
    with r, w:
        assert (r.readable(), r.writable(), w.readable(), w.writable()) == (
            True,
            False,
            False,
            True,
        )


@pytest.mark.parametrize(
    "make", [ipcnet.socketpair, tcp4_pair, ipcnet.pipe], ids=["socketpair", "tcp4", "pipe"]
)
def test_write_after_own_send_eof_is_closed_not_peer_closed(make: Callable[[], Pair]) -> None:
    """Our send_eof() ended the direction, not the peer: Closed as on a pipe or over TLS
    (a socket's EPIPE after shutdown(SHUT_WR) said "peer closed"); the peer still reads to
    EOF and may still answer."""
    a, b = make()
    writer, reader = (b, a) if make is ipcnet.pipe else (a, b)
    with a, b:
        writer.write(b"last")
        writer.send_eof()
        for call in (lambda: writer.write(b"x"), lambda: writer.writelines([b"x"])):
            with pytest.raises(Closed, match=r"^closed: cannot write to \S+ after send_eof\(\)$"):
                call()
        assert reader.read() == b"last"


@pytest.mark.parametrize("make", [tls_pair, shm_pair], ids=["tls", "shm"])
def test_every_read_after_close_raises_where_bytes_wait_underneath(
    make: Callable[[], Pair],
) -> None:
    """A TLS layer holds decrypted records, and after close() the peer's close_notify; a
    shared-memory ring holds bytes: reading a closed Channel still raises, as io does
    (a TLS read after close returned b"" or the held plaintext)."""
    try:
        a, b = make()
    except Unavailable as exc:
        pytest.skip(str(exc))
    with b:
        b.write(DATA)
        b.send_eof()
        assert a.read(3) == DATA[:3]  # the rest waits in the TLS layer or the ring
        a.close()
        calls: list[Callable[[], object]] = [
            lambda: a.read(4),
            lambda: a.read(),
            lambda: a.read(0),
            lambda: a.readinto(bytearray(4)),
            a.readline,
            a.readlines,
        ]
        for call in calls:
            with pytest.raises(ValueError, match=r"^closed: cannot read from "):
                call()
