"""JSON-RPC 2.0 and its framings, audit round 8: a generated differential sweep.

A few hundred request documents (valid calls, notifications, batches, ids of every JSON
type, every wrong "jsonrpc", method and params, duplicate keys, what is not JSON) go to an
ipcnet server over a stream, in HTTP POST bodies and, sans-IO, over every framing in
random splits; each answer is checked against the specification
(https://www.jsonrpc.org/specification) read as a small oracle below, and jsonrpcserver
5.0.9 is fed the same bytes: where it follows the specification ipcnet must answer as it
does, and every place it does not is one of the listed deviations (``REFERENCE_DEVIATES``).
Framing: Content-Length header lines ended by LF alone were waited on until 8 KiB came
(python-lsp-jsonrpc reads them, vscode-jsonrpc and the LSP's CRLF rule do not): now refused
at once; netstring and Content-Length framing errors are answered and the server goes on;
damaged streams give the same frames and errors however they are cut. HTTP: the wrapped
service's batch limit was dropped; a gzipped body was read as JSON (now 415 with
Accept-Encoding, RFC 9110 §12.5.3); msgpack bodies went as application/json (now
application/msgpack, both ways); curl's own Expect: 100-continue, accepted and refused.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import inspect
import itertools
import json
import random
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from ipcnet import rpc
from ipcnet.drivers.engine import run_job
from ipcnet.errors import RemoteProtocolError
from ipcnet.framing import Framing, framing
from ipcnet.protocols.base import Close, Peer, Run, as_list
from ipcnet.protocols.jsonrpc import JsonRpcService
from ipcnet.protocols.jsonrpc.http import JsonRpcHttpService
from test_jsonrpc_conformance import checked
from test_robust_differential import _served

pytestmark = pytest.mark.xdist_group("rpc-audit8")

CALL = b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":1}'


def _methods() -> rpc.Methods:
    methods = rpc.Methods()
    methods.add(lambda value=None: value, name="echo")
    methods.add(lambda minuend, subtrahend: minuend - subtrahend, name="subtract")
    methods.add(lambda *values: sum(values), name="sum")
    methods.add(lambda: ["hello", 5], name="get_data")
    return methods


def _read_all(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """What the server sends within ``timeout``, and whether it closed meanwhile."""
    sock.settimeout(timeout)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except TimeoutError:
        return out, False
    return out, True


# --- framing: Content-Length header lines ended by LF alone -------------------------------


LF_HEADERS = [
    b"Content-Length: %d\n\n%s" % (len(CALL), CALL),
    b"Content-Length: %d\r\n\n%s" % (len(CALL), CALL),
    b"Content-Type: application/json\nContent-Length: %d\r\n\r\n%s" % (len(CALL), CALL),
]


@pytest.mark.parametrize("wire", LF_HEADERS)
def test_content_length_header_lines_ended_by_lf_alone_are_refused_at_once(wire: bytes) -> None:
    """The LSP's base protocol ends each header line with CRLF (as HTTP does); a reader
    that looks for CRLF CRLF (vscode-jsonrpc, ipcnet) never finds the end of these headers.
    ipcnet waited for it until 8 KiB had come, so a peer writing LF alone hung, answered
    by nothing; the bare LF is refused as soon as it arrives, whole or byte by byte."""
    for step in (len(wire), 1):
        decoder = framing("content-length").decoder()
        with pytest.raises(RemoteProtocolError, match="LF"):
            for i in range(0, len(wire), step):
                assert decoder.frames(wire[i : i + step]) == []
        assert decoder.failed


def test_a_server_answers_lf_ended_headers_at_once_and_serves_others() -> None:
    service = rpc.make_service(_methods(), "tcp://127.0.0.1:0", framing="content-length")
    with _served(service, "epoll") as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as other:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(LF_HEADERS[0])  # no EOF: the answer must not wait for one
                out, closed = _read_all(sock, 2.0)
            frames = framing("content-length").decoder().frames(out)
            assert closed and len(frames) == 1, out
            reply = json.loads(frames[0])
            assert reply["id"] is None and reply["error"]["code"] == rpc.PARSE_ERROR, reply
            assert "LF" in reply["error"]["message"], reply
            other.sendall(framing("content-length").encode(CALL))
            reply = _next_reply(other, framing("content-length"))
            assert reply == {"jsonrpc": "2.0", "id": 1, "result": 1}


LF_SERVER = """
import sys
sys.stdin.buffer.read1(65536)
body = b'{"jsonrpc": "2.0", "id": 1, "result": 5}'
sys.stdout.buffer.write(b"Content-Length: %d\\n\\n%s" % (len(body), body))
sys.stdout.buffer.flush()
sys.stdin.buffer.read()  # until the client ends
"""


def test_the_client_reports_lf_ended_headers_instead_of_timing_out(tmp_path: Any) -> None:
    """``ipcnet rpc call exec:...`` (Content-Length framing) against a server that ends
    its header lines with LF alone: it waited for the whole timeout, then said only that;
    now it names the bare LF at once."""
    script = tmp_path / "lf_server.py"
    script.write_text(LF_SERVER)
    argv = [sys.executable, "-m", "ipcnet", "rpc", "call", f"exec:{sys.executable} {script}"]
    done = subprocess.run([*argv, "add", "1", "2", "--timeout", "20"], capture_output=True,
                          text=True, timeout=15)  # fmt: skip
    assert done.returncode == 1, done
    assert "ends with LF alone" in done.stderr, done.stderr


# --- JSON-RPC over HTTP keeps the service's batch limit -----------------------------------


def test_http_keeps_the_batch_limit_of_the_service_it_wraps() -> None:
    """JsonRpcHttpService rebuilt the service for its own framing and dropped
    ``max_batch``: a batch over the limit was run whole over HTTP, refused over a stream."""
    httpx = pytest.importorskip("httpx")
    inner = JsonRpcService(_methods(), max_batch=2)
    batch = [{"jsonrpc": "2.0", "method": "echo", "params": [i], "id": i} for i in range(3)]
    with _served(JsonRpcHttpService(inner, "/rpc"), "epoll") as (_, port):
        reply = httpx.post(f"http://127.0.0.1:{port}/rpc", json=batch, timeout=10)
        assert reply.status_code == 200
        error = reply.json()
        assert isinstance(error, dict) and error["id"] is None, error
        assert error["error"]["code"] == rpc.INVALID_REQUEST, error
        assert "limit is 2" in error["error"]["message"], error
        reply = httpx.post(f"http://127.0.0.1:{port}/rpc", json=batch[:2], timeout=10)
        assert sorted(r["result"] for r in reply.json()) == [0, 1]


# --- the documents ------------------------------------------------------------------------

NO_ID: Any = object()  # a request without an id member: a notification
FUNCTIONS: dict[str, Any] = {
    "echo": lambda value=None: value,
    "subtract": lambda minuend, subtrahend: minuend - subtrahend,
    "sum": lambda *values: sum(values),
    "get_data": lambda: ["hello", 5],
}
IDS: list[Any] = [1, 0, -1, 2**53, 2**64, -(2**70), 10**30, 1.5, -0.0, 1e3, 1e-7, "", "a",
                  "é✓", "\u2028", "😀", "\x00", "\\u0000", None,
                  True, False, [], [1], {}, {"a": 1}]  # fmt: skip
METHOD_NAMES: list[Any] = ["echo", "subtract", "sum", "get_data", "nope", "rpc.nope",
                           "rpc.discover", "", "ECHO", 1, None, True, [], {}]  # fmt: skip
PARAMS: list[Any] = [[1], [], {"value": 1}, {}, NO_ID, 3, "s", True, None, [5, 3],
                     {"minuend": 5, "subtrahend": 3}]  # fmt: skip
VERSIONS: list[Any] = ["2.0", 2.0, 2, "1.0", "2", None, "2.0 ", NO_ID]


def make(
    method: Any = "echo", params: Any = (1,), rid: Any = 1, version: Any = "2.0", **extra: Any
) -> dict[str, Any]:
    """A request object; NO_ID leaves a member out (params=NO_ID: no params)."""
    message: dict[str, Any] = {}
    for key, value in (("jsonrpc", version), ("method", method), ("id", rid)):
        if value is not NO_ID:
            message[key] = value
    if params is not NO_ID:
        message["params"] = list(params) if isinstance(params, tuple) else params
    return {**message, **extra}


def dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def documents() -> list[tuple[str, bytes]]:
    """(name, request bytes): the sweep, the same on every run."""
    out: list[tuple[str, bytes]] = []
    for rid in IDS:
        out += [
            (f"id {rid!r}", dump(make(rid=rid))),
            (f"nope id {rid!r}", dump(make("nope", rid=rid))),
        ]
    for method in METHOD_NAMES:
        out += [
            (f"method {method!r}{n}", dump(make(method, NO_ID, r)))
            for n, r in (("", 1), (" note", NO_ID))
        ]
    for params in PARAMS:
        for method in ("echo", "subtract", "get_data", "sum"):
            out += [(f"params {params!r} {method}{n}", dump(make(method, params, r)))
                    for n, r in (("", 7), (" note", NO_ID))]  # fmt: skip
    for version in VERSIONS:
        out += [
            (f"jsonrpc {version!r}{n}", dump(make(version=version, rid=r)))
            for n, r in (("", 3), (" note", NO_ID))
        ]
    out += [
        ("no method", dump(make(NO_ID))),
        ("no method note", dump(make(NO_ID, rid=NO_ID))),
        ("nothing but jsonrpc", b'{"jsonrpc": "2.0"}'),
        ("a response sent as a request", b'{"jsonrpc": "2.0", "result": 1, "id": 1}'),
        ("extra member", dump(make(extra="x"))),
        ("extra result member", dump(make(result=1))),
        ("extra member note", dump(make(rid=NO_ID, extra="x"))),
        ("duplicate id", b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":1,"id":2}'),
        ("duplicate method", b'{"jsonrpc":"2.0","method":1,"method":"echo","params":[1],"id":1}'),
        ("duplicate jsonrpc", b'{"jsonrpc":"1.0","jsonrpc":"2.0","method":"echo","id":1}'),
        ("duplicate params", b'{"jsonrpc":"2.0","method":"echo","params":3,"params":[2],"id":1}'),
        ("id 1.0", b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":1.0}'),
        ("id 1E2", b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":1E2}'),
        ("id -0", b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":-0}'),
        ("escaped method", b'{"jsonrpc":"2.0","method":"\\u0065cho","params":[1],"id":1}'),
        ("surrogate pair", b'{"jsonrpc":"2.0","method":"echo","params":["\\ud83d\\ude00"],"id":1}'),
    ]  # fmt: skip
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"):
        out.append(
            (
                f"{literal!r} param",
                b'{"jsonrpc":"2.0","method":"echo","params":[%s],"id":1}' % literal,
            )
        )
        out.append(
            (f"{literal!r} id", b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":%s}' % literal)
        )
    out += [
        ("invalid utf-8 in a string", b'{"jsonrpc":"2.0","method":"echo","params":["\xff"],"id":1}'),
        ("invalid utf-8 in the method", b'{"jsonrpc":"2.0","method":"\xc3","id":1}'),
        ("overlong utf-8", b'{"jsonrpc":"2.0","method":"echo","params":["\xc0\xaf"],"id":1}'),
        ("utf-8 surrogate bytes", b'{"jsonrpc":"2.0","method":"echo","params":["\xed\xa0\x80"],"id":1}'),
        ("lone surrogate escape", b'{"jsonrpc":"2.0","method":"echo","params":["\\ud800"],"id":1}'),
        ("control byte in a string", b'{"jsonrpc":"2.0","method":"echo","params":["a\x01"],"id":1}'),
        ("bom", b"\xef\xbb\xbf" + dump(make())),
        ("nesting 100", b'{"jsonrpc":"2.0","method":"echo","params":[%s%s],"id":1}' % (b"[" * 100, b"]" * 100)),
        ("nesting 5000", b'{"jsonrpc":"2.0","method":"echo","params":[%s%s],"id":1}' % (b"[" * 5000, b"]" * 5000)),
        ("empty", b""),
        ("white space only", b" \t\r "),
        ("white space around", b" \t" + dump(make()) + b" \r"),
        ("form feed around", b"\x0c" + dump(make())),
        ("trailing garbage", dump(make()) + b"x"),
        ("two documents", dump(make()) + dump(make(rid=2))),
        ("trailing comma", b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":1,}'),
        ("single quotes", b"{'jsonrpc':'2.0','method':'echo','id':1}"),
        ("a comment", dump(make()) + b" // comment"),
        ("unquoted key", b'{jsonrpc:"2.0","method":"echo","id":1}'),
        ("section 7 parse error", b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]'),
    ]  # fmt: skip
    out += [(f"scalar {s!r}", s) for s in (b"1", b'"text"', b"null", b"true", b"false", b"1.5")]
    calls = [make(rid=i) for i in range(3)]
    notes = [make(rid=NO_ID), make("nope", rid=NO_ID), make("subtract", (1,), NO_ID)]
    out += [
        ("empty batch", b"[]"),
        ("empty batch with white space", b"[ \t ]"),
        ("batch [1,2]", b"[1,2]"),
        ("batch of null", b"[null]"),
        ("batch of an empty batch", b"[[]]"),
        ("batch of {}", b"[{}]"),
        ("nested batch", dump([calls])),
        ("batch of one call", dump(calls[:1])),
        ("batch of calls", dump(calls)),
        ("batch of notifications", dump(notes)),
        ("batch of one notification", dump(notes[:1])),
        ("batch of an invalid would-be notification", dump([make(version="1.0", rid=NO_ID)])),
        ("batch, mixed", dump([calls[0], 1, notes[0], make("nope", rid="x"), make(5, rid=9), {"foo": "boo"},
                               make("subtract", {"minuend": 1}, 3), make(extra=1, rid=4)])),
        ("batch of bad ids", dump([make(rid=r) for r in (True, [], {}, None, 1.5)])),
        ("batch with one id twice", dump([make(rid=1), make(rid=1)])),
        ("batch and garbage", dump(calls) + b"]"),
        ("batch with a parse error", b"[" + dump(calls[0]) + b', {"jsonrpc": "2.0", "method"]'),
        ("batch of 60", dump([make("sum", [i, 1], i) for i in range(60)])),
    ]  # fmt: skip
    # an integer over 64 bits sends a document to the stdlib JSON decoder (orjson would
    # round it): held to the same rules, the same documents must get the same answers
    one = re.compile(rb'"id": ?1(?=[,}])')
    out += [(f"{name}, big id", one.sub(b'"id": 123456789012345678901', data))
            for name, data in list(out) if one.search(data)]  # fmt: skip
    rng = random.Random(8)

    def anything() -> Any:
        message = make(
            rng.choice(METHOD_NAMES[:6]),
            rng.choice([[1], [5, 3], {"value": 2}, {"minuend": 5, "subtrahend": 3}, NO_ID, [], 3]),
            rng.choice([*IDS[:19], NO_ID, NO_ID, True]),
            rng.choice(["2.0"] * 8 + ["1.0", 2.0]),
        )
        if rng.random() < 0.05:
            del message["method"]
        return message if rng.random() < 0.9 else rng.choice([1, "x", None, [], {}])

    for i in range(150):
        if i % 2:
            out.append((f"random {i}", dump(anything())))
        else:
            out.append((f"random batch {i}", dump([anything() for _ in range(rng.randint(1, 6))])))
    return out


DOCUMENTS = documents()


# --- the specification, as an oracle -----------------------------------------------------


class NotJson(Exception):
    pass


def _refuse_constant(name: str) -> Any:
    raise NotJson(name)


def _finite(text: str) -> float:
    value = float(text)
    if value - value != 0.0:
        raise NotJson(text)
    return value


def strict_json(data: bytes) -> Any:
    """The value of ``data`` under RFC 8259, NotJson when it is none: UTF-8 only (§8.1; a
    byte order mark refused, which §8.1 allows), no NaN or Infinity and no number beyond
    the double range (§6, §9), no unpaired surrogate, nesting bounded (§9 allows limits)."""
    try:
        if data.startswith(b"\xef\xbb\xbf"):
            raise NotJson("bom")
        value = json.loads(
            data.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite
        )
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # an unpaired surrogate fails
    except (ValueError, RecursionError, UnicodeError) as exc:
        raise NotJson(str(exc)) from None
    return value


def _error(code: int, rid: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": "-"}}


def _valid_id(rid: Any) -> bool:
    return rid is None or isinstance(rid, str) or type(rid) in (int, float)


def oracle(data: bytes) -> Any:
    """The reply the specification asks for (None: no reply at all). Where it leaves a
    choice open, ipcnet's: an Invalid Request echoes the request's id when the id itself
    was readable (§5: null "if there was an error in detecting the id")."""
    try:
        value = strict_json(data)
    except NotJson:
        return _error(-32700, None)
    if not isinstance(value, list):
        return _one(value)
    if not value:
        return _error(-32600, None)  # §6: an empty array is one Invalid Request
    replies = [r for r in map(_one, value) if r is not None]
    return replies or None  # §6: nothing at all when every member was a notification


def _one(message: Any) -> dict[str, Any] | None:
    if not isinstance(message, dict):
        return _error(-32600, None)
    rid = message.get("id", NO_ID)
    if rid is not NO_ID and not _valid_id(rid):
        return _error(-32600, None)  # §4: an id is a string, a number or null
    shown = None if rid is NO_ID else rid
    method, params = message.get("method"), message.get("params", [])
    if message.get("jsonrpc") != "2.0" or not isinstance(method, str):
        return _error(-32600, shown)
    if not isinstance(params, (list, dict)):
        return _error(-32600, shown)  # §4.2: by position (array) or by name (object)
    if rid is NO_ID:
        return None  # §4.1: never answered, whatever happens
    if method == "rpc.discover":
        return {"jsonrpc": "2.0", "id": rid, "result": "(the OpenRPC document)"}
    function = FUNCTIONS.get(method)
    if function is None:
        return _error(-32601, rid)
    args, kwargs = (params, {}) if isinstance(params, list) else ([], params)
    try:
        inspect.signature(function).bind(*args, **kwargs)
    except TypeError:
        return _error(-32602, rid)
    return {"jsonrpc": "2.0", "id": rid, "result": function(*args, **kwargs)}


def exact(value: Any) -> str:
    """``value`` as a key that tells 1 from 1.0 and 0.0 from -0.0 (ids are echoed as
    they came, §5)."""
    return f"{json.dumps(value, sort_keys=True)}:{type(value).__name__}:{value!r}"[:300]


def shape(reply: Any) -> Any:
    """A reply as what the sweep compares: no reply, or (code or result, id), a batch's
    in any order (§6); each reply's members checked (§5, §5.1)."""
    if reply is None:
        return None
    if isinstance(reply, list):
        assert reply, "a batch reply is never an empty array (§6)"
        return ("batch", sorted(shape(r) for r in reply))
    checked(reply)
    if "result" in reply:
        result = reply["result"]
        if result == "(the OpenRPC document)" or (isinstance(result, dict) and "openrpc" in result):
            return ("discover", exact(reply["id"]))
        return ("result", exact(result), exact(reply["id"]))
    return ("error", reply["error"]["code"], exact(reply["id"]))


