"""Framing codecs (sans-IO) and MessageChannel over real socketpairs and pipes."""

from __future__ import annotations

import struct
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ipcnet
from ipcnet.errors import IncompleteRead, LimitExceeded, RemoteProtocolError, Timeout
from ipcnet.framing import (
    ContentLength,
    DecodeError,
    FrameTooLarge,
    Framing,
    IncompleteFrame,
    LengthPrefixed,
    MessageChannel,
    Netstring,
    NewlineDelimited,
    codec,
    framing,
)
from ipcnet.framing.decoders import Decoder

ALL = ["length", "length64", "newline", "netstring", "content-length"]
PAYLOADS = [b"", b"a", b"hello world", bytes(range(256)).replace(b"\n", b"."), b"x" * 70000]


@pytest.mark.parametrize("name", ALL)
def test_round_trip_whole_and_byte_by_byte(name: str) -> None:
    f = framing(name)
    wire = b"".join(f.encode(p) for p in PAYLOADS)
    assert f.decoder().frames(wire) == PAYLOADS
    d = f.decoder()
    got = []
    for i in range(len(wire)):
        got += d.frames(wire[i : i + 1])
    assert got == PAYLOADS
    d.feed_eof()  # at a boundary: clean


@pytest.mark.parametrize("name", ALL)
def test_thousand_frames_in_one_feed(name: str) -> None:
    f = framing(name)
    wire = b"".join(f.encode(b"%d" % i) for i in range(1000))
    assert f.decoder().frames(wire) == [b"%d" % i for i in range(1000)]


def test_wire_formats() -> None:
    assert LengthPrefixed().encode(b"hi") == b"\x00\x00\x00\x02hi"
    assert LengthPrefixed(width=8).encode(b"hi") == b"\x00" * 7 + b"\x02hi"
    assert NewlineDelimited().encode(b"hi") == b"hi\n"
    assert Netstring().encode(b"hello world!") == b"12:hello world!,"
    assert ContentLength().encode(b"{}") == b"Content-Length: 2\r\n\r\n{}"
    assert NewlineDelimited().decoder().frames(b"a\r\nb\n") == [b"a", b"b"]
    headers = (
        b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\ncontent-length: 2\r\n\r\n{}"
    )
    assert ContentLength().decoder().frames(headers) == [b"{}"]


@pytest.mark.parametrize("name", ["length", "length64", "netstring", "content-length"])
def test_exactly_the_limit_passes_and_one_more_is_refused_before_buffering(name: str) -> None:
    f = framing(name, max_size=1000)
    assert f.decoder().frames(f.encode(b"x" * 1000)) == [b"x" * 1000]
    big = framing(name, max_size=2000).encode(b"x" * 1001)
    d = f.decoder()
    header = big[: big.index(b"x")]  # the header alone is enough to refuse
    with pytest.raises(FrameTooLarge) as info:
        d.frames(header)
    assert info.value.limit == 1000 and info.value.size in (1001, None)
    assert d.failed
    with pytest.raises(FrameTooLarge):
        d.next_frame()  # a broken stream stays broken
    with pytest.raises(LimitExceeded):
        f.encode(b"x" * 1001)


def test_newline_limit_and_recovery() -> None:
    f = NewlineDelimited(1000)
    d = f.decoder()
    assert d.frames(b"x" * 1000 + b"\r\n") == [b"x" * 1000]
    with pytest.raises(FrameTooLarge):
        d.frames(b"y" * 1001 + b"\n")
    assert d.frames(b"ok\n") == [b"ok"]
    with pytest.raises(FrameTooLarge):
        d.frames(b"z" * 1500)  # no newline yet: refused without waiting for one
    assert len(d._buf) < 1500 and not d.failed
    assert d.frames(b"z" * 5000 + b"\nnext\n") == [b"next"]


def test_declared_length_ffffffff() -> None:
    d = LengthPrefixed().decoder()
    with pytest.raises(FrameTooLarge) as info:
        d.frames(b"\xff\xff\xff\xff")
    assert info.value.size == 0xFFFFFFFF
    d8 = LengthPrefixed(width=8).decoder()
    with pytest.raises(FrameTooLarge):
        d8.frames(b"\xff" * 8)


