"""The JSON-RPC session sans-IO: bytes in, actions out, with no sockets at all."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipcnet.drivers.engine import run_job
from ipcnet.framing import LengthPrefixed, NewlineDelimited
from ipcnet.protocols.base import Close, Peer, Run, as_list
from ipcnet.protocols.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_ERROR,
    ClientProtocol,
    JsonRpcService,
    RPCError,
)
from ipcnet.rpc import Methods
from test_rpc_api import methods as api


def service(**kwargs: Any) -> JsonRpcService:
    return JsonRpcService(api, **kwargs)


class Driven:
    """A session driven the way a blocking driver drives it (Run inline, by the engine's
    run_job, which runs an async def job to completion)."""

    def __init__(self, svc: JsonRpcService | None = None) -> None:
        self.service = svc or service()
        self.session, first = self.service.start(Peer(None))
        self.out = bytearray()
        self.closed = False
        self.runs = 0
        self.apply(first)

    def apply(self, actions: Any) -> None:
        for action in as_list(actions):
            assert not self.closed, "an action after Close"
            if isinstance(action, (bytes, bytearray, memoryview)):
                self.out += action
            elif isinstance(action, Close):
                self.closed = True
            elif isinstance(action, Run):
                self.runs += 1
                self.apply(self.session.resume(action, run_job(action)))

    def feed(self, data: bytes) -> list[Any]:
        self.apply(self.session.feed(data))
        return self.replies()

    def eof(self) -> list[Any]:
        self.apply(self.session.feed_eof())
        return self.replies()

    def replies(self) -> list[Any]:
        lines = bytes(self.out).split(b"\n")
        self.out = bytearray(lines.pop())
        return [json.loads(line) for line in lines]


def req(method: str, params: Any = None, rid: Any = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode() + b"\n"


def code(reply: dict[str, Any]) -> int:
    return int(reply["error"]["code"])


def test_positional_named_and_defaults() -> None:
    d = Driven()
    assert d.feed(req("add", [1, 2]))[0] == {"jsonrpc": "2.0", "id": 1, "result": 3}
    assert d.feed(req("add", {"a": 5, "b": 6}, "x"))[0]["result"] == 11
    assert d.feed(req("greet", {"name": "bob", "greeting": "hi"}))[0]["result"] == "hi, bob"
    assert d.feed(req("greet", ["ann"]))[0]["result"] == "hello, ann"


def test_inline_methods_need_no_job() -> None:
    d = Driven()
    assert d.feed(req("echo", [[1, "two"]]))[0]["result"] == [1, "two"]
    assert d.runs == 0
    d.feed(req("add", [1, 1]))
    assert d.runs == 1


def test_notifications_get_no_reply_even_when_they_fail() -> None:
    d = Driven()
    note = b'{"jsonrpc":"2.0","method":"add","params":[1,2]}\n'
    bad = b'{"jsonrpc":"2.0","method":"nope"}\n{"jsonrpc":"2.0","method":"boom"}\n'
    assert d.feed(note + bad) == []
    assert d.feed(req("add", [2, 2]))[0]["result"] == 4


def test_batch() -> None:
    d = Driven()
    batch = [
        {"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1},
        {"jsonrpc": "2.0", "method": "add", "params": [3, 4]},
        {"jsonrpc": "2.0", "method": "nope", "id": 2},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "echo", "params": ["e"], "id": 3},
    ]
    (replies,) = d.feed(json.dumps(batch).encode() + b"\n")
    by_id = {r["id"]: r for r in replies if r["id"] is not None}
    assert len(replies) == 4
    assert by_id[1]["result"] == 3
    assert code(by_id[2]) == METHOD_NOT_FOUND
    assert by_id[3]["result"] == "e"
    assert [code(r) for r in replies if r["id"] is None] == [INVALID_REQUEST]
    assert d.feed(b"[]\n")[0]["error"]["code"] == INVALID_REQUEST  # one error, not an array
    notes = [{"jsonrpc": "2.0", "method": "add", "params": [1, 2]}] * 3
    assert d.feed(json.dumps(notes).encode() + b"\n") == []  # all notifications: nothing


def test_spec_examples_of_invalid_requests() -> None:
    d = Driven()
    assert code(d.feed(b'{"jsonrpc": "2.0", "method": 1, "params": "bar"}\n')[0]) == INVALID_REQUEST
    assert (
        code(d.feed(b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]\n')[0])
        == PARSE_ERROR
    )
    assert code(d.feed(b'{"jsonrpc": "1.0", "method": "add", "id": 7}\n')[0]) == INVALID_REQUEST
    assert d.feed(b'{"jsonrpc": "1.0", "method": "add", "id": 7}\n')[0]["id"] == 7
    assert (
        code(d.feed(b'{"jsonrpc": "2.0", "method": "add", "params": 3, "id": 1}\n')[0])
        == INVALID_REQUEST
    )
    [r1, r2, r3] = d.feed(b"[1,2,3]\n")[0]
    assert code(r1) == code(r2) == code(r3) == INVALID_REQUEST


@pytest.mark.parametrize(
    "name", ["__class__", "_x", "os.system", "a.b", "", "x" * 10240, "rpc.nothing", "__init__"]
)
def test_unknown_and_private_names_are_not_found(name: str) -> None:
    d = Driven()
    (reply,) = d.feed(req(name, []))
    assert code(reply) == METHOD_NOT_FOUND
    assert len(reply["error"]["message"]) < 200  # a 10 KB name is not echoed back
    assert d.feed(req("add", [1, 2]))[0]["result"] == 3


@pytest.mark.parametrize(
    "params", [[1], [1, 2, 3], {"a": 1}, {"a": 1, "b": 2, "c": 3}, {"x": 1}, ["only"]]
)
def test_wrong_params(params: Any) -> None:
    d = Driven()
    method = "greet" if params == ["only"] else "add"
    if method == "greet":
        params = {"name": "x", "bogus": 1}
    (reply,) = d.feed(req(method, params))
    assert code(reply) == INVALID_PARAMS


def test_handler_exception_has_no_traceback_unless_debug() -> None:
    (reply,) = Driven().feed(req("boom"))
    assert code(reply) == SERVER_ERROR
    assert "ValueError" in reply["error"]["message"]
    assert "Traceback" not in json.dumps(reply)
    (reply,) = Driven(service(debug=True)).feed(req("boom"))
    assert "Traceback" in reply["error"]["data"]["traceback"]


def test_handler_error_objects_pass_through() -> None:
    m = Methods()

    @m.method
    def teapot() -> None:
        raise RPCError(418, "i am a teapot", {"tea": True})

    (reply,) = Driven(JsonRpcService(m)).feed(req("teapot"))
    assert reply["error"] == {"code": 418, "message": "i am a teapot", "data": {"tea": True}}


def test_unencodable_result_is_an_internal_error() -> None:
    (reply,) = Driven().feed(req("not_json"))
    assert code(reply) == -32603
    assert Driven().feed(req("add", [1, 2]))[0]["result"] == 3


def test_a_plain_handler_that_makes_a_coroutine_is_an_error() -> None:
    m = Methods()

    async def later() -> int:
        return 1

    @m.method
    def sneaky() -> Any:
        return later()

    d = Driven(JsonRpcService(m))
    (reply,) = d.feed(req("sneaky"))  # alone: the one-request path
    assert code(reply) == SERVER_ERROR and "make it async def" in reply["error"]["message"]
    (replies,) = d.feed(b"[" + req("sneaky")[:-1] + b"]\n")  # in a batch: the general path
    assert (
        code(replies[0]) == SERVER_ERROR and "make it async def" in replies[0]["error"]["message"]
    )


def test_what_arrives_while_a_lone_call_runs_is_answered_after_it() -> None:
    session, _ = service().start(Peer(None))
    job = session.feed(req("add", [1, 2], "first"))
    assert isinstance(job, Run)
    assert session.feed(req("add", [3, 4], None) + req("add", [5, 6], 3.5)) is None  # busy
    assert session.feed_eof() is None
    out, replies = as_list(session.resume(job, run_job(job))), []
    while out:
        head, *rest = out
        if isinstance(head, Run):
            rest = [*as_list(session.resume(head, run_job(head))), *rest]
        elif isinstance(head, bytes):
            replies += [json.loads(line) for line in head.splitlines()]
        else:
            assert isinstance(head, Close) and not rest
        out = rest
    assert [(r["id"], r["result"]) for r in replies] == [("first", 3), (None, 7), (3.5, 11)]
    assert isinstance(head, Close)


def test_async_handlers_under_a_driver_that_does_not_await() -> None:
    d = Driven()
    assert d.feed(req("slow_add", [1, 2]))[0]["result"] == 3
    assert d.runs == 1  # one async def job, run to completion by the driver


def test_a_batch_mixing_plain_and_async_handlers_is_two_jobs_plain_first() -> None:
    d = Driven()
    batch = b"[" + req("slow_add", [1, 2], 1)[:-1] + b"," + req("add", [2, 2], 2)[:-1] + b"]\n"
    (replies,) = d.feed(batch)
    assert [r["result"] for r in replies] == [3, 4]  # answered in request order
    assert d.runs == 2


def test_async_job_is_a_coroutine_function() -> None:
    import inspect

    session, _ = service().start(Peer(None))
    actions = as_list(session.feed(req("slow_add", [1, 2])))
    assert isinstance(actions[-1], Run) and inspect.iscoroutinefunction(actions[-1].job)
    actions = as_list(session.feed(b""))  # busy: nothing
    assert actions == ()


@pytest.mark.parametrize(
    "payload,expected",
    [
        (b"[" * 200_000, PARSE_ERROR),
        (b'{"jsonrpc":"2.0","method":"echo","params":[' + b"9" * 5000 + b'],"id":1}', PARSE_ERROR),
        (b'{"jsonrpc":"2.0","method":"echo","params":[NaN],"id":1}', PARSE_ERROR),
        (b'{"jsonrpc":"2.0","method":"echo","params":[Infinity],"id":1}', PARSE_ERROR),
        (b'{"jsonrpc":"2.0","method":"echo","params":["\\ud800"],"id":1}', PARSE_ERROR),
        (b'{"jsonrpc":"2.0","method":"echo","params":["\xed\xa0\x80"],"id":1}', PARSE_ERROR),
        (b'{"jsonrpc":"2.0","method":"echo","id":[1]}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","method":"echo","id":{"a":1}}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","method":"echo","id":true}', INVALID_REQUEST),
        (b"42", INVALID_REQUEST),
        (b'"a string"', INVALID_REQUEST),
        (b"null", INVALID_REQUEST),
        (b"", PARSE_ERROR),
        (b"\x80\x04\x95pickle", PARSE_ERROR),
    ],
    ids=[
        "deep-nesting",
        "5000-digits",
        "nan",
        "infinity",
        "escaped-lone-surrogate",
        "raw-surrogate-utf8",
        "array-id",
        "object-id",
        "bool-id",
        "scalar",
        "string",
        "null",
        "empty-frame",
        "pickle",
    ],
)
def test_bad_payloads_are_answered_and_the_connection_goes_on(
    payload: bytes, expected: int
) -> None:
    d = Driven()
    (reply,) = d.feed(payload + b"\n")
    assert code(reply) == expected and reply["id"] is None
    assert d.feed(req("add", [1, 2]))[0]["result"] == 3
    assert not d.closed


def test_duplicate_ids_are_each_answered() -> None:
    d = Driven()
    replies = d.feed(req("add", [1, 2], 7) + req("add", [3, 4], 7))
    assert sorted(r["result"] for r in replies) == [3, 7] and {r["id"] for r in replies} == {7}


def test_eof_closes_after_the_answers() -> None:
    d = Driven()
    assert d.feed(req("add", [1, 2])[:-1]) == []
    assert d.eof()[0]["result"] == 3  # EOF ends a last line (JSON Lines), then closes
    assert d.closed
    d = Driven()
    assert d.feed(req("add", [1, 2])[:-9]) == []
    assert code(d.eof()[0]) == PARSE_ERROR  # a line cut short: said, then closed
    assert d.closed
    d = Driven()
    d.feed(req("add", [1, 2]))
    d.eof()
    assert d.closed


def test_fatal_framing_error_answers_then_closes() -> None:
    d = Driven(service(framing=LengthPrefixed(1024)))
    d.apply(d.session.feed(b"\xff\xff\xff\xff"))
    assert d.closed and b"frame of 4294967295 bytes" in d.out


def test_over_long_line_is_skipped_and_the_connection_goes_on() -> None:
    d = Driven(service(framing=NewlineDelimited(1024)))
    (reply,) = d.feed(b"x" * 5000)  # refused before the line even ends
    assert code(reply) == INVALID_REQUEST
    assert d.feed(b"y" * 5000 + b"\n" + req("add", [1, 2]))[0]["result"] == 3


def test_pipelined_calls_in_one_feed_run_as_one_job() -> None:
    d = Driven()
    replies = d.feed(b"".join(req("add", [i, i], i) for i in range(1000)))
    assert sorted(r["result"] for r in replies) == [2 * i for i in range(1000)]
    assert d.runs <= 1000 // 256 + 1


def test_discover_lists_signatures() -> None:
    (reply,) = Driven().feed(req("rpc.discover"))
    names = {m["name"]: m for m in reply["result"]["methods"]}
    assert "add" in names and "rpc.discover" in names
    assert names["add"]["params"][0] == {  # an OpenRPC Content Descriptor
        "name": "a",
        "required": True,
        "schema": {"type": "integer"},
        "x-kind": "positional_or_keyword",
    }
    assert names["add"]["result"] == {"name": "result", "schema": {"type": "integer"}}
    assert names["greet"]["x-signature"] == "greet(name: str, *, greeting: str = hello) -> str"


def test_client_protocol_round_trip() -> None:
    client = ClientProtocol()
    rid, frame = client.request("add", [1, 2])
    d = Driven()
    d.apply(d.session.feed(frame))
    (reply,) = client.feed(bytes(d.out))
    assert reply.id == rid and reply.result == 3 and reply.error is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_crashes_the_session(data: bytes) -> None:
    d = Driven()
    d.apply(d.session.feed(data + b"\n"))
    d.apply(d.session.feed(req("add", [1, 2])))
    assert b'"result":3' in d.out
