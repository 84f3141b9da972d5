"""The JSON-RPC 2.0 client's side, sans-IO: calls to bytes, bytes to replies.

Role: what the sync and asyncio clients in ``ipcnet.rpc`` share. Rules: ids are integers
that only grow, so an id is never reused on a connection and a late reply can never be
mistaken for a later call's; params are positional (a list) or named (a dict), never both;
a reply that is not valid JSON-RPC 2.0 raises RemoteProtocolError (the connection cannot
be trusted any more); a batch reply yields one Reply per member. An error with id null
(the server could not read the request's id: a parse error, a frame or batch over its
limits) belongs to the one frame in flight, when only one is (``orphan``), and to none
while a call that timed out (``abandon``) may still be answered: then it could be its. A
peer may be client and server at once (the specification's overview; language servers
send notifications and requests to the editor): a notification from the server is
ignored, and a request gets Method Not Found, waiting in ``outgoing`` for the client to
send, since this client serves no methods.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from ipcnet.errors import LocalProtocolError, RemoteProtocolError
from ipcnet.framing.codecs import Codec, JSONCodec
from ipcnet.framing.decoders import Framing, NewlineDelimited
from ipcnet.protocols.jsonrpc.messages import (
    METHOD_NOT_FOUND,
    BadRequest,
    Reply,
    RPCError,
    error_reply,
    parse_reply,
    parse_request,
    shorten,
)

MAX_ABANDONED = 1024  # timed-out calls remembered until their late replies come
#: the calls of a batch: (method, params) pairs
Calls = Sequence[tuple[str, list[Any] | dict[str, Any] | None]]


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
        self._abandoned: set[int] = set()  # calls that timed out, their replies not yet in
        self._unsure = False  # more of them than MAX_ABANDONED: no orphan is placed again
        #: frames to send back: the answers to requests the server sent (see the rules)
        self.outgoing = bytearray()

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

    def batch(self, calls: Calls) -> tuple[list[int], bytes]:
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
        """Replies complete after ``data``, those with id null last; RemoteProtocolError if
        the server breaks the rules."""
        # the common case: whole replies arrived (one, or a burst), taken without buffering
        whole = self.decoder.whole(data) if data.__class__ is bytes else None
        frames: Iterable[bytes]
        if whole is None:
            self.decoder.feed(data)
            frames = self.decoder
        elif len(whole) != 1:
            frames = whole
        else:  # one reply: replies() and parse_reply's first test, inline
            message = self.codec.decode(whole[0])
            if message.__class__ is dict and len(message) == 3 and "result" in message:
                rid = message.get("id")
                if (rid.__class__ is int or rid.__class__ is str) and message.get(
                    "jsonrpc"
                ) == "2.0":
                    if self._abandoned:
                        self._abandoned.discard(rid)
                    return [Reply(rid, message["result"])]
            return self._filed(self._parsed(message))
        replies: list[Reply] = []
        for frame in frames:
            replies += self.replies(frame)
        return self._filed(replies)

    def _filed(self, replies: list[Reply]) -> list[Reply]:
        """``replies`` in the order to file them, those with id null last; the abandoned
        calls they answer forgotten."""
        if len(replies) > 1 and any(r.id is None for r in replies):
            replies.sort(key=_null_last)  # stable: an orphan is placed after the rest are filed
        if self._abandoned:
            self._abandoned.difference_update(r.id for r in replies)
        return replies

    def replies(self, payload: bytes) -> list[Reply]:
        """The replies in one payload (a reply, or a batch's array of them)."""
        return self._parsed(self.codec.decode(payload))

    def _parsed(self, message: Any) -> list[Reply]:
        """The replies in one decoded payload."""
        replies: list[Reply] = []
        for item in message if message.__class__ is list and message else (message,):
            reply = parse_reply(item)
            if reply is not None:
                replies.append(reply)
            elif not self._from_server(item):
                raise RemoteProtocolError(f"not a JSON-RPC 2.0 response: {str(item)[:80]}")
        return replies

    def _from_server(self, item: Any) -> bool:
        """True if ``item`` is a request or notification the server sent (a request's
        answer is then in ``outgoing``); False if it is neither a reply nor a request."""
        request = parse_request(item)
        if isinstance(request, BadRequest):
            return False
        if not request.notification:
            detail = f"{shorten(request.method)} (this client serves no methods)"
            error = RPCError.standard(METHOD_NOT_FOUND, detail)
            self.outgoing += self._encode(error_reply(request.id, error))
        return True

    def take_outgoing(self) -> bytes:
        """What to send the server now (b"" almost always), handed out once."""
        out = bytes(self.outgoing)
        self.outgoing.clear()
        return out

    def abandon(self, rid: int) -> None:
        """Call ``rid`` stopped waiting (it timed out): until its reply comes (to be dropped),
        an error with id null may be its, so ``orphan`` is False."""
        if len(self._abandoned) < MAX_ABANDONED:
            self._abandoned.add(rid)
        else:
            self._unsure = True

    def orphan(self, reply: Reply) -> bool:
        """True for an error the server could not give an id, that can only belong to the
        frame in flight when one is: no timed-out call may be waiting for its reply."""
        return (
            reply.id is None
            and reply.error is not None
            and not self._abandoned
            and not self._unsure
        )

    def feed_eof(self) -> list[Reply]:
        """The server ended: the replies of a last frame the end completed (a last line
        without its newline); IncompleteFrame if it stopped inside a reply."""
        self.decoder.feed_eof()
        return self.feed(b"")  # b"": nothing more, only what is in the decoder


def _null_last(reply: Reply) -> bool:
    return reply.id is None
