"""The JSON-RPC 2.0 client's side, sans-IO: calls to bytes, bytes to replies.

Role: what the sync and asyncio clients in ``ipcnet.rpc`` share. Rules: ids are integers
that only grow, so an id is never reused on a connection and a late reply can never be
mistaken for a later call's; params are positional (a list) or named (a dict), never both;
a reply that is not valid JSON-RPC 2.0 raises RemoteProtocolError (the connection cannot
be trusted any more); a batch reply yields one Reply per member.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from ipcnet.errors import LocalProtocolError, RemoteProtocolError
from ipcnet.framing.codecs import Codec, JSONCodec
from ipcnet.framing.decoders import Framing, NewlineDelimited
from ipcnet.protocols.jsonrpc.messages import Reply, parse_reply


def make_params(args: Sequence[Any], kwargs: dict[str, Any]) -> list[Any] | dict[str, Any] | None:
    if args and kwargs:
        raise LocalProtocolError("JSON-RPC params are positional or named, not both")
    if kwargs:
        return dict(kwargs)
    if args:
        return list(args)
    return None


class ClientProtocol:
    def __init__(self, framing: Framing | None = None, codec: Codec | None = None) -> None:
        self.framing = framing or NewlineDelimited()
        self.codec = codec or JSONCodec()
        self.decoder = self.framing.decoder()
        self._encode = self.framing.encoder(self.codec)  # obj -> frame, in one step
        self._ids = itertools.count(1)

    def request(self, method: str, params: list[Any] | dict[str, Any] | None) -> tuple[int, bytes]:
        """A new id and the frame that calls ``method``."""
        rid = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
        if params is not None:
            message["params"] = params
        return rid, self._encode(message)

    def notification(self, method: str, params: list[Any] | dict[str, Any] | None) -> bytes:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        return self._encode(message)

    def batch(
        self, calls: Sequence[tuple[str, list[Any] | dict[str, Any] | None]]
    ) -> tuple[list[int], bytes]:
        """Several calls in one frame (a JSON-RPC batch); their ids in order."""
        ids, messages = [], []
        for method, params in calls:
            rid = next(self._ids)
            message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
            if params is not None:
                message["params"] = params
            ids.append(rid)
            messages.append(message)
        return ids, self._encode(messages)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Reply]:
        """Replies complete after ``data``; RemoteProtocolError if the server breaks rules."""
        # the common case: whole replies arrived (one, or a burst), taken without buffering
        frames: Iterable[bytes] | None = (
            self.decoder.whole(data) if data.__class__ is bytes else None
        )
        if frames is None:
            self.decoder.feed(data)
            frames = self.decoder
        decode = self.codec.decode
        replies: list[Reply] = []
        for frame in frames:
            message = decode(frame)
            for item in message if message.__class__ is list and message else (message,):
                reply = parse_reply(item)
                if reply is None:
                    raise RemoteProtocolError(f"not a JSON-RPC 2.0 response: {str(item)[:80]}")
                replies.append(reply)
        return replies

    def feed_eof(self) -> None:
        """The server ended: IncompleteFrame if it stopped inside a reply."""
        self.decoder.feed_eof()
