"""JSON-RPC 2.0 conformance, over real sockets, against the specification
(https://www.jsonrpc.org/specification) and peers nobody here wrote.

Every example of the specification's section 7 must produce exactly the specified response
(modulo error message text and member order; a batch's replies in any order, as §6 allows),
over newline-delimited TCP and in HTTP POST bodies. Then the rules around them: id types,
``"jsonrpc"`` exactly "2.0", params, reserved names, the error object's shape, rpc.discover
as an OpenRPC document, bad input; HTTP: HEAD, absolute-form targets, a body cut short.
The client: against jsonrpcserver's HTTP server (HTTP/1.0, bodies delimited by the close),
a server that maps errors to HTTP statuses (the 2008 JSON-RPC-over-HTTP draft), one that
closes after each response, a python-lsp-jsonrpc server that sends requests of its own;
errors with id null (the server could not read the id) reaching the call that caused them.

The methods of section 7 live here (``spec``): the servers import this module.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import ipcnet
from ipcnet import rpc
from ipcnet.errors import Timeout, Unsupported
from serverkit import Server, _start

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.xdist_group("jsonrpc-conformance")

spec = rpc.Methods()


@spec.method
def subtract(minuend: int, subtrahend: int) -> int:
    return minuend - subtrahend


@spec.method(name="sum")
def total(*values: int) -> int:
    return sum(values)


@spec.method
def get_data() -> list[Any]:
    return ["hello", 5]


@spec.method(inline=True)
def echo(value: Any = None) -> Any:
    return value


@spec.method
def fail() -> None:
    raise RuntimeError("failed on purpose")


for _name in ("update", "notify_hello", "notify_sum"):
    spec.add(lambda *args: None, name=_name)


@contextmanager
def spec_server(address: str, *extra: str) -> Iterator[Server]:
    argv = [sys.executable, "-m", "ipcnet", "rpc", "serve", "test_jsonrpc_conformance:spec"]
    server = _start([*argv, address, "--model", "epoll", *extra], 1, cwd=str(HERE))
    try:
        yield server
    finally:
        assert server.stop() == 0, "\n".join(server.log)


@pytest.fixture(scope="module")
def tcp() -> Iterator[str]:
    with spec_server("tcp://127.0.0.1:0", "--max-frame", "65536") as server:
        yield server.url("tcp")


@pytest.fixture(scope="module")
def http() -> Iterator[str]:
    with spec_server("http://127.0.0.1:0/rpc") as server:
        yield server.url("tcp").replace("tcp://", "http://") + "/rpc"


# --- section 7, exactly -------------------------------------------------------------------

# (request as sent, the response the specification gives; None: no response at all)
EXAMPLES: list[tuple[str, Any]] = [
    (
        '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
        {"jsonrpc": "2.0", "result": 19, "id": 1},
    ),
    (
        '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
        {"jsonrpc": "2.0", "result": -19, "id": 2},
    ),
    (
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42},'
        ' "id": 3}',
        {"jsonrpc": "2.0", "result": 19, "id": 3},
    ),
    (
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23},'
        ' "id": 4}',
        {"jsonrpc": "2.0", "result": 19, "id": 4},
    ),
    ('{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}', None),
    ('{"jsonrpc": "2.0", "method": "foobar"}', None),
    (
        '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"},
    ),
    (
        '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None},
    ),
    (
        '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
    ),
    (
        '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
        '{"jsonrpc": "2.0", "method"]',
        {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None},
    ),
    ("[]", {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}),
    (
        "[1]",
        [{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}],
    ),
    (
        "[1,2,3]",
        [{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}]
        * 3,
    ),
    (
        '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
        '{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},'
        '{"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},'
        '{"foo": "boo"},'
        '{"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},'
        '{"jsonrpc": "2.0", "method": "get_data", "id": "9"}]',
        [
            {"jsonrpc": "2.0", "result": 7, "id": "1"},
            {"jsonrpc": "2.0", "result": 19, "id": "2"},
            {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
            {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
            {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"},
        ],
    ),
    (
        '[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},'
        '{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]',
        None,
    ),
]


def checked(reply: Any) -> Any:
    """``reply`` (or a batch of them) with each error's message text left out, once its
    shape is checked (§5, §5.1): jsonrpc "2.0", an id, result xor error, an integer code,
    a string message, data only as the one optional member."""
    if isinstance(reply, list):
        assert reply, "a batch reply is never an empty array"
        return sorted((checked(r) for r in reply), key=lambda r: json.dumps(r, sort_keys=True))
    assert reply["jsonrpc"] == "2.0" and "id" in reply, reply
    assert ("result" in reply) != ("error" in reply), reply
    assert set(reply) == {"jsonrpc", "id", "result" if "result" in reply else "error"}, reply
    if "error" in reply:
        error = dict(reply["error"])
        assert type(error["code"]) is int and isinstance(error.pop("message"), str), reply
        assert set(error) <= {"code", "data"}, reply
        return {**reply, "error": error}
    return reply


class Lines:
    """A newline-delimited JSON-RPC conversation on one TCP connection."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("tcp://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> Any:
        line = self.file.readline()
        assert line.endswith(b"\n"), f"the server closed: {line!r}"
        return json.loads(line)

    def ask(self, text: str | bytes) -> Any:
        """Send one request line; its reply, or None when it has none. A call to a handler
        that runs as a job goes right behind it: it is answered after everything before
        it, so when its reply comes first, the request had no reply (a notification)."""
        data = text.encode() if isinstance(text, str) else text
        self.send(data + b"\n" + b'{"jsonrpc": "2.0", "method": "get_data", "id": "next"}\n')
        first = self.reply()
        if first == self.SENTINEL:
            return None
        assert self.reply() == self.SENTINEL
        return first

    SENTINEL = {"jsonrpc": "2.0", "id": "next", "result": ["hello", 5]}

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def lines(tcp: str) -> Iterator[Lines]:
    conversation = Lines(tcp)
    yield conversation
    conversation.close()


