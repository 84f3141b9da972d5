"""JSON-RPC 2.0 over every framing, against the specification and jsonrpcserver; NaN.

Section 7 of the specification (https://www.jsonrpc.org/specification) and a table of
edge cases (ids of every JSON type, params of every shape, "jsonrpc" wrong, batches),
over each framing ``ipcnet rpc serve --framing`` offers (test_jsonrpc_conformance covers
newline and HTTP); the valid requests' replies are compared with jsonrpcserver's for the
same methods. A last line without its newline is a line (JSON Lines: "the last
character in the file may be a line separator"), for the server and both clients: before,
``printf '{...}' | socat - TCP:...`` got a Parse Error. JSON has no NaN or Infinity (RFC 8259 §6): orjson writes them as null, so a
client sent null for ``ipcnet rpc call ... NaN`` and a handler's NaN came back as null,
except next to an integer over 64 bits (then the stdlib encoded and refused): now they are
refused everywhere, as the stdlib fallback always did.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import ipcnet
from ipcnet import rpc
from ipcnet.cli import main
from ipcnet.errors import LocalProtocolError
from ipcnet.framing import FRAMINGS, framing
from test_jsonrpc_conformance import EXAMPLES, _jsonrpcserver_methods, checked, http_peer, spec

OTHER_FRAMINGS = [name for name in FRAMINGS if name != "newline"]


def not_finite(kind: str) -> Any:
    return {"nan": math.nan, "inf": [1.0, math.inf], "big": [2**64, -math.inf]}[kind]


METHODS = {**spec, "not_finite": not_finite}  # section 7's methods, and this one


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """One in-process server per framing (each connection served on its own thread)."""
    listeners = {name: ipcnet.listen("tcp://127.0.0.1:0") for name in FRAMINGS}

    def accept(name: str) -> None:
        listener = listeners[name]
        service = rpc.make_service(METHODS, str(listener.address), framing=name)
        while True:
            try:
                channel = listener.accept()
            except ipcnet.errors.IPCError:
                return
            threading.Thread(target=rpc.serve_channel, args=(service, channel), daemon=True).start()

    threads = [threading.Thread(target=accept, args=(n,), daemon=True) for n in FRAMINGS]
    for thread in threads:
        thread.start()
    yield {name: str(listener.address) for name, listener in listeners.items()}
    for listener in listeners.values():
        listener.close()
    for thread in threads:
        thread.join(5)


class Framed:
    """Raw frames on one connection: a request's reply, or None when it has none (a job's
    call sent behind it is answered after it, as in test_jsonrpc_conformance)."""

    NEXT = b'{"jsonrpc": "2.0", "method": "get_data", "id": "next"}'
    SENTINEL = {"jsonrpc": "2.0", "id": "next", "result": ["hello", 5]}

    def __init__(self, url: str, name: str) -> None:
        host, port = url.removeprefix("tcp://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.framing = framing(name)
        self.decoder = self.framing.decoder()

    def ask(self, payload: bytes) -> Any:
        self.sock.sendall(self.framing.encode(payload) + self.framing.encode(self.NEXT))
        replies = []
        while (reply := self._next()) != self.SENTINEL:
            replies.append(reply)
        assert len(replies) <= 1, replies
        return replies[0] if replies else None

    def _next(self) -> Any:
        while (frame := self.decoder.next_frame()) is None:
            data = self.sock.recv(65536)
            assert data, "the server closed"
            self.decoder.feed(data)
        return json.loads(frame)

    def close(self) -> None:
        self.sock.close()


def request(method: Any = "echo", params: Any = (1,), rid: Any = 1, **members: Any) -> bytes:
    """A request; params=None leaves them out, rid=None makes a notification."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, **members}
    if params is not None:
        message["params"] = list(params) if isinstance(params, tuple) else params
    if rid is not None:
        message["id"] = rid
    return json.dumps(message).encode()


