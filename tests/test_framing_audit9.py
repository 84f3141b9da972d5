"""Framing codecs, audit round 9: each framing against its specification and a peer.

- length prefix, against Python's ``multiprocessing.connection.Connection`` (a 4-byte
  big-endian signed length, then the bytes; ``send_bytes`` takes any bytes-like object and
  counts its size in bytes, ``memoryview(buf).cast("B")``): ipcnet's encoders took
  ``len(payload)``, which for a memoryview of 4-byte ints or 8-byte floats (an
  ``array.array``, a numpy array) is the number of items, so the header declared a
  quarter or an eighth of the bytes that followed and the peer's stream was lost after
  one frame; the limit counted items too. Every framing that declares a length
  (length, length64, netstring, Content-Length) counts bytes now, and the limit does;
- msgpack, against msgpack's own ``unpackb``: the codec packed every message with one
  ``msgpack.Packer``, whose buffer is the packer's state (msgpack: a Packer is not
  thread-safe); a service's codec is shared by every connection, and a Client by every
  thread calling it, so two messages packed at once (one whose packing runs Python code: a
  mapping's ``items()``) came out as one message holding the start of the other, and a
  tail. Each encode has a packer of its own now (a free list: none is made per message);
"""

from __future__ import annotations

import array
import multiprocessing.connection
import socket
import struct
import threading

import pytest

import ipcnet
from ipcnet.errors import LimitExceeded
from ipcnet.framing import MessageChannel, codec, framing

LENGTH_FRAMINGS = ["length", "length64", "netstring", "content-length"]


def _buffers() -> list[object]:
    """Bytes-like payloads whose len() is not their size in bytes."""
    ints = array.array("i", range(-5, 5))
    doubles = array.array("d", [0.5, -1e300, 2.0])
    grid = memoryview(bytes(range(24))).cast("B", shape=[4, 6])  # 2-d: len() is 4 rows
    return [
        memoryview(ints),
        memoryview(doubles),
        ints,
        grid,
        memoryview(bytes(range(20)))[::2],  # not contiguous: 10 bytes, every other one
        memoryview(array.array("q", range(5000))),  # 40,000 bytes: the large-frame path
    ]


@pytest.mark.parametrize("name", [*LENGTH_FRAMINGS, "newline"])
def test_a_frame_declares_the_payload_size_in_bytes_not_items(name: str) -> None:
    """A bytes-like payload is framed as its bytes: what ``bytes(payload)`` is framed as;
    the limit is on bytes too."""
    f = framing(name, 1 << 20)
    for payload in _buffers():
        data = bytes(payload)  # type: ignore[call-overload]
        if name == "newline" and b"\n" in data:
            continue
        assert f.encode(payload) == f.encode(data), payload  # type: ignore[arg-type]
        parts = f.encode_parts(payload)  # type: ignore[arg-type]
        assert b"".join(bytes(p) for p in parts) == f.encode(data), payload
        assert f.decoder().frames(f.encode(payload)) == [data]  # type: ignore[arg-type]
        tight = framing(name, len(data) - 1)  # one byte short: refused, whatever len() says
        with pytest.raises(LimitExceeded):
            tight.encode(payload)  # type: ignore[arg-type]


def test_multiprocessing_connection_reads_what_message_channel_sends() -> None:
    """Python's own u32 peer: ``send_bytes`` and ``recv_bytes`` over a socketpair, both
    ways, small frames and large ones (written after their header, not copied behind it),
    a zero-length frame among them."""
    a, b = socket.socketpair()
    peer = multiprocessing.connection.Connection(a.detach())
    with MessageChannel(ipcnet.connect(f"fd://{b.detach()}"), framing("length")) as ours:
        payloads = [b"", *_buffers(), b"last"]
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.extend(peer.recv_bytes() for _ in payloads))
        reader.start()
        for payload in payloads:
            ours.send_frame(payload)  # type: ignore[arg-type]
        reader.join(5)
        assert got == [bytes(p) for p in payloads]  # type: ignore[call-overload]
        for payload in payloads:
            if isinstance(payload, memoryview) and (payload.ndim != 1 or not payload.c_contiguous):
                continue  # the peer's send_bytes: a 2-d view declares its rows (len())
            peer.send_bytes(payload)  # type: ignore[arg-type]
            assert ours.recv_frame() == bytes(payload)  # type: ignore[call-overload]
        peer.close()
        with pytest.raises(EOFError):
            ours.recv_frame()
    assert struct.pack("!i", 3) == framing("length").encode(b"abc")[:4]


def test_msgpack_messages_packed_at_once_in_two_threads_stay_apart() -> None:
    """One codec, two threads: one message is packed while the other is halfway (its
    mapping's items() waits for it); each comes out whole, as msgpack's unpackb reads it."""
    msgpack = pytest.importorskip("msgpack")
    c = codec("msgpack")
    inside, done = threading.Event(), threading.Event()

    class Lazy(dict):  # type: ignore[type-arg]
        def items(self):  # type: ignore[no-untyped-def]
            inside.set()
            done.wait(5)
            return super().items()

    out: dict[str, bytes] = {}

    def slow() -> None:
        out["slow"] = c.encode({"id": 1, "result": Lazy(x=[1, 2])})

    def quick() -> None:
        inside.wait(5)
        out["quick"] = c.encode({"id": 2, "result": "two"})
        done.set()

    threads = [threading.Thread(target=slow), threading.Thread(target=quick)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert msgpack.unpackb(out["quick"]) == {"id": 2, "result": "two"}
    assert msgpack.unpackb(out["slow"]) == {"id": 1, "result": {"x": [1, 2]}}
    assert c.decode(c.encode(Lazy(y=b"\n"))) == {"y": b"\n"}  # the same thread, again
    with pytest.raises(ipcnet.errors.LocalProtocolError):
        c.encode({"bad": object()})
    assert c.decode(c.encode([2**64 - 1])) == [2**64 - 1]  # a failed pack leaves nothing