def test_section_7_examples_over_tcp(lines: Lines) -> None:
    for request, expected in EXAMPLES:
        reply = lines.ask(request)
        assert (None if reply is None else checked(reply)) == (
            None if expected is None else checked(expected)
        ), request


def test_section_7_examples_over_http(http: str) -> None:
    httpx = pytest.importorskip("httpx")
    with httpx.Client(timeout=30) as client:
        for request, expected in EXAMPLES:
            answer = client.post(
                http, content=request, headers={"Content-Type": "application/json"}
            )
            if expected is None:  # notifications only: 204, no body
                assert (answer.status_code, answer.content) == (204, b""), request
            else:
                assert answer.status_code == 200, request
                assert answer.headers["content-type"] == "application/json"
                assert checked(answer.json()) == checked(expected), request


# --- the rules around them ----------------------------------------------------------------


def call(method: str, params: Any = None, rid: Any = 1, **members: Any) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid, **members}
    if params is not None:
        message["params"] = params
    return json.dumps(message)


def code_and_id(reply: Any) -> tuple[int, Any]:
    return checked(reply)["error"]["code"], reply["id"]


def test_ids_are_echoed_exactly(lines: Lines) -> None:
    for rid in ("abc", "", 7, -7, 0, None, 2.5, 2**64, -(2**63) - 1, 10**30):
        reply = lines.ask(call("echo", [1], rid))
        assert checked(reply)["result"] == 1 and type(reply["id"]) is type(rid), rid
        assert reply["id"] == rid, rid
    for rid in (True, [1], {"a": 1}):  # not a string, number or null: the id is unreadable
        assert code_and_id(lines.ask(call("echo", [1], rid))) == (-32600, None), rid


