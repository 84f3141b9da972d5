"""The ``http`` service: what the drivers run; one HttpSession per connection.

Role: the Service face of the web server: ``start`` makes a session over the shared state
(``Shared``: files, limits, observer, memos), ``attach`` hands the server's counters to
the status page. Rules: no I/O here either; ``refusal`` is a complete 503 with a Date and
``Connection: close`` that the driver sends to connections over --max-conns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ipcnet.protocols.base import Actions, BaseService, Peer, Timer
from ipcnet.protocols.http import responses
from ipcnet.protocols.http.session import HttpSession
from ipcnet.protocols.http.shared import Shared


class HttpService(Shared, BaseService):
    """HTTP/1.1 GET and HEAD for the files a Filesystem finds."""

    name = "http"
    alpn = ("http/1.1",)  # over TLS: offered by ALPN; plain HTTP there gets a 400

    @property
    def refusal(self) -> bytes:  # type: ignore[override]
        """The 503 for a connection over --max-conns, dated now (RFC 9110 §6.6.1)."""
        return responses.refusal(self.dates.now())

    def start(self, peer: Peer) -> tuple[HttpSession, Actions]:
        """A session, and the deadline for its first request head (``HttpSession``'s NEW)."""
        return HttpSession(self, peer), Timer(self.limits.header_timeout)

    def drain(self) -> None:
        """The server stops: every later answer says ``Connection: close`` and closes, so
        a keep-alive client learns it before its next request (none is lost to a close
        racing it); the driver leaves idle connections open for DRAIN_LINGER meanwhile."""
        self.draining = True

    def reopen_logs(self) -> None:
        """SIGUSR1 (nginx's, after logrotate moved the file): the observer reopens its log."""
        reopen = getattr(self.observer, "reopen", None)
        if reopen is not None:
            reopen()

    def attach(self, stats: Callable[[], dict[str, Any]]) -> None:
        if self.status is not None:
            self.status.attach(stats)