# --- the sweep, over a stream and over HTTP -----------------------------------------------


@pytest.fixture(scope="module")
def stream() -> Iterator[int]:
    """A u32-length-framed server (a document of any bytes is one frame): its port."""
    service = rpc.make_service(_methods(), "tcp://127.0.0.1:0", framing="length")
    with _served(service, "epoll") as (_, port):
        yield port


def ask(port: int, data: bytes) -> Any:
    """``data`` as one frame on a new connection, then EOF: the reply, None if none."""
    length = framing("length")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(length.encode(data))
        sock.shutdown(socket.SHUT_WR)
        out, closed = _read_all(sock, 10)
    frames = length.decoder().frames(out)
    assert closed and len(frames) <= 1, out[:200]
    return json.loads(frames[0]) if frames else None


@pytest.fixture(scope="module")
def answers(stream: int) -> list[Any]:
    """ipcnet's reply to each of DOCUMENTS (None: no reply), over the stream."""
    return [ask(stream, data) for _, data in DOCUMENTS]


def test_the_sweep_gets_what_the_specification_asks_for(answers: list[Any]) -> None:
    """Each document's reply: whether there is one, its shape (one object or a batch's
    array, never an empty one), each error's code and the id echoed (null when it could
    not be read)."""
    assert len(DOCUMENTS) > 300
    wrong = []
    for (name, data), reply in zip(DOCUMENTS, answers, strict=True):
        got, want = shape(reply), shape(oracle(data))
        if got != want:
            wrong.append(f"{name}: {data[:80]!r}\n  got  {got}\n  want {want}")
    assert not wrong, "\n".join(wrong[:10])


