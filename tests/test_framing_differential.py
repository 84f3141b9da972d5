"""Framings and codecs against spec references and real peers, split at every chunk boundary.

Each byte stream is fed whole, a byte at a time and cut in two at every offset, to ipcnet's
decoder and to a reference written from the spec text:

- netstrings (cr.yp.to/proto/netstrings.txt): ASCII digits with no leading zero but in
  "0", ":", the bytes, ","; ``02:ab,`` was refused as too large (at ``--max-frame 9``: the
  JSON-RPC server answered Invalid Request "more than 1 digits"), now as malformed, and a
  leading zero is refused as soon as it is followed by a digit;
- Content-Length: the Language Server Protocol's header fields "conform to the HTTP
  semantic": a field name is a token and a value holds no control byte (RFC 9110 §5.1,
  §5.5). ``Content-Length: 2\\n\\r\\n[]CONTENT-LENGTH:2\\r\\n\\r\\n[]`` was one message for
  ipcnet (and vscode-jsonrpc) and two for python-lsp-jsonrpc, whose reader cuts lines at LF:
  such blocks are refused now. A Content-Length too long to be within the limit is
  FrameTooLarge (it was "bad Content-Length"), and leading zeros are accepted (1*DIGIT).
  python-lsp-jsonrpc's reader and writer, in a child process, are the live peer;
- length prefix: struct's big-endian u32 and u64, at the limit, one over, zero-length
  frames and frames cut by EOF (IncompleteFrame, over a real pipe);
- newline: Python's readline splitting with one "\\r" before "\\n" dropped (NDJSON §3.2):
  a payload ending in "\\r" was sent and read back without it; encode refuses it now;
- JSON against the json module and orjson: a payload holding a 19-digit number goes to the
  stdlib, which counted brackets inside strings as nesting, so ``[2**64, "[" * 600]`` was
  refused as "nesting deeper than 512";
- msgpack against msgpack's own Unpacker fed a byte at a time: StackError and FormatError
  carry no text, so the error said ``invalid msgpack: StackError: `` and nothing more.
"""

from __future__ import annotations

import io
import json
import struct
import sys
import textwrap
from typing import Any

import pytest

import ipcnet
from ipcnet.errors import LimitExceeded, RemoteProtocolError
from ipcnet.framing import (
    ContentLength,
    DecodeError,
    FrameTooLarge,
    IncompleteFrame,
    JSONCodec,
    MessageChannel,
    NewlineDelimited,
    codec,
    framing,
)

Outcome = tuple[list[bytes], str]  # the frames, then "ok", "incomplete", "error" or "toolarge"


def decode(name: str, max_size: int, chunks: list[bytes]) -> Outcome:
    """What ipcnet's decoder makes of ``chunks``, then the end of the stream."""
    d = framing(name, max_size).decoder()
    frames: list[bytes] = []
    try:
        for chunk in [*chunks, None]:
            if chunk is None:
                d.feed_eof()
            else:
                d.feed(chunk)
            while (frame := d.next_frame()) is not None:  # one by one: none lost to an error
                frames.append(frame)
    except FrameTooLarge:
        return frames, "toolarge"
    except IncompleteFrame:
        return frames, "incomplete"
    except RemoteProtocolError:
        return frames, "error"
    return frames, "ok"


def splits(data: bytes) -> list[list[bytes]]:
    """Whole, a byte at a time, and cut in two at every offset."""
    return [
        [data],
        [data[i : i + 1] for i in range(len(data))],
        *([data[:k], data[k:]] for k in range(1, len(data))),
    ]


def netstring_ref(data: bytes, max_size: int) -> Outcome:
    """From the spec text: [len]":"[string]"," with len ASCII digits, no leading zeros."""
    frames: list[bytes] = []
    i = 0
    while i < len(data):
        j = i
        while j < len(data) and data[j] in b"0123456789":
            j += 1
        digits = data[i:j]
        if j == len(data):
            return frames, "incomplete" if digits else "error"
        if data[j] != ord(":") or not digits or (len(digits) > 1 and digits[0] == ord("0")):
            return frames, "error"
        n = int(digits)
        if n > max_size:
            return frames, "toolarge"
        end = j + 1 + n
        if end >= len(data):
            return frames, "incomplete"
        if data[end] != ord(","):
            return frames, "error"
        frames.append(data[j + 1 : end])
        i = end + 1
    return frames, "ok"