@pytest.mark.parametrize(
    "name,wire,received,expected",
    [
        ("length", b"\x00\x00", 2, 4),
        ("length", b"\x00\x00\x00\x0aabc", 3, 10),
        ("length64", b"\x00" * 7 + b"\x05ab", 2, 5),
        ("netstring", b"5:ab", 2, 6),
        ("content-length", b"Content-Len", 11, None),
        ("content-length", b"Content-Length: 10\r\n\r\nabc", 3, 10),
        # a whole header and not one byte of the body: still inside a frame
        ("length", b"\x00\x00\x00\x05", 0, 5),
        ("length64", b"\x00" * 7 + b"\x05", 0, 5),
        ("netstring", b"5:", 0, 6),
        ("content-length", b"Content-Length: 5\r\n\r\n", 0, 5),
    ],
)
def test_eof_inside_a_frame(name: str, wire: bytes, received: int, expected: int | None) -> None:
    d = framing(name).decoder()
    assert d.frames(wire) == []
    with pytest.raises(IncompleteFrame) as info:
        d.feed_eof()
    assert info.value.received == received and info.value.expected == expected
    assert isinstance(info.value, IncompleteRead) and isinstance(info.value, RemoteProtocolError)


def test_eof_ends_a_last_line_without_its_newline() -> None:
    """JSON Lines: "the last character in the file may be a line separator" (so it may be
    missing); Python's file iteration and Go's bufio.Scanner hand out that line too."""
    d = framing("newline").decoder()
    assert d.frames(b"one\nno newline") == [b"one"]
    d.feed_eof()
    assert list(d) == [b"no newline"]
    d.feed_eof()  # once ended, nothing more
    assert list(d) == [] and d.buffered == 0


@pytest.mark.parametrize(
    "name,wire",
    [
        ("netstring", b"x:abc,"),
        ("netstring", b"01:a,"),
        ("netstring", b"3:abcX"),
        ("content-length", b"Content-Type: x\r\n\r\n{}"),
        ("content-length", b"Content-Length: -1\r\n\r\n"),
        ("content-length", b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx"),
        ("content-length", b"garbage\r\n\r\n"),
        ("content-length", b"A: b" * 3000),
    ],
)
def test_malformed_headers_are_remote_protocol_errors(name: str, wire: bytes) -> None:
    d = framing(name).decoder()
    with pytest.raises(RemoteProtocolError):
        d.frames(wire)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(ALL), data=st.binary(max_size=400), cut=st.integers(0, 400))
def test_garbage_raises_only_remote_protocol_error(name: str, data: bytes, cut: int) -> None:
    d = framing(name, max_size=64).decoder()
    try:
        d.feed(data[:cut])
        list(d)
        d.feed(data[cut:])
        list(d)
        d.feed_eof()
    except RemoteProtocolError:
        pass


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(ALL),
    payloads=st.lists(st.binary(max_size=50), max_size=20),
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=10),
)
def test_any_split_gives_the_same_frames(
    name: str, payloads: list[bytes], sizes: list[int]
) -> None:
    f = framing(name)
    if name == "newline":
        payloads = [p.replace(b"\n", b"").rstrip(b"\r") for p in payloads]
    wire = b"".join(f.encode(p) for p in payloads)
    d, got, i = f.decoder(), [], 0
    while i < len(wire):
        step = sizes[i % len(sizes)]
        got += d.frames(wire[i : i + step])
        i += step
    d.feed_eof()
    assert got == payloads


def _frames_or_error(d: Decoder, data: bytes) -> object:
    try:
        return d.frames(data)
    except RemoteProtocolError as exc:
        return type(exc)


@given(
    name=st.sampled_from(ALL),
    shortcut_name=st.sampled_from(["single", "whole"]),
    payloads=st.lists(st.binary(max_size=40), max_size=12),
    sizes=st.lists(st.integers(1, 200), min_size=1, max_size=6),
)
def test_the_shortcuts_agree_with_feeding(
    name: str, shortcut_name: str, payloads: list[bytes], sizes: list[int]
) -> None:
    """single() takes a chunk only when it is exactly one frame within the limit, whole()
    only when it is whole frames within the limit, and then each gives what feeding it
    would; otherwise it takes nothing."""
    big = framing(name)
    if name == "newline":
        payloads = [p.replace(b"\n", b"").rstrip(b"\r") for p in payloads]
    wire = b"".join(big.encode(p) for p in payloads)
    f = framing(name, max_size=25)  # some frames are over the limit
    shortcut, plain, i = f.decoder(), f.decoder(), 0
    while i < len(wire):
        chunk = wire[i : i + sizes[i % len(sizes)]]
        i += len(chunk)
        if shortcut_name == "single":
            frame = shortcut.single(chunk)
            frames = None if frame is None else [frame]
        else:
            frames = shortcut.whole(chunk)
        if frames is not None:
            assert plain.frames(chunk) == frames
        else:
            assert _frames_or_error(shortcut, chunk) == _frames_or_error(plain, chunk)


