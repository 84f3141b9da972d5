"""Interop with well-kept JSON-RPC 2.0 implementations from PyPI, both ways, over sockets:
python-lsp-jsonrpc (Content-Length framing, as language servers speak), jsonrpcserver +
jsonrpcclient, and json-rpc (newline-delimited JSON)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ipcnet import rpc
from test_rpc_api import rpc_server

pylsp_endpoint = pytest.importorskip("pylsp_jsonrpc.endpoint")
pylsp_streams = pytest.importorskip("pylsp_jsonrpc.streams")
pylsp_exceptions = pytest.importorskip("pylsp_jsonrpc.exceptions")
jsonrpcclient = pytest.importorskip("jsonrpcclient")
jsonrpcserver = pytest.importorskip("jsonrpcserver")
jsonrpc = pytest.importorskip("jsonrpc")


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


@contextmanager
def their_server(handle: Callable[[socket.socket], None]) -> Iterator[str]:
    """A listening socket in this process; each connection is served by ``handle``."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)


# --- python-lsp-jsonrpc ----------------------------------------------------------------


def test_pylsp_client_against_our_server() -> None:
    with rpc_server("tcp://127.0.0.1:0", extra=("--framing", "content-length")) as server:
        sock = socket.create_connection(_address(server.url("tcp")))
        rfile, wfile = sock.makefile("rb"), sock.makefile("wb")
        writer = pylsp_streams.JsonRpcStreamWriter(wfile)
        reader = pylsp_streams.JsonRpcStreamReader(rfile)
        endpoint = pylsp_endpoint.Endpoint({}, writer.write)
        listening = threading.Thread(target=reader.listen, args=(endpoint.consume,), daemon=True)
        listening.start()
        try:
            assert endpoint.request("add", {"a": 1, "b": 2}).result(10) == 3
            assert endpoint.request("add", [20, 22]).result(10) == 42
            futures = [endpoint.request("add", [i, i]) for i in range(50)]
            assert [f.result(10) for f in futures] == [2 * i for i in range(50)]
            with pytest.raises(pylsp_exceptions.JsonRpcException) as info:
                endpoint.request("no_such_method", {}).result(10)
            assert info.value.code == -32601
            with pytest.raises(pylsp_exceptions.JsonRpcException) as info:
                endpoint.request("add", {"a": 1}).result(10)
            assert info.value.code == -32602
            endpoint.notify("add", {"a": 1, "b": 1})  # no reply expected, nothing breaks
            assert endpoint.request("echo", ["é✓"]).result(10) == "é✓"
        finally:
            endpoint.shutdown()
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            reader.close()
            writer.close()
            listening.join(5)


def _serve_pylsp(conn: socket.socket) -> None:
    rfile, wfile = conn.makefile("rb"), conn.makefile("wb")
    writer = pylsp_streams.JsonRpcStreamWriter(wfile)
    reader = pylsp_streams.JsonRpcStreamReader(rfile)

    def add(params: Any) -> Any:
        return params["a"] + params["b"] if isinstance(params, dict) else params[0] + params[1]

    def fail(params: Any) -> Any:
        raise ValueError("nope")

    endpoint = pylsp_endpoint.Endpoint({"add": add, "fail": fail}, writer.write)
    try:
        reader.listen(endpoint.consume)
    finally:
        endpoint.shutdown()
        writer.close()
        conn.close()


def test_our_client_against_a_pylsp_server() -> None:
    with their_server(_serve_pylsp) as url:
        with rpc.connect(url, framing="content-length", timeout=10) as client:
            assert client.add(1, 2) == 3
            assert client.add(a=5, b=6) == 11
            pending = [client.submit("add", [i, 1]) for i in range(50)]
            assert [p.result() for p in pending] == [i + 1 for i in range(50)]
            with pytest.raises(rpc.RPCError) as info:
                client.missing()
            assert info.value.code == -32601
            with pytest.raises(rpc.RPCError):
                client.fail()
            assert client.add(1, 1) == 2


# --- jsonrpcserver / jsonrpcclient -----------------------------------------------------


