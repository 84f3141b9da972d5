"""The ``http`` service: what the drivers run; one HttpSession per connection.

Role: hold what every connection of the web server shares: the injected Filesystem,
Observer (access log, counters) and StatusSource, the limits, the parser choice, and the
caches of formatted dates. Rules: no I/O here either; ``refusal`` is a complete 503 with
``Connection: close`` that the driver sends to connections over --max-conns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ipcnet.protocols.base import Actions, BaseService, Peer
from ipcnet.protocols.http import responses
from ipcnet.protocols.http.conditional import DateCache, http_date
from ipcnet.protocols.http.limits import Limits
from ipcnet.protocols.http.messages import BadRequest
from ipcnet.protocols.http.parsers import HeadParser, make_parser
from ipcnet.protocols.http.resources import Filesystem, NoObserver, Observer, StatusSource
from ipcnet.protocols.http.session import HttpSession
from ipcnet.protocols.http.target import Target, parse_target

CACHE_SIZE = 4096  # entries in each memo below; a full memo is simply emptied


class HttpService(BaseService):
    """HTTP/1.1 GET and HEAD for the files a Filesystem finds."""

    name = "http"
    alpn = ("http/1.1",)  # over TLS: offered by ALPN; plain HTTP there gets a 400

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
        self.refusal = responses.refusal()
        self.dates = DateCache()
        self._modified: dict[int, bytes] = {}
        self._targets: dict[bytes, Target | int] = {}
        self.heads: dict[tuple[object, ...], bytes] = {}  # fixed head parts, per file

    def new_parser(self) -> HeadParser:
        return make_parser(self.parser_name)

    def start(self, peer: Peer) -> tuple[HttpSession, Actions]:
        return HttpSession(self, peer), None

    def attach(self, stats: Callable[[], dict[str, Any]]) -> None:
        if self.status is not None:
            self.status.attach(stats)

    def target(self, raw: bytes) -> Target:
        """``parse_target`` with a bounded memo (the same paths come again and again)."""
        found = self._targets.get(raw)
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

    def remember_head(self, key: tuple[object, ...], block: bytes) -> bytes:
        if len(self.heads) >= CACHE_SIZE:
            self.heads.clear()
        self.heads[key] = block
        return block

    def last_modified(self, mtime: int) -> bytes:
        text = self._modified.get(mtime)
        if text is None:
            if len(self._modified) >= CACHE_SIZE:
                self._modified.clear()
            text = self._modified[mtime] = http_date(mtime).encode()
        return text