NULL = "null"  # an id that is JSON null (None in these tables means "no id member")
# (payload, the reply's (code, id), or ("result", value, id), or None for no reply at all)
EDGES: list[tuple[bytes, Any]] = [
    *[(request(rid=r), ("result", 1, r)) for r in ("", "é", 0, -1, 2**64, -(2**70), 2.5, -0.0)],
    (request(rid=NULL).replace(b'"null"', b"null"), ("result", 1, None)),
    *[(request(rid=r), (-32600, None)) for r in (True, False, [], [1], {}, {"a": 1})],
    *[(request(method=m), (-32600, 1)) for m in (1, None, True, [], {})],
    *[(request(params=p), (-32600, 1)) for p in (3, "bar", True)],
    (request(params=None).replace(b'"method"', b'"params": null, "method"'), (-32600, 1)),
    *[(request(jsonrpc=v), (-32600, 1)) for v in ("2.1", "1.0", 2.0, None)],
    (request().replace(b'"jsonrpc": "2.0", ', b""), (-32600, 1)),
    (request(method="nope", params=(1,)), (-32601, 1)),
    (request(method="nope", rid=None), None),
    (request(method="subtract", params=(1,), rid=None), None),
    (request(method="subtract", params={"minuend": 1}), (-32602, 1)),
    (request(method="get_data", params=None), ("result", ["hello", 5], 1)),
    (request(extra="member"), ("result", 1, 1)),
    (b'{"jsonrpc": "2.0", "method": "echo", "params": [1], "id": 1, "id": 2}', ("result", 1, 2)),
    (b'{"jsonrpc": "2.0", "method": "echo", "params": [1], "id": 1', (-32700, None)),
    (b'\xef\xbb\xbf{"jsonrpc": "2.0", "method": "echo", "id": 1}', (-32700, None)),
    (b'{"jsonrpc": "2.0", "method": "echo", "params": ["\xff"], "id": 1}', (-32700, None)),
    (b"[" * 2000 + b"]" * 2000, (-32700, None)),
    (b"", (-32700, None)),
    (b"[[]]", [(-32600, None)]),
    (b"[" + request(rid=None) + b"," + request(method="nope", rid=None) + b"]", None),
    (
        b"[" + request(rid=7) + b", 1, " + request(rid=None) + b"]",
        [("result", 1, 7), (-32600, None)],
    ),
]


def shape(reply: Any) -> Any:
    """A reply in the tables' terms (each error's shape checked by ``checked``)."""
    if reply is None:
        return None
    if isinstance(reply, list):
        assert reply, "a batch reply is never an empty array"
        return sorted((shape(r) for r in reply), key=repr)
    reply = checked(reply)
    if "error" in reply:
        return (reply["error"]["code"], reply["id"])
    return ("result", reply["result"], reply["id"])


def exact(value: Any) -> Any:
    """``value`` as a key that tells 1 from 1.0 and 0.0 from -0.0 (ids are echoed exactly)."""
    return json.dumps(value, sort_keys=True), repr(value)


@pytest.mark.parametrize("name", OTHER_FRAMINGS)
def test_section_7_and_edge_cases_over_every_framing(servers: dict[str, str], name: str) -> None:
    conversation = Framed(servers[name], name)
    try:
        for payload, expected in EXAMPLES:
            reply = conversation.ask(payload.encode())
            assert (None if reply is None else checked(reply)) == (
                None if expected is None else checked(expected)
            ), payload
        for data, expected in EDGES:
            got = shape(conversation.ask(data))
            want = sorted(expected, key=repr) if isinstance(expected, list) else expected
            assert exact(got) == exact(want), data[:80]
    finally:
        conversation.close()


def test_valid_requests_get_jsonrpcservers_answers(servers: dict[str, str]) -> None:
    """Where jsonrpcserver follows the specification (valid requests: results, unknown
    methods, wrong params, notifications, batches of them), ipcnet answers as it does."""
    jsonrpcserver = pytest.importorskip("jsonrpcserver")
    from jsonrpcserver import Success

    theirs = {
        "subtract": lambda minuend, subtrahend: Success(minuend - subtrahend),
        "sum": lambda *values: Success(sum(values)),
        "echo": lambda value=None: Success(value),
        "get_data": lambda: Success(["hello", 5]),
    }
    valid = [
        request(method="subtract", params=p, rid=r)
        for p in ((5, 3), {"minuend": 5, "subtrahend": 3}, (1,), (1, 2, 3), {"x": 1})
        for r in (1, "a", None)
    ]
    valid += [request(method=m, params=(), rid=9) for m in ("sum", "get_data", "nope", "rpc.x")]
    valid += [request(params=(v,), rid=2**70) for v in (None, [1, {"a": -0.0}], "é✓\u2028")]
    valid.append(b"[" + b",".join(valid[:12]) + b"]")
    valid.append(b"[" + request(rid=None) + b"," + request(method="nope", rid=None) + b"]")
    conversation = Framed(servers["length"], "length")
    try:
        for data in valid:
            answer = str(jsonrpcserver.dispatch(data.decode(), methods=theirs))
            expected = shape(json.loads(answer)) if answer else None
            assert exact(shape(conversation.ask(data))) == exact(expected), data[:80]
    finally:
        conversation.close()


