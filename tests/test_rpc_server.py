"""`ipcnet rpc serve` as a real process under the drivers, fed good and bad bytes."""

from __future__ import annotations

import json
import os
import pickle
import threading
import uuid
from typing import Any

import pytest

import ipcnet
from ipcnet import rpc
from ipcnet.drivers import MODELS as REGISTRY
from ipcnet.errors import Timeout
from ipcnet.protocols.base import (
    SHUTDOWN_WRITE,
    Actions,
    BaseService,
    BaseSession,
    Peer,
    SendFile,
    Timer,
)
from test_rpc_api import rpc_server

MODELS = list(REGISTRY)


def _unix() -> str:
    return f"unix:///tmp/ipcnet-rpc-{uuid.uuid4().hex[:10]}.sock"


@pytest.mark.parametrize("model", MODELS)
def test_calls_under_every_model(model: str) -> None:
    with rpc_server("tcp://127.0.0.1:0", _unix(), model=model) as server:
        for scheme in ("tcp", "unix"):
            with rpc.connect(server.url(scheme), timeout=10) as client:
                assert client.add(1, 2) == 3
                assert client.add(a=2, b=3) == 5
                assert client.greet(name="ann", greeting="hi") == "hi, ann"
                assert client.slow_add(2, 2) == 4  # async handler, under any driver
                assert client.echo({"k": [1, None]}) == {"k": [1, None]}
                with pytest.raises(rpc.RPCError) as info:
                    client.boom()
                assert info.value.code == rpc.SERVER_ERROR
                assert "Traceback" not in info.value.message
                with pytest.raises(rpc.RPCError) as info:
                    client.add(1)
                assert info.value.code == rpc.INVALID_PARAMS
                results = [client.submit("add", [i, i]) for i in range(50)]  # pipelined
                assert [p.result() for p in results] == [2 * i for i in range(50)]


@pytest.mark.parametrize("model", ["thread", "pool", "epoll", "poll", "asyncio", "prefork"])
def test_a_blocking_handler_does_not_stall_other_connections(model: str) -> None:
    with rpc_server("tcp://127.0.0.1:0", model=model, extra=("--inner", "epoll")) as server:
        url = server.url("tcp")
        with rpc.connect(url, timeout=30) as a, rpc.connect(url, timeout=30) as b:
            if model == "prefork":  # both connections must reach one worker for the gate
                while b.pid() != a.pid():
                    b.close()
                    b = rpc.connect(url, timeout=30)
            blocked = a.submit("block")
            assert b.add(1, 1) == 2  # served while `block` holds a worker
            assert b.release() is True
            assert blocked.result() == "released"
            b.close()


def test_async_handlers_run_on_the_asyncio_loop() -> None:
    with rpc_server("tcp://127.0.0.1:0", model="asyncio") as server:
        url = server.url("tcp")
        with rpc.connect(url, timeout=30) as a, rpc.connect(url, timeout=30) as b:
            waiting = a.submit("ablock")
            assert b.add(2, 2) == 4
            assert b.arelease() is True  # the same loop's asyncio.Event: ablock wakes
            assert waiting.result() == "released"


def raw_exchange(url: str, data: bytes, eof: bool = False, timeout: float = 10) -> bytes:
    with ipcnet.connect(url, timeout=timeout) as ch:
        ch.write(data)
        if eof:
            ch.send_eof()
            return ch.read()
        return ch.readline()


