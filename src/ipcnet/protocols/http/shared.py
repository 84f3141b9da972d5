"""What every connection of the web server shares: injected objects, limits, memos.

Role: the one object an ``HttpSession`` is given (``HttpService`` is one), so that the
session never imports the service: the injected Filesystem, Observer (access log,
counters) and StatusSource, the limits, the parser choice, and bounded memos of parsed
request heads, parsed targets, formatted dates and the fixed parts of response heads.
Rules: no I/O; a full memo is simply emptied.
"""

from __future__ import annotations

from ipcnet.errors import BadRequest
from ipcnet.protocols.http.conditional import DateCache, http_date
from ipcnet.protocols.http.limits import Limits
from ipcnet.protocols.http.messages import Head
from ipcnet.protocols.http.parsers import HeadParser, make_parser
from ipcnet.protocols.http.resources import Filesystem, NoObserver, Observer, StatusSource
from ipcnet.protocols.http.target import Target, parse_target

CACHE_SIZE = 4096  # entries in each memo below
WHOLES = 256  # whole responses kept per second (each up to session.WHOLE_BODY of body)
PARSED_HEAD = 1024  # heads up to this many bytes are remembered parsed (wrk, browsers repeat)


class Shared:
    """The state and memos shared by the sessions of one server."""

    draining = False  # the server stops: answer with Connection: close (issue 14)

    def __init__(
        self,
        files: Filesystem,
        *,
        limits: Limits | None = None,
        observer: Observer | None = None,
        status: StatusSource | None = None,
        parser: str = "auto",
        gzip: bool = True,
    ) -> None:
        self.files = files
        self.limits = limits or Limits()
        self.observer: Observer = observer or NoObserver()
        self.status = status
        self.gzip = gzip
        self.parser_name = make_parser(parser).name
        self.dates = DateCache()
        self._modified: dict[int, bytes] = {}
        self._targets: dict[bytes, Target | int] = {}
        self.heads: dict[tuple[object, ...], bytes] = {}  # fixed head parts, per file
        # whole 200 responses of files in memory, (entity, keep_alive) -> bytes, valid while
        # the Date they carry is the current one (emptied when it changes)
        self.wholes: dict[tuple[object, bool], bytes] = {}
        self.wholes_date = b""
        # request heads that parsed and passed check_head -> (Head, keep_alive, has_body);
        # parsing is a function of the bytes alone, and nothing changes a Head afterwards
        self.parsed: dict[bytes, tuple[Head, bool, bool]] = {}

    def new_parser(self) -> HeadParser:
        return make_parser(self.parser_name)

    def target(self, raw: bytes) -> Target:
        """``parse_target`` with a bounded memo (the same paths come again and again)."""
        found = self._targets.get(raw)
        if found.__class__ is Target:
            return found
        if found is None:
            if len(self._targets) >= CACHE_SIZE:
                self._targets.clear()
            try:
                found = parse_target(raw)
            except BadRequest as exc:
                found = exc.status
            self._targets[raw] = found
        if isinstance(found, int):
            raise BadRequest(found, "refused request target")
        return found

    def remember_parsed(
        self, raw: bytes, parsed: tuple[Head, bool, bool]
    ) -> tuple[Head, bool, bool]:
        if len(raw) <= PARSED_HEAD:
            if len(self.parsed) >= CACHE_SIZE:
                self.parsed.clear()
            self.parsed[raw] = parsed
        return parsed

    def remember_whole(self, key: tuple[object, bool], date: bytes, response: bytes) -> bytes:
        if self.wholes_date is not date:
            self.wholes.clear()
            self.wholes_date = date
        if len(self.wholes) < WHOLES:
            self.wholes[key] = response
        return response

    def remember_head(self, key: tuple[object, ...], block: bytes) -> bytes:
        if len(self.heads) >= CACHE_SIZE:
            self.heads.clear()
        self.heads[key] = block
        return block

    def last_modified(self, mtime: int) -> bytes:
        """Last-Modified for ``mtime``, never later than Date (RFC 9110 §8.8.2.1)."""
        if mtime > self.dates.second:
            now = self.dates.now()
            if mtime > self.dates.second:
                return now  # a file dated in the future
        text = self._modified.get(mtime)
        if text is None:
            if len(self._modified) >= CACHE_SIZE:
                self._modified.clear()
            text = self._modified[mtime] = http_date(mtime).encode()
        return text