@pytest.mark.parametrize("name", ["newline", "length"])  # a fused line encoder, and not
def test_nan_and_infinity_are_refused_never_sent_as_null(
    servers: dict[str, str], name: str
) -> None:
    with rpc.connect(servers[name], framing=name, timeout=30) as client:
        for kind in ("nan", "inf", "big"):
            with pytest.raises(rpc.RPCError) as info:
                client.not_finite(kind)
            assert info.value.code == rpc.INTERNAL_ERROR, kind
            assert "cannot be encoded" in info.value.message, info.value.message
        for value in (math.nan, [1.5, -math.inf], {"a": [2**64, math.inf]}):
            with pytest.raises(LocalProtocolError, match="cannot encode as JSON"):
                client.echo(value)
        assert client.echo([None, "null", 1.5]) == [None, "null", 1.5]  # the connection goes on


@pytest.mark.parametrize("arg", ["NaN", "Infinity", "[1, NaN]", '{"a": -Infinity}', "1e400"])
def test_call_arguments_follow_the_json_codec(arg: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``ipcnet rpc call`` read its ARGs with json.loads, which takes NaN and Infinity (and
    1e400 as inf): orjson then sent them as null. They are refused before connecting."""
    assert main(["rpc", "call", "tcp://127.0.0.1:1", "echo", arg]) == 2
    assert f"argument {arg!r} is not JSON" in capsys.readouterr().err


# --- a last line without its newline ----------------------------------------------------


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")
@pytest.mark.parametrize(
    "sent,expected",
    [
        (request(method="subtract", params=(5, 3)), [("result", 2, 1)]),
        (request(rid="a") + b"\n" + request(rid="b"), [("result", 1, "a"), ("result", 1, "b")]),
        (request(rid="c") + b"\r", [("result", 1, "c")]),
        (request()[:-3], [(-32700, None)]),  # cut short: not JSON
    ],
)
def test_the_last_line_needs_no_newline(
    servers: dict[str, str], sent: bytes, expected: list[Any]
) -> None:
    """socat sends its stdin, half-closes at its end, and prints what comes back until the
    server closes (-t: how long it would wait for that)."""
    url = servers["newline"].replace("tcp://", "TCP:")
    done = subprocess.run(
        ["socat", "-t", "30", "-", url], input=sent, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert [shape(json.loads(line)) for line in done.stdout.splitlines()] == expected


def test_clients_take_a_last_reply_without_its_newline() -> None:
    """A server that writes its reply, no newline, and closes: both clients get it."""
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"tcp://127.0.0.1:{listener.getsockname()[1]}"

    def serve(connections: int) -> None:
        for _ in range(connections):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as stream:
                rid = json.loads(stream.readline())["id"]
                conn.sendall(json.dumps({"jsonrpc": "2.0", "id": rid, "result": "last"}).encode())

    thread = threading.Thread(target=serve, args=(2,), daemon=True)
    thread.start()
    try:
        with rpc.connect(url, timeout=30) as client:
            assert client.echo(1) == "last"

        async def asyncio_client() -> Any:
            async with await rpc.aio.connect(url, timeout=30) as client:
                return await client.echo(1)

        assert asyncio.run(asyncio_client()) == "last"
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes an accept that waits for a failed client
        thread.join(30)
        listener.close()


# --- ipcnet rpc call and list against jsonrpcserver's HTTP server -------------------------


def test_cli_against_jsonrpcservers_http_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ipcnet rpc call`` prints results as JSON and errors as the call's error (status 1);
    ``list`` against a server without rpc.discover says so, as an error reply like call's
    (it said only "Method not found (-32601)")."""
    server = pytest.importorskip("jsonrpcserver.server")
    monkeypatch.setattr(server, "dispatch", _jsonrpcserver_methods())
    with http_peer(server.RequestHandler) as url:
        cases = [
            (["call", url, "add", "1", str(2**70)], 0, f"{1 + 2**70}\n", ""),
            (["call", url, "-n", "a=0.5", "-n", "b=-0.0", "add"], 0, "0.5\n", ""),
            (["call", "--notify", url, "add", "1", "2"], 0, "", ""),
            (["call", url, "fail"], 1, "", 'error 7: failed on purpose {"why": "a test"}'),
            (["call", url, "add", "1"], 1, "", "error -32602: "),
            (["list", url], 1, "", "error -32601: Method not found"),
        ]
        for argv, status, out, err in cases:
            assert main(["rpc", *argv]) == status, argv
            captured = capsys.readouterr()
            assert captured.out == out and err in captured.err, (argv, captured)
        assert "(the server offers no rpc.discover)" in captured.err