def _reference(data: bytes) -> Any:
    """jsonrpcserver's reply to ``data`` (its dispatch takes text, as its HTTP server
    hands it the body decoded as UTF-8)."""
    jsonrpcserver = pytest.importorskip("jsonrpcserver")
    text = str(jsonrpcserver.dispatch(data.decode("utf-8"), methods=_their_methods()))
    return json.loads(text) if text else None


@functools.cache
def _their_methods() -> dict[str, Any]:
    from jsonrpcserver import Success

    def wrap(function: Any) -> Any:
        return lambda *args, **kwargs: Success(function(*args, **kwargs))

    theirs = {name: wrap(function) for name, function in FUNCTIONS.items()}
    for name, function in FUNCTIONS.items():  # the same signatures, for its params check
        theirs[name].__signature__ = inspect.signature(function)
    return theirs


MEMBERS = {"jsonrpc", "method", "params", "id"}


def _schema_refuses(message: Any) -> bool:
    """What jsonrpcserver's JSON Schema refuses in a request (or a batch's member)."""
    if not isinstance(message, dict) or set(message) - MEMBERS:
        return True
    reply = _one(message)
    return reply is not None and reply.get("error", {}).get("code") == -32600


def why_the_reference_differs(data: bytes, ours: Any, theirs: Any) -> str | None:
    """Which listed deviation of jsonrpcserver's explains ``theirs`` (None: none does)."""
    if b"rpc.discover" in data:
        return "discover"  # §8 reserves rpc.* for extensions: ours is OpenRPC's discovery
    try:
        value = strict_json(data)
    except NotJson:
        return "not json" if theirs != ours else None  # it reads NaN, Infinity, 1e400, \ud800
    single_invalid = shape(theirs) == ("error", -32600, exact(None))
    if isinstance(value, list) and value and any(map(_schema_refuses, value)):
        return "batch" if single_invalid else None  # one error for the whole array
    if isinstance(value, dict) and set(value) - MEMBERS and single_invalid:
        return "extra members"  # its schema says additionalProperties: false
    if isinstance(ours, dict) and ours.get("id") is not None and single_invalid:
        return "id"  # it never echoes the id of an Invalid Request
    return None


