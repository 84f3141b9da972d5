"""Handlers: a method the server may call, with the signature its params are checked by.

Role: the server's only way to reach code. A Handler is made by the registry in
``ipcnet.rpc`` (a decorator, or an object's public methods) and looked up by exact name in
a mapping: nothing is ever found with getattr on a name from the wire. Rules:
- params are bound to the signature before the call: a mismatch is Invalid Params and the
  function is not called;
- ``inline`` handlers are the author's promise that the function is quick and never blocks:
  they run inside the session; all others run as ``Run`` jobs (worker threads under the
  event-loop drivers, awaited on the loop when ``async def``);
- ``describe()`` is what ``rpc.discover`` lists: an OpenRPC Method Object.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ipcnet.protocols.jsonrpc.messages import INVALID_PARAMS, RPCError


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    function: Callable[..., Any]
    inline: bool = False
    signature: inspect.Signature | None = field(default=None, compare=False)
    is_async: bool = field(default=False, compare=False)
    doc: str = field(default="", compare=False)
    simple: tuple[tuple[str, ...], int] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, name: str, function: Callable[..., Any], inline: bool = False) -> Handler:
        try:
            signature: inspect.Signature | None = inspect.signature(function)
        except (TypeError, ValueError):
            signature = None  # a builtin without one: any params are passed through
        is_async = inspect.iscoroutinefunction(function)
        if inline and is_async:
            raise ValueError(f"{name}: an async handler cannot be inline")
        doc = inspect.getdoc(function) or ""
        return cls(name, function, inline, signature, is_async, doc, _simple_shape(signature))

    def bind(self, params: list[Any] | dict[str, Any] | None) -> Callable[[], Any]:
        """The call, ready to run; RPCError(Invalid Params) if params do not fit."""
        simple = self.simple
        if simple is not None:  # the common case, checked without inspect's bind
            names, required = simple
            if params is None:
                if required == 0:
                    return self.function
            elif isinstance(params, list):
                if required <= len(params) <= len(names):
                    return functools.partial(self.function, *params)
            elif all(k in names for k in params) and all(n in params for n in names[:required]):
                return functools.partial(self.function, **params)
        args: list[Any] = params if isinstance(params, list) else []
        kwargs: dict[str, Any] = params if isinstance(params, dict) else {}
        if any(not isinstance(key, str) for key in kwargs):
            raise RPCError.standard(INVALID_PARAMS, "parameter names must be strings")
        if self.signature is not None:
            try:
                bound = self.signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise RPCError.standard(INVALID_PARAMS, f"{self.name}: {exc}") from None
            args, kwargs = list(bound.args), bound.kwargs
        return functools.partial(self.function, *args, **kwargs)

    def describe(self) -> dict[str, Any]:
        """This method for rpc.discover, as an OpenRPC Method Object: name, summary, params
        and result as Content Descriptors (name, required, a JSON Schema), paramStructure;
        the Python signature and parameter kinds as extensions (``x-``)."""
        out: dict[str, Any] = {"name": self.name}
        if self.doc:
            out["summary"] = self.doc.splitlines()[0]
        if self.signature is None:
            out["params"] = []
            out["result"] = {"name": "result", "schema": {}}
            out["x-signature"] = f"{self.name}(...)"
            return out
        params = []
        by_position = by_name = True
        for p in self.signature.parameters.values():
            variadic = p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            required = not variadic and p.default is p.empty
            schema = _schema(p.annotation)
            if not variadic and p.default is not p.empty and _plain(p.default):
                schema["default"] = p.default
            params.append(
                {
                    "name": p.name,
                    "required": required,
                    "schema": schema,
                    "x-kind": p.kind.name.lower(),
                }
            )
            if p.kind == p.POSITIONAL_ONLY:
                by_name = False
            if p.kind == p.KEYWORD_ONLY and required:
                by_position = False
        out["params"] = params
        out["paramStructure"] = (
            "either" if by_position and by_name else "by-position" if by_position else "by-name"
        )
        out["result"] = {"name": "result", "schema": _schema(self.signature.return_annotation)}
        out["x-signature"] = f"{self.name}{self.signature}".replace("'", "")
        if self.is_async:
            out["x-async"] = True
        return out


#: Python type names -> JSON Schema types (anything else: any value, the empty schema)
JSON_TYPES = {
    "int": "integer",
    "float": "number",
    "str": "string",
    "bool": "boolean",
    "None": "null",
    "NoneType": "null",
    "list": "array",
    "tuple": "array",
    "dict": "object",
}


def _schema(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of a parameter or result annotation (``{}``: any JSON value)."""
    if annotation is inspect.Parameter.empty:
        return {}
    kind = JSON_TYPES.get(_annotation(annotation).split("[", 1)[0])
    return {"type": kind} if kind else {}


def _annotation(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, type):
        return value.__name__
    return str(value).replace("typing.", "")


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _simple_shape(signature: inspect.Signature | None) -> tuple[tuple[str, ...], int] | None:
    """(names, how many are required) when every parameter is plain positional-or-keyword;
    None otherwise (then inspect's bind decides)."""
    if signature is None:
        return None
    ps = list(signature.parameters.values())
    if not all(p.kind is p.POSITIONAL_OR_KEYWORD for p in ps):
        return None
    required = sum(1 for p in ps if p.default is p.empty)
    if not all(p.default is p.empty for p in ps[:required]):
        return None
    return tuple(p.name for p in ps), required
