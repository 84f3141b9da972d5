"""JSON-RPC 2.0 over HTTP POST, as a sans-IO service: the HTTP layer around JsonRpcService.

Role: what bitcoind, Ethereum nodes, Odoo and aria2 speak: a request (or batch) in a POST
body, the reply in the response body. The HTTP head is parsed by the web server's parsers
(``protocols.http.parsers``: llhttp or h11, the same framing checks); each body is handed,
as one frame, to a ``JsonRpcSession`` whose framing is a u32 length prefix, so batches,
async handlers, jobs and errors are exactly those of every other framing. Rules (the
common JSON-RPC-over-HTTP convention):
- 200 with ``application/json`` for any reply, a JSON-RPC error included (the error is in
  the body, as JSON-RPC clients expect; with the msgpack codec ``application/msgpack``,
  which its bodies must come as too, RFC 9110 §8.3); 204 when the body held only notifications; the
  body limit (``max_body``, ``--max-frame``) is a request's: a reply is as large as it is;
- the target in origin-form (``/PATH``) or absolute-form (``http://HOST/PATH``, which a
  server must accept: RFC 9112 §3.2.2), else 400;
- 405 with ``Allow: POST`` for another method (OPTIONS too; HEAD gets the head alone,
  RFC 9110 §9.3.2; ``OPTIONS *``, about the server itself, 200 with ``Allow: POST``), 404
  for another path, 415 for a Content-Type other than ``application/json`` (or
  ``application/json-rpc``, ``application/jsonrequest``) and, with ``Accept-Encoding:
  identity``, for a body in a content coding (RFC 9110 §12.5.3), 413 for a body over the limit,
  400 for a malformed request or one the client's EOF cut short; the status line and
  Connection header follow RFC 9112 (keep-alive by default in 1.1);
- a body comes with a Content-Length or in the chunked coding (RFC 9112 §7.1, which a
  recipient MUST parse: ``protocols.http.chunked``, bounded, trailers dropped, bad chunk
  syntax 400); a refused request's body is dropped as it arrives when its length is
  known, and a chunked one's ends the connection after the answer;
- an answer that ends the connection while the client may still be sending (an error,
  or input after a ``Connection: close`` request) closes in stages (RFC 9112 §9.6):
  write shut down, input read and dropped until the client's EOF, ``linger_bytes`` or
  ``linger_timeout``, so the client reads the answer instead of a reset;
- ``Expect: 100-continue`` gets ``100 Continue`` once the head is acceptable (curl waits
  for it before sending a body over 1 KiB), never in answer to HTTP/1.0 (RFC 9110
  §10.1.1, §15.2); requests are answered one at a time, in order;
- a request head must come within ``Limits.header_timeout`` (the web server's rule): from
  the accept for the first, from its first byte for a later one; a connection silent
  until then is closed without an answer, a head still incomplete gets 408 and a close
  (slowloris: trickling bytes do not move the deadline).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ipcnet.errors import BadRequest
from ipcnet.framing.decoders import LengthPrefixed
from ipcnet.protocols.base import (
    CLOSE,
    SHUTDOWN_WRITE,
    Action,
    Actions,
    BaseService,
    BaseSession,
    Outcome,
    Peer,
    Run,
    Timer,
)
from ipcnet.protocols.http.chunked import ChunkedBody
from ipcnet.protocols.http.conditional import DateCache
from ipcnet.protocols.http.limits import Limits
from ipcnet.protocols.http.messages import Head
from ipcnet.protocols.http.parsers import check_head, make_parser
from ipcnet.protocols.http.responses import head as response_head
from ipcnet.protocols.http.responses import simple
from ipcnet.protocols.http.target import split_target
from ipcnet.protocols.jsonrpc.server import JsonRpcService, JsonRpcSession

JSON_TYPES = (b"application/json", b"application/json-rpc", b"application/jsonrequest")
#: codec name -> the Content-Types a body of it may come with; replies carry the first
MEDIA_TYPES = {
    "json": JSON_TYPES,
    "msgpack": (b"application/msgpack", b"application/x-msgpack", b"application/vnd.msgpack"),
}
MAX_BODY = 16 * 1024 * 1024
REPLY_LIMIT = 0xFFFFFFFF  # a reply body's size: the u32 of the inner framing, not max_body


def split_url(url: str) -> tuple[str, str]:
    """``http://HOST:PORT/PATH`` -> (``tcp://HOST:PORT``, ``/PATH``); ValueError if not."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{url}: expected http://HOST:PORT/PATH (no query, no https)")
    try:
        port = 80 if parts.port is None else parts.port
    except ValueError:
        raise ValueError(f"{url}: bad port") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"tcp://{host}:{port}", parts.path or "/"