REFERENCE_DEVIATES = {
    "batch": "a batch with any invalid member gets one Invalid Request for the whole array "
    "(its JSON Schema validates the batch at once); §6 answers each member ([1,2,3]: three)",
    "id": "an Invalid Request never echoes the id, even when it was readable; §5 asks for "
    "null only when the id could not be detected (open: ipcnet echoes it)",
    "extra members": "members beyond jsonrpc/method/params/id make an Invalid Request; the "
    "specification does not forbid them (ipcnet ignores them)",
    "not json": "NaN, Infinity, -Infinity, 1e400 and unpaired \\ud800 escapes are read (Python's "
    "json.loads); RFC 8259 §6, §8.2 say they are not JSON: ipcnet answers Parse Error",
    "discover": "rpc.discover is ipcnet's extension (§8 reserves rpc.* for such); "
    "jsonrpcserver has none",
}


def test_jsonrpcserver_answers_alike_where_it_follows_the_specification(answers: list[Any]) -> None:
    """The same bytes to jsonrpcserver: where its answer is the specification's, ipcnet's
    is the same; every other answer is one of its deviations listed in REFERENCE_DEVIATES
    (documents it cannot take at all, bytes that are not UTF-8, are left out)."""
    agree, deviations, unexplained = 0, dict.fromkeys(REFERENCE_DEVIATES, 0), []
    for (name, data), ours in zip(DOCUMENTS, answers, strict=True):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue  # its dispatch takes text: its HTTP server fails on the .decode()
        theirs = _reference(data)
        if shape(theirs) == shape(oracle(data)):
            assert shape(ours) == shape(theirs), (name, data[:80], ours, theirs)
            agree += 1
            continue
        why = why_the_reference_differs(data, ours, theirs)
        if why is None:
            unexplained.append(f"{name}: {data[:80]!r}\n  ours   {ours}\n  theirs {theirs}")
        else:
            deviations[why] += 1
    assert not unexplained, "\n".join(unexplained[:10])
    assert agree > 200, agree  # most of the sweep is compared, not explained away
    assert all(deviations.values()), deviations  # each listed deviation is seen