def test_integers_beyond_64_bits_are_exact_both_ways(tcp: str) -> None:
    with rpc.connect(tcp, timeout=30) as client:
        for value in (2**64, -(2**63) - 1, 10**40, [1, 2**70, {"n": -(10**25)}]):
            assert client.echo(value) == value


def test_jsonrpc_member_must_be_exactly_2_0(lines: Lines) -> None:
    for version in ("2.0 ", "2", 2.0, 2, "1.0", None):
        assert code_and_id(lines.ask(call("echo", [1], 5, jsonrpc=version))) == (-32600, 5)
    assert code_and_id(lines.ask('{"method": "echo", "id": 6}')) == (-32600, 6)
    # a notification that is not a valid request is answered (§7: "method": 1)
    assert code_and_id(lines.ask('{"jsonrpc": "1.0", "method": "echo"}')) == (-32600, None)


def test_params_by_position_and_by_name(lines: Lines) -> None:
    assert lines.ask(call("subtract", [42, 23]))["result"] == 19
    assert lines.ask(call("subtract", {"subtrahend": 23, "minuend": 42}))["result"] == 19
    for wrong in ([1], [1, 2, 3], {"minuend": 1}, {"minuend": 1, "subtrahend": 2, "x": 3}, {}):
        assert code_and_id(lines.ask(call("subtract", wrong))) == (-32602, 1), wrong
    assert code_and_id(lines.ask(call("subtract"))) == (-32602, 1)  # params left out
    assert code_and_id(lines.ask(call("get_data", [1]))) == (-32602, 1)
    assert code_and_id(lines.ask(call("sum", {"a": 1}))) == (-32602, 1)
    for shape in (None, 3, "bar", True):  # params present but not structured
        request = json.dumps({"jsonrpc": "2.0", "method": "sum", "params": shape, "id": 1})
        assert code_and_id(lines.ask(request)) == (-32600, 1), shape
    # wrong params in a notification: still no reply
    assert lines.ask('{"jsonrpc": "2.0", "method": "subtract", "params": [1]}') is None


def test_reserved_names_and_handler_errors(lines: Lines) -> None:
    for name in ("rpc.foo", "rpc.", "rpc.discover.x", "__class__", "RPC.DISCOVER"):
        assert code_and_id(lines.ask(call(name))) == (-32601, 1), name
    names = [m["name"] for m in checked(lines.ask(call("rpc.discover")))["result"]["methods"]]
    assert "subtract" in names and "rpc.discover" in names
    code, rid = code_and_id(lines.ask(call("fail", rid="f")))
    assert -32099 <= code <= -32000 and rid == "f"  # an implementation-defined server error
    assert lines.ask('{"jsonrpc": "2.0", "method": "fail"}') is None  # a failed notification


# OpenRPC 1.2.6 (the spec of rpc.discover): the members each object may have, besides x-*
OPENRPC = {
    "document": ({"openrpc", "info", "methods"}, {"servers", "components", "externalDocs"}),
    "method": (
        {"name", "params"},
        {
            "summary",
            "description",
            "paramStructure",
            "result",
            "errors",
            "tags",
            "links",
            "examples",
            "deprecated",
            "servers",
            "externalDocs",
        },
    ),
    "descriptor": ({"name", "schema"}, {"summary", "description", "required", "deprecated"}),
}


def openrpc(kind: str, obj: dict[str, Any]) -> None:
    required, optional = OPENRPC[kind]
    names = {k for k in obj if not k.startswith("x-")}
    assert required <= names <= required | optional, (kind, obj)


def test_rpc_discover_is_an_openrpc_document(lines: Lines) -> None:
    document = checked(lines.ask(call("rpc.discover")))["result"]
    openrpc("document", document)
    assert {"title", "version"} <= set(document["info"])
    methods = {m["name"]: m for m in document["methods"]}
    for method in methods.values():
        openrpc("method", method)
        for descriptor in [*method["params"], method.get("result", {"name": "r", "schema": {}})]:
            openrpc("descriptor", descriptor)
            assert isinstance(descriptor["schema"], dict)
    minuend = {"name": "minuend", "required": True, "schema": {"type": "integer"}}
    assert methods["subtract"]["params"][0] == {**minuend, "x-kind": "positional_or_keyword"}
    assert methods["subtract"]["result"]["schema"] == {"type": "integer"}


