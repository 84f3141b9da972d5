"""The JSON-RPC client over HTTP POST: ``rpc.connect("http://host:port/path")``.

Role: the same calls as ``rpc.Client`` (``request``, ``notify``, ``batch``,
``with_timeout``, ``client.name(...)``) for servers that speak JSON-RPC in HTTP bodies
(``ipcnet rpc serve ... http://...``, bitcoind, Ethereum nodes). Rules: one keep-alive
connection, one call at a time (a lock; HTTP/1.1 answers in order, so there is nothing to
pipeline: ``submit`` is refused); the response is parsed by h11, its body
delimited by Content-Length, chunks or the server's close (RFC 9112 §6.3); the body is
read as JSON-RPC whatever the status (servers that map errors to 500 or 404 still send the
error object), and a status other than 200 without a reply in it is an RPCError naming the
status; an error with id null is the error of every call the body answers; a kept-alive
connection the server closed while idle is replaced before it is reused, and a call is
never sent twice (it may have run: RFC 9112 §9.3.1.1), only again on a new connection
when writing it to a reused one failed; userinfo in the URL is Basic credentials; bodies
go as the codec's media type (application/json, or application/msgpack); the frame limit
(``max_frame``, 16 MiB) bounds a request body, refused before it is sent, and a response
body, refused as it arrives, as a stream client's frames are.
"""

from __future__ import annotations

import base64
import select
import threading
from types import TracebackType
from typing import Any, NoReturn, cast
from urllib.parse import unquote, urlsplit

from ipcnet.channel import Channel
from ipcnet.channel import connect as connect_channel
from ipcnet.errors import Broken, IPCError, RemoteProtocolError, Timeout, Unsupported
from ipcnet.framing import DEFAULT_MAX_SIZE, Codec, FrameTooLarge, LengthPrefixed
from ipcnet.protocols.jsonrpc import ClientProtocol, Reply, RPCError, make_params
from ipcnet.protocols.jsonrpc.client import Calls
from ipcnet.protocols.jsonrpc.http import JSON_TYPES, MEDIA_TYPES, split_url
from ipcnet.protocols.jsonrpc.messages import INTERNAL_ERROR
from ipcnet.rpc.client import _UNSET, Client, _Method, _Proxy

UNANSWERED = "the call may have run: a POST is not sent again, RFC 9112 §9.3.1.1"


def _dropped(channel: Channel) -> bool:
    """Whether an idle kept-alive connection is unusable: readable (EOF, a reset, or bytes
    nobody asked for) or in error, without waiting."""
    poller = select.poll()
    poller.register(channel.fileno(), select.POLLIN)
    return bool(poller.poll(0))


