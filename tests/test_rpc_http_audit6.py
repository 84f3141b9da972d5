"""JSON-RPC over HTTP, audit round 6: what the earlier tests left unchecked.

The server against RFC 9112 (chunked request bodies from the clients that send them, §7.1;
closing in stages after an error, §9.6; no 100 Continue to HTTP/1.0, RFC 9110 §10.1.1;
``OPTIONS *``) and the client against RFC 9112 §9.3.1.1 (a POST is never re-sent once it
may have been processed; a dropped keep-alive connection is seen before it is reused, as
urllib3 and Go's net/http do) and RFC 9110 §7.2 / §11 (userinfo in the URL is credentials,
never part of Host). Peers: curl, httpx, http.client, uvicorn (when installed).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import ipcnet
from ipcnet import rpc
from ipcnet.errors import Broken, Timeout
from ipcnet.protocols.base import CLOSE, SHUTDOWN_WRITE, Peer
from ipcnet.protocols.http import Limits
from ipcnet.protocols.jsonrpc.http import JsonRpcHttpService
from test_robust_differential import _exchange as exchange
from test_robust_differential import _served

pytestmark = pytest.mark.xdist_group("rpc-http-audit6")

CALL = b'{"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": 1}'
HEAD = b"POST /rpc HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
CHUNKED = HEAD + b"Transfer-Encoding: chunked\r\n"
MAX_BODY = 64 * 1024


def _service(calls: list[Any] | None = None) -> JsonRpcHttpService:
    methods = rpc.Methods()
    methods.add(lambda a, b: a + b, name="add")
    methods.add(lambda value=None: value, name="echo")
    counted = calls if calls is not None else []
    methods.add(lambda: counted.append(1) or len(counted), name="count")
    methods.add(lambda n: "x" * n, name="big")
    limits = Limits(header_timeout=5.0, linger_timeout=2.0)
    return JsonRpcHttpService(rpc.make_service(methods), "/rpc", MAX_BODY, limits=limits)


@pytest.fixture(scope="module", params=["epoll", "thread", "asyncio"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    with _served(_service(), request.param) as (_, bound):
        yield bound


def chunks(body: bytes, size: int = 7) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
                    for i in range(0, len(body), size)) + b"0\r\n\r\n"  # fmt: skip


def answers(actions: Any) -> bytes:
    return b"".join(a for a in actions if isinstance(a, bytes))


def result(answer: bytes) -> Any:
    return json.loads(answer.partition(b"\r\n\r\n")[2])["result"]


# --- chunked request bodies (RFC 9112 §7.1) -----------------------------------------------


def test_chunked_bodies_from_real_clients(port: int) -> None:
    """httpx with a generator body, http.client with encode_chunked, curl told to chunk:
    each sends ``Transfer-Encoding: chunked`` and no Content-Length; the server answered
    411 Length Required, though a recipient MUST parse the chunked coding."""
    httpx = pytest.importorskip("httpx")
    url = f"http://127.0.0.1:{port}/rpc"

    def pieces() -> Iterator[bytes]:
        yield CALL[:10]
        yield CALL[10:]

    with httpx.Client(timeout=30) as client:
        for _ in range(2):  # the connection stays in step after a chunked body
            reply = client.post(url, content=pieces(), headers={"Content-Type": "application/json"})
            assert reply.status_code == 200 and reply.json()["result"] == 5
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/rpc", body=iter([CALL[:5], CALL[5:]]), encode_chunked=True,
                     headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})  # fmt: skip
        answer = conn.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["result"] == 5
    finally:
        conn.close()
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "30", "-H", "Transfer-Encoding: chunked",
         "-H", "Content-Type: application/json", "--data-binary", "@-", url],
        input=CALL, capture_output=True, timeout=60,
    )  # fmt: skip
    assert json.loads(done.stdout)["result"] == 5, done.stderr


def test_chunked_body_with_extensions_trailers_and_a_pipelined_request(port: int) -> None:
    body = (
        b"3;name=value;quoted=\"a \\\" b\" ; bare\r\n" + CALL[:3] + b"\r\n"
        + b"000A\r\n" + CALL[3:13] + b"\r\n"
        + b"%X\r\n" % len(CALL[13:]) + CALL[13:] + b"\r\n"
        + b"0;last\r\nX-Checksum: abc\r\nContent-Length: 1\r\n\r\n"  # trailers reframe nothing
    )  # fmt: skip
    second = HEAD + b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(CALL), CALL)
    answer = exchange(port, CHUNKED + b"\r\n" + body + second, eof=False)
    assert answer.count(b"HTTP/1.1 200 OK") == 2, answer
    assert result(answer.rpartition(b"HTTP/1.1 200 OK")[2]) == 5
    # and one byte at a time
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for byte in CHUNKED + b"Connection: close\r\n\r\n" + chunks(CALL, 3):
            sock.send(bytes([byte]))
        out = b""
        while data := sock.recv(65536):
            out += data
    assert result(out) == 5


@pytest.mark.parametrize(
    "body",
    [
        b"0x5\r\n" + CALL[:5] + b"\r\n0\r\n\r\n",  # a 0x prefix
        b" 5\r\n" + CALL[:5] + b"\r\n0\r\n\r\n",  # space before the size
        b"5 \r\n" + CALL[:5] + b"\r\n0\r\n\r\n",  # space after it, no extension
        b"-5\r\n" + CALL[:5] + b"\r\n0\r\n\r\n",
        b"+5\r\n" + CALL[:5] + b"\r\n0\r\n\r\n",
        b"5\n" + CALL[:5] + b"\r\n0\r\n\r\n",  # a bare LF
        b"5\r\n" + CALL[:5] + b"XX0\r\n\r\n",  # data not followed by CRLF
        b"5;\r\n" + CALL[:5] + b"\r\n0\r\n\r\n",  # an extension without a name
        b"5;a=\r\n" + CALL[:5] + b"\r\n0\r\n\r\n",  # ... or with an empty value
        b'5;a="x\r\n' + CALL[:5] + b"\r\n0\r\n\r\n",  # an unterminated quoted-string
        b"5\r\n" + CALL[:5] + b"\r\n0\r\n bad trailer\r\n\r\n",  # obs-fold in the trailer
        b"5\r\n" + CALL[:5] + b"\r\n0\r\nno colon\r\n\r\n",
        b"\r\n0\r\n\r\n",  # an empty size
    ],
)
def test_bad_chunk_syntax_is_400_and_closes(port: int, body: bytes) -> None:
    answer = exchange(port, CHUNKED + b"\r\n" + body, eof=False)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in answer, answer
    assert answer.count(b"HTTP/1.1 ") == 1


def test_chunked_limits(port: int) -> None:
    """The body is bounded as with a Content-Length (413, refused before its data comes,
    digits counted before they are converted), and so are chunk lines, extensions and
    trailers (RFC 9112 §7.1.1: 'a server ought to limit the total length of chunk
    extensions')."""
    big = exchange(port, CHUNKED + b"\r\n" + b"%x\r\n" % (MAX_BODY + 1))
    assert big.startswith(b"HTTP/1.1 413 "), big
    many = exchange(port, CHUNKED + b"\r\n" + b"8000\r\n" + b"x" * 0x8000 + b"\r\n8001\r\n")  # fmt: skip
    assert many.startswith(b"HTTP/1.1 413 "), many
    huge = exchange(port, CHUNKED + b"\r\n" + b"f" * 40 + b"\r\n")
    assert huge.startswith(b"HTTP/1.1 413 "), huge
    line = exchange(port, CHUNKED + b"\r\n1;" + b"a" * 10_000)
    assert line.startswith(b"HTTP/1.1 400 "), line
    extensions = b"".join(b"1;%s\r\nx\r\n" % (b"e" * 1000) for _ in range(20))
    answer = exchange(port, CHUNKED + b"\r\n" + extensions)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    trailer = b"0\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(300))
    answer = exchange(port, CHUNKED + b"\r\n" + trailer)
    assert answer.startswith(b"HTTP/1.1 431 "), answer


def test_chunked_body_with_expect_100_continue(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(CHUNKED + b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(chunks(CALL))
        out = b""
        while data := sock.recv(65536):
            out += data
    assert result(out) == 5


def test_a_refused_chunked_request_is_answered_then_the_connection_ends(port: int) -> None:
    """Its body is not read: the answer says Connection: close (the chunks are never taken
    for a next request)."""
    refused = CHUNKED.replace(b"application/json", b"text/plain") + b"\r\n" + chunks(CALL)
    answer = exchange(port, refused + HEAD + b"Content-Length: 2\r\n\r\n{}", eof=False)
    assert answer.startswith(b"HTTP/1.1 415 ") and b"Connection: close" in answer
    assert answer.count(b"HTTP/1.1 ") == 1


# --- closing in stages (RFC 9112 §9.6) ----------------------------------------------------


def test_an_error_answer_lingers_instead_of_closing_at_once() -> None:
    """A 413 (or 400) for a request whose body the client is still sending: closing at
    once, with its bytes unread, resets the connection, and a client still writing
    (http.client, urllib) saw a broken pipe instead of the 413. The session shuts down
    writing and reads on, dropping, until the client's EOF."""
    session, _ = _service().start(Peer(None, None))
    head = HEAD + b"Content-Length: %d\r\n\r\n" % (10 * MAX_BODY)
    actions = session.feed(head + b"x" * 1000)
    assert isinstance(actions, list) and answers(actions).startswith(b"HTTP/1.1 413 ")
    assert SHUTDOWN_WRITE in actions and CLOSE not in actions
    assert session.feed(b"x" * 100_000) is None  # dropped
    assert session.feed_eof() == CLOSE
    session, _ = _service().start(Peer(None, None))
    actions = session.feed(CHUNKED + b"\r\nzz\r\n" + b"x" * 1000)
    assert answers(actions).startswith(b"HTTP/1.1 400 ") and SHUTDOWN_WRITE in actions
    assert CLOSE not in actions and session.on_timer() == CLOSE  # the linger timeout


@pytest.mark.parametrize("model", ["epoll", "thread"])
def test_http_client_reads_the_413_of_a_body_it_is_still_sending(model: str) -> None:
    body = b'{"jsonrpc": "2.0", "method": "echo", "params": ["' + b"x" * 900_000 + b'"], "id": 1}'
    with _served(_service(), model) as (_, bound):
        for _ in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", bound, timeout=30)
            try:
                conn.request(
                    "POST", "/rpc", body=body, headers={"Content-Type": "application/json"}
                )
                assert conn.getresponse().status == 413
            finally:
                conn.close()


# --- HTTP/1.0, OPTIONS * ------------------------------------------------------------------


def test_no_100_continue_to_an_http_1_0_client(port: int) -> None:
    """RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST be ignored
    (§15.2: no 1xx to an HTTP/1.0 client); the server sent 100 Continue."""
    head = b"POST /rpc HTTP/1.0\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(CALL))
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(100)  # nothing until the body comes
        sock.settimeout(10)
        sock.sendall(CALL)
        out = b""
        while data := sock.recv(65536):
            out += data
    assert out.startswith(b"HTTP/1.1 200 ") and result(out) == 5


def test_options_asterisk_is_about_the_server(port: int) -> None:
    """RFC 9112 §3.2.4, RFC 9110 §9.3.7: ``OPTIONS *`` is a valid request (curl
    --request-target '*' sends it); it was a 400 that closed the connection."""
    both = b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n" + HEAD
    answer = exchange(
        port,
        both + b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(CALL), CALL),
        eof=False,
    )
    assert answer.startswith(b"HTTP/1.1 200 ") and b"Allow: POST\r\n" in answer
    assert answer.count(b"HTTP/1.1 200 ") == 2 and result(answer.rpartition(b"HTTP/1.1")[2]) == 5


# --- the client: re-sending, dropped connections, credentials -----------------------------


class _Counting(BaseHTTPRequestHandler):
    """An HTTP/1.1 JSON-RPC peer (http.server) whose ``count`` method counts its runs; the
    hooks below make it misbehave."""

    protocol_version = "HTTP/1.1"
    runs: list[int]
    closed: threading.Event
    seen: list[dict[str, str]]

    def do_POST(self) -> None:
        self.seen.append(dict(self.headers.items()))
        message = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.runs.append(1)
        self.requests = getattr(self, "requests", 0) + 1
        if self.crash():
            self.close_connection = True  # it ran the method, then died before answering
            return
        body = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": len(self.runs)})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())
        how = self.close_after()
        if how == "fin":  # idle: its keep-alive timeout ran out
            self.connection.shutdown(socket.SHUT_RDWR)
        elif how == "reset":  # ... or it was killed
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            os.close(self.connection.detach())
        if how:
            self.close_connection = True
            self.closed.set()

    def crash(self) -> bool:
        return False

    def close_after(self) -> str:
        return ""

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def counting_peer(**hooks: Any) -> Iterator[tuple[str, type[_Counting]]]:
    attrs = {"runs": [], "closed": threading.Event(), "seen": []}
    attrs.update({name: (lambda self, f=f: f(self)) for name, f in hooks.items()})
    handler = type("Handler", (_Counting,), attrs)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/rpc", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_post_that_may_have_run_is_never_sent_again() -> None:
    """RFC 9112 §9.3.1.1: a client MUST NOT automatically retry a non-idempotent request
    (POST) without a means to know it was never applied. The server ran the call on a
    reused keep-alive connection, then closed it unanswered: the client sent it again on a
    new connection, and the method ran twice. Now the caller gets Broken (as from Go's
    net/http and requests), and the next call goes on a new connection."""
    with counting_peer(crash=lambda self: self.requests == 2) as (url, handler):
        with rpc.connect(url, timeout=30) as client:
            assert client.count() == 1
            with pytest.raises(Broken, match="may have"):
                client.count()
            assert len(handler.runs) == 2  # not 3
            assert client.count() == 3


def test_a_connection_the_server_dropped_while_idle_is_not_reused() -> None:
    """urllib3's is_connection_dropped, Go's background read: a kept-alive connection the
    server has since closed (FIN, or a reset) is seen before a call is written to it."""
    for how in ("fin", "reset"):
        with counting_peer(close_after=lambda self, how=how: how) as (url, handler):
            with rpc.connect(url, timeout=30) as client:
                for i in range(1, 4):
                    assert client.count() == i
                    assert handler.closed.wait(10)
                    handler.closed.clear()
            assert len(handler.runs) == 3, how


def test_userinfo_in_the_url_is_basic_credentials_not_host() -> None:
    """RFC 9110 §7.2: Host is uri-host [":" port], never userinfo (the client sent
    ``Host: user:pw@127.0.0.1:N``, which servers refuse with 400); the userinfo is what
    curl and httpx make of it, Basic credentials (RFC 7617), percent-decoded; the password
    never appears in an error message."""
    httpx = pytest.importorskip("httpx")
    with counting_peer() as (url, handler):
        secret = url.replace("http://", "http://u%40x:p%3Aw@")
        with rpc.connect(secret, timeout=30) as client:
            assert client.count() == 1
        httpx.post(secret, json={"jsonrpc": "2.0", "method": "count", "id": 1}, timeout=30)
        ours, theirs = handler.seen
        assert ours["Host"] == theirs["Host"] == url.split("/")[2]
        assert ours["Authorization"] == theirs["Authorization"]
    plain = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)  # no do_POST: 501
    thread = threading.Thread(target=plain.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        where = f"http://u%40x:p%3Aw@127.0.0.1:{plain.server_address[1]}/rpc"
        with rpc.connect(where, timeout=30) as client:
            with pytest.raises(rpc.RPCError, match="HTTP 501") as info:
                client.count()
            assert "u%40x:***@" in str(info.value) and "p%3Aw" not in str(info.value)
            assert "p%3Aw" not in repr(client)
    finally:
        plain.shutdown()
        plain.server_close()
        thread.join(10)


def test_the_call_timeout_bounds_writing_the_request() -> None:
    """A server that never reads: the request body (more than the socket buffers hold)
    blocked the caller for ever, whatever its timeout (it applied to the reading only)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:  # never accepts
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/rpc"
        with rpc.connect(url, timeout=0.5) as client, pytest.raises(Timeout):
            client.echo("x" * 15_000_000)


def test_an_early_answer_is_read_though_the_body_could_not_be_sent() -> None:
    """RFC 9112 §9.5: a client sending a body SHOULD watch for an error response meanwhile.
    The server answers 413 to the head and stops reading a body of 12 MB; httpx reports
    the 413, ipcnet reported 'peer closed: write to ...'."""
    httpx = pytest.importorskip("httpx")
    big = "x" * 12_000_000
    with _served(_service(), "epoll") as (_, bound):
        url = f"http://127.0.0.1:{bound}/rpc"
        call = {"jsonrpc": "2.0", "method": "echo", "params": [big], "id": 1}
        assert httpx.post(url, json=call, timeout=30).status_code == 413
        with rpc.connect(url, timeout=30) as client:
            for _ in range(2):
                with pytest.raises(rpc.RPCError, match="HTTP 413"):
                    client.echo(big)
            assert client.add(1, 2) == 3


# --- the client against uvicorn (starlette): chunked answers, statuses, idle closes -------


@contextmanager
def uvicorn_peer(parser: str) -> Iterator[str]:
    """jsonrpcserver's dispatch in a starlette app under uvicorn (h11 or httptools): at
    /chunked the reply is streamed (Transfer-Encoding: chunked), at /status errors are
    mapped to 404/500 with the error object in the body; Content-Type has a charset; an
    idle connection is closed after 0.2 s."""
    uvicorn = pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    jsonrpcserver = pytest.importorskip("jsonrpcserver")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    def add(a: int, b: int) -> Any:
        return jsonrpcserver.Success(a + b)

    def fail() -> Any:
        return jsonrpcserver.Error(7, "failed on purpose", {"why": "a test"})

    async def endpoint(request: Request) -> Response:
        text = jsonrpcserver.dispatch(
            (await request.body()).decode(), methods={"add": add, "fail": fail}
        )
        kind = "application/json; charset=utf-8"
        if not text:
            return Response(status_code=204)
        if request.path_params["mode"] == "chunked":

            async def pieces() -> Any:
                for i in range(0, len(text), 5):
                    yield text[i : i + 5].encode()

            return StreamingResponse(pieces(), media_type=kind)
        status = 200
        if request.path_params["mode"] == "status" and '"error"' in text:
            status = 404 if "-32601" in text else 500
        return Response(text, status_code=status, media_type=kind)

    app = Starlette(routes=[Route("/{mode}", endpoint, methods=["POST"])])
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=parser, log_level="warning", timeout_keep_alive=0.2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            thread.join(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_client_against_uvicorn(parser: str) -> None:
    with uvicorn_peer(parser) as base:
        for mode in ("plain", "chunked", "status"):
            with rpc.connect(f"{base}/{mode}", timeout=30) as client:
                assert client.add(1, 2) == 3
                with pytest.raises(rpc.RPCError) as info:
                    client.fail()
                assert (info.value.code, info.value.data) == (7, {"why": "a test"})
                with pytest.raises(rpc.RPCError) as info:
                    client.nope()
                assert info.value.code == -32601
                three, missing = client.batch([("add", [1, 2]), ("nope", None)])
                assert three == 3 and isinstance(missing, rpc.RPCError)
                client.notify("add", 1, 2)  # 204
                threading.Event().wait(0.5)  # uvicorn closes the idle connection meanwhile
                assert client.add(2, 2) == 4, mode


# --- replies over the request limit -------------------------------------------------------


@pytest.mark.parametrize("model", ["epoll", "thread"])
def test_a_batch_whose_replies_together_are_too_large_is_still_answered(model: str) -> None:
    """Over HTTP the limit is a request body's (413); two replies of 40 KB each under a
    64 KiB limit made the batch's array 'too large', and it was answered 204 No Content,
    which says the body held only notifications: the calls had no replies at all. A
    reply, or a batch of them, is now as large as it is; JSON-RPC §6: the server responds
    with an Array holding a Response for each call."""
    with _served(_service(), model) as (_, bound):
        url = f"http://127.0.0.1:{bound}/rpc"
        with rpc.connect(url, timeout=30) as client:
            assert client.batch([("big", [40_000]), ("big", [40_000])]) == ["x" * 40_000] * 2
            assert client.big(200_000) == "x" * 200_000


def test_over_a_stream_a_batch_too_large_together_gets_errors_not_silence() -> None:
    """Over a byte stream the frame limit binds replies too (the peer's limit); each reply
    fit, the array did not, and the batch got no answer at all (the client waited for
    ever). Now each call gets an Internal Error that says why; and when even those do not
    fit, one error with id null (the error of every call in the batch, §5)."""
    methods = rpc.Methods()
    methods.add(lambda n: "x" * n, name="big")
    with ipcnet.listen("tcp://127.0.0.1:0") as listener:
        url = str(listener.address)
        service = rpc.make_service(methods, url, max_frame=65536)
        thread = threading.Thread(
            target=lambda: rpc.serve_channel(service, listener.accept()), daemon=True
        )
        thread.start()
        with rpc.connect(url, timeout=10, max_frame=1 << 20) as client:
            first, second = client.batch([("big", [40_000]), ("big", [40_000])])
            assert isinstance(first, rpc.RPCError) and isinstance(second, rpc.RPCError)
            assert first.code == rpc.INTERNAL_ERROR and "together" in first.message
            many = client.batch([("big", [100])] * 900)  # 900 errors do not fit either
            assert all(isinstance(r, rpc.RPCError) for r in many) and len(many) == 900
            assert client.big(10) == "x" * 10
        thread.join(10)
