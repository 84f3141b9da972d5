"""``ipcnet serve http ROOT [ADDRESS...]``: the static-file web server's options.

Role: argument parsing only; ``ipcnet.cli.serve`` adds the shared options (model, limits,
trace, stats) and runs what ``make_service`` returns. Rules: every limit of
``ipcnet.protocols.http.Limits`` that an operator may want has an option here.
"""

from __future__ import annotations

import argparse
from typing import Any

from ipcnet.cli.argtypes import nonempty, seconds, timeout, whole

DEFAULT_ADDRESS = "tcp://127.0.0.1:8000"
HTTP_IDLE_TIMEOUT = 60.0  # keep-alive idle: the driver's --idle-timeout, shorter for http


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", metavar="ROOT", help="directory to serve")
    parser.add_argument(
        "addresses",
        nargs="*",
        metavar="ADDRESS",
        default=[DEFAULT_ADDRESS],
        help=f"where to listen (default {DEFAULT_ADDRESS}); tcp://, unix://",
    )
    g = parser.add_argument_group("http")
    g.add_argument("--quiet", "-q", action="store_true", help="no access log")
    g.add_argument(
        "--access-log",
        type=nonempty("a file name"),
        metavar="FILE",
        help="append the access log (CLF) to FILE (default stderr)",
    )
    g.add_argument("--no-status", action="store_true", help="no /_status and /_status.json")
    g.add_argument("--no-listing", action="store_true", help="403 for directories without index")
    g.add_argument("--no-gzip", action="store_true", help="never serve precompressed .gz siblings")
    g.add_argument(
        "--no-sendfile",
        action="store_true",
        help="copy files through memory instead of sendfile(2): files up to 16 MiB are kept"
        " in memory, larger ones read a chunk at a time (automatic for asyncio on uvloop)",
    )
    g.add_argument(
        "--parser",
        choices=["auto", "httptools", "h11"],
        default="auto",
        help="request parser (auto: httptools when installed, else h11)",
    )
    g.add_argument(
        "--cache-ttl",
        type=seconds,
        default=1.0,
        metavar="S",
        help="keep file lookups this long (1; 0 = look every time)",
    )
    g.add_argument(
        "--header-timeout",
        type=timeout,
        default=10.0,
        metavar="S",
        help="a request head must come within S seconds (the first: of the accept), else 408 (10)",
    )
    g.add_argument(
        "--max-header-bytes",
        type=whole(1),
        default=16 * 1024,
        metavar="N",
        help="the largest request head in bytes; a larger one gets 431 (16 KiB)",
    )
    g.add_argument(
        "--max-headers",
        type=whole(1),
        default=100,
        metavar="N",
        help="the most header fields; more get 431 (100)",
    )
    g.add_argument(
        "--max-request-line",
        type=whole(1),
        default=8 * 1024,
        metavar="N",
        help="the longest request line in bytes; a longer one gets 414 (8 KiB)",
    )
    g.add_argument(
        "--max-ranges",
        type=whole(0),
        default=16,
        metavar="N",
        help="the most ranges in one Range header; more get the whole file (16)",
    )
    parser.set_defaults(idle_timeout=HTTP_IDLE_TIMEOUT)


def _loop_lacks_sendfile(args: argparse.Namespace) -> bool:
    """uvloop has no loop.sendfile: a model that runs on an asyncio loop then copies files
    through worker threads. Reading them into the web server's own cache is faster there, so that is
    what it does under that model."""
    from ipcnet.drivers import serving

    if not serving(args.model, args.inner).awaits:
        return False
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


def make_service(args: argparse.Namespace) -> Any:
    from ipcnet.drivers import info
    from ipcnet.httpd import HttpOptions
    from ipcnet.httpd import make_service as build
    from ipcnet.protocols.http import Limits

    limits = Limits(
        request_line=args.max_request_line,
        header_bytes=args.max_header_bytes,
        header_count=args.max_headers,
        header_timeout=args.header_timeout,
        max_ranges=args.max_ranges,
    )
    options = HttpOptions(
        quiet=args.quiet,
        access_log=args.access_log,
        status=not args.no_status,
        listings=not args.no_listing,
        gzip=not args.no_gzip,
        parser=args.parser,
        cache_ttl=args.cache_ttl,
        sendfile=not (args.no_sendfile or _loop_lacks_sendfile(args)),
        limits=limits,
        model=args.model,
        workers=args.workers if info(args.model).sized else 0,
    )
    return build(args.root, options)