def test_the_sweep_over_http_is_answered_alike_with_200_or_204(answers: list[Any]) -> None:
    """The same documents as POST bodies (httpx, one kept-alive connection): the same
    replies as over a stream, 200 with application/json for a reply, 204 without a body
    when there is none (notifications only); a JSON-RPC error is still a 200."""
    httpx = pytest.importorskip("httpx")
    service = JsonRpcHttpService(rpc.make_service(_methods()), "/rpc")
    with _served(service, "epoll") as (_, port), httpx.Client(timeout=10) as client:
        url = f"http://127.0.0.1:{port}/rpc"
        for (name, data), ours in zip(DOCUMENTS, answers, strict=True):
            reply = client.post(url, content=data, headers={"Content-Type": "application/json"})
            want = shape(ours)
            if want is None:
                assert reply.status_code == 204 and reply.content == b"", (name, reply)
                continue
            assert reply.status_code == 200, (name, reply)
            assert reply.headers["content-type"] == "application/json", name
            assert shape(reply.json()) == want, (name, data[:80])


# --- the sweep over every framing, in any split ------------------------------------------


class Session:
    """A JSON-RPC session over ``name`` framing, driven as a blocking driver drives one
    (each Run done inline by the engine's run_job): bytes in, reply frames out."""

    def __init__(self, name: str) -> None:
        self.framing = framing(name)
        self.session, first = JsonRpcService(_methods(), self.framing).start(Peer(None))
        self.out = self.framing.decoder()
        self.closed = False
        self.apply(first)

    def apply(self, actions: Any) -> None:
        for action in as_list(actions):
            assert not self.closed, "an action after Close"
            if isinstance(action, (bytes, bytearray, memoryview)):
                self.out.feed(action)
            elif isinstance(action, Close):
                self.closed = True
            elif isinstance(action, Run):
                self.apply(self.session.resume(action, run_job(action)))

    def run(self, wire: bytes, sizes: Iterator[int]) -> list[Any]:
        """Feed ``wire`` in pieces of the given sizes, then EOF: the replies, decoded."""
        i = 0
        while i < len(wire):
            step = next(sizes)
            self.apply(self.session.feed(wire[i : i + step]))
            i += step
        self.apply(self.session.feed_eof())
        assert self.closed, "EOF once all is answered closes"
        return [json.loads(frame) for frame in self.out.frames(b"")]