def test_jsonrpcclient_against_our_server() -> None:
    from jsonrpcclient import Error, Ok, parse_json, request_json

    with rpc_server("tcp://127.0.0.1:0", model="asyncio") as server:
        with socket.create_connection(_address(server.url("tcp"))) as sock:
            lines = sock.makefile("rb")
            sock.sendall(request_json("add", params=(1, 2)).encode() + b"\n")
            response = parse_json(lines.readline().decode())
            assert isinstance(response, Ok) and response.result == 3
            sock.sendall(request_json("greet", params={"name": "z"}).encode() + b"\n")
            response = parse_json(lines.readline().decode())
            assert isinstance(response, Ok) and response.result == "hello, z"
            sock.sendall(request_json("nope").encode() + b"\n")
            response = parse_json(lines.readline().decode())
            assert isinstance(response, Error) and response.code == -32601
            batch = json.dumps([json.loads(request_json("add", params=(i, i))) for i in range(5)])
            sock.sendall(batch.encode() + b"\n")
            responses = parse_json(lines.readline().decode())
            assert sorted(r.result for r in responses) == [0, 2, 4, 6, 8]


def _serve_jsonrpcserver(conn: socket.socket) -> None:
    from jsonrpcserver import Error, Success, dispatch

    def add(a: int, b: int) -> Any:
        return Success(a + b)

    def fail() -> Any:
        return Error(1, "failed on purpose")

    methods = {"add": add, "fail": fail}
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            answer = dispatch(line.decode(), methods=methods)
            if answer:
                conn.sendall(answer.encode() + b"\n")


def test_our_client_against_jsonrpcserver() -> None:
    with their_server(_serve_jsonrpcserver) as url:
        with rpc.connect(url, timeout=10) as client:
            assert client.add(1, 2) == 3
            assert client.add(a=3, b=4) == 7
            with pytest.raises(rpc.RPCError) as info:
                client.fail()
            assert (info.value.code, info.value.message) == (1, "failed on purpose")
            with pytest.raises(rpc.RPCError) as info:
                client.add(1)
            assert info.value.code == -32602
            with pytest.raises(rpc.RPCError) as info:
                client.nothing()
            assert info.value.code == -32601
            pending = [client.submit("add", [i, 2]) for i in range(50)]
            assert [p.result() for p in pending] == [i + 2 for i in range(50)]
            assert client.batch([("add", [1, 2]), ("add", [3, 4])]) == [3, 7]


# --- json-rpc ----------------------------------------------------------------------------


def _serve_json_rpc(conn: socket.socket) -> None:
    from jsonrpc import Dispatcher, JSONRPCResponseManager

    dispatcher = Dispatcher()
    dispatcher["add"] = lambda a, b: a + b
    dispatcher["echo"] = lambda value: value
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            response = JSONRPCResponseManager.handle(line.decode(), dispatcher)
            if response is not None:
                conn.sendall(response.json.encode() + b"\n")


def test_our_client_against_json_rpc() -> None:
    with their_server(_serve_json_rpc) as url:
        with rpc.connect(url, timeout=10) as client:
            assert client.add(1, 2) == 3
            assert client.echo(value=[1, "x"]) == [1, "x"]
            with pytest.raises(rpc.RPCError) as info:
                client.nothing()
            assert info.value.code == -32601


def test_json_rpc_requests_against_our_server() -> None:
    from jsonrpc.jsonrpc2 import JSONRPC20Request

    with rpc_server("tcp://127.0.0.1:0", model="thread") as server:
        with socket.create_connection(_address(server.url("tcp"))) as sock:
            lines = sock.makefile("rb")
            sock.sendall(JSONRPC20Request("add", [1, 2], _id=1).json.encode() + b"\n")
            assert json.loads(lines.readline()) == {"jsonrpc": "2.0", "id": 1, "result": 3}
            sock.sendall(JSONRPC20Request("add", {"a": 1}, _id="x").json.encode() + b"\n")
            reply = json.loads(lines.readline())
            assert reply["id"] == "x" and reply["error"]["code"] == -32602
