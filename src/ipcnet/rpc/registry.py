"""The method registry: the only way a JSON-RPC server can reach a function.

Role: turn functions (``@methods.method``) or an object's public methods (``export``) into
the name -> Handler mapping the server looks names up in. Rules: names are fixed when the
registry is built, never computed from the wire; names starting with ``_`` or ``rpc.`` are
refused (private, and reserved by the specification); an exported object contributes only
public callables found on its class (for a module, functions defined in it).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from ipcnet.protocols.jsonrpc import Handler

F = TypeVar("F", bound=Callable[..., Any])
NAME_LIMIT = 200


def check_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > NAME_LIMIT:
        raise ValueError(f"bad method name {name!r}")
    if name.startswith("_") or ".__" in name or "._" in name:
        raise ValueError(f"method name {name!r} is private (starts with _)")
    if name.startswith("rpc."):
        raise ValueError(f"method names starting with 'rpc.' are reserved ({name!r})")
    if any(c.isspace() for c in name):
        raise ValueError(f"method name {name!r} contains white space")
    return name


class Methods(Mapping[str, Handler]):
    """name -> Handler; build with the ``method`` decorator, ``add`` or ``export``."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def method(
        self,
        function: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        inline: bool = False,
    ) -> Any:
        """Register a function under its name (or ``name``); ``inline=True`` promises it is
        quick and never blocks, so servers call it without a worker thread."""

        def register(fn: F) -> F:
            self.add(fn, name=name, inline=inline)
            return fn

        return register(function) if function is not None else register

    def add(
        self, function: Callable[..., Any], name: str | None = None, inline: bool = False
    ) -> None:
        key = check_name(name if name is not None else function.__name__)
        if key in self._handlers:
            raise ValueError(f"method {key!r} is already registered")
        self._handlers[key] = Handler.of(key, function, inline=inline)

    def export(self, obj: Any, prefix: str = "", inline: bool = False) -> Methods:
        """Register the public methods of ``obj`` (functions defined in it, for a module)."""
        for name, function in public_callables(obj):
            self.add(function, name=prefix + name, inline=inline)
        return self

    def __getitem__(self, name: str) -> Handler:
        return self._handlers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)

    def __repr__(self) -> str:
        return f"<Methods {', '.join(self._handlers) or '(none)'}>"


def public_callables(obj: Any) -> list[tuple[str, Callable[..., Any]]]:
    """(name, callable) for each public method of ``obj``, looked up once, now."""
    found: list[tuple[str, Callable[..., Any]]] = []
    if isinstance(obj, types.ModuleType):
        for name, value in sorted(vars(obj).items()):
            if (
                not name.startswith("_")
                and inspect.isfunction(value)
                and value.__module__ == obj.__name__
            ):
                found.append((name, value))
        return found
    cls = obj if isinstance(obj, type) else type(obj)
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        attribute = inspect.getattr_static(cls, name)
        if isinstance(attribute, (staticmethod, classmethod)) or inspect.isfunction(attribute):
            value = getattr(obj, name)
            if callable(value):
                found.append((name, value))
    return found


def as_methods(obj: Any) -> Methods:
    """A Methods for ``obj``: itself, a mapping of Handlers, or an object to export."""
    if isinstance(obj, Methods):
        return obj
    if isinstance(obj, Mapping):
        methods = Methods()
        for name, value in obj.items():
            if isinstance(value, Handler):
                methods._handlers[check_name(name)] = value
            else:
                methods.add(value, name=name)
        return methods
    if isinstance(obj, type):
        obj = obj()  # a class: serve one instance made without arguments
    return Methods().export(obj)


#: the registry behind ``ipcnet.rpc.method``
methods = Methods()
method = methods.method