def test_bad_input_is_answered_and_the_connection_goes_on(lines: Lines) -> None:
    cases: list[tuple[bytes, int]] = [
        (b'{"jsonrpc": "2.0", "method": "echo", "params": ["\xff\xfe"], "id": 1}', -32700),
        (b'{"jsonrpc": "2.0", "method": "echo", "params": ["\\ud800"], "id": 1}', -32700),
        (b'{"jsonrpc": "2.0", "method": "echo", "params": [NaN], "id": 1}', -32700),
        (b'{"jsonrpc": "2.0", "method": "echo", "params": [1e400], "id": 1}', -32700),
        (b"[" * 30_000, -32700),
        (b'"a string"', -32600),
        (b"null", -32600),
        (b"x" * 70_000, -32600),  # a line over the server's --max-frame of 64 KiB
    ]
    for data, expected in cases:
        assert code_and_id(lines.ask(data)) == (expected, None), data[:40]
    # a pretty-printed request is not one line: each line is its own (bad) message
    lines.send(b'{"jsonrpc": "2.0",\n "method": "echo", "id": 1}\n')
    assert [code_and_id(lines.reply()) for _ in range(2)] == [(-32700, None)] * 2
    # a newline inside a string is always escaped in JSON: the line is one request
    assert lines.ask(call("echo", ["two\nlines\r\n"]))["result"] == "two\nlines\r\n"


# --- HTTP ---------------------------------------------------------------------------------


def test_head_gets_no_content_and_the_connection_stays_in_step(http: str) -> None:
    """RFC 9110 §9.3.2: a response to HEAD has no content, or the next response on the
    connection is read from the wrong place (httpx, reusing its connection, reads it
    exactly as h11 does: "illegal status line")."""
    httpx = pytest.importorskip("httpx")
    with httpx.Client(timeout=30) as client:
        head = client.head(http)
        assert (head.status_code, head.headers["allow"], head.content) == (405, "POST", b"")
        answer = client.post(
            http, content=call("subtract", [5, 3]), headers={"Content-Type": "application/json"}
        )
        assert answer.json() == {"jsonrpc": "2.0", "id": 1, "result": 2}
        assert client.head(http).status_code == 405


def test_absolute_form_targets_are_accepted(http: str) -> None:
    """RFC 9112 §3.2.2: a server MUST accept ``POST http://host/path`` (what a client sends
    through a proxy: httpx told the server is its proxy sends it so)."""
    httpx = pytest.importorskip("httpx")
    base = http.removesuffix("/rpc")
    with httpx.Client(proxy=base, timeout=30) as client:
        answer = client.post(
            http, content=call("subtract", [7, 3]), headers={"Content-Type": "application/json"}
        )
    assert answer.json() == {"jsonrpc": "2.0", "id": 1, "result": 4}