def length_ref(data: bytes, max_size: int, fmt: str) -> Outcome:
    width, frames, i = struct.calcsize(fmt), [], 0
    while i < len(data):
        if len(data) - i < width:
            return frames, "incomplete"
        (n,) = struct.unpack_from(fmt, data, i)
        if n > max_size:
            return frames, "toolarge"
        if len(data) - i - width < n:
            return frames, "incomplete"
        frames.append(data[i + width : i + width + n])
        i += width + n
    return frames, "ok"


def newline_ref(data: bytes, max_size: int) -> Outcome:
    frames = []
    for line in io.BytesIO(data):  # readline: cut after each b"\n", the last line as it is
        line = line.removesuffix(b"\n")
        line = line.removesuffix(b"\r")
        if len(line) > max_size:
            return frames, "toolarge"
        frames.append(line)
    return frames, "ok"


NETSTRINGS = [
    b"0:,",
    b"5:hello,",
    b"12:hello world!,0:,3:a:,,",
    b"9:123456789,",
    b"10:1234567890,",
    b"3:abc",
    b"3:abc;",
    b"01:a,",
    b"00:,",
    b"02:ab,",
    b"5:hello,007:abcdefg,",
    b" 1:a,",
    b"+1:a,",
    b"-1:,",
    b"1 :a,",
    b":a,",
    "٣:abc,".encode(),  # an Arabic-Indic digit: not ASCII
    b"5:hel",
    b"5:hello",
    b"1:a,\n1:b,",
]


@pytest.mark.parametrize("data", NETSTRINGS)
def test_netstrings_against_the_spec(data: bytes) -> None:
    for max_size in (9, 1000):
        want = netstring_ref(data, max_size)
        for chunks in splits(data):
            assert decode("netstring", max_size, chunks) == want, (max_size, chunks)


LSP_OK: list[tuple[bytes, list[bytes]]] = [
    (b"Content-Length: 2\r\n\r\n{}", [b"{}"]),
    (
        b"Content-Length: 2\r\nContent-Type: application/vscode-jsonrpc; charset=utf8\r\n\r\n[]"
        b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length: 1\r\n\r\n1",
        [b"[]", b"1"],
    ),
    (b"content-length:2\r\n\r\n{}CONTENT-LENGTH: \t1\t \r\n\r\n0", [b"{}", b"0"]),
    (b"Content-Length: 000000000000000000000002\r\n\r\n{}", [b"{}"]),  # 1*DIGIT
    (b"Content-Length: 0\r\n\r\nContent-Length: 1\r\n\r\n7", [b"", b"7"]),
    (b"Content-Length: 2\r\nX-Empty:\r\nX-Text: caf\xc3\xa9 \t\r\n\r\n{}", [b"{}"]),
]

LSP_REFUSED: list[tuple[bytes, str]] = [
    # python-lsp-jsonrpc reads two messages here, vscode-jsonrpc and ipcnet read one
    (b"Content-Length: 2\n\r\n[]CONTENT-LENGTH:2\r\n\r\n[]", "error"),
    (b"Content-Length: 2\r\nX-Ctl: a\nb\r\n\r\n{}", "error"),
    (b"Content-Length: 2\r\nX\x00Y: z\r\n\r\n{}", "error"),
    (b"Content-Length: 2\r\nX Y: z\r\n\r\n{}", "error"),
    (b"Content-Length: 2\r\nX-Ctl: a\x01b\r\n\r\n{}", "error"),
    (b"Content-Length: 2\r\nX-Del: \x7f\r\n\r\n{}", "error"),
    (b"Cont\xe5nt-Length: 2\r\n\r\n{}", "error"),  # vscode-jsonrpc drops the high bit
    (b"Content-Length : 2\r\n\r\n{}", "error"),
    (b" Content-Length: 2\r\n\r\n{}", "error"),
    (b"Content-Length: 2\r\n folded\r\n\r\n{}", "error"),
    (b"Content-Length: +2\r\n\r\n{}", "error"),
    (b"Content-Length: 2abc\r\n\r\n{}", "error"),
    (b"Content-Length: \r\n\r\n{}", "error"),
    (b"Content-Length: 2, 2\r\n\r\n{}", "error"),
    (b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", "error"),
    (b"Content-Type: application/json\r\n\r\n{}", "error"),
    (b"Content-Length: 99999999999999999999999\r\n\r\n", "toolarge"),
    (b"Content-Length: 1001\r\n\r\n", "toolarge"),
    (b"Content-Length: 3\r\n\r\n{}", "incomplete"),
    (b"Content-Length: 2\r\n", "incomplete"),
]


@pytest.mark.parametrize("data,frames", LSP_OK)
def test_content_length_headers_that_peers_send(data: bytes, frames: list[bytes]) -> None:
    for chunks in splits(data):
        assert decode("content-length", 1000, chunks) == (frames, "ok"), chunks


@pytest.mark.parametrize("data,status", LSP_REFUSED)
def test_content_length_headers_that_http_refuses(data: bytes, status: str) -> None:
    """A field name is a token; a value holds visible bytes, spaces and tabs (RFC 9110 §5)."""
    for chunks in splits(data):
        assert decode("content-length", 1000, chunks) == ([], status), chunks


LSP_PEER = textwrap.dedent(
    """
    import sys
    from pylsp_jsonrpc.streams import JsonRpcStreamReader, JsonRpcStreamWriter
    writer = JsonRpcStreamWriter(sys.stdout.buffer)
    JsonRpcStreamReader(sys.stdin.buffer).listen(writer.write)
    """
)
MESSAGES: list[Any] = [
    {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"rootUri": None}},
    {"jsonrpc": "2.0", "method": "$/note", "params": ["é\u2028😀", "\r\n\r\nContent-Length: 9"]},
    [2**64 - 1, -(2**63), 0.1, -0.0, 1e300, True, None, "", {}],
    {"text": "x" * 70_000},  # larger than a read: the body comes in pieces
    "Content-Length: 5\r\n\r\n",
]