def _carried(name: str) -> list[tuple[str, bytes]]:
    """The documents the framing can carry (a line cannot hold a newline)."""
    if name != "newline":
        return DOCUMENTS
    return [(n, d) for n, d in DOCUMENTS if b"\n" not in d and not d.endswith(b"\r")]


@pytest.mark.parametrize("name", ["newline", "length", "length64", "netstring", "content-length"])
def test_every_framing_in_any_split_gives_the_same_answers(name: str) -> None:
    """The whole sweep as one stream, fed at once, byte by byte and in random pieces
    (1 to 300 bytes): the same replies each time, those the specification asks for (their
    order may differ: pipelined requests are answered as their jobs finish)."""
    documents = _carried(name)
    wire = b"".join(framing(name).encode(data) for _, data in documents)
    want = sorted(exact(shape(oracle(data))) for _, data in documents if oracle(data) is not None)
    rng = random.Random(name)
    splits = {
        "at once": iter([len(wire)]),
        "byte by byte": iter(lambda: 1, 0),
        "random": iter(lambda: rng.randint(1, 300), 0),
    }
    for how, sizes in splits.items():
        got = sorted(exact(shape(reply)) for reply in Session(name).run(wire, sizes))
        assert got == want, how


# --- framing errors at a server: answered, and the server goes on -------------------------

NETSTRING_CALL = b"%d:%s" % (len(CALL), CALL)
LSP_CALL = b"Content-Length: %d\r\n" % len(CALL)
# (framing, bytes sent, whether EOF follows them, the error's code and words; None: the
# call is answered): the stream is lost, so the server answers and closes
FRAMING_ERRORS: list[tuple[str, bytes, bool, tuple[int, str] | None]] = [
    ("netstring", NETSTRING_CALL + b";", False, (-32700, "does not end with ','")),
    ("netstring", NETSTRING_CALL + b"\n", False, (-32700, "does not end with ','")),
    ("netstring", NETSTRING_CALL, True, (-32700, "eof inside a netstring")),
    ("netstring", b"-1:,", False, (-32700, "bad netstring length")),
    ("netstring", b" 5:hello,", False, (-32700, "bad netstring length")),
    ("netstring", b"99999999999999999999:", False, (-32600, "more than 5 digits")),
    ("netstring", b"65537:", False, (-32600, "65537 bytes declared")),
    ("content-length", b"Content-Type: application/json\r\n\r\n" + CALL, False, (-32700, "without a Content-Length")),
    ("content-length", b"Content-Length: -5\r\n\r\n", False, (-32700, "bad Content-Length")),
    ("content-length", b"Content-Length: 99999999999999999999\r\n\r\n", False, (-32600, "20 digits")),
    ("content-length", b"Content-Length: 65537\r\n\r\n", False, (-32600, "65537 bytes declared")),
    ("content-length", LSP_CALL + b"\r\n" + CALL[:-1], True, (-32700, "eof inside a message")),
    ("content-length", LSP_CALL + b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n" + CALL, False, None),
    ("content-length", b"X-Other: 1\r\n" + LSP_CALL + b"\r\n" + CALL, False, None),
    ("length", b"\x80\x00\x00\x00", False, (-32600, "2147483648 bytes declared")),
    ("length", b"\x00\x01\x00\x01", False, (-32600, "65537 bytes declared")),
    ("length64", b"\xff" * 8, False, (-32600, "18446744073709551615 bytes declared")),
    ("length64", b"\x80" + b"\x00" * 7, False, (-32600, "bytes declared")),
]  # fmt: skip


@pytest.fixture(scope="module")
def framed() -> Iterator[dict[str, int]]:
    """A server per framing (frames up to 64 KiB): name -> port."""
    with contextlib.ExitStack() as stack:
        ports = {}
        for name in ("netstring", "content-length", "length", "length64"):
            service = rpc.make_service(
                _methods(), "tcp://127.0.0.1:0", framing=name, max_frame=65536
            )
            ports[name] = stack.enter_context(_served(service, "epoll"))[1]
        yield ports


@pytest.mark.parametrize("name,wire,eof,error", FRAMING_ERRORS)
def test_framing_errors_are_answered_and_the_server_goes_on(
    framed: dict[str, int], name: str, wire: bytes, eof: bool, error: tuple[int, str] | None
) -> None:
    port, codec = framed[name], framing(name)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as other:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(wire)
            if eof:
                sock.shutdown(socket.SHUT_WR)
            reply = _next_reply(sock, codec)
            if error is None:
                assert reply == {"jsonrpc": "2.0", "id": 1, "result": 1}
            else:
                assert reply["id"] is None and reply["error"]["code"] == error[0], reply
                assert error[1] in reply["error"]["message"], reply
                assert _read_all(sock, 2.0) == (b"", True), "the lost stream is closed"
        other.sendall(codec.encode(CALL))  # opened before, served after
        assert _next_reply(other, codec)["result"] == 1


def _next_reply(sock: socket.socket, codec: Framing) -> Any:
    decoder = codec.decoder()
    while not (frames := decoder.frames(sock.recv(65536))):
        pass
    assert len(frames) == 1, frames
    return json.loads(frames[0])


# --- JSON-RPC over HTTP: a body in a content coding ---------------------------------------


def test_a_body_in_a_content_coding_is_415_with_accept_encoding(tmp_path: Any) -> None:
    """``curl -H 'Content-Encoding: gzip' --data-binary @call.json.gz``: the body was read
    as JSON and answered Parse Error, as if the client had sent garbage; RFC 9110 §12.5.3:
    a server failing a request for its content coding ought to answer 415 with an
    Accept-Encoding field, so the client can tell a coding from a media type problem."""
    body = tmp_path / "call.json.gz"
    body.write_bytes(gzip.compress(CALL))
    service = JsonRpcHttpService(rpc.make_service(_methods()), "/rpc")
    with _served(service, "epoll") as (_, port):
        url = f"http://127.0.0.1:{port}/rpc"
        argv = ["curl", "-sS", "-i", "--max-time", "10", "-H", "Content-Type: application/json"]
        for coding in ("gzip", "br", "gzip, identity"):
            done = subprocess.run(
                [*argv, "-H", f"Content-Encoding: {coding}", "--data-binary", f"@{body}", url],
                capture_output=True,
                timeout=30,
            )
            head = done.stdout.partition(b"\r\n\r\n")[0].lower()
            assert head.startswith(b"http/1.1 415 "), (coding, done.stdout[:300])
            assert b"\r\naccept-encoding: identity" in head, head
        plain = subprocess.run(
            [*argv, "-H", "Content-Encoding: identity", "--data-binary", CALL, url],
            capture_output=True,
            timeout=30,
        )
        assert plain.stdout.startswith(b"HTTP/1.1 200 "), plain.stdout[:300]
        assert json.loads(plain.stdout.partition(b"\r\n\r\n")[2])["result"] == 1
        coded = gzip.compress(CALL)  # refused, its body dropped: the connection goes on
        head = b"POST /rpc HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(head + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(coded), coded)
                         + head + b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(CALL), CALL))  # fmt: skip
            out, closed = _read_all(sock, 5)
        assert closed and out.startswith(b"HTTP/1.1 415 "), out
        assert out.count(b"HTTP/1.1 ") == 2 and out.endswith(
            b'{"jsonrpc":"2.0","id":1,"result":1}'
        ), out


