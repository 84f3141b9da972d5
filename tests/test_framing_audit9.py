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
- Content-Length (the LSP base protocol: header fields as HTTP's, each line ended by
  CRLF, an empty line ends them): a whole header line that is no field line (a line of
  spaces or a tab, which python-lsp-jsonrpc and pygls take for the empty line that ends
  the headers, while vscode-jsonrpc and ipcnet wait for CRLF CRLF; a line with no colon; a
  bad Content-Length) was only looked at once CRLF CRLF came, so the peer waiting for its
  answer and ipcnet waiting for the end of the headers hung until 8 KiB more came (as a
  line ended by LF alone did before round 8). Each header line is read as it completes
  now: refused at once, with what the whole block would have been refused for;
- Content-Type (LSP: "the content part is encoded using the charset provided in the
  Content-Type field ... utf-8, which is the only encoding supported right now. If a server
  or client receives a header with a different encoding than utf-8 it should respond with
  an error"; ``utf8`` is to be taken as utf-8): the header was ignored, so a body said to
  be ISO-8859-1 was read as UTF-8 (its "Ã©", bytes C3 A9, came out as "é"). Such a
  message is refused now, once its body is in, and the stream goes on with the next one
  (its length is known); ``utf-8`` and ``utf8`` in any case, quoted or not, are read;
- ``rpc.connect("http://...", max_frame=N)`` (and ``ipcnet rpc call --max-frame``) dropped
  N: a request was bounded at 16 MiB whatever N said, and a response body not at all
  (DESIGN: every buffer has a limit, an option and a clear refusal). The limit binds
  both now, as over a stream: a request over it is refused before it is sent, a response
  body over it is refused as it arrives (the connection is then closed).
"""

from __future__ import annotations

import array
import json
import multiprocessing.connection
import socket
import struct
import threading

import pytest

import ipcnet
from ipcnet.errors import LimitExceeded, RemoteProtocolError
from ipcnet.framing import FrameTooLarge, MessageChannel, codec, framing

pytestmark = pytest.mark.xdist_group("framing-audit9")

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


UNENDING_HEADERS = [
    (b"Content-Length: 2\r\n \r\n{}", RemoteProtocolError),  # pylsp: the end of the headers
    (b"Content-Length: 2\r\n\t\r\n{}", RemoteProtocolError),
    (b"garbage\r\n", RemoteProtocolError),
    (b"Content-Length: 2\r\nX Y: z\r\n", RemoteProtocolError),
    (b"X-A: 1\r\nContent-Length: 0x10\r\n", RemoteProtocolError),
    (b"Content-Length: 1\r\ncontent-length: 1\r\n", RemoteProtocolError),
    (b"Content-Length: 1001\r\nX-A: 1\r\n", FrameTooLarge),
    (b"Content-Length: 99999999999999999999\r\n", FrameTooLarge),
]


@pytest.mark.parametrize("wire,error", UNENDING_HEADERS)
def test_a_bad_header_line_is_refused_when_it_ends_not_with_the_block(
    wire: bytes, error: type[Exception]
) -> None:
    """Fed whole or a byte at a time, the decoder refuses the stream once the bad line's
    CRLF came (no CRLF CRLF is in ``wire``), with the error the whole block gets."""
    for chunks in ([wire], [wire[i : i + 1] for i in range(len(wire))]):
        d = framing("content-length", 1000).decoder()
        with pytest.raises(error):
            for chunk in chunks:
                d.frames(chunk)
        ended = framing("content-length", 1000).decoder()
        with pytest.raises(error):
            ended.frames(wire + b"\r\n\r\n")  # the block ended: refused alike


def test_a_server_answers_a_header_line_of_spaces_at_once() -> None:
    """An LSP peer that ends its headers with a line of spaces is answered Parse error and
    closed at once, not left waiting for an answer while the server waits for CRLF CRLF;
    before it, a call in ISO-8859-1 is answered Parse error and the next call is served."""
    from ipcnet import rpc

    methods = rpc.Methods()
    methods.add(lambda value=None: value, name="echo")
    service = rpc.make_service(methods, "stdio:")  # Content-Length framing
    ours, theirs = socket.socketpair()
    server = threading.Thread(
        target=rpc.serve_channel, args=(service, ipcnet.connect(f"fd://{ours.detach()}"))
    )
    server.start()
    call = b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":1}'
    with theirs:
        latin = call.replace(b"[1]", b'["\xc3\xa9"]')
        theirs.sendall(
            b"Content-Type: application/vscode-jsonrpc; charset=iso-8859-1\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(latin), latin)
        )
        theirs.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(call), call))
        theirs.sendall(b"Content-Length: %d\r\n \r\n%s" % (len(call), call))
        theirs.settimeout(3)
        got = b""
        while chunk := theirs.recv(65536):
            got += chunk
    server.join(5)
    replies = [json.loads(f) for f in framing("content-length").decoder().frames(got)]
    assert len(replies) == 3 and {"jsonrpc": "2.0", "id": 1, "result": 1} in replies
    charset, spaces = [r for r in replies if "error" in r]  # answered at once: maybe first
    assert charset["id"] is None and charset["error"]["code"] == -32700, replies
    assert "charset b'iso-8859-1'" in charset["error"]["message"]
    assert spaces["id"] is None and spaces["error"]["code"] == -32700, replies
    assert "bad header line b' '" in spaces["error"]["message"]


def test_an_http_client_keeps_the_frame_limit_it_was_given() -> None:
    from ipcnet import rpc
    from ipcnet.protocols.jsonrpc.http import JsonRpcHttpService
    from test_robust_differential import _served

    methods = rpc.Methods()
    methods.add(lambda n: "x" * n, name="big")
    methods.add(lambda text: len(text), name="size")
    service = JsonRpcHttpService(rpc.make_service(methods), "/rpc")
    with _served(service, "epoll") as (_, port):
        url = f"http://127.0.0.1:{port}/rpc"
        with rpc.connect(url, timeout=10, max_frame=1000) as client:
            assert client.size("y" * 900) == 900 and client.big(900) == "x" * 900
            with pytest.raises(LimitExceeded, match="over the limit of 1000"):
                client.size("y" * 2000)  # refused here, not sent
            with pytest.raises(FrameTooLarge, match="1000"):
                client.big(5000)  # the reply's body is over the limit
            assert client.big(10) == "x" * 10  # a new connection, as after any failure
        with rpc.connect(url, timeout=10, max_frame=100_000) as client:
            assert client.size("y" * 50_000) == 50_000 and client.big(50_000) == "x" * 50_000


CHARSETS = [
    (b"application/vscode-jsonrpc; charset=utf-8", True),
    (b"application/vscode-jsonrpc; charset=utf8", True),  # python-lsp-jsonrpc writes this
    (b'application/vscode-jsonrpc; charset="UTF-8"', True),
    (b"application/json", True),  # no charset: the default, utf-8
    (b"application/vscode-jsonrpc;charset=iso-8859-1", False),
    (b"application/vscode-jsonrpc; charset=utf-16", False),
    (b"application/vscode-jsonrpc; Charset=latin1; x=y", False),
]


@pytest.mark.parametrize("content_type,read", CHARSETS)
def test_a_body_in_a_charset_other_than_utf8_is_refused_and_the_stream_goes_on(
    content_type: bytes, read: bool
) -> None:
    body = b'"' + "Ã©".encode("latin-1") + b'"'  # "Ã©" in ISO-8859-1: bytes C3 A9
    message = b"Content-Length: %d\r\nContent-Type: %s\r\n\r\n%s" % (
        len(body),
        content_type,
        body,
    )
    wire = message + framing("content-length").encode(b'"next"')
    for chunks in ([wire], [wire[i : i + 1] for i in range(len(wire))]):
        d = framing("content-length").decoder()
        got: list[object] = []
        for chunk in chunks:
            d.feed(chunk)
            while True:
                try:
                    frame = d.next_frame()
                except RemoteProtocolError as exc:
                    got.append(str(exc))
                    continue
                if frame is None:
                    break
                got.append(frame)
        d.feed_eof()
        if read:
            assert got == [body, b'"next"']
        else:
            assert len(got) == 2 and got[1] == b'"next"' and not d.failed, got
            assert isinstance(got[0], str) and "charset" in got[0] and "utf-8" in got[0]
