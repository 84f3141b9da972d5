"""JSON-RPC 2.0 messages: validating requests and replies, building error objects.

Role: the syntax half of the protocol (seed 000 §4: syntax + state machine), as plain
functions over decoded values (dicts, lists, str, numbers). Rules, from the specification
(https://www.jsonrpc.org/specification):
- a request is an object with ``"jsonrpc": "2.0"``, a string ``method``, optional
  ``params`` (array = positional, object = named) and an ``id`` (string, number or null);
  without ``id`` it is a notification and gets no reply;
- anything else gets an Invalid Request error whose id is null unless the request's id was
  valid; a batch is a non-empty array of requests answered by an array (no reply at all if
  every member was a notification); an empty array is one Invalid Request error;
- ids that are booleans, arrays or objects are invalid; ids are echoed as they came.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ipcnet.errors import IPCError

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000  # -32000..-32099: "implementation-defined server errors"

MESSAGES = {
    PARSE_ERROR: "parse error",
    INVALID_REQUEST: "invalid request",
    METHOD_NOT_FOUND: "method not found",
    INVALID_PARAMS: "invalid params",
    INTERNAL_ERROR: "internal error",
    SERVER_ERROR: "server error",
}

NAME_SHOWN = 64  # characters of an unknown method name echoed in an error message


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class RPCError(IPCError):
    """A JSON-RPC error object: raise it in a handler to choose the reply's code and data;
    the clients raise it when the server answers a call with an error."""

    def __init__(self, code: int, message: str, data: Any = MISSING) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.data = data

    def to_object(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not MISSING:
            error["data"] = self.data
        return error

    @classmethod
    def standard(cls, code: int, detail: str = "", data: Any = MISSING) -> RPCError:
        base = MESSAGES.get(code, "error")
        return cls(code, f"{base}: {detail}" if detail else base, data)


def shorten(text: str, limit: int = NAME_SHOWN) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def valid_id(value: Any) -> bool:
    if value is None or isinstance(value, str):
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


@dataclass(slots=True)
class Request:
    """A valid request; ``id`` is MISSING for a notification."""

    method: str
    params: list[Any] | dict[str, Any] | None
    id: Any = MISSING

    @property
    def notification(self) -> bool:
        return self.id is MISSING


@dataclass(slots=True)
class BadRequest:
    """An invalid request: the error to send, with the id it carries (null if unknown)."""

    id: Any
    error: RPCError


def common_request(obj: Any) -> tuple[str, list[Any] | dict[str, Any], Any] | None:
    """(method, params, id) of the common valid request, checked in one test: an object
    with a string method, params, an integer or string id (MISSING for a notification) and
    ``"jsonrpc": "2.0"``; None for anything else (then ``parse_request`` decides)."""
    if obj.__class__ is not dict:
        return None
    get = obj.get
    rid = get("id", MISSING)
    method = get("method")
    params = get("params")
    if (
        method.__class__ is str
        and (params.__class__ is list or params.__class__ is dict)
        and (rid.__class__ is int or rid.__class__ is str or rid is MISSING)
        and get("jsonrpc") == "2.0"
    ):
        return method, params, rid
    return None


def parse_request(obj: Any) -> Request | BadRequest:
    """A Request, or the BadRequest to answer it with."""
    common = common_request(obj)
    if common is not None:
        return Request(*common)
    if not isinstance(obj, dict):
        return _bad(None, f"expected an object, got {_kind(obj)}")
    get = obj.get
    rid = get("id", MISSING)
    method = get("method", MISSING)
    params = get("params")
    if rid is not MISSING and not valid_id(rid):
        return _bad(None, f"id must be a string, number or null, not {_kind(rid)}")
    reply_id = None if rid is MISSING else rid
    if get("jsonrpc") != "2.0":
        return _bad(reply_id, 'jsonrpc must be "2.0"')
    if not isinstance(method, str):
        return _bad(reply_id, "no method" if method is MISSING else "method must be a string")
    if "params" not in obj:
        params = None
    elif not isinstance(params, (list, dict)):
        return _bad(reply_id, "params must be an array or an object")
    return Request(method, params, rid)


def _bad(rid: Any, detail: str) -> BadRequest:
    return BadRequest(rid, RPCError.standard(INVALID_REQUEST, detail))


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def result_reply(rid: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def error_reply(rid: Any, error: RPCError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": error.to_object()}


# --- the client's side: replies -----------------------------------------------------------


@dataclass(slots=True)
class Reply:
    """A reply to call ``id``: ``result``, or ``error`` when the call failed."""

    id: Any
    result: Any = None
    error: RPCError | None = None


def parse_reply(obj: Any) -> Reply | None:
    """A Reply, or None when ``obj`` is not a valid JSON-RPC 2.0 response."""
    if obj.__class__ is dict and len(obj) == 3 and "result" in obj:
        rid = obj.get("id")
        if (rid.__class__ is int or rid.__class__ is str) and obj.get("jsonrpc") == "2.0":
            return Reply(rid, obj["result"])  # the common case, checked in one test
    if not isinstance(obj, dict) or obj.get("jsonrpc") != "2.0" or "id" not in obj:
        return None
    rid = obj["id"]
    if not valid_id(rid):
        return None
    has_result, error = "result" in obj, obj.get("error", MISSING)
    if has_result == (error is not MISSING):
        return None
    if has_result:
        return Reply(rid, obj["result"])
    if not isinstance(error, dict):
        return None
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, int) or isinstance(code, bool) or not isinstance(message, str):
        return None
    return Reply(rid, None, RPCError(code, message, error.get("data", MISSING)))