def test_python_lsp_jsonrpc_reads_and_writes_our_frames() -> None:
    """Our writer to its reader, its writer (with a Content-Type header) back to our reader."""
    pytest.importorskip("pylsp_jsonrpc")
    peer = MessageChannel(
        ipcnet.spawn([sys.executable, "-c", LSP_PEER]), ContentLength(), codec("json")
    )
    with peer:
        for message in MESSAGES:
            peer.send(message)
        peer.send_eof()
        assert list(peer) == MESSAGES


LENGTH_PAYLOADS = [[b""], [b"x" * 1000], [b"", b"a", b"", b"bc"], [b"\x00" * 7, b"\xff" * 3]]


@pytest.mark.parametrize("fmt", [">I", ">Q"])
def test_length_prefix_against_struct(fmt: str) -> None:
    """The u32/u64 big-endian length, then the payload; max_size exact passes, one over is
    refused from the header alone; a frame cut by EOF, header or body, is an error."""
    name = "length" if fmt == ">I" else "length64"
    f = framing(name, 1000)
    streams = [b"".join(struct.pack(fmt, len(p)) + p for p in ps) for ps in LENGTH_PAYLOADS]
    for ps, stream in zip(LENGTH_PAYLOADS, streams, strict=True):
        assert b"".join(f.encode(p) for p in ps) == stream
    streams += [struct.pack(fmt, 1001), struct.pack(fmt, 2 ** (struct.calcsize(fmt) * 8) - 1)]
    streams += [struct.pack(fmt, 3) + b"ab", struct.pack(fmt, 0)[:-1], struct.pack(fmt, 5)]
    for stream in streams:
        want = length_ref(stream, 1000, fmt)
        for chunks in splits(stream) if len(stream) < 40 else [[stream], [stream[:3], stream[3:]]]:
            assert decode(name, 1000, chunks) == want, chunks
    with pytest.raises(LimitExceeded):
        f.encode(b"x" * 1001)
    r, w = ipcnet.pipe()  # cut by EOF on a real pipe: IncompleteFrame, never a short frame
    with MessageChannel(r, f) as reader:
        w.write(f.encode(b"whole") + struct.pack(fmt, 9) + b"part")
        w.close()
        assert reader.recv_frame() == b"whole"
        with pytest.raises(IncompleteFrame):
            reader.recv_frame()


LINES = [
    b"a\nb\n",
    b"a\r\nb",
    b"a\r\r\n",
    b"\n\r\n\n",
    b"a\rb\n\r",
    b"\r",
    b"x" * 10 + b"\r\n" + b"y" * 10,
    b"x" * 11 + b"\n",
]


@pytest.mark.parametrize("data", LINES)
def test_newline_against_readline(data: bytes) -> None:
    want = newline_ref(data, 10)
    for chunks in splits(data):
        assert decode("newline", 10, chunks) == want, chunks


@pytest.mark.parametrize("payload", [b"", b"a", b"a\rb", b"\ra", b"a\r", b"\r", b"a\r\r"])
def test_newline_sends_only_what_readline_gives_back(payload: bytes) -> None:
    """A payload ending in "\\r" would come back without it ("\\r\\n" ends a line): refused."""
    a, b = ipcnet.socketpair()
    with MessageChannel(a, NewlineDelimited()) as sender, b:
        if payload.endswith(b"\r"):
            with pytest.raises(LimitExceeded, match="cannot end with a carriage return"):
                sender.send_frame(payload)
            return
        sender.send_frame(payload)
        sender.send_eof()
        assert newline_ref(b.read(), 100) == ([payload], "ok")