class HttpClient:
    """JSON-RPC 2.0 over HTTP POST to one URL; safe to share between threads."""

    def __init__(
        self,
        url: str,
        codec: Codec | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = 30.0,
        max_frame: int | None = None,
    ) -> None:
        self.address, self.path = split_url(url)
        parts = urlsplit(url)
        self.host = parts.netloc.rpartition("@")[2]
        #: the URL, its password (if any) shown as ***
        self.url = url
        self._auth: str | None = None
        if parts.username is not None:
            user, password = unquote(parts.username), unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self._auth = f"Basic {token}"
            userinfo = parts.netloc.rpartition("@")[0]
            if parts.password is not None:
                userinfo = userinfo.partition(":")[0] + ":***"
            self.url = url.replace(parts.netloc, f"{userinfo}@{self.host}", 1)
        # the frame limit, as over a stream: a request body over it is refused unsent, a
        # response body over it as it arrives (the u32 framing only carries the payload)
        self.max_frame = max_frame or DEFAULT_MAX_SIZE
        self.protocol = ClientProtocol(LengthPrefixed(self.max_frame), codec)
        #: the Content-Type of the bodies, the codec's (application/json, or msgpack's)
        self.media_type = MEDIA_TYPES.get(self.protocol.codec.name, JSON_TYPES)[0].decode()
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._channel: Channel | None = None

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        return self.request(method, make_params(args, kwargs))

    def request(
        self,
        method: str,
        params: list[Any] | dict[str, Any] | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> Any:
        """Call ``method``; RPCError if it failed (or the HTTP status was not 200)."""
        rid, frame = self.protocol.request(method, params)
        (reply,) = self._replies(frame, [rid], timeout)
        if reply.error is not None:
            raise reply.error
        return reply.result

    def batch(self, calls: Calls, *, timeout: float | None = _UNSET) -> list[Any]:
        """Send calls as one JSON-RPC batch in one POST; their results (or RPCErrors)."""
        if not calls:
            return []  # an empty batch is not a request
        ids, frame = self.protocol.batch(calls)
        replies = self._replies(frame, ids, timeout)
        return [r.error if r.error is not None else r.result for r in replies]

    def notify(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a notification (the server answers 204 No Content); RPCError only for an
        HTTP error status (a wrong path, a refused Content-Type)."""
        frame = self.protocol.notification(method, make_params(args, kwargs))
        status, _ = self._post(frame[4:], self.timeout)
        if status >= 300:
            raise RPCError(INTERNAL_ERROR, f"HTTP {status} from {self.url}")

    def submit(self, method: str, *args: Any, **kwargs: Any) -> NoReturn:
        """Refused (not sent to the server as a method named submit): HTTP answers one
        POST at a time, so there is nothing to pipeline."""
        raise Unsupported(f"{self.url}: an http:// client cannot pipeline; use request or batch")

    def with_timeout(self, timeout: float | None) -> _Proxy:
        """A proxy whose calls time out after ``timeout`` seconds: ``c.with_timeout(1).f()``."""
        return _Proxy(cast(Client, self), timeout)

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(cast(Client, self), name, _UNSET)

    def _replies(self, frame: bytes, ids: list[int], timeout: float | None) -> list[Reply]:
        """POST one call or batch (``frame``, length-prefixed); the replies to ``ids``."""
        status, body = self._post(frame[4:], self.timeout if timeout is _UNSET else timeout)
        try:
            replies = self.protocol.replies(body) if body else []
        except RemoteProtocolError:
            if status == 200:
                raise
            replies = []  # an error page, not JSON-RPC: the status says what went wrong
        if status != 200 and not replies:
            raise RPCError(INTERNAL_ERROR, f"HTTP {status} from {self.url}")
        if len(replies) == 1 and replies[0].id is None and replies[0].error is not None:
            return replies * len(ids)  # the server could not read the ids: every call's error
        by_id = {r.id: r for r in replies}
        for rid in ids:
            if rid not in by_id:
                raise RemoteProtocolError(f"{self.url} sent no reply to call {rid}: {body[:80]!r}")
        return [by_id[rid] for rid in ids]

    def _post(self, body: bytes, timeout: float | None) -> tuple[int, bytes]:
        import h11

        conn = h11.Connection(h11.CLIENT)
        headers = [
            ("Host", self.host),
            ("Content-Type", self.media_type),
            ("Content-Length", str(len(body))),
            ("Accept", self.media_type),
        ]
        if self._auth is not None:
            headers.append(("Authorization", self._auth))
        request = h11.Request(method="POST", target=self.path, headers=headers)
        data = conn.send(request) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        with self._lock:
            channel = self._channel
            if channel is not None and _dropped(channel):
                self.close()  # closed, reset or spoken on while idle: not reusable
                channel = None
            for attempt in (1, 2):
                reused = channel is not None
                if channel is None:
                    channel = self._channel = connect_channel(
                        self.address, connect_timeout=self.connect_timeout
                    )
                channel.timeout = timeout  # the call's time bounds writing it too
                try:
                    channel.write(data)
                    break
                except Timeout:
                    self.close()
                    raise
                except Broken as exc:
                    if not reused or attempt == 2:  # a new connection broke: not a stale one
                        return self._early_response(conn, channel, timeout, exc)
                    self.close()
                    channel = None
            assert channel is not None
            return self._response(conn, channel, timeout)

    def _early_response(
        self, conn: Any, channel: Channel, timeout: float | None, error: Broken
    ) -> tuple[int, bytes]:
        """Writing the request failed: the server may have answered before it stopped
        reading (a 413 for a body it will not take; RFC 9112 §9.5: a client sending a body
        SHOULD watch for an error response meanwhile). That answer if it came, else the
        write's error."""
        try:
            return self._response(conn, channel, timeout)
        except IPCError:
            raise error from None
        finally:
            self.close()

    def _response(self, conn: Any, channel: Channel, timeout: float | None) -> tuple[int, bytes]:
        """Read the response to the request just written (h11's events)."""
        import h11

        channel.timeout = timeout
        status, parts, heard, size = 0, [], False, 0
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self.close()
                raise RemoteProtocolError(f"bad HTTP response from {self.url}: {exc}") from None
            if event is h11.NEED_DATA:
                try:
                    data = channel.read(65536)
                except Timeout:
                    self.close()
                    raise
                except Broken as exc:
                    self.close()
                    if heard:
                        raise
                    raise Broken(f"{exc} before answering ({UNANSWERED})") from exc
                if not data and not heard:
                    self.close()
                    raise Broken(
                        f"{self.url} closed the connection before answering ({UNANSWERED})"
                    )
                heard = True
                conn.receive_data(data)  # b"": the server closed, ending a body it delimits so
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                parts.append(bytes(event.data))
                size += len(event.data)
                if size > self.max_frame:
                    self.close()
                    raise FrameTooLarge(
                        f"a response body from {self.url} over the limit of {self.max_frame}",
                        None,
                        self.max_frame,
                    )
            elif isinstance(event, h11.EndOfMessage):
                if conn.their_state is not h11.DONE:
                    self.close()  # the server closes after this response (Connection: close)
                return status, b"".join(parts)
            elif isinstance(event, h11.ConnectionClosed):
                self.close()
                raise Broken(f"{self.url} closed the connection")
            elif not isinstance(event, h11.InformationalResponse):
                self.close()
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
