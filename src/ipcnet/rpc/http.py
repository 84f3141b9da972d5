"""The JSON-RPC client over HTTP POST: ``rpc.connect("http://host:port/path")``.

Role: the same calls as ``rpc.Client`` (``request``, ``notify``, ``client.name(...)``) for
servers that speak JSON-RPC in HTTP bodies (``ipcnet rpc serve ... http://...``, bitcoind,
Ethereum nodes). Rules: one keep-alive connection, one call at a time (a lock; HTTP/1.1
answers in order, so there is nothing to pipeline); the response is parsed by h11; a
status other than 200/204 is an RPCError with the status in its message; a closed
keep-alive connection is reopened once for the next call.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from ipcnet.channel import Channel
from ipcnet.channel import connect as connect_channel
from ipcnet.errors import Broken, RemoteProtocolError, Timeout
from ipcnet.framing import Codec, LengthPrefixed
from ipcnet.protocols.jsonrpc import ClientProtocol, RPCError, make_params
from ipcnet.protocols.jsonrpc.http import split_url
from ipcnet.protocols.jsonrpc.messages import INTERNAL_ERROR


class HttpClient:
    """JSON-RPC 2.0 over HTTP POST to one URL; safe to share between threads."""

    def __init__(
        self,
        url: str,
        codec: Codec | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = 30.0,
    ) -> None:
        self.url = url
        self.address, self.path = split_url(url)
        self.host = url.split("//", 1)[1].split("/", 1)[0]
        self.protocol = ClientProtocol(LengthPrefixed(), codec)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._channel: Channel | None = None

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        return self.request(method, make_params(args, kwargs))

    def request(
        self, method: str, params: list[Any] | dict[str, Any] | None = None, **kw: Any
    ) -> Any:
        """Call ``method``; RPCError if it failed (or the HTTP status was not 200)."""
        rid, frame = self.protocol.request(method, params)
        status, body = self._post(frame[4:], kw.get("timeout", self.timeout))
        if status != 200:
            raise RPCError(INTERNAL_ERROR, f"HTTP {status} from {self.url}")
        replies = self.protocol.feed(self.protocol.framing.encode(body))
        if len(replies) != 1 or replies[0].id != rid:
            raise RemoteProtocolError(f"{self.url} answered another call: {body[:80]!r}")
        reply = replies[0]
        if reply.error is not None:
            raise reply.error
        return reply.result

    def notify(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a notification; the server answers 204 No Content."""
        frame = self.protocol.notification(method, make_params(args, kwargs))
        self._post(frame[4:], self.timeout)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.call(name, *args, **kwargs)

    def _post(self, body: bytes, timeout: float | None) -> tuple[int, bytes]:
        with self._lock:
            for attempt in (1, 2):
                fresh = self._channel is None
                if self._channel is None:
                    self._channel = connect_channel(
                        self.address, connect_timeout=self.connect_timeout
                    )
                try:
                    return self._exchange(self._channel, body, timeout)
                except Broken:
                    self.close()
                    if fresh or attempt == 2:  # a new connection broke: not a stale one
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(self, channel: Channel, body: bytes, timeout: float | None) -> tuple[int, bytes]:
        import h11

        conn = h11.Connection(h11.CLIENT)
        headers = [
            ("Host", self.host),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Accept", "application/json"),
        ]
        request = h11.Request(method="POST", target=self.path, headers=headers)
        channel.write(
            conn.send(request) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        )
        channel.timeout = timeout
        status, parts = 0, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = channel.read(65536)
                except Timeout:
                    self.close()
                    raise
                if not data:
                    raise Broken(f"{self.url} closed the connection")
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                if conn.their_state is not h11.DONE:
                    self.close()  # the server closes after this response (Connection: close)
                return status, b"".join(parts)
            elif isinstance(event, h11.ConnectionClosed):
                raise Broken(f"{self.url} closed the connection")
            elif not isinstance(event, h11.InformationalResponse):
                raise RemoteProtocolError(f"unexpected HTTP event from {self.url}: {event!r}")

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<rpc.HttpClient {self.url}>"