@pytest.mark.parametrize("name", ["length", "newline"])
def test_the_single_frame_shortcut_takes_a_whole_frame(name: str) -> None:
    f = framing(name, max_size=5)
    d = f.decoder()
    assert d.single(f.encode(b"hello")) == b"hello"
    assert d.single(f.encode(b"hi") + f.encode(b"yo")) is None  # two frames
    assert d.frames(f.encode(b"ab")[:-1]) == []
    assert d.single(f.encode(b"cd")) is None  # something is buffered
    assert d.buffered > 0


def test_the_whole_frames_shortcut_on_lines() -> None:
    d = framing("newline", max_size=5).decoder()
    assert d.whole(b"ab\ncd\r\n\nhello\n") == [b"ab", b"cd", b"", b"hello"]
    assert d.whole(b"ab\ntoolong\n") is None  # next_frame raises FrameTooLarge for it
    assert d.whole(b"ab\ncd") is None  # a frame cut short
    assert d.frames(b"ab") == []
    assert d.whole(b"\n") is None  # something is buffered
    assert d.frames(b"\n") == [b"ab"]


@pytest.mark.parametrize("name", ["json", "msgpack"])
def test_codecs(name: str) -> None:
    c = codec(name)
    value = {"a": [1, 2.5, "é", None, True], "b": {"c": -(2**40)}}
    assert c.decode(c.encode(value)) == value
    for bad in (b"\x80\x04\x95pickle", b"\xc1", b""):
        with pytest.raises(DecodeError):
            c.decode(bad)


def test_json_refuses_what_is_not_json() -> None:
    c = codec("json")
    for bad in (b"NaN", b"[Infinity]", b'["\\ud800"]', b"[" * 200_000, b"1" * 5000, b"\xff"):
        with pytest.raises(DecodeError):
            c.decode(bad)
    assert c.decode(c.encode(2**70)) in (2**70, float(2**70))  # big ints leave as JSON


def test_json_fallback_without_orjson_follows_the_same_rules() -> None:
    from ipcnet.framing import JSONCodec

    c = JSONCodec(use_orjson=False)
    for bad in (b"NaN", b"[Infinity]", b'["\\ud800"]', b"[" * 200_000, b"1" * 5000, b"\xff"):
        with pytest.raises(DecodeError):
            c.decode(bad)
    assert c.decode(b'{"a":[1,"x"]}') == {"a": [1, "x"]}


@pytest.mark.parametrize("name", ALL)
def test_message_channel_over_a_socketpair(name: str) -> None:
    a, b = ipcnet.socketpair()
    left = MessageChannel(a, framing(name), codec("json"))
    right = MessageChannel(b, framing(name), codec("json"))
    messages = [{"n": i, "pad": "x" * (i * 100)} for i in range(200)]

    def writer() -> None:
        for m in messages:
            left.send(m)
        left.send_eof()

    t = threading.Thread(target=writer)
    t.start()
    assert list(right) == messages
    t.join()
    with pytest.raises(EOFError):
        right.recv()
    left.close()
    right.close()


def test_message_channel_over_a_pipe_and_truncation() -> None:
    r, w = ipcnet.pipe()
    reader = MessageChannel(r, LengthPrefixed())
    w.write(LengthPrefixed().encode(b"whole") + b"\x00\x00\x00\x09part")
    w.close()
    assert reader.recv() == b"whole"
    with pytest.raises(IncompleteFrame) as info:
        reader.recv()
    assert (info.value.received, info.value.expected) == (4, 9)
    reader.close()


@pytest.mark.parametrize("maker", ["socketpair", "pipe"])
def test_message_channel_large_and_small_frames_interleaved(maker: str) -> None:
    """Large bodies are read straight from the channel, small ones many per read: the
    frames come out the same whichever way they were read."""
    if maker == "socketpair":
        a, b = ipcnet.socketpair()
    else:
        b, a = ipcnet.pipe()
    sender, receiver = MessageChannel(a, LengthPrefixed()), MessageChannel(b, LengthPrefixed())
    sizes = [0, 10, 200_000, 5, 40_000, 40_000, 1, 33_000, 32_768, 32_767, 70_000, 3] * 3
    payloads = [bytes([i % 251]) * n for i, n in enumerate(sizes)]

    def writer() -> None:
        for p in payloads:
            sender.send_frame(p)
        sender.send_eof()

    t = threading.Thread(target=writer)
    t.start()
    assert [receiver.recv_frame() for _ in payloads] == payloads
    t.join()
    with pytest.raises(EOFError):
        receiver.recv_frame()
    sender.close()
    receiver.close()