@pytest.mark.parametrize("use_orjson", [True, False])
def test_json_lines_written_by_the_json_module(use_orjson: bool) -> None:
    """Brackets inside strings are text, not nesting, on the stdlib path (taken for 19
    digits in a row) as on orjson's; the stdlib path's limit on real nesting holds."""
    big = 2**64
    values = [[big, "[" * 600], {"k": "]" * 700 + "{" * 700, "n": -big * big}, [big, '\\"[']]
    deep: list[Any] = [big]
    for _ in range(600):
        deep = [deep]
    a, b = ipcnet.socketpair()
    with MessageChannel(b, NewlineDelimited(), JSONCodec(use_orjson)) as reader, a:
        a.write(b"".join(json.dumps(v).encode() + b"\n" for v in [*values, deep]))
        a.send_eof()
        assert [reader.recv() for _ in values] == values
        with pytest.raises(DecodeError, match="nesting deeper than 512"):
            reader.recv()


JSON_TEXTS = [
    b'{"a":[1,2.5,"\\u00e9",null,true,false]}',
    b"18446744073709551615",
    b"-9223372036854775809",
    b"12345678901234567890123",
    b"1e400",
    b"-1e400",
    b"NaN",
    b"[Infinity]",
    b"-Infinity",
    b'"\\ud800"',
    b'"\\udc00\\ud83d"',
    b'"\\ud83d\\ude00"',
    b'"\xed\xa0\x80"',
    b"\xef\xbb\xbf1",
    b'"\x01"',
    b"01",
    b"[1,]",
    b" \t\r\n[] \t\r\n",
    b"-0",
    b"1E-400",
    b'{"a":1,"a":2}',
]


@pytest.mark.parametrize("use_orjson", [True, False])
def test_json_decode_agrees_with_a_strict_json_module(use_orjson: bool) -> None:
    """RFC 8259 as the json module reads it, held strict: UTF-8, no NaN or Infinity, no
    numbers out of range, no lone surrogates; integers exact."""

    def strict(data: bytes) -> Any:
        value = json.loads(data.decode(), parse_constant=refuse, parse_float=finite)
        json.dumps(value, ensure_ascii=False).encode()  # lone surrogates fail here
        return value

    def refuse(name: str) -> Any:
        raise ValueError(name)

    def finite(text: str) -> float:
        value = float(text)
        if value - value != 0.0:
            raise ValueError(text)
        return value

    c = JSONCodec(use_orjson)
    for data in JSON_TEXTS:
        try:
            want: Any = strict(data)
        except ValueError:
            want = DecodeError
        try:
            got: Any = c.decode(data)
        except DecodeError:
            got = DecodeError
        assert repr(got) == repr(want), data


MSGPACK_FRAMES = [
    b"\x93\x01\xa1a\xc4\x01\xff",
    b"\x81\xa1k\xcb\x3f\xb9\x99\x99\x99\x99\x99\x9a",
    b"\xd6\xff\x00\x00\x00\x01",  # a timestamp
    b"\xc7\x03\xff\x00\x00\x00",  # a timestamp of 3 bytes: none
    b"\x81\x01\x02",  # an int key: strict_map_key
    b"\xa1\xff",
    b"\x92\x01",
    b"\x01\x02",
    b"\xc1",
    b"\x91" * 1025 + b"\xc0",  # deeper than msgpack's stack
]


def test_msgpack_against_its_unpacker_fed_a_byte_at_a_time() -> None:
    """A frame is exactly one value, as msgpack's streaming Unpacker reads it; every refusal
    says why (msgpack's StackError and FormatError carry no text of their own)."""
    msgpack = pytest.importorskip("msgpack")
    c = codec("msgpack")
    for data in MSGPACK_FRAMES:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, timestamp=0)
        values: list[Any] = []
        try:
            for i in range(len(data)):
                unpacker.feed(data[i : i + 1])
                values += unpacker
            whole = len(values) == 1 and unpacker.tell() == len(data)
        except ValueError:
            whole = False
        if whole:
            assert repr(c.decode(data)) == repr(values[0])
            continue
        with pytest.raises(DecodeError) as info:
            c.decode(data)
        assert not str(info.value).endswith(": "), data
    with pytest.raises(DecodeError, match="nesting too deep"):
        c.decode(b"\x91" * 1025 + b"\xc0")
    with pytest.raises(DecodeError, match="0xc1"):
        c.decode(b"\xc1")