class JsonRpcHttpService(BaseService):
    """JSON-RPC 2.0 in HTTP POST bodies sent to ``path``, answered by ``methods``' service."""

    name = "jsonrpc-http"

    def __init__(
        self,
        rpc: JsonRpcService,
        path: str = "/",
        max_body: int = MAX_BODY,
        limits: Limits | None = None,
    ) -> None:
        # bodies are bounded as they come (413), replies by nothing but their size: the
        # inner framing only carries them (a u32 length, the most it can say); everything
        # else (methods, codec, debug, the batch limit) is ``rpc``'s
        self.rpc = JsonRpcService(
            rpc.methods,
            LengthPrefixed(REPLY_LIMIT),
            rpc.codec,
            debug=rpc.debug,
            max_batch=rpc.max_batch,
            title=rpc.title,
        )
        self.path = path.encode()
        self.media_types = MEDIA_TYPES.get(rpc.codec.name, JSON_TYPES)
        self.max_body = max_body
        self.limits = limits or Limits()  # the web server's: head size, header deadline
        self.dates = DateCache()

    def start(self, peer: Peer) -> tuple[JsonRpcHttpSession, Actions]:
        return JsonRpcHttpSession(self), Timer(self.limits.header_timeout)


class JsonRpcHttpSession(BaseSession):
    """HEAD (reading a request head) -> BODY (its Content-Length bytes, or its chunks) ->
    CALLING (the JSON-RPC session runs it) -> HEAD ...; LINGERING after an answer that ends
    the connection while input may follow (input dropped until EOF or the timer), CLOSED
    after Close."""

    def __init__(self, service: JsonRpcHttpService) -> None:
        self.service = service
        self.parser = make_parser("auto")
        self.rpc: JsonRpcSession = service.rpc.start(Peer(None, None))[0]
        self.framing = service.rpc.framing
        self.buf = bytearray()
        self.head: Head | None = None
        self.length = 0
        self.chunked: ChunkedBody | None = None  # the body being read is chunked
        self.skip = 0  # bytes of a refused request's body still to drop
        self.keep_alive = True
        self.head_only = False  # the request is HEAD: its response has no content
        self.calling = False
        self.closed = False
        self.eof = False  # the client half-closed: nothing to linger for
        self.lingering = False  # closed, our last answer out, the write side shut down
        self.lingered = 0
        self.waiting_head = True  # the header deadline runs (armed by start)

    # --- the contract --------------------------------------------------------------------

    def feed(self, data: bytes) -> Actions:
        if self.lingering:
            self.lingered += len(data)
            if self.lingered > self.service.limits.linger_bytes:
                self.lingering = False
                return CLOSE
            return None
        if self.skip:
            dropped = min(self.skip, len(data))
            self.skip -= dropped
            data = data[dropped:]
        self.buf += data
        return self._pump() if not self.calling and not self.closed else None

    def feed_eof(self) -> Actions:
        self.eof = True
        if self.lingering:
            self.lingering = False
            return CLOSE
        if self.calling or self.closed:
            self.keep_alive = False
            return None
        if self.head is not None or self.buf.strip():  # a request cut short: RFC 9112 §8
            return self._fail(400)
        self.closed = True
        return CLOSE

    def resume(self, job: Run, outcome: Outcome) -> Actions:
        return self._reply(self.rpc.resume(job, outcome))

    def on_timer(self) -> Actions:
        if self.lingering:  # the client had its time to read our answer
            self.lingering = False
            return CLOSE
        if not self.waiting_head or self.closed:
            return None
        if not self.buf:  # nothing came: closed without an answer, as nginx does
            self.closed = True
            return CLOSE
        return self._fail(408)

    # --- the machine ---------------------------------------------------------------------

    def _pump(self) -> list[Action]:
        out: list[Action] = []
        while not self.calling and not self.closed:
            if self.head is None:
                if not self._read_head(out):
                    break
                continue  # a head to serve, or one refused: the next may be here already
            if self.chunked is not None:
                try:
                    if not self.chunked.feed(self.buf):
                        break
                except BadRequest as exc:
                    out += self._fail(exc.status)
                    break
                body = bytes(self.chunked.body)
                self.chunked = None
            elif len(self.buf) < self.length:
                break
            else:
                body = bytes(self.buf[: self.length])
                del self.buf[: self.length]
            self.head, self.calling = None, True
            out += self._reply(self.rpc.feed(self.framing.encode(body)))
        return out

    def _read_head(self, out: list[Action]) -> bool:
        """Parse a whole head from ``buf`` into ``self.head``; False if it is not all here
        or was refused (the refusal is in ``out``)."""
        end = self.buf.find(b"\r\n\r\n")
        limits = self.service.limits
        if end < 0:
            if len(self.buf) > limits.header_bytes:
                out += self._fail(431)
            elif self.buf and not self.waiting_head:  # a head has begun: its deadline runs
                self.waiting_head = True
                out.append(Timer(limits.header_timeout))
            return False
        if self.waiting_head:
            self.waiting_head = False
            out.append(Timer(None))
        raw = bytes(self.buf[: end + 4])
        del self.buf[: end + 4]
        self.head_only = False
        try:
            head = self.parser.parse(raw)
            self.head_only = head.method == "HEAD"
            self.keep_alive, _ = check_head(head)
        except BadRequest as exc:
            out += self._fail(exc.status)
            return False
        chunked = head.get(b"transfer-encoding") is not None  # check_head: chunked, last
        expect = head.get(b"expect") if head.version != "1.0" else None  # RFC 9110 §10.1.1
        status, extra = self._check(head)
        if status == 413 or (status and (expect or chunked)):
            out += self._fail(status, extra)  # the body is not read: close after this
            return False
        self.head, self.length = head, int(head.get(b"content-length") or 0)
        if status:  # the body is dropped (as it arrives), the connection goes on
            self.head, self.skip = None, max(0, self.length - len(self.buf))
            del self.buf[: self.length]
            out += self._response(status, extra=extra)
            return not self.closed
        if chunked:
            self.chunked = ChunkedBody(
                self.service.max_body,
                max_trailer=limits.header_bytes,
                max_fields=limits.header_count,
            )
        waiting = not self.buf if chunked else len(self.buf) < self.length
        if expect is not None and expect.lower() == b"100-continue" and waiting:
            out.append(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def _check(self, head: Head) -> tuple[int, list[tuple[bytes, bytes]]]:
        """The status that refuses ``head`` (0: none) and the headers that go with it."""
        if head.target == b"*":
            if head.method == "OPTIONS":  # RFC 9110 §9.3.7: about the server itself
                return 200, [(b"Allow", b"POST")]
            return 400, []  # RFC 9112 §3.2.4: asterisk-form is for OPTIONS only
        try:
            path = split_target(head.target)[0]  # origin-form, or absolute-form (§3.2.2)
        except BadRequest as exc:
            return exc.status, []
        if path != self.service.path:
            return 404, []
        if head.method != "POST":
            return 405, [(b"Allow", b"POST")]
        kind = (head.get(b"content-type") or b"").split(b";", 1)[0].strip().lower()
        if kind not in self.service.media_types:
            return 415, []
        coding = (head.get(b"content-encoding") or b"identity").strip().lower()
        if coding != b"identity":  # RFC 9110 §12.5.3: a coding we do not undo, named as such
            return 415, [(b"Accept-Encoding", b"identity")]
        if int(head.get(b"content-length") or 0) > self.service.max_body:
            return 413, []
        return 0, []

    def _reply(self, actions: Actions) -> list[Action]:
        """The JSON-RPC session's actions for one body, as HTTP: its reply frame becomes a
        200 (none: 204), its jobs pass through; then the next request, if one waits."""
        items: list[Action] = []
        if isinstance(actions, list | tuple):
            items = list(actions)
        elif actions is not None:
            items = [actions]  # type: ignore[list-item]
        out: list[Action] = []
        frames = bytearray()
        for item in items:
            if isinstance(item, Run):
                out.append(item)
                return out  # resume() brings the rest
            if isinstance(item, bytes | bytearray | memoryview):
                frames += item
        body = bytes(frames[4:])  # one body in, one reply frame out (u32 length first)
        self.calling = False
        out += self._response(200 if body else 204, body)
        if not self.closed:
            out += self._pump()
        return out

    def _response(
        self,
        status: int,
        body: bytes | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
        lingers: bool = False,
    ) -> list[Action]:
        """The response, then the end of the connection unless it is kept alive."""
        keep = self.keep_alive and status < 500 and status not in (400, 411, 413, 431)
        if status == 200 and body:
            kind = self.service.media_types[0]  # the codec's: application/json, or msgpack's
        else:
            kind = b"text/html; charset=utf-8"
        date = self.service.dates.now()
        if status == 204:  # no body and no Content-Length (RFC 9110 §8.6)
            response = response_head(204, date, [], keep)
        elif status == 200 and body is None:  # OPTIONS *
            response = response_head(200, date, [*(extra or []), (b"Content-Length", b"0")], keep)
        else:
            response = simple(
                status, date, keep, self.head_only, extra=extra, body=body, content_type=kind
            )
        if keep:
            return [response]
        self.closed = True
        if self.eof or not (lingers or self.buf or self.skip or self.head is not None):
            return [response, CLOSE]
        # RFC 9112 §9.6: close in stages, so that input still coming does not reset the
        # connection before the client has read this answer
        self.lingering, self.lingered = True, 0
        self.buf.clear()
        self.head = self.chunked = None
        return [response, SHUTDOWN_WRITE, Timer(self.service.limits.linger_timeout)]

    def _fail(self, status: int, extra: list[tuple[bytes, bytes]] | None = None) -> list[Action]:
        self.keep_alive = False
        return self._response(status, extra=extra, lingers=True)