def test_message_channel_eof_inside_a_large_body() -> None:
    r, w = ipcnet.pipe()
    reader = MessageChannel(r, LengthPrefixed())
    w.write(LengthPrefixed().encode(b"y" * 50_000) + struct.pack(">I", 100_000) + b"z" * 60_000)
    w.close()
    assert reader.recv_frame() == b"y" * 50_000
    with pytest.raises(IncompleteFrame) as info:
        reader.recv_frame()
    assert (info.value.received, info.value.expected) == (60_000, 100_000)
    reader.close()


@pytest.mark.parametrize("maker", ["socketpair", "pipe"])
def test_a_timeout_inside_a_large_body_loses_nothing(maker: str) -> None:
    if maker == "socketpair":
        a, b = ipcnet.socketpair()
    else:
        b, a = ipcnet.pipe()
    receiver = MessageChannel(b, LengthPrefixed())
    b.timeout = 0.5
    body = bytes(range(256)) * 400  # 102,400 bytes: read straight from the channel
    wire = LengthPrefixed().encode(body)
    a.write(wire[:104])  # the header and 100 bytes: the rest is then read directly

    def more() -> None:
        time.sleep(0.1)  # inside the direct read, which then waits in vain for the rest
        a.write(wire[104:50_000])

    t = threading.Thread(target=more)
    t.start()
    with pytest.raises(Timeout):
        receiver.recv_frame()
    t.join()
    a.write(wire[50_000:] + LengthPrefixed().encode(b"next"))
    assert receiver.recv_frame() == body
    assert receiver.recv_frame() == b"next"
    a.close()
    receiver.close()


def test_length_prefix_completed_from_outside() -> None:
    d = LengthPrefixed().decoder()
    assert d.missing() == 4
    d.feed(b"\x00\x00")
    assert d.missing() == 2
    d.feed(b"\x00\x05ab")
    assert d.next_frame() is None and d.missing() == 3
    with pytest.raises(ValueError):
        d.complete(b"cdef")
    assert d.complete(b"cde") == b"abcde"
    assert d.missing() == 4 and d.frames(LengthPrefixed().encode(b"next")) == [b"next"]
    assert NewlineDelimited().decoder().missing() is None


def test_framing_names() -> None:
    assert isinstance(framing("lsp"), ContentLength)
    assert isinstance(framing("ndjson"), NewlineDelimited)
    with pytest.raises(ValueError):
        framing("carrier-pigeon")
    assert all(isinstance(framing(n), Framing) for n in ALL)
    assert struct.unpack(">I", LengthPrefixed().encode(b"x" * 300)[:4]) == (300,)


def test_registries_construct_every_entry_and_the_cli_offers_them() -> None:
    """FRAMINGS and CODECS are the one place names live: each row builds what it names,
    and ``ipcnet rpc``'s --framing/--codec choices are those rows."""
    from ipcnet.cli import rpc as rpc_cli
    from ipcnet.framing import CODECS, DEFAULT_MAX_SIZE, FRAMINGS

    for name, entry in FRAMINGS.items():
        made = entry.make(1000)
        assert made.name == name and made.max_size == 1000
        assert framing(name).max_size == DEFAULT_MAX_SIZE
    for name, entry in CODECS.items():
        if name == "msgpack":
            pytest.importorskip("msgpack")
        assert entry.make().name == name
    options = {a.dest: a for a in rpc_cli._wire_options()._actions}
    assert list(options["framing"].choices) == ["auto", *FRAMINGS]
    assert list(options["codec"].choices) == [n for n, e in CODECS.items() if e.objects]
    assert "bytes" not in options["codec"].choices  # rpc needs objects, not raw bytes
    with pytest.raises(ValueError, match="^unknown framing 'x'; choose from length, length64"):
        framing("x")
    with pytest.raises(ValueError, match="^unknown codec 'x'; choose from json, msgpack, bytes"):
        codec("x")
    assert isinstance(framing("lsp"), ContentLength)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("use_orjson", [True, False])
def test_the_fused_encoder_is_encode_of_codec_encode(name: str, use_orjson: bool) -> None:
    """framing.encoder(codec) gives what framing.encode(codec.encode(obj)) gives, and over
    the limit it raises what that raises (newline + JSON is fused in the codec)."""
    from ipcnet.framing.codecs import JSONCodec

    json_codec = JSONCodec(use_orjson=use_orjson)
    f = framing(name, max_size=40)
    encode = f.encoder(json_codec)
    for obj in [{"id": 1, "result": [1, "two", None]}, 2**70, "x" * 38]:
        assert encode(obj) == f.encode(json_codec.encode(obj))
    for obj in ["x" * 39, {"a": "y" * 40}]:
        with pytest.raises(LimitExceeded) as fused:
            encode(obj)
        with pytest.raises(LimitExceeded) as plain:
            f.encode(json_codec.encode(obj))
        assert str(fused.value) == str(plain.value)