def test_a_body_cut_short_by_eof_is_400(http: str) -> None:
    """RFC 9112 §8: a body the client's EOF cut short is an incomplete message; the client
    that half-closed still reads the 400, and the server goes on serving."""
    host, port = http.removeprefix("http://").split("/")[0].rsplit(":", 1)
    body = call("subtract", [5, 3]).encode()
    head = (
        f"POST /rpc HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    for sent in (head.encode() + body[:10], head.encode()[:30]):
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(sent)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in answer, sent
    httpx = pytest.importorskip("httpx")
    reply = httpx.post(http, content=body, headers={"Content-Type": "application/json"})
    assert reply.json()["result"] == 2


# --- the client against servers nobody here wrote ------------------------------------------


@contextmanager
def http_peer(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _jsonrpcserver_methods() -> Callable[[str], str]:
    jsonrpcserver = pytest.importorskip("jsonrpcserver")
    from jsonrpcserver import Error, Success

    def add(a: int, b: int) -> Any:
        return Success(a + b)

    def fail() -> Any:
        return Error(7, "failed on purpose", {"why": "a test"})

    methods = {"add": add, "fail": fail}
    return lambda text: str(jsonrpcserver.dispatch(text, methods=methods))


def test_http_client_against_jsonrpcservers_http_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """jsonrpcserver's own RequestHandler (``jsonrpcserver.server``): HTTP/1.0, no
    Content-Length, the body ends when the server closes (RFC 9112 §6.3 item 8)."""
    server = pytest.importorskip("jsonrpcserver.server")
    dispatch = _jsonrpcserver_methods()
    monkeypatch.setattr(server, "dispatch", dispatch)  # not its global registry: these
    with http_peer(server.RequestHandler) as url, rpc.connect(url, timeout=30) as client:
        assert client.add(1, 2) == 3
        assert client.add(a=3, b=4) == 7
        assert client.with_timeout(20).add(5, 5) == 10
        with pytest.raises(rpc.RPCError) as info:
            client.fail()
        assert (info.value.code, info.value.message, info.value.data) == (
            7,
            "failed on purpose",
            {"why": "a test"},
        )
        for wrong, code in ((lambda: client.add(1), -32602), (lambda: client.nope(), -32601)):
            with pytest.raises(rpc.RPCError) as info:
                wrong()
            assert info.value.code == code
        [three, error, seven] = client.batch([("add", [1, 2]), ("nope", None), ("add", [3, 4])])
        assert (three, seven) == (3, 7) and isinstance(error, rpc.RPCError)
        assert error.code == -32601
        assert client.batch([]) == []
        client.notify("add", 1, 2)
        with pytest.raises(Unsupported, match="pipeline"):
            client.submit("add", [1, 2])  # not a remote method named submit


class _StatusMapping(BaseHTTPRequestHandler):
    """A server of the 2008 JSON-RPC-over-HTTP draft: errors mapped to HTTP statuses (500,
    404), the error object still in the body; a plain 503 page for anything at /down."""

    protocol_version = "HTTP/1.1"
    dispatch: Callable[[str], str]

    def do_POST(self) -> None:
        text = self.rfile.read(int(self.headers["Content-Length"])).decode()
        body = b"<h1>down</h1>" if self.path == "/down" else self.dispatch(text).encode()
        status = 503 if self.path == "/down" else 200
        if b'"error"' in body:
            status = 404 if b"-32601" in body else 500
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_http_client_reads_errors_sent_with_an_error_status() -> None:
    dispatch = _jsonrpcserver_methods()
    handler = type("Handler", (_StatusMapping,), {"dispatch": staticmethod(dispatch)})
    with http_peer(handler) as url, rpc.connect(url, timeout=30) as client:
        with pytest.raises(rpc.RPCError) as info:
            client.fail()
        assert (info.value.code, info.value.data) == (7, {"why": "a test"})
        with pytest.raises(rpc.RPCError) as info:
            client.nope()
        assert info.value.code == -32601
        assert client.add(2, 2) == 4  # the same connection goes on
    with http_peer(handler) as url, rpc.connect(url + "down", timeout=30) as client:
        with pytest.raises(rpc.RPCError, match="HTTP 503"):
            client.add(1, 2)


def test_client_answers_what_a_language_server_sends_it() -> None:
    """A peer may be client and server at once (the specification's overview): a
    python-lsp-jsonrpc server sends a notification and a request to the editor while it
    answers a call. The notification is ignored, the request answered Method Not Found,
    and the call's result still comes."""
    streams = pytest.importorskip("pylsp_jsonrpc.streams")
    endpoint_module = pytest.importorskip("pylsp_jsonrpc.endpoint")
    exceptions = pytest.importorskip("pylsp_jsonrpc.exceptions")
    asked: list[Any] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        reader = streams.JsonRpcStreamReader(conn.makefile("rb"))
        writer = streams.JsonRpcStreamWriter(conn.makefile("wb"))

        def add(params: Any) -> Any:
            endpoint.notify("window/logMessage", {"type": 3, "message": "adding"})
            asked.append(endpoint.request("workspace/configuration", {"items": []}))
            return params[0] + params[1]

        endpoint = endpoint_module.Endpoint({"add": add}, writer.write)
        try:
            reader.listen(endpoint.consume)
        finally:
            endpoint.shutdown()
            writer.close()
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with rpc.connect(url, framing="content-length", timeout=30) as client:
            assert client.add(1, 2) == 3
            with pytest.raises(exceptions.JsonRpcException) as info:
                asked[0].result(30)
            assert info.value.code == -32601
            assert client.add(3, 4) == 7
    finally:
        thread.join(10)
        listener.close()


class _OneRequestEach(_StatusMapping):
    """Keep-alive in name only: it closes each connection after one response, without a
    Connection: close (as servers with a keep-alive timeout of zero, or restarted, do)."""

    closed = threading.Event()

    def do_POST(self) -> None:
        super().do_POST()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True
        self.closed.set()


def test_http_client_reopens_a_connection_the_server_closed() -> None:
    """The client sees the close before it reuses the connection. It waits for the close
    here: a close that comes only after the next call was written cannot be told from a
    server that ran the call and died, and a POST is never sent again (RFC 9112 §9.3.1.1;
    tests/test_rpc_http_audit6.py)."""
    dispatch = _jsonrpcserver_methods()
    handler = type("Handler", (_OneRequestEach,), {"dispatch": staticmethod(dispatch)})
    with http_peer(handler) as url, rpc.connect(url, timeout=30) as client:
        for i in range(3):
            handler.closed.clear()
            assert client.add(i, 1) == i + 1
            assert handler.closed.wait(10)


# --- errors with id null reach the caller ---------------------------------------------------


def test_an_error_with_id_null_fails_the_call_that_caused_it(tcp: str) -> None:
    """The server cannot read the id of a request over its frame limit, or of a batch over
    its limit: it answers an error with id null (§5), and the one call in flight gets it
    instead of waiting for ever."""
    with rpc.connect(tcp, timeout=30, max_frame=1 << 20) as client:
        with pytest.raises(rpc.RPCError) as info:
            client.echo("x" * 70_000)  # the server's --max-frame is 64 KiB
        assert info.value.code == -32600
        results = client.batch([("echo", [i]) for i in range(1001)])  # the limit is 1000
        assert len(results) == 1001 and all(isinstance(r, rpc.RPCError) for r in results)
        assert client.echo("still here") == "still here" and client.dropped == 0

    async def asyncio_client() -> None:
        async with await rpc.aio.connect(tcp, timeout=30, max_frame=1 << 20) as client:
            with pytest.raises(rpc.RPCError) as info:
                await client.echo("x" * 70_000)
            assert info.value.code == -32600
            results = await client.batch([("echo", [i]) for i in range(1001)])
            assert len(results) == 1001 and all(isinstance(r, rpc.RPCError) for r in results)
            assert await client.echo("still here") == "still here" and client.dropped == 0

    asyncio.run(asyncio_client())


NULL_ERROR = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "unread"}}