def req(method: str, params: Any = None, rid: Any = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode()


BAD_PAYLOADS = {
    "pickle": pickle.dumps(os.system),
    "deep-nesting": b"[" * 200_000,
    "5000-digits": b'{"jsonrpc":"2.0","method":"echo","params":[' + b"7" * 5000 + b'],"id":1}',
    "nan": b'{"jsonrpc":"2.0","method":"echo","params":[NaN],"id":1}',
    "infinity": b'{"jsonrpc":"2.0","method":"echo","params":[-Infinity],"id":1}',
    "lone-surrogate": b'{"jsonrpc":"2.0","method":"echo","params":["\\udc00"],"id":1}',
    "array-id": b'{"jsonrpc":"2.0","method":"echo","id":[1]}',
    "object-id": b'{"jsonrpc":"2.0","method":"echo","id":{"x":1}}',
    "scalar": b"12345",
    "method-__class__": req("__class__"),
    "method-_x": req("_x"),
    "method-os.system": req("os.system", ["touch /tmp/ipcnet-pwned"]),
    "method-a.b": req("a.b"),
    "method-empty": req(""),
    "method-10k": req("m" * 10240),
    "wrong-params": req("add", [1, 2, 3]),
    "wrong-named-params": req("add", {"a": 1, "c": 2}),
    "handler-raises": req("boom"),
}
EXPECTED = {
    "pickle": -32700,
    "deep-nesting": -32700,
    "5000-digits": -32700,
    "nan": -32700,
    "infinity": -32700,
    "lone-surrogate": -32700,
    "array-id": -32600,
    "object-id": -32600,
    "scalar": -32600,
    "wrong-params": -32602,
    "wrong-named-params": -32602,
    "handler-raises": -32000,
}


@pytest.mark.parametrize("model", ["epoll", "thread", "asyncio"])
def test_bad_inputs_newline_framing(model: str) -> None:
    """Each bad input is answered with an error on the same connection, which goes on."""
    with rpc_server("tcp://127.0.0.1:0", model=model) as server:
        with ipcnet.connect(server.url("tcp"), timeout=10) as ch:
            for name, payload in BAD_PAYLOADS.items():
                ch.write(payload + b"\n")
                reply = json.loads(ch.readline())
                assert reply["error"]["code"] == EXPECTED.get(name, -32601), name
                assert len(json.dumps(reply)) < 1000, name
                assert "Traceback" not in json.dumps(reply)
                ch.write(req("add", [1, 2]) + b"\n")
                assert json.loads(ch.readline())["result"] == 3, f"after {name}"
            # duplicate ids: both answered
            ch.write(req("add", [1, 1], 9) + b"\n" + req("add", [2, 2], 9) + b"\n")
            replies = [json.loads(ch.readline()), json.loads(ch.readline())]
            assert sorted(r["result"] for r in replies) == [2, 4]
            # one byte per send
            for byte in req("add", [20, 22]) + b"\n":
                ch.write(bytes([byte]))
            assert json.loads(ch.readline())["result"] == 42
            # 1000 frames in one send
            ch.write(b"".join(req("add", [i, 1], i) + b"\n" for i in range(1000)))
            replies = [json.loads(ch.readline()) for _ in range(1000)]
            assert sorted(r["id"] for r in replies) == list(range(1000))
            assert all(r["result"] == r["id"] + 1 for r in replies)
        assert not os.path.exists("/tmp/ipcnet-pwned")
        # exactly the maximum, and one byte more (the line is skipped, the connection lives)
        with rpc_server("tcp://127.0.0.1:0", model=model, extra=("--max-frame", "2000")) as small:
            with ipcnet.connect(small.url("tcp"), timeout=10) as ch:
                body = req("echo", ["x"])
                exact = body[:-1] + b" " * (2000 - len(body)) + b"}"
                assert len(exact) == 2000
                ch.write(exact + b"\n")
                assert json.loads(ch.readline())["result"] == "x"
                ch.write(exact[:-1] + b" }" + b"\n")
                assert json.loads(ch.readline())["error"]["code"] == -32600
                ch.write(req("add", [1, 2]) + b"\n")
                assert json.loads(ch.readline())["result"] == 3


def _length_frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


@pytest.mark.parametrize("model", ["epoll", "iterative", "asyncio"])
def test_bad_inputs_length_framing(model: str) -> None:
    extra = ("--framing", "length", "--max-frame", "2000")
    with rpc_server("tcp://127.0.0.1:0", model=model, extra=extra) as server:
        url = server.url("tcp")
        # declared length 0xFFFFFFFF: answered, then closed (the framing is lost)
        with ipcnet.connect(url, timeout=10) as ch:
            ch.write(b"\xff\xff\xff\xff")
            data = ch.read()
            assert b"4294967295" in data and ch.read() == b""  # error frame, then EOF
        # exactly the maximum passes; one more is refused
        body = req("echo", ["x"])
        exact = body[:-1] + b" " * (2000 - len(body)) + b"}"
        with rpc.connect(url, framing="length", timeout=10) as client:
            assert client.add(1, 2) == 3
        with ipcnet.connect(url, timeout=10) as ch:
            ch.write(_length_frame(exact))
            reply = ch.read_exactly(4)
            assert json.loads(ch.read_exactly(int.from_bytes(reply, "big")))["result"] == "x"
            ch.write(_length_frame(exact + b" "))
            rest = ch.read()
            assert b"-32600" in rest  # answered, then closed
        # truncated header, truncated body: answered at EOF, nothing else breaks
        for cut in (b"\x00\x00", _length_frame(body)[:10]):
            data = raw_exchange(url, cut, eof=True)
            assert b"-32700" in data and b"eof inside" in data
        # pickle, one byte per send, 1000 frames in one send
        with ipcnet.connect(url, timeout=10) as ch:
            ch.write(_length_frame(pickle.dumps(os.system)))
            n = int.from_bytes(ch.read_exactly(4), "big")
            assert json.loads(ch.read_exactly(n))["error"]["code"] == -32700
            for byte in _length_frame(req("add", [2, 3])):
                ch.write(bytes([byte]))
            n = int.from_bytes(ch.read_exactly(4), "big")
            assert json.loads(ch.read_exactly(n))["result"] == 5
            ch.write(b"".join(_length_frame(req("add", [i, 0], i)) for i in range(1000)))
            ids = []
            for _ in range(1000):
                n = int.from_bytes(ch.read_exactly(4), "big")
                ids.append(json.loads(ch.read_exactly(n))["id"])
            assert sorted(ids) == list(range(1000))
        with rpc.connect(url, framing="length", timeout=10) as client:
            assert client.add(40, 2) == 42  # the server kept serving throughout


def test_content_length_and_msgpack_over_unix() -> None:
    url = _unix()
    extra = ("--framing", "content-length", "--codec", "msgpack")
    with rpc_server(url, model="epoll", extra=extra) as server:
        with rpc.connect(server.url("unix"), framing="content-length", codec="msgpack") as c:
            assert c.echo(b"\x00bytes") == b"\x00bytes"
            assert c.add(1, 2) == 3


def test_timeouts_and_late_replies() -> None:
    with rpc_server("tcp://127.0.0.1:0", model="thread") as server:
        with rpc.connect(server.url("tcp")) as client:
            with pytest.raises(Timeout):
                client.with_timeout(0.05).sleep(0.5)
            # the late reply to `sleep` (0.5) must never be taken for this call's
            assert client.add(1, 2) == 3
            assert client.echo("after") == "after"
            assert client.dropped == 1


def test_many_threads_share_one_connection() -> None:
    with rpc_server("tcp://127.0.0.1:0", model="epoll") as server:
        with rpc.connect(server.url("tcp"), timeout=30) as client:
            errors: list[BaseException] = []

            def worker(k: int) -> None:
                try:
                    for i in range(100):
                        assert client.add(k, i) == k + i
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors
            assert client.batch([("add", [1, 2]), ("nope", None), ("add", {"a": 3, "b": 4})])[
                ::2
            ] == [3, 7]


def test_callers_that_time_out_and_callers_that_wait_share_one_connection() -> None:
    """Leader/follower with deadlines: a caller giving up hands the reading on, and the
    late replies are dropped, never given to another caller."""
    with rpc_server("tcp://127.0.0.1:0", model="thread") as server:
        with rpc.connect(server.url("tcp"), timeout=30) as client:
            outcomes: dict[str, object] = {}

            def slow(k: int) -> None:
                try:
                    client.with_timeout(0.1).sleep(0.3)
                    outcomes[f"slow{k}"] = "answered"
                except Timeout:
                    outcomes[f"slow{k}"] = "timed out"

            def quick(k: int) -> None:
                outcomes[f"quick{k}"] = [client.add(k, i) for i in range(50)]

            threads = [threading.Thread(target=slow, args=(k,)) for k in range(4)]
            threads += [threading.Thread(target=quick, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert client.add(1, 1) == 2  # after every sleep, in the server's order
            assert all(outcomes[f"slow{k}"] == "timed out" for k in range(4))
            assert all(outcomes[f"quick{k}"] == [k + i for i in range(50)] for k in range(4))
            assert client.dropped == 4


class _FileTimerSession(BaseSession):
    """Answers b"go" with a file region it hands over; its timer half-closes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def feed(self, data: bytes) -> Actions:
        return [SendFile(self.fd, 2, 5, "f", close=True), Timer(0.05)]

    def on_timer(self) -> Actions:
        return [b"|tick", SHUTDOWN_WRITE]


class _FileTimerService(BaseService):
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def start(self, peer: Peer) -> tuple[BaseSession, Actions]:
        return _FileTimerSession(self.fd), b"hello|"


def test_serve_channel_honours_sendfile_timer_and_shutdown_write(tmp_path: Any) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_RDONLY)
    ours, theirs = ipcnet.socketpair()
    server = threading.Thread(
        target=rpc.serve_channel, args=(_FileTimerService(fd), theirs), daemon=True
    )
    server.start()
    ours.timeout = 10
    ours.write(b"go")
    got = bytearray()
    while chunk := ours.read(100):  # EOF: the timer's ShutdownWrite
        got += chunk
    assert bytes(got) == b"hello|23456|tick"
    ours.close()  # our EOF ends the session (BaseSession closes on EOF)
    server.join(10)
    assert not server.is_alive()
    with pytest.raises(OSError):
        os.fstat(fd)  # the handed-over descriptor was released
