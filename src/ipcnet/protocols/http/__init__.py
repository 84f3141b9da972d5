"""HTTP/1.1 as a sans-IO service: static files (GET, HEAD, OPTIONS, ranges, preconditions)
under every driver.

Role: the protocol half of the web server (``ipcnet serve http``). The product half, which
touches files and logs, is ``ipcnet.httpd`` and is injected (see ``resources``). Rules: as
for every protocol, no I/O and no os/socket imports; the HTTP grammar is llhttp's
(httptools) or h11's, never hand-written.
"""

from __future__ import annotations

from ipcnet.errors import BadRequest
from ipcnet.protocols.http.limits import Limits
from ipcnet.protocols.http.messages import Head
from ipcnet.protocols.http.resources import (
    Entity,
    Filesystem,
    Found,
    NeedsSlash,
    Observer,
    Page,
    Refused,
    StatusSource,
)
from ipcnet.protocols.http.service import HttpService
from ipcnet.protocols.http.session import HttpSession

__all__ = [
    "BadRequest",
    "Entity",
    "Filesystem",
    "Found",
    "Head",
    "HttpService",
    "HttpSession",
    "Limits",
    "NeedsSlash",
    "Observer",
    "Page",
    "Refused",
    "StatusSource",
]