@contextmanager
def line_peer(answer: Callable[[Any], list[Any]]) -> Iterator[str]:
    """A newline-delimited JSON peer for one connection: ``answer(message)`` for each line
    is what it sends back (each item one line)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as stream:
            for line in stream:
                out = b"".join(json.dumps(m).encode() + b"\n" for m in answer(json.loads(line)))
                conn.sendall(out)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(10)


def test_an_error_with_id_null_is_never_given_to_a_later_call() -> None:
    """After a call timed out, an error with id null may be its late answer: a later call
    must not take it (its own reply follows)."""

    def answer(message: Any) -> list[Any]:
        if message["method"] == "first":
            return []  # never answered by id
        return [NULL_ERROR, {"jsonrpc": "2.0", "id": message["id"], "result": "mine"}]

    with line_peer(answer) as url, rpc.connect(url) as client:
        with pytest.raises(Timeout):
            client.request("first", timeout=0.2)
        assert client.request("second", timeout=30) == "mine"
        assert client.dropped == 1


def test_an_error_with_id_null_in_a_batch_reply_is_the_unanswered_calls() -> None:
    """A batch answered [an error with id null, the reply to the first call]: the error is
    the second call's, the one whose id the server could not read."""

    def answer(batch: Any) -> list[Any]:
        return [[NULL_ERROR, {"jsonrpc": "2.0", "id": batch[0]["id"], "result": "one"}]]

    with line_peer(answer) as url, rpc.connect(url, timeout=30) as client:
        one, two = client.batch([("a", None), ("b", None)])
        assert one == "one" and isinstance(two, rpc.RPCError) and two.code == -32600

    async def asyncio_client(url: str) -> None:
        async with await rpc.aio.connect(url, timeout=30) as client:
            one, two = await client.batch([("a", None), ("b", None)])
            assert one == "one" and isinstance(two, rpc.RPCError) and two.code == -32600

    with line_peer(answer) as url:
        asyncio.run(asyncio_client(url))


