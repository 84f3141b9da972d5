"""JSON-RPC 2.0 (https://www.jsonrpc.org/specification) as a sans-IO protocol.

``JsonRpcService`` is the server (a Service for every driver); ``ClientProtocol`` is the
client's half; ``Handler`` wraps a function the server may call; ``RPCError`` is an error
object (raised by handlers to choose the reply, raised by clients on error replies).
"""

from __future__ import annotations

from ipcnet.protocols.jsonrpc.client import ClientProtocol, make_params
from ipcnet.protocols.jsonrpc.handlers import Handler
from ipcnet.protocols.jsonrpc.messages import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_ERROR,
    Reply,
    RPCError,
)
from ipcnet.protocols.jsonrpc.server import DISCOVER, JsonRpcService, JsonRpcSession

__all__ = [
    "DISCOVER",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "SERVER_ERROR",
    "ClientProtocol",
    "Handler",
    "JsonRpcService",
    "JsonRpcSession",
    "RPCError",
    "Reply",
    "make_params",
]
