"""One HTTP/1.1 connection as a sans-IO state machine: bytes in, responses out, in order.

Role: cut request heads from the stream, check them against the limits, parse them with a
real parser, and answer GET/HEAD/OPTIONS from the injected Filesystem (``Shared``).

States and transitions (h11 style: one named state, every move in this table):

    state      event                                   actions                      next
    ---------  --------------------------------------  ---------------------------  ---------
    (start)    accepted                                Timer(header_timeout)        NEW
    NEW        bytes: as from READING (the deadline from the accept runs on)
    NEW        the timer fires (nothing came)          Close                        CLOSED
    IDLE       bytes, no complete head yet             Timer(header_timeout)        READING
    READING    more bytes, still no complete head      -                            READING
    READING    the head completes                      Timer(None) (not before a Close),
                                                       as from IDLE
    READING    the timer fires (slowloris)             408, ShutdownWrite, Timer    LINGERING
    IDLE       a head answered from memory             the answer                   IDLE
    IDLE       a head that needs a blocking job        Run(job)                     WAITING
    WAITING    bytes / EOF                             - (kept / remembered)        WAITING
    WAITING    resume(job, outcome)                    the answer, then the kept    IDLE
                                                       input, as from IDLE (Close
                                                       if EOF was remembered)
    IDLE       an answer with Connection: close,       the answer, Close            CLOSED
               nothing received after it
    IDLE       the same with input after it, or an     the answer, ShutdownWrite,   LINGERING
               error that ends the connection          Timer(linger_timeout)
    IDLE       EOF (NEW too)                           Close                        CLOSED
    READING    EOF                                     Close (logged: 400, nothing  CLOSED
                                                       sent, as nginx logs it)
    LINGERING  bytes                                   - (dropped; Close once       LINGERING
                                                       linger_bytes were dropped)   / CLOSED
    LINGERING  EOF, or the timer                       Close                        CLOSED

Lingering lets the client really receive our last answer instead of a reset. A job is a
file lookup, the status page, or, after ``pipeline`` answers from one read, a no-op that
lets the driver flush (its backpressure then applies); requests are answered strictly in
order, and a job stops the parsing of later ones until ``resume``.

Rules:
- the header deadline is armed once, when a head is first seen incomplete (empty lines
  before a request line count: they begin the head), or at the accept for the first
  request (nginx's client_header_timeout: a client that sends nothing would hold a
  thread or a pool worker until the idle timeout); bytes trickling in do not move it
  (slowloris -> 408; silence on a new connection -> a close without an answer, as
  nginx, so a browser's unused preconnection sees no stray 408); keep-alive idleness
  is the driver's idle timeout;
- framing errors (400, 414, 431, 501 for a transfer coding, 505) and any request body
  (413 for GET/HEAD/OPTIONS, 405 or 501 for other methods) end the connection; target
  errors (400/403), 404, 405/501 without a body, 412 keep it alive;
- no answer to HEAD carries a body, errors included (the method is known from the first
  bytes of the request line even when the rest fails to parse);
- file errors arrive already translated (``ipcnet.errors``): PermissionDenied -> 403,
  NoSuchFile -> 404, Busy (out of descriptors) -> 503; this module sees no OSError;
- preconditions (``conditional.preconditions``) apply to answers that would be 200/206.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum
from functools import partial

from ipcnet import errors
from ipcnet.errors import BadRequest
from ipcnet.protocols.base import (
    CLOSE,
    SHUTDOWN_WRITE,
    Action,
    Actions,
    Outcome,
    Peer,
    Run,
    SendFile,
    Sent,
    Timer,
)
from ipcnet.protocols.http import responses
from ipcnet.protocols.http.conditional import if_range_holds, preconditions
from ipcnet.protocols.http.messages import Head
from ipcnet.protocols.http.parsers import HeadParser, check_head
from ipcnet.protocols.http.ranges import parse_range
from ipcnet.protocols.http.resources import Entity, Found, NeedsSlash, Page, Refused
from ipcnet.protocols.http.shared import Shared
from ipcnet.protocols.http.target import Target


class State(Enum):
    NEW = "new"  # accepted, nothing read yet; the header deadline runs from the accept
    IDLE = "idle"  # between requests (buf may hold pipelined input)
    READING = "reading"  # a partial head is in buf; the header deadline is armed
    WAITING = "waiting"  # a Run job is out; input is kept in buf
    LINGERING = "lingering"  # half-closed after our last answer; input is dropped
    CLOSED = "closed"  # Close was returned


NEW, IDLE, READING, WAITING, LINGERING, CLOSED = State
DISARM = Timer(None)  # the header deadline is over

ALLOW = [(b"Allow", b"GET, HEAD, OPTIONS")]
# methods with a meaning for any resource (RFC 9110 §9.3, RFC 5789): 405, others 501
KNOWN_METHODS = frozenset({"POST", "PUT", "DELETE", "CONNECT", "TRACE", "PATCH"})
# the fields that send a request off the fast path (RFC 9110 §13.1, §14.2)
CONDITIONAL = frozenset(
    {b"range", b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since"}
)
INLINE_BODY = 64 * 1024  # in-memory bodies up to this are joined to the head (one write)
WHOLE_BODY = 128 * 1024  # whole 200 responses with bodies up to this are kept (Shared.wholes)
HTML = b"text/html; charset=utf-8"
STATUS_PAGES = {b"/_status": HTML, b"/_status.json": b"application/json"}
# scale (issue 14): health for load balancers, metrics for Prometheus (path -> renderer)
STATUS_RENDERERS = {
    b"/_status": "html",
    b"/_status.json": "json",
    b"/_health": "health",
    b"/_metrics": "prometheus",
}
STATUS_PAGES[b"/_health"] = b"text/plain; charset=utf-8"
STATUS_PAGES[b"/_metrics"] = b"text/plain; version=0.0.4; charset=utf-8"
# the endpoints by their one decoded segment: any spelling RFC 3986 §6.2.2 makes equal
# (/%5Fhealth, //_health, /d/../_health) is the endpoint, as every file path already is
STATUS_NAMES = {path[1:].decode(): path for path in STATUS_PAGES}

Parsed = tuple[Head, bool, bool]  # a checked head, keep-alive, has a body
Then = Callable[["Request", Outcome, list[Action]], None]  # what to do with a job's outcome


def _yield() -> None:
    """The no-op job that lets the driver flush between batches of pipelined answers."""


def accepts_gzip(value: bytes | None) -> bool:
    """Accept-Encoding (RFC 9110 §12.5.3): gzip (or x-gzip, §8.4.1.3) with a non-zero
    weight, or, when gzip is not named, ``*`` with one; an explicit ``gzip;q=0`` wins."""
    if not value:
        return False
    star = False
    for item in value.lower().split(b","):
        coding, _, params = item.partition(b";")
        coding = coding.strip()
        if coding == b"gzip" or coding == b"x-gzip":
            return _weight(params) > 0
        if coding == b"*":
            star = _weight(params) > 0
    return star


def _weight(params: bytes) -> float:
    """The q parameter of one Accept-Encoding member (1 when absent, 0 when malformed)."""
    for param in params.split(b";"):
        name, _, q = param.partition(b"=")
        if name.strip() == b"q":
            try:
                return float(q.strip())
            except ValueError:
                return 0.0
    return 1.0


def error_status(error: BaseException) -> int:
    """The status for a failed lookup (the error is already an ipcnet error)."""
    if isinstance(error, errors.PermissionDenied):
        return 403
    if isinstance(error, errors.NoSuchFile):
        return 404
    if isinstance(error, errors.Busy):
        return 503
    return 500


class Request:
    """What the session remembers about the request being answered."""

    __slots__ = ("head", "head_only", "keep_alive", "started", "target")

    def __init__(self, head: Head, keep_alive: bool) -> None:
        self.started = time.monotonic()  # for the latency histogram (/_metrics)
        self.head = head
        self.keep_alive = keep_alive
        self.head_only = head.method == "HEAD"
        self.target: Target | None = None


class HttpSession:
    __slots__ = (
        "buf",
        "eof",
        "job",
        "lingered",
        "parser",
        "peer",
        "request",
        "shared",
        "state",
        "then",
    )

    def __init__(self, shared: Shared, peer: Peer) -> None:
        self.shared = shared
        self.peer = peer
        self.parser: HeadParser | None = None  # made on the first head not in the memo
        self.state = NEW
        self.buf = b""  # input not yet answered: a partial head, or pipelined requests
        self.job: Run | None = None  # WAITING: the job out, the request and what to do next
        self.request: Request | None = None
        self.then: Then | None = None
        self.eof = False  # WAITING: the client half-closed meanwhile
        self.lingered = 0

    # --- the contract --------------------------------------------------------------------

    def feed(self, data: bytes) -> Actions:
        state = self.state
        if state is not IDLE and state is not READING and state is not NEW:
            if state is LINGERING:
                return self._linger(len(data))
            if state is WAITING:  # drivers do not feed during a job; keep it anyway
                self.buf += data
            return None  # CLOSED: nothing more is read
        if self.buf:
            data = self.buf + data
            self.buf = b""
        out: list[Action] = []
        self._serve(data, out)
        if self.state is CLOSED and out[0] is DISARM:
            del out[0]  # the Close ends the deadline too (one step less per closing answer)
        if len(out) == 1 and out[0].__class__ is bytes:
            return out[0]  # the common case: one answer, sent without a list
        return out or None

    def feed_eof(self) -> Actions:
        if self.state is WAITING:
            self.eof = True  # answer what we have, then close (see resume)
            return None
        if self.state is READING:  # a head begun and never ended: logged as nginx logs it,
            self._log_unparsed(400, self.buf, 0)  # 400 with nothing sent
        self.state = CLOSED
        return CLOSE

    def resume(self, job: Run, outcome: Outcome) -> Actions:
        if job is not self.job:
            return None
        request, then = self.request, self.then
        self.job = self.request = self.then = None
        self.state = IDLE
        out: list[Action] = []
        if then is not None and request is not None:
            then(request, outcome, out)
            self._after(request, b"", out)
        if self.state is IDLE:
            data, self.buf = self.buf, b""
            if data:
                self._serve(data, out)
            if self.eof and (self.state is IDLE or self.state is READING):  # (never NEW)
                self.state = CLOSED
                out.append(CLOSE)
        return out

    def on_timer(self) -> Actions:
        state = self.state
        if state is LINGERING or state is NEW:
            self.state = CLOSED
            return CLOSE
        if state is READING:
            out: list[Action] = []
            self._fail(408, None, self.buf, out)
            return out
        return None

    # --- cutting heads from the stream ---------------------------------------------------

    def _serve(self, data: bytes, out: list[Action]) -> None:
        limits = self.shared.limits
        answered = 0
        while data:
            if data[0] in b"\r\n":
                data = data.lstrip(b"\r\n")  # RFC 9112 §2.2: empty lines before a request
                if not data:  # they begin a request head: the deadline runs (slowloris)
                    self._reading(out)
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
                    self._fail(status, None, data, out)
                    return
                self.buf = data
                self._reading(out)
                return
            if self.state is not IDLE:  # READING or NEW: the deadline is over
                self.state = IDLE
                out.append(DISARM)
            raw, data = data[:cut], data[cut:]
            if not self._request(raw, data, out):
                return  # closing, or a job runs
            answered += 1
            if answered >= limits.pipeline and data:
                self.buf = data
                self._start_job(Run(_yield), None, None, out)
                return

    def _reading(self, out: list[Action]) -> None:
        """A request head has begun: arm the header deadline, once."""
        if self.state is IDLE:
            self.state = READING
            out.append(Timer(self.shared.limits.header_timeout))
        elif self.state is NEW:
            self.state = READING  # the deadline armed at the accept runs on

    def _too_big(self, head: bytes) -> int:
        """414/431 for a head that is already over a limit though not yet complete."""
        limits = self.shared.limits
        line = head.find(b"\n")
        if (line < 0 and len(head) > limits.request_line + 1) or line > limits.request_line + 1:
            return 414
        if line >= 0 and (
            len(head) - line > limits.header_bytes + 4
            or head.count(b"\n") > limits.header_count + 2
        ):
            return 431
        return 0

    # --- one request ---------------------------------------------------------------------

    def _request(self, raw: bytes, rest: bytes, out: list[Action]) -> bool:
        """Answer one request head; False when the session must stop (job or closing)."""
        shared = self.shared
        parsed = shared.parsed.get(raw)  # a head seen before: parsing it again gives the same
        if parsed is None:
            parsed = self._parse(raw, out)
            if parsed is None:
                return False
        head, keep_alive, has_body = parsed
        request = Request(head, keep_alive and not shared.draining)
        method = head.method
        if method != "GET" and method != "HEAD":
            return self._other_method(request, has_body, rest, out)
        if has_body:
            self._fail(413, head, raw, out)
            return False
        try:
            target = shared.target(head.target)
        except BadRequest as exc:
            self._plain(request, exc.status, out)
            return self._after(request, rest, out)
        request.target = target
        page = self._status_endpoint(target)
        if page is not None:
            assert shared.status is not None
            ctype = STATUS_PAGES[page]
            render = getattr(shared.status, STATUS_RENDERERS[page])
            self.buf = rest
            self._start_job(Run(render), request, partial(self._status_page, ctype), out)
            return False
        accept = head.fields.get(b"accept-encoding")
        gzip = accept is not None and shared.gzip and accepts_gzip(accept)
        files = shared.files
        found = files.cached(target.segments, target.trailing, gzip)
        if found is None:
            self.buf = rest
            job = Run(partial(files.lookup, target.segments, target.trailing, gzip))
            self._start_job(job, request, self._looked_up, out)
            return False
        if isinstance(found, (Page, NeedsSlash, Refused)):
            self._found(request, found, out)
        else:
            self._file(request, found, out)  # the common case, without one more call
        return self._after(request, rest, out)

    def _parse(self, raw: bytes, out: list[Action]) -> Parsed | None:
        """Check the limits, parse and check ``raw``; None once a framing error is answered."""
        shared = self.shared
        limits = shared.limits
        head: Head | None = None
        try:
            line = raw.find(b"\n") + 1
            if line - 2 > limits.request_line:
                raise BadRequest(414, "request line too long")
            if len(raw) - line - 2 > limits.header_bytes:
                raise BadRequest(431, "header section too large")
            if raw.count(b"\n") - 2 > limits.header_count:
                raise BadRequest(431, "too many header fields")
            parser = self.parser
            if parser is None:
                parser = self.parser = shared.new_parser()
            head = parser.parse(raw)
            keep_alive, has_body = check_head(head)
        except BadRequest as exc:
            self._fail(exc.status, head, raw, out)
            return None
        return shared.remember_parsed(raw, (head, keep_alive, has_body))

    def _other_method(
        self, request: Request, has_body: bool, rest: bytes, out: list[Action]
    ) -> bool:
        """OPTIONS (RFC 9110 §9.3.7) -> 200 + Allow; 405 + Allow (§15.5.6); else 501 (§9.1);
        the asterisk-form with another method -> 400 (RFC 9112 §3.2.4: it is OPTIONS's only).
        OPTIONS /_health is the health answer (with Allow): HAProxy checks with OPTIONS."""
        method = request.head.method
        if method == "OPTIONS":
            status = 413 if has_body else 200
        elif request.head.target == b"*":
            status = 400
        else:
            status = 405 if method in KNOWN_METHODS else 501
        extra = ALLOW if status != 501 and status != 400 else None
        if has_body:
            self._fail(status, request.head, b"", out, extra)
            return False
        if status == 200 and request.head.target != b"*":
            try:
                target = self.shared.target(request.head.target)
            except BadRequest as exc:
                status, extra = exc.status, None
            else:
                if self._status_endpoint(target) == b"/_health":
                    # HAProxy's `option httpchk <uri>` checks with OPTIONS: the health
                    # answer's status and body (503 while draining), with Allow
                    assert self.shared.status is not None
                    self.buf = rest
                    job = Run(self.shared.status.health)
                    self._start_job(job, request, self._health_options, out)
                    return False
        if status == 200:
            headers = [*ALLOW, (b"Content-Length", b"0")]
            date = self.shared.dates.now()
            out.append(responses.head(200, date, headers, request.keep_alive))
            self._log(request, 200, 0)
        else:
            self._plain(request, status, out, extra)
        return self._after(request, rest, out)

    def _status_endpoint(self, target: Target) -> bytes | None:
        """The status page ``target`` names (/_health...), None for a file path."""
        segments = target.segments
        if self.shared.status is None or len(segments) != 1 or target.trailing:
            return None
        return STATUS_NAMES.get(segments[0])

    def _health_options(self, request: Request, outcome: Outcome, out: list[Action]) -> None:
        if outcome.error is not None:
            self._plain(request, 500, out)
        else:
            self._page(request, outcome.value, out, ALLOW)

    def _start_job(
        self, job: Run, request: Request | None, then: Then | None, out: list[Action]
    ) -> None:
        self.state = WAITING
        self.job = job
        self.request = request
        self.then = then
        out.append(job)

    def _looked_up(self, request: Request, outcome: Outcome, out: list[Action]) -> None:
        if outcome.error is not None:
            self._plain(request, error_status(outcome.error), out)
        else:
            self._found(request, outcome.value, out)

    def _status_page(
        self, ctype: bytes, request: Request, outcome: Outcome, out: list[Action]
    ) -> None:
        if outcome.error is not None:
            self._plain(request, 500, out)
        else:
            value = outcome.value  # bytes, or a Page with its own status (/_health: 503)
            page = value if isinstance(value, Page) else Page(value, ctype.decode())
            self._page(request, page, out)

    def _after(self, request: Request, rest: bytes, out: list[Action]) -> bool:
        """After an answer: go on (keep-alive), or close, lingering if input may follow."""
        if request.keep_alive:
            return True
        if rest or self.buf:
            self._start_closing(out)
        else:
            out.append(CLOSE)
            self.state = CLOSED
        return False

    # --- answers -------------------------------------------------------------------------

    def _found(self, request: Request, found: Found, out: list[Action]) -> None:
        if not isinstance(found, (Page, NeedsSlash, Refused)):
            self._file(request, found, out)
        elif isinstance(found, Page):
            self._page(request, found, out)
        elif isinstance(found, NeedsSlash):
            assert request.target is not None
            location = request.target.location(slash=True).encode("ascii")
            self._plain(request, 301, out, [(b"Location", location)])
        else:
            self._plain(request, found.status, out)

    def _log(self, request: Request, status: int, size: int) -> None:
        head = request.head
        self.shared.observer.response(
            self.peer,
            head.method,
            head.target,
            head.version,
            status,
            size,
            time.monotonic() - request.started,
        )

    def _plain(
        self,
        request: Request,
        status: int,
        out: list[Action],
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        date = self.shared.dates.now()
        data = responses.simple(status, date, request.keep_alive, request.head_only, extra)
        out.append(data)
        self._log(request, status, 0 if request.head_only else len(responses.error_body(status)))

    def _page(
        self,
        request: Request,
        page: Page,
        out: list[Action],
        fields: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        date = self.shared.dates.now()
        extra = [] if page.cache else [(b"Cache-Control", b"no-store")]
        extra += fields or []
        head = request.head
        if page.status == 200 and (b"if-match" in head.fields or b"if-none-match" in head.fields):
            status = preconditions(head, None, None)  # a page has no validators
            if status == 304:
                out.append(responses.head(304, date, extra, request.keep_alive))
                self._log(request, 304, 0)
                return
            if status == 412:
                self._plain(request, 412, out)
                return
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
        raw: bytes,
        out: list[Action],
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Answer an error that ends the connection, then close without a reset.

        ``raw`` is the start of the request: when it did not parse, a request that begins
        ``HEAD `` still gets no body (RFC 9110 §9.3.2)."""
        date = self.shared.dates.now()
        head_only = head.method == "HEAD" if head is not None else raw.startswith(b"HEAD ")
        out.append(responses.simple(status, date, False, head_only, extra))
        size = 0 if head_only else len(responses.error_body(status))
        if head is not None:
            self._log(Request(head, False), status, size)
        else:
            self._log_unparsed(status, raw, size)
        self._start_closing(out)

    def _log_unparsed(self, status: int, raw: bytes, size: int) -> None:
        """No request parsed: the log shows its first line as it came (nginx's $request)."""
        line = raw[: self.shared.limits.request_line].split(b"\n", 1)[0].split(b"\r", 1)[0]
        self.shared.observer.response(self.peer, "-", line, "", status, size)

    def _start_closing(self, out: list[Action]) -> None:
        self.state = LINGERING
        self.buf = b""
        out += (SHUTDOWN_WRITE, Timer(self.shared.limits.linger_timeout))

    def _linger(self, n: int) -> Actions:
        self.lingered += n
        if self.lingered > self.shared.limits.linger_bytes:
            self.state = CLOSED
            return CLOSE
        return None

    def _file(self, request: Request, entity: Entity, out: list[Action]) -> None:
        head = request.head
        fields = head.fields
        if not CONDITIONAL.isdisjoint(fields):
            self._conditional_file(request, entity, out)
            return
        # the common case: the whole file, with a head whose fields are cached per file, and
        # for a small file in memory the whole response, for as long as its Date holds
        shared = self.shared
        date = shared.dates.now()
        data = entity.data
        whole = None
        if data is not None and not request.head_only:
            whole = (entity, request.keep_alive)
            response = shared.wholes.get(whole) if shared.wholes_date is date else None
            if response is not None:
                out.append(response)
                self._log(request, 200, entity.size)
                return
        key = (
            entity.etag,
            entity.mtime,
            entity.size,
            entity.content_type,
            entity.encoding,
            entity.vary,
            request.keep_alive,
        )
        fixed = shared.heads.get(key)
        if fixed is None:
            if entity.mtime > shared.dates.second:  # Last-Modified not fixed yet: see Shared
                self._conditional_file(request, entity, out)
                return
            headers = self._entity_headers(entity)
            headers.append((b"Content-Length", b"%d" % entity.size))
            fixed = shared.remember_head(key, responses.block(headers, request.keep_alive))
        response = responses.OK_PREFIX + date + fixed
        if whole is not None and data is not None and len(data) <= WHOLE_BODY:
            response = shared.remember_whole(whole, date, response + data)
            out.append(response)
            self._log(request, 200, entity.size)
            return
        regions = [(0, entity.size - 1)] if entity.size else []
        self._body(request, entity, response, 200, regions, out)

    def _entity_headers(self, entity: Entity) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"Content-Type", entity.content_type.encode()),
            (b"Last-Modified", self.shared.last_modified(entity.mtime)),
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
        if entity.data is not None and sent <= INLINE_BODY:
            out.append(response + entity.data[first : last + 1])
            entity.close()
            self._log(request, status, sent)
            return
        if entity.data is not None:  # no copy of a large in-memory body
            out += (response, memoryview(entity.data)[first : last + 1])
            entity.close()
        else:
            out.append(response)
            out.append(SendFile(entity.take_fd(), first, sent, entity.path, close=True))
        self._log_when_sent(request, status, sent, out)

    def _log_when_sent(self, request: Request, status: int, body: int, out: list[Action]) -> None:
        """Log a large body once it went out, with the bytes of it that did (nginx's
        $body_bytes_sent: a client gone halfway is logged with what it got, not the whole).
        The time is still to the response queued (the latency histogram's definition)."""
        seconds = time.monotonic() - request.started
        head = request.head

        def sent(unsent: int) -> None:
            self.shared.observer.response(
                self.peer,
                head.method,
                head.target,
                head.version,
                status,
                max(0, body - unsent),
                seconds,
            )

        out.append(Sent(sent))

    def _conditional_file(self, request: Request, entity: Entity, out: list[Action]) -> None:
        """416, 304, 412, 206 or 200: a request with Range or preconditions, or a file whose
        Last-Modified is not fixed yet (dated after the last Date we sent)."""
        shared = self.shared
        head = request.head
        size = entity.size
        etag = entity.etag.encode()
        modified = shared.last_modified(entity.mtime)
        ranges = None
        # §14.2: GET only; §5.3: a field sent twice is its lines joined, which for these
        # singletons is invalid (ignored), not one of them picked at random
        spec = head.combined(b"range") if head.method == "GET" else None
        if spec is not None:
            ranges = parse_range(spec, size, shared.limits.max_ranges)
            # §13.1.5: a stale If-Range drops the Range, even one past
            # the end (200 with the whole new file, not 416); step 5 of §13.2.2, done first
            if_range = head.combined(b"if-range")
            if if_range is not None and not if_range_holds(if_range, etag, modified):
                ranges = None
            if ranges == []:  # 416; §13.2.1: preconditions do not apply to it
                entity.close()
                self._plain(request, 416, out, [(b"Content-Range", b"bytes */%d" % size)])
                return
        status = preconditions(head, etag, entity.mtime)
        if status:
            entity.close()
            if status == 412:
                self._plain(request, 412, out)
                return
            # §15.4.5: what a 200 would carry of Date, ETag, Vary; Last-Modified helps caches
            validators = [(b"Last-Modified", modified), (b"ETag", etag)]
            if entity.vary:
                validators.append((b"Vary", b"Accept-Encoding"))
            out.append(responses.head(304, shared.dates.now(), validators, request.keep_alive))
            self._log(request, 304, 0)
            return
        headers = self._entity_headers(entity)
        if ranges is None:
            status, regions = 200, [(0, size - 1)] if size else []
            headers.append((b"Content-Length", b"%d" % size))
        elif len(ranges) == 1:
            first, last = ranges[0]
            status, regions = 206, ranges
            headers.append((b"Content-Range", b"bytes %d-%d/%d" % (first, last, size)))
            headers.append((b"Content-Length", b"%d" % (last - first + 1)))
        else:
            self._multipart(request, entity, ranges, headers, out)
            return
        response = responses.head(status, shared.dates.now(), headers, request.keep_alive)
        self._body(request, entity, response, status, regions, out)

    def _multipart(
        self,
        request: Request,
        entity: Entity,
        ranges: list[tuple[int, int]],
        headers: list[tuple[bytes, bytes]],
        out: list[Action],
    ) -> None:
        shared = self.shared
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
        response = responses.head(206, shared.dates.now(), headers, request.keep_alive)
        if entity.data is not None:
            data = entity.data
            body = b"".join(
                part + data[first : last + 1]
                for part, (first, last) in zip(parts, ranges, strict=True)
            )
            out.append(response + body + closing)
            entity.close()
            self._log(request, 206, body_len)
            return
        fd = entity.take_fd()
        out.append(response)
        for i, (part, (first, last)) in enumerate(zip(parts, ranges, strict=True)):
            out.append(part)
            last_part = i == len(ranges) - 1
            out.append(SendFile(fd, first, last - first + 1, entity.path, close=last_part))
        out.append(closing)
        self._log_when_sent(request, 206, body_len, out)