def test_curl_expect_100_continue_is_answered_before_the_body_either_way(tmp_path: Any) -> None:
    """curl 7.88 adds ``Expect: 100-continue`` by itself only for bodies over 1 MiB (older
    ones over 1 KiB; ``-H`` forces it for a 2 KiB body): a head that is accepted gets 100
    Continue, then the reply; one refused (405, 415, 404, 413) gets its final status and no
    100, so curl sends no body (RFC 9110 §10.1.1), and the server goes on."""
    big, small = tmp_path / "big.json", tmp_path / "small.json"
    big.write_text(
        json.dumps({"jsonrpc": "2.0", "method": "echo", "params": ["y" * (2 << 20)], "id": 2})
    )
    small.write_text(
        json.dumps({"jsonrpc": "2.0", "method": "echo", "params": ["y" * 2000], "id": 3})
    )
    service = JsonRpcHttpService(rpc.make_service(_methods()), "/rpc", max_body=3 << 20)
    with _served(service, "epoll") as (_, port):
        url = f"http://127.0.0.1:{port}/rpc"
        json_type = ("-H", "Content-Type: application/json")
        cases = [
            ((*json_type,), big, url, 200),
            ((*json_type, "-H", "Expect: 100-continue"), small, url, 200),
            (("-H", "Content-Type: text/plain"), big, url, 415),
            ((*json_type, "-X", "PUT"), big, url, 405),
            ((*json_type,), big, url + "x", 404),
            ((*json_type, "-H", "Expect: 100-continue"), small, url, 200),
        ]
        for extra, body, target, status in cases:
            argv = [
                "curl",
                "-sS",
                "-v",
                "--max-time",
                "20",
                *extra,
                "--data-binary",
                f"@{body}",
                target,
            ]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            sent = [
                line for line in done.stderr.splitlines() if line.startswith(("> Expect", "< HTTP"))
            ]
            final = f"< HTTP/1.1 {status} "
            if status == 200:
                assert sent[:3] == ["> Expect: 100-continue", "< HTTP/1.1 100 Continue", sent[2]], (
                    sent
                )
                assert sent[2].startswith(final), sent
                assert len(json.loads(done.stdout)["result"]) in (2000, 2 << 20)
            else:
                assert sent[0] == "> Expect: 100-continue" and sent[1].startswith(final), sent
                assert len(sent) == 2, sent
        too_large = tmp_path / "huge.json"
        too_large.write_bytes(b"[" + b" " * (4 << 20) + b"]")
        done = subprocess.run(["curl", "-sS", "-v", *json_type, "--data-binary", f"@{too_large}", url],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert "< HTTP/1.1 413 " in done.stderr and "100 Continue" not in done.stderr


# --- JSON-RPC over HTTP with the msgpack codec: bodies labelled as what they are ----------


def test_msgpack_bodies_are_labelled_msgpack_not_json() -> None:
    """``ipcnet rpc serve ... http://... --codec msgpack``: bodies were taken and replies
    sent as ``application/json`` though they were msgpack (RFC 9110 §8.3: Content-Type is
    the content's media type), so a JSON client got a msgpack error reply labelled JSON
    and failed on "invalid JSON: str is not valid UTF-8". Now msgpack goes as
    application/msgpack both ways, and a JSON body to a msgpack server is 415."""
    httpx = pytest.importorskip("httpx")
    msgpack = pytest.importorskip("msgpack")
    service = JsonRpcHttpService(rpc.make_service(_methods(), codec="msgpack"), "/rpc")
    with _served(service, "epoll") as (_, port):
        url = f"http://127.0.0.1:{port}/rpc"
        call = msgpack.packb({"jsonrpc": "2.0", "method": "echo", "params": [b"\x00"], "id": 1})
        for kind in ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack"):
            reply = httpx.post(url, content=call, headers={"Content-Type": kind}, timeout=10)
            assert reply.status_code == 200, (kind, reply)
            assert reply.headers["content-type"] == "application/msgpack"
            assert msgpack.unpackb(reply.content) == {"jsonrpc": "2.0", "id": 1, "result": b"\x00"}
        refused = httpx.post(
            url, content=CALL, headers={"Content-Type": "application/json"}, timeout=10
        )
        assert refused.status_code == 415, refused
        with rpc.connect(url, codec="msgpack", timeout=10) as client:
            assert client.echo(b"\x01bytes") == b"\x01bytes"
        with rpc.connect(url, timeout=10) as client, pytest.raises(rpc.RPCError, match="HTTP 415"):
            client.echo(1)
    json_service = JsonRpcHttpService(rpc.make_service(_methods()), "/rpc")
    with _served(json_service, "epoll") as (_, port):
        url = f"http://127.0.0.1:{port}/rpc"
        refused = httpx.post(
            url, content=call, headers={"Content-Type": "application/msgpack"}, timeout=10
        )
        assert refused.status_code == 415, refused


# --- jsonrpcclient's requests, over every framing -----------------------------------------


@pytest.mark.parametrize("name", ["newline", "length", "netstring", "content-length"])
def test_jsonrpcclient_requests_over_every_framing(name: str) -> None:
    """What jsonrpcclient 4.0.3 builds (ids decimal, hexadecimal, random and uuid strings;
    params by position, by name, none; notifications; a batch of them) in one stream: its
    ``parse`` reads every reply, each answering its request's id, none for notifications."""
    jsonrpcclient = pytest.importorskip("jsonrpcclient")
    from jsonrpcclient import Error, Ok

    makers = [jsonrpcclient.request, jsonrpcclient.request_hex, jsonrpcclient.request_random,
              jsonrpcclient.request_uuid]  # fmt: skip
    calls = [make("subtract", params=(5, 3)) for make in makers]
    calls += [make("subtract", params={"minuend": 5, "subtrahend": 3}) for make in makers]
    calls += [make("get_data") for make in makers] + [jsonrpcclient.request("nope")]
    notes = [jsonrpcclient.notification("echo", params=(1,)), jsonrpcclient.notification("x")]
    batch = [jsonrpcclient.request_uuid("sum", params=(1, 2, 3)), notes[0]]
    frames = [json.dumps(m).encode() for m in [*calls, *notes, batch, notes]]
    replies = Session(name).run(
        b"".join(framing(name).encode(f) for f in frames), iter(lambda: 7, 0)
    )
    parsed = {}
    for reply in replies:
        for response in (
            jsonrpcclient.parse(reply) if isinstance(reply, list) else [jsonrpcclient.parse(reply)]
        ):
            parsed[response.id] = response
    want = {c["id"]: c for c in [*calls, batch[0]]}
    assert set(parsed) == set(want) and len(replies) == len(calls) + 1
    for rid, response in parsed.items():
        method = want[rid]["method"]
        if method == "nope":
            assert isinstance(response, Error) and response.code == -32601
        else:
            assert isinstance(response, Ok), response
            assert response.result == {"subtract": 2, "get_data": ["hello", 5], "sum": 6}[method]


# --- decoders: frames and errors in the same places, however the stream is cut ------------


def _decode_all(name: str, data: bytes, sizes: Iterator[int], max_size: int) -> list[Any]:
    """Every frame and every error (its type) the decoder gives for ``data`` fed in pieces
    of ``sizes``, then EOF; a newline decoder goes on after an over-long line."""
    decoder, got, i = framing(name, max_size=max_size).decoder(), [], 0

    def drain() -> bool:
        while True:
            try:
                frame = decoder.next_frame()
            except RemoteProtocolError as exc:
                got.append(type(exc).__name__)
                if decoder.failed:
                    return False
                continue
            if frame is None:
                return True
            got.append(frame)

    while i < len(data):
        step = next(sizes)
        decoder.feed(data[i : i + step])
        i += step
        if not drain():
            return got
    try:
        decoder.feed_eof()
    except RemoteProtocolError as exc:
        return [*got, type(exc).__name__]
    drain()
    return got


INSERTS = [
    b"\n",
    b"\r\n",
    b":",
    b",",
    b"\xff\xff",
    b"Content-Length: 9\r\n",
    b"\r\n\r\n",
    b"0",
    b"99999:",
    b"\x00",
]


@pytest.mark.parametrize("name", ["newline", "length", "length64", "netstring", "content-length"])
def test_damaged_streams_give_the_same_frames_and_errors_in_any_split(name: str) -> None:
    """Valid frames with bytes inserted here and there, some over the size limit: fed at
    once, byte by byte or in random pieces, the decoder gives the same frames and raises
    the same error after the same frame (the tests of test_framing cut valid streams)."""
    rng = random.Random(name)
    for _ in range(300):
        frames = [rng.randbytes(rng.randint(0, 40)) for _ in range(rng.randint(0, 5))]
        if name == "newline":
            frames = [f.replace(b"\n", b"").rstrip(b"\r") for f in frames]
        wire = bytearray(b"".join(framing(name).encode(f) for f in frames))
        for _ in range(rng.randint(0, 2)):
            at = rng.randrange(len(wire) + 1)
            wire[at:at] = rng.choice(INSERTS)
        data, limit = bytes(wire), rng.choice([5, 20, 1000])
        whole = _decode_all(name, data, itertools.repeat(len(data) or 1), limit)
        assert _decode_all(name, data, itertools.repeat(1), limit) == whole, data
        pieces = iter(lambda: rng.randint(1, 9), 0)
        assert _decode_all(name, data, pieces, limit) == whole, data
