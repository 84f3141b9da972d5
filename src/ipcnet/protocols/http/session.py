"""One HTTP/1.1 connection as a sans-IO state machine: bytes in, responses out, in order.

Role: cut request heads from the stream, check them against the limits, parse them with a
real parser, and answer GET/HEAD from the injected Filesystem. Rules:
- States: reading a head (``buf`` holds a partial one), waiting for a Run job (``job``),
  or closing (``closing``: our side is half-closed and input is read and dropped until the
  client's EOF, ``linger_bytes`` or ``linger_timeout``, so that the client really receives
  our last answer instead of a reset).
- Pipelining: requests are answered strictly in order; a request that needs a Run job
  stops the parsing of later ones until ``resume``; after ``pipeline`` answers from one
  read a no-op Run lets the driver flush (its backpressure then applies).
- The header deadline is a Timer armed once, when a head is first seen incomplete; bytes
  trickling in do not move it (slowloris -> 408). Keep-alive idleness is the driver's
  idle timeout.
- Any body is refused (413 for GET/HEAD, 405 for other methods) and the connection closes;
  framing errors (400, 414, 431, 505) close too; path errors (403/404) keep it alive.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from ipcnet.protocols.base import (
    CLOSE,
    SHUTDOWN_WRITE,
    Action,
    Actions,
    Outcome,
    Peer,
    Run,
    SendFile,
    Timer,
)
from ipcnet.protocols.http import responses
from ipcnet.protocols.http.conditional import if_range_holds, not_modified
from ipcnet.protocols.http.messages import BadRequest, Head
from ipcnet.protocols.http.parsers import check_head
from ipcnet.protocols.http.ranges import parse_range
from ipcnet.protocols.http.resources import Entity, Found, NeedsSlash, Page, Refused
from ipcnet.protocols.http.target import Target

if TYPE_CHECKING:
    from ipcnet.protocols.http.service import HttpService

ALLOW = [(b"Allow", b"GET, HEAD")]
INLINE_BODY = 64 * 1024  # in-memory bodies up to this are joined to the head (one write)
STATUS_PATHS = {b"/_status": "html", b"/_status.json": "json"}


def _yield() -> None:
    """The no-op job that lets the driver flush between batches of pipelined answers."""


def accepts_gzip(value: bytes | None) -> bool:
    if not value:
        return False
    for item in value.lower().split(b","):
        coding, _, params = item.partition(b";")
        if coding.strip() not in (b"gzip", b"*"):
            continue
        q = params.strip()
        if q.startswith(b"q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


class Request:
    """What the session remembers about the request being answered."""

    __slots__ = ("head", "head_only", "keep_alive", "kind", "target")

    def __init__(self, head: Head, keep_alive: bool) -> None:
        self.head = head
        self.keep_alive = keep_alive
        self.head_only = head.method == "HEAD"
        self.target: Target | None = None
        self.kind = "file"  # or "html"/"json" for the status page, "yield"


class HttpSession:
    __slots__ = (
        "buf",
        "closing",
        "eof",
        "job",
        "lingered",
        "parser",
        "peer",
        "request",
        "service",
        "timer",
    )

    def __init__(self, service: HttpService, peer: Peer) -> None:
        self.service = service
        self.peer = peer
        self.parser = service.new_parser()
        self.buf = b""  # input not yet answered: a partial head, or pipelined requests
        self.job: Run | None = None
        self.request: Request | None = None
        self.closing = False
        self.eof = False
        self.timer = False  # the header deadline is armed
        self.lingered = 0

    # --- the contract --------------------------------------------------------------------

    def feed(self, data: bytes) -> Actions:
        if self.closing:
            return self._linger(len(data))
        if self.job is not None:  # drivers do not feed during a job; keep it anyway
            self.buf += data
            return None
        if self.buf:
            data = self.buf + data
            self.buf = b""
        out: list[Action] = []
        self._serve(data, out)
        if len(out) == 1 and out[0].__class__ is bytes:
            return out[0]  # the common case: one answer, sent without a list
        return out or None

    def feed_eof(self) -> Actions:
        if self.job is not None:
            self.eof = True  # answer what we have, then close (see resume)
            return None
        return CLOSE

    def resume(self, job: Run, outcome: Outcome) -> Actions:
        if job is not self.job:
            return None
        request = self.request
        self.job = self.request = None
        assert request is not None
        out: list[Action] = []
        if request.kind != "yield":
            self._answer_job(request, outcome, out)
        if not self.closing:
            data, self.buf = self.buf, b""
            if data:
                self._serve(data, out)
            if self.eof and self.job is None and not self.closing:
                out.append(CLOSE)
        return out

    def on_timer(self) -> Actions:
        if self.closing:
            return CLOSE
        self.timer = False
        if self.job is None and self.buf:
            out: list[Action] = []
            self._fail(408, None, out)
            return out
        return None

    # --- cutting heads from the stream ---------------------------------------------------

    def _serve(self, data: bytes, out: list[Action]) -> None:
        limits = self.service.limits
        answered = 0
        while data:
            if data[0] in b"\r\n":
                data = data.lstrip(b"\r\n")  # RFC 9112 §2.2: empty lines before a request
                if not data:
                    break
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                cut = end + 4
            else:
                end = data.find(b"\n\n")  # bare LF: the parser will refuse it
                cut = end + 2
            if end < 0:
                status = self._too_big(data)
                if status:
                    self._fail(status, None, out)
                    return
                self.buf = data
                if not self.timer:
                    self.timer = True
                    out.append(Timer(limits.header_timeout))
                return
            if self.timer:
                self.timer = False
                out.append(Timer(None))
            raw, data = data[:cut], data[cut:]
            if not self._request(raw, data, out):
                return  # closing, or a job runs
            answered += 1
            if answered >= limits.pipeline and data:
                self.buf = data
                self._start_job(Run(_yield), None, out)
                return

    def _too_big(self, head: bytes) -> int:
        """414/431 for a head that is already over a limit though not yet complete."""
        limits = self.service.limits
        line = head.find(b"\n")
        if (line < 0 and len(head) > limits.request_line + 1) or line > limits.request_line + 1:
            return 414
        if line >= 0 and (
            len(head) - line > limits.header_bytes + 4
            or head.count(b"\n") > limits.header_count + 2
        ):
            return 431
        return 0

    def _check_limits(self, raw: bytes) -> None:
        limits = self.service.limits
        line = raw.find(b"\n") + 1
        if line - 2 > limits.request_line:
            raise BadRequest(414, "request line too long")
        if len(raw) - line - 2 > limits.header_bytes:
            raise BadRequest(431, "header section too large")
        if raw.count(b"\n") - 2 > limits.header_count:
            raise BadRequest(431, "too many header fields")

    # --- one request ---------------------------------------------------------------------

    def _request(self, raw: bytes, rest: bytes, out: list[Action]) -> bool:
        """Answer one request head; False when the session must stop (job or closing)."""
        service = self.service
        head: Head | None = None
        try:
            self._check_limits(raw)
            head = self.parser.parse(raw)
            keep_alive, has_body = check_head(head)
        except BadRequest as exc:
            self._fail(exc.status, head, out)
            return False
        request = Request(head, keep_alive)
        method = head.method
        if has_body:
            if method in ("GET", "HEAD"):
                self._fail(413, head, out)
            else:
                self._fail(405, head, out, ALLOW)
            return False
        if method not in ("GET", "HEAD"):
            self._plain(request, 405, out, ALLOW)
            return self._after(request, rest, out)
        try:
            target = service.target(head.target)
        except BadRequest as exc:
            self._plain(request, exc.status, out)
            return self._after(request, rest, out)
        request.target = target
        if service.status is not None and target.path in STATUS_PATHS:
            request.kind = STATUS_PATHS[target.path]
            render = service.status.html if request.kind == "html" else service.status.json
            self.buf = rest
            self._start_job(Run(render), request, out)
            return False
        gzip = service.gzip and accepts_gzip(head.get(b"accept-encoding"))
        files = service.files
        found = files.cached(target.segments, target.trailing, gzip)
        if found is None:
            self.buf = rest
            job = Run(partial(files.lookup, target.segments, target.trailing, gzip))
            self._start_job(job, request, out)
            return False
        self._found(request, found, out)
        return self._after(request, rest, out)

    def _start_job(self, job: Run, request: Request | None, out: list[Action]) -> None:
        if request is None:
            request = Request(Head("-", b"", "1.1", []), True)
            request.kind = "yield"
        self.job = job
        self.request = request
        out.append(job)

    def _answer_job(self, request: Request, outcome: Outcome, out: list[Action]) -> None:
        error = outcome.error
        if request.kind in ("html", "json"):
            if error is not None:
                self._plain(request, 500, out)
            else:
                kind = (
                    b"text/html; charset=utf-8" if request.kind == "html" else b"application/json"
                )
                self._page(request, Page(outcome.value, kind.decode()), out)
        elif error is not None:
            if isinstance(error, PermissionError):
                self._plain(request, 403, out)
            elif isinstance(error, (FileNotFoundError, NotADirectoryError, ValueError)):
                self._plain(request, 404, out)
            else:
                self._plain(request, 500, out)
        else:
            self._found(request, outcome.value, out)
        self._after(request, b"", out)

    def _after(self, request: Request, rest: bytes, out: list[Action]) -> bool:
        """After an answer: go on (keep-alive), or close, lingering if input may follow."""
        if request.keep_alive:
            return True
        if rest or self.buf:
            self._start_closing(out)
        else:
            out.append(CLOSE)
            self.closing = True
        return False

    # --- answers -------------------------------------------------------------------------

    def _found(self, request: Request, found: Found, out: list[Action]) -> None:
        if isinstance(found, Page):
            self._page(request, found, out)
        elif isinstance(found, NeedsSlash):
            assert request.target is not None
            location = request.target.location(slash=True).encode("ascii")
            self._plain(request, 301, out, [(b"Location", location)])
        elif isinstance(found, Refused):
            self._plain(request, found.status, out)
        else:
            self._file(request, found, out)

    def _log(self, request: Request | None, status: int, size: int) -> None:
        head = request.head if request is not None else None
        self.service.observer.response(
            self.peer,
            head.method if head else "-",
            head.target if head else b"",
            head.version if head else "",
            status,
            size,
        )

    def _plain(
        self,
        request: Request,
        status: int,
        out: list[Action],
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        date = self.service.dates.now()
        data = responses.simple(status, date, request.keep_alive, request.head_only, extra)
        out.append(data)
        self._log(request, status, 0 if request.head_only else len(responses.error_body(status)))

    def _page(self, request: Request, page: Page, out: list[Action]) -> None:
        date = self.service.dates.now()
        extra = [] if page.cache else [(b"Cache-Control", b"no-store")]
        data = responses.simple(
            page.status,
            date,
            request.keep_alive,
            request.head_only,
            extra,
            page.body,
            page.content_type.encode(),
        )
        out.append(data)
        self._log(request, page.status, 0 if request.head_only else len(page.body))

    def _fail(
        self,
        status: int,
        head: Head | None,
        out: list[Action],
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Answer an error that ends the connection, then close without a reset."""
        request = Request(head, False) if head is not None else None
        date = self.service.dates.now()
        head_only = request is not None and request.head_only
        out.append(responses.simple(status, date, False, head_only, extra))
        self._log(request, status, 0 if head_only else len(responses.error_body(status)))
        self._start_closing(out)

    def _start_closing(self, out: list[Action]) -> None:
        self.closing = True
        self.buf = b""
        self.timer = False
        out += (SHUTDOWN_WRITE, Timer(self.service.limits.linger_timeout))

    def _linger(self, n: int) -> Actions:
        self.lingered += n
        return CLOSE if self.lingered > self.service.limits.linger_bytes else None

    def _file(self, request: Request, entity: Entity, out: list[Action]) -> None:
        head = request.head
        fields = head.fields
        if b"range" in fields or b"if-none-match" in fields or b"if-modified-since" in fields:
            self._conditional_file(request, entity, out)
            return
        # the common case: the whole file, with a head whose fields are cached per file
        service = self.service
        key = (
            entity.etag,
            entity.size,
            entity.content_type,
            entity.encoding,
            entity.vary,
            request.keep_alive,
        )
        fixed = service.heads.get(key)
        if fixed is None:
            headers = self._entity_headers(entity)
            headers.append((b"Content-Length", b"%d" % entity.size))
            fixed = service.remember_head(key, responses.block(headers, request.keep_alive))
        response = responses.OK_PREFIX + service.dates.now() + fixed
        regions = [(0, entity.size - 1)] if entity.size else []
        self._body(request, entity, response, 200, regions, out)

    def _entity_headers(self, entity: Entity) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"Content-Type", entity.content_type.encode()),
            (b"Last-Modified", self.service.last_modified(entity.mtime)),
            (b"ETag", entity.etag.encode()),
            (b"Accept-Ranges", b"bytes"),
        ]
        if entity.vary:
            headers.append((b"Vary", b"Accept-Encoding"))
        if entity.encoding:
            headers.append((b"Content-Encoding", entity.encoding.encode()))
        return headers

    def _body(
        self,
        request: Request,
        entity: Entity,
        response: bytes,
        status: int,
        regions: list[tuple[int, int]],
        out: list[Action],
    ) -> None:
        """Emit a head and the one file region it announces (none for HEAD or empty)."""
        if request.head_only or not regions:
            entity.close()
            out.append(response)
            self._log(request, status, 0)
            return
        first, last = regions[0]
        sent = last - first + 1
        if entity.data is not None:
            if sent <= INLINE_BODY:
                out.append(response + entity.data[first : last + 1])
            else:  # no copy of a large in-memory body
                out += (response, memoryview(entity.data)[first : last + 1])
            entity.close()
        else:
            out.append(response)
            out.append(SendFile(entity.take_fd(), first, sent, entity.path, close=True))
        self._log(request, status, sent)

    def _conditional_file(self, request: Request, entity: Entity, out: list[Action]) -> None:
        """304, 206, 416 or 200 for a request with Range or validators."""
        service = self.service
        head = request.head
        date = service.dates.now()
        size = entity.size
        inm = head.get(b"if-none-match")
        ims = head.get(b"if-modified-since")
        if (inm is not None or ims is not None) and not_modified(
            inm, ims, entity.etag, entity.mtime
        ):
            entity.close()
            validators = [
                (b"Last-Modified", service.last_modified(entity.mtime)),
                (b"ETag", entity.etag.encode()),
            ]
            if entity.vary:
                validators.append((b"Vary", b"Accept-Encoding"))
            out.append(responses.head(304, date, validators, request.keep_alive))
            self._log(request, 304, 0)
            return
        headers = self._entity_headers(entity)
        ranges = None
        spec = head.get(b"range")
        if spec is not None and not request.head_only:
            if_range = head.get(b"if-range")
            if if_range is None or if_range_holds(if_range, entity.etag, entity.mtime):
                ranges = parse_range(spec, size, service.limits.max_ranges)
        if ranges is None:
            status, regions = 200, [(0, size - 1)] if size else []
            headers.append((b"Content-Length", b"%d" % size))
        elif not ranges:
            entity.close()
            extra = [(b"Content-Range", b"bytes */%d" % size)]
            self._plain(request, 416, out, extra)
            return
        elif len(ranges) == 1:
            first, last = ranges[0]
            status, regions = 206, ranges
            headers.append((b"Content-Range", b"bytes %d-%d/%d" % (first, last, size)))
            headers.append((b"Content-Length", b"%d" % (last - first + 1)))
        else:
            self._multipart(request, entity, ranges, headers, out)
            return
        response = responses.head(status, date, headers, request.keep_alive)
        self._body(request, entity, response, status, regions, out)

    def _multipart(
        self,
        request: Request,
        entity: Entity,
        ranges: list[tuple[int, int]],
        headers: list[tuple[bytes, bytes]],
        out: list[Action],
    ) -> None:
        service = self.service
        size = entity.size
        boundary = b"ipcnet-" + bytes(c for c in entity.etag.encode() if chr(c).isalnum())
        ctype = next(v for k, v in headers if k == b"Content-Type")
        parts: list[bytes] = []
        for i, (first, last) in enumerate(ranges):
            parts.append(
                (b"\r\n" if i else b"")
                + b"--%s\r\nContent-Type: %s\r\nContent-Range: bytes %d-%d/%d\r\n\r\n"
                % (boundary, ctype, first, last, size)
            )
        closing = b"\r\n--%s--\r\n" % boundary
        body_len = sum(len(p) for p in parts) + len(closing)
        body_len += sum(last - first + 1 for first, last in ranges)
        headers = [(k, v) for k, v in headers if k != b"Content-Type"]
        headers.insert(0, (b"Content-Type", b"multipart/byteranges; boundary=" + boundary))
        headers.append((b"Content-Length", b"%d" % body_len))
        response = responses.head(206, service.dates.now(), headers, request.keep_alive)
        if entity.data is not None:
            data = entity.data
            body = b"".join(
                part + data[first : last + 1]
                for part, (first, last) in zip(parts, ranges, strict=True)
            )
            out.append(response + body + closing)
            entity.close()
        else:
            fd = entity.take_fd()
            out.append(response)
            for i, (part, (first, last)) in enumerate(zip(parts, ranges, strict=True)):
                out.append(part)
                last_part = i == len(ranges) - 1
                out.append(SendFile(fd, first, last - first + 1, entity.path, close=last_part))
            out.append(closing)
        self._log(request, 206, body_len)