def _late_batch_peer() -> AbstractContextManager[str]:
    """A peer that leaves a batch unanswered and sends its replies, late, before the reply
    to the next call."""
    late: list[Any] = []

    def answer(message: Any) -> list[Any]:
        if isinstance(message, list):
            late.extend({"jsonrpc": "2.0", "id": m["id"], "result": "late"} for m in message)
            return []
        return [*late, {"jsonrpc": "2.0", "id": message["id"], "result": "mine"}]

    return line_peer(answer)


def test_a_batch_that_times_out_forgets_every_call_in_it() -> None:
    """Every call of a timed-out batch stops waiting, not only the first: their late replies
    are dropped (before, the rest stayed registered for ever and took theirs silently)."""
    with _late_batch_peer() as url, rpc.connect(url) as client:
        with pytest.raises(Timeout, match="no reply to a"):
            client.batch([("a", None), ("b", None)], timeout=0.2)
        assert client.request("next", timeout=30) == "mine"
        assert client.dropped == 2

    async def asyncio_client(url: str) -> None:
        async with await rpc.aio.connect(url) as client:
            with pytest.raises(Timeout, match="no reply to a"):
                await client.batch([("a", None), ("b", None)], timeout=0.2)
            assert await client.request("next", timeout=30) == "mine"
            assert client.dropped == 2

    with _late_batch_peer() as url:
        asyncio.run(asyncio_client(url))


# --- codecs and framings ------------------------------------------------------------------


def test_msgpack_is_never_newline_framed() -> None:
    """msgpack payloads hold any byte, b"\\n" too (10 is 0x0a): by default they are
    length-prefixed on sockets, and newline framing for them is refused."""
    pytest.importorskip("msgpack")
    with ipcnet.listen("tcp://127.0.0.1:0") as listener:
        url = str(listener.address)
        service = rpc.make_service(spec, url, codec="msgpack")  # the framing tcp:// gets

        def serve_one() -> None:
            rpc.serve_channel(service, listener.accept())

        thread = threading.Thread(target=serve_one, daemon=True)
        thread.start()
        with rpc.connect(url, codec="msgpack", timeout=30) as client:
            assert client.echo(10) == 10 and client.echo(b"\n\n") == b"\n\n"
            assert client.subtract(20, 10) == 10
        thread.join(30)
    with pytest.raises(Unsupported, match="newline"):
        rpc.connect("tcp://127.0.0.1:1", codec="msgpack", framing="newline")
