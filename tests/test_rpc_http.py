"""JSON-RPC 2.0 over HTTP POST (``ipcnet rpc serve MOD:OBJ http://HOST:PORT/PATH``): interop
with clients nobody here wrote (jsonrpcclient over httpx, curl), the status codes of the
JSON-RPC-over-HTTP convention, keep-alive, and ``ipcnet rpc call`` / ``rpc.connect``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ipcnet import rpc
from test_rpc_api import HERE, rpc_server

httpx = pytest.importorskip("httpx")
jsonrpcclient = pytest.importorskip("jsonrpcclient")

pytestmark = pytest.mark.xdist_group("rpc-http")


@pytest.fixture(scope="module", params=["epoll", "thread"])
def url(request) -> Iterator[str]:
    with rpc_server("http://127.0.0.1:0/rpc", model=request.param) as server:
        yield server.url("tcp").replace("tcp://", "http://") + "/rpc"


def post(url: str, body: bytes, content_type: str = "application/json") -> httpx.Response:
    return httpx.post(url, content=body, headers={"Content-Type": content_type}, timeout=30)


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    argv = ["curl", "-sS", "--max-time", "30", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def raw(url: str, data: bytes) -> bytes:
    """Send ``data`` on a plain socket; all the server answers until it closes."""
    host, port = url.removeprefix("http://").split("/")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


# --- third-party clients ------------------------------------------------------------------


def test_jsonrpcclient_over_httpx(url) -> None:
    from jsonrpcclient import Error, Ok, parse, request

    reply = httpx.post(url, json=request("add", params=[2, 3]), timeout=30)
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    assert isinstance(parsed := parse(reply.json()), Ok) and parsed.result == 5
    named = httpx.post(url, json=request("greet", params={"name": "ann"}), timeout=30)
    assert parse(named.json()).result == "hello, ann"
    failed = parse(httpx.post(url, json=request("boom"), timeout=30).json())
    assert isinstance(failed, Error) and failed.code == rpc.SERVER_ERROR
    missing = parse(httpx.post(url, json=request("nope"), timeout=30).json())
    assert isinstance(missing, Error) and missing.code == rpc.METHOD_NOT_FOUND


def test_jsonrpcclient_batch_with_an_async_handler(url) -> None:
    from jsonrpcclient import parse, request

    batch = [request("slow_add", params=[1, 2]), request("add", params=[3, 4])]
    replies = parse(httpx.post(url, json=batch, timeout=30).json())
    assert sorted(r.result for r in replies) == [3, 7]


def test_curl_call_and_notification(url) -> None:
    call = '{"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 7}'
    done = curl("-i", "-H", "Content-Type: application/json", "-d", call, url)
    head, _, body = done.stdout.partition("\n\n")
    assert head.startswith("HTTP/1.1 200 OK")
    assert json.loads(body) == {"jsonrpc": "2.0", "id": 7, "result": 3}
    note = '{"jsonrpc": "2.0", "method": "echo", "params": [1]}'
    done = curl("-i", "-H", "Content-Type: application/json", "-d", note, url)
    head, _, body = done.stdout.partition("\n\n")
    assert head.startswith("HTTP/1.1 204 No Content") and body == ""
    assert "content-length" not in head.lower()  # RFC 9110 §8.6: none on a 204


def test_curl_reuses_the_connection(url) -> None:
    call = '{"jsonrpc": "2.0", "method": "pid", "id": 1}'
    h = ("-H", "Content-Type: application/json", "-d", call)
    done = curl("-v", "-w", "\\n", *h, url, "--next", "-w", "\\n", *h, url)
    pids = [json.loads(line)["result"] for line in done.stdout.splitlines()]
    assert len(pids) == 2 and pids[0] == pids[1]
    assert "Re-using existing connection" in done.stderr or "Reusing existing" in done.stderr


def test_curl_big_body_with_expect_100_continue(url, tmp_path) -> None:
    value = "x" * 200_000
    body = tmp_path / "call.json"
    body.write_text(json.dumps({"jsonrpc": "2.0", "method": "echo", "params": [value], "id": 1}))
    done = curl("-v", "-H", "Expect: 100-continue", "-H", "Content-Type: application/json",
                "--data-binary", f"@{body}", url)  # fmt: skip
    assert "HTTP/1.1 100 Continue" in done.stderr
    assert json.loads(done.stdout)["result"] == value


# --- the convention's status codes --------------------------------------------------------


def test_another_method_is_405_with_allow(url) -> None:
    for method in ("GET", "PUT", "OPTIONS"):
        reply = httpx.request(method, url, timeout=30)
        assert reply.status_code == 405 and reply.headers["allow"] == "POST", method


def test_another_content_type_is_415(url) -> None:
    body = b'{"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1}'
    assert post(url, body, "text/plain").status_code == 415
    assert post(url, body, "application/x-www-form-urlencoded").status_code == 415
    assert post(url, body, "application/json; charset=utf-8").status_code == 200
    assert post(url, body, "application/json-rpc").status_code == 200


def test_another_path_is_404(url) -> None:
    assert post(url.removesuffix("/rpc") + "/other", b"{}").status_code == 404


def test_a_bad_body_is_a_jsonrpc_error_with_200(url) -> None:
    reply = post(url, b"{not json")
    assert reply.status_code == 200 and reply.json()["error"]["code"] == rpc.PARSE_ERROR
    reply = post(url, b'{"jsonrpc": "2.0", "id": 1}')
    assert reply.json()["error"]["code"] == rpc.INVALID_REQUEST


def test_too_large_is_413_and_closes(url) -> None:
    host = url.removeprefix("http://").split("/")[0]
    head = (
        f"POST /rpc HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {1 << 30}\r\n\r\n"
    )
    answer = raw(url, head.encode())  # returns: the server closed without the body
    assert answer.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in answer


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /rpc HTTP/1.1\r\nContent-Type: application/json\r\n\r\n",  # no Host
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n",  # a TLS hello
    ],
)
def test_a_malformed_request_is_400_and_closes(url, request_bytes) -> None:
    answer = raw(url, request_bytes)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in answer


def test_chunked_body_is_read(url) -> None:
    """RFC 9112 §7.1: a recipient MUST be able to parse the chunked coding (it was a 411);
    tests/test_rpc_http_audit6.py has the rest."""
    request_bytes = (
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n"
    )
    answer = raw(url, request_bytes)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"code":-32600' in answer


def test_refused_body_is_skipped_and_the_next_request_answered(url) -> None:
    host = url.removeprefix("http://").split("/")[0]
    call = b'{"jsonrpc": "2.0", "method": "add", "params": [1, 1], "id": 1}'
    first = f"POST /rpc HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\n"
    second = f"POST /rpc HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    data = (
        first.encode() + b"Content-Length: %d\r\n\r\n" % len(call) + call
        + second.encode() + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(call) + call
    )  # fmt: skip
    answer = raw(url, data)
    assert answer.startswith(b"HTTP/1.1 415 ")
    assert answer.count(b"HTTP/1.1 200 OK") == 1 and answer.endswith(b'"result":2}')


# --- our own client -----------------------------------------------------------------------


def test_ipcnet_rpc_call_and_list(url) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    base = [sys.executable, "-m", "ipcnet", "rpc"]
    done = subprocess.run([*base, "call", url, "add", "2", "40"], capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "42", done.stderr
    done = subprocess.run([*base, "call", url, "boom"], capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert done.returncode == 1 and "error -32000" in done.stderr
    done = subprocess.run([*base, "list", url], capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert "add(a: int, b: int) -> int" in done.stdout


def test_rpc_connect_http(url) -> None:
    with rpc.connect(url, timeout=30) as client:
        assert client.add(1, 2) == 3
        assert client.call("greet", name="bo", greeting="hi") == "hi, bo"
        client.notify("echo", 1)
        with pytest.raises(rpc.RPCError) as caught:
            client.boom()
        assert caught.value.code == rpc.SERVER_ERROR
        assert client.add(2, 2) == 4  # the same connection goes on
    with (
        rpc.connect(url.removesuffix("/rpc") + "/nope") as client,
        pytest.raises(rpc.RPCError, match="HTTP 404"),
    ):
        client.add(1, 2)  # fmt: skip


def test_bad_http_urls_are_clear_errors() -> None:
    base = [sys.executable, "-m", "ipcnet", "rpc", "serve", "test_rpc_api:methods"]
    for bad in ("http://127.0.0.1:x/rpc", "http:///rpc", "http://h:1/rpc?q=1"):
        done = subprocess.run([*base, bad], capture_output=True, text=True, cwd=HERE, timeout=60)
        assert done.returncode == 2, done.stderr
        assert "expected http://HOST:PORT/PATH" in done.stderr or "bad port" in done.stderr


# --- the header deadline (slowloris), in-process with a short one ------------------------


@pytest.fixture(scope="module")
def short_deadline() -> Iterator[int]:
    """A pool of two workers serving JSON-RPC over HTTP, heads due within 0.3 s."""
    from ipcnet.protocols.http import Limits
    from ipcnet.protocols.jsonrpc.http import JsonRpcHttpService
    from test_robust_differential import _served

    methods = rpc.Methods()
    methods.add(lambda a, b: a + b, name="add")
    limits = Limits(header_timeout=0.3)
    service = JsonRpcHttpService(rpc.make_service(methods), "/rpc", limits=limits)
    with _served(service, "pool") as (_, port):
        yield port


CALL = b'{"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1}'
POST = b"POST /rpc HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
POST += b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(CALL), CALL)


def test_silent_clients_are_closed_at_the_header_deadline_and_others_served(short_deadline):
    """Two clients that send nothing held both workers of a pool until the idle timeout
    (300 s): there was no header deadline at all. Now they are closed at it without an
    answer (nginx's client_header_timeout), and the next caller is served."""
    url = f"http://127.0.0.1:{short_deadline}/rpc"
    silent = [socket.create_connection(("127.0.0.1", short_deadline), timeout=10) for _ in "ab"]
    try:
        answer = raw(url, POST)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["result"] == 3
        assert [s.recv(100) for s in silent] == [b"", b""]
    finally:
        for s in silent:
            s.close()


def test_a_head_that_trickles_past_the_deadline_is_408(short_deadline):
    with socket.create_connection(("127.0.0.1", short_deadline), timeout=10) as s:
        s.sendall(POST[:20])  # a head begun, never finished
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in out
