"""The web server product: files under ROOT, access log, status page, demo site.

Role: build the ``http`` service (``ipcnet serve http ROOT``) by injecting this package's
Resolver, AccessLog and StatusPage into the sans-IO ``HttpService``. Rules: this is the
layer that may touch files and /proc; the protocol layer below it never does.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ipcnet.httpd.accesslog import AccessLog, open_file
from ipcnet.httpd.files import Resolver
from ipcnet.httpd.metrics import Metrics
from ipcnet.httpd.status import StatusPage
from ipcnet.protocols.http import HttpService, Limits

SITE = Path(__file__).resolve().parent / "site"


@dataclass
class HttpOptions:
    quiet: bool = False
    access_log: str | None = None  # a file; None = stderr (unless quiet)
    status: bool = True
    listings: bool = True
    gzip: bool = True
    parser: str = "auto"  # httptools, h11
    cache_ttl: float = 1.0
    sendfile: bool = True  # False: keep files up to 16 MiB in memory (a loop without sendfile)
    limits: Limits = field(default_factory=Limits)
    model: str = ""
    workers: int = 0


def demo_site_root() -> Path:
    """The bundled demo site (``make run`` serves it)."""
    return SITE


def open_log(options: HttpOptions) -> TextIO | None:
    if options.quiet:
        return None
    if log_path(options):
        return open_file(options.access_log)  # type: ignore[arg-type]
    return sys.stderr


def log_path(options: HttpOptions) -> str | None:
    """The access log's file (reopened at SIGUSR1), None for stderr or none."""
    if options.quiet or not options.access_log or options.access_log == "-":
        return None
    return options.access_log


def make_service(root: str | Path, options: HttpOptions | None = None) -> HttpService:
    options = options or HttpOptions()
    files = Resolver(
        str(root),
        listings=options.listings,
        gzip=options.gzip,
        cache_ttl=options.cache_ttl,
        sendfile=options.sendfile,
    )
    metrics = Metrics()
    status = (
        StatusPage(metrics, model=options.model, workers=options.workers)
        if options.status
        else None
    )
    return HttpService(
        files,
        limits=options.limits,
        observer=AccessLog(metrics, open_log(options), log_path(options)),
        status=status,
        parser=options.parser,
        gzip=options.gzip,
    )


__all__ = ["SITE", "HttpOptions", "demo_site_root", "make_service"]
