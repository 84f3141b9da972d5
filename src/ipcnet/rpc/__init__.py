"""JSON-RPC 2.0 for ipcnet: register methods, serve them under any driver, call them.

    from ipcnet import rpc

    @rpc.method
    def add(a: int, b: int) -> int:
        return a + b

    rpc.serve(rpc.methods, ["tcp://127.0.0.1:9000"])          # or: ipcnet rpc serve mod:methods

    with rpc.connect("tcp://127.0.0.1:9000") as client:
        client.add(1, 2)                                       # 3
        client.with_timeout(0.5).add(a=1, b=2)                 # named params, 0.5 s timeout

Framing defaults: newline-delimited JSON on tcp/unix, Content-Length on exec:/stdio:.
"""

from __future__ import annotations

from ipcnet.protocols.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_ERROR,
    RPCError,
)
from ipcnet.rpc.client import Client, Pending, connect
from ipcnet.rpc.registry import Methods, as_methods, method, methods
from ipcnet.rpc.server import make_service, serve, serve_channel

Error = RPCError

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "SERVER_ERROR",
    "Client",
    "Error",
    "Methods",
    "Pending",
    "RPCError",
    "as_methods",
    "connect",
    "make_service",
    "method",
    "methods",
    "serve",
    "serve_channel",
]


def __getattr__(name: str) -> object:
    if name == "aio":  # the asyncio client, imported on first use (rpc.aio.connect)
        import importlib

        return importlib.import_module("ipcnet.rpc.aio")
    raise AttributeError(f"module 'ipcnet.rpc' has no attribute {name!r}")
