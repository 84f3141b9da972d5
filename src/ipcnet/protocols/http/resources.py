"""What the web server's session asks of the layer above it, as typed interfaces.

Role: the session does no I/O, so finding files, rendering listings, writing the access
log and reading the server's counters are injected objects (dependency injection).
Rules:
- ``Filesystem.lookup`` is blocking (open, stat, readdir) and only ever runs inside a
  ``Run`` job; ``Filesystem.cached`` must not block: it answers from memory or says None;
- an ``Entity`` holds an open file until ``take_fd()`` hands it to a ``SendFile(close=True)``
  or ``close()`` drops it; ``data`` is set instead for small files kept in memory;
- what ``lookup`` returns is one of: an Entity, a Page (a rendered listing), NeedsSlash
  (a directory named without its trailing '/'), or Refused (403/404).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ipcnet.protocols.base import Peer


class Entity(Protocol):
    """One file's representation, ready to send; hashed by identity (the session keeps
    whole responses per Entity object, so one for changed content must be a new object)."""

    size: int
    mtime: int
    etag: str
    content_type: str
    encoding: str | None  # "gzip" when a precompressed sibling is served
    vary: bool  # a .gz sibling exists: the answer depends on Accept-Encoding
    path: str
    data: bytes | None  # the whole content, for small files kept in memory

    def take_fd(self) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Page:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    cache: bool = False  # may be kept by the client (false for listings and status)


@dataclass(frozen=True, slots=True)
class NeedsSlash:
    """A directory was asked for without its trailing slash: redirect."""


@dataclass(frozen=True, slots=True)
class Refused:
    status: int  # 403 or 404
    reason: str = ""


Found = Entity | Page | NeedsSlash | Refused


class Filesystem(Protocol):
    def cached(self, segments: tuple[str, ...], trailing: bool, gzip: bool) -> Found | None:
        """A recent answer from memory, without blocking; None: use ``lookup`` in a Run."""
        ...

    def lookup(self, segments: tuple[str, ...], trailing: bool, gzip: bool) -> Found:
        """Find what a path names under ROOT (blocking: call it from a Run job)."""
        ...


class Observer(Protocol):
    """Told about every response: the access log and the request counters; ``seconds``
    from the request head to the answer (0 when no request parsed). When none parsed,
    ``method`` is "-" and ``target`` the first line that came, as it came (maybe empty)."""

    def response(
        self,
        peer: Peer,
        method: str,
        target: bytes,
        version: str,
        status: int,
        size: int,
        seconds: float = 0.0,
    ) -> None: ...


class StatusSource(Protocol):
    """The status page: blocking renderers (they read /proc), run in Run jobs."""

    def attach(self, stats: Callable[[], dict[str, Any]]) -> None: ...

    def html(self) -> bytes: ...

    def json(self) -> bytes: ...

    def health(self) -> Page: ...

    def prometheus(self) -> bytes: ...


class NoObserver:
    def response(
        self,
        peer: Peer,
        method: str,
        target: bytes,
        version: str,
        status: int,
        size: int,
        seconds: float = 0.0,
    ) -> None:
        return None
