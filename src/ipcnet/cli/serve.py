"""``ipcnet serve SERVICE [ARGS] ADDRESS...``: run a service under a concurrency model.

Each service is a sub-command with its own arguments; the options shared by all (model,
limits, trace, stats) come from one parent parser. A service's CLI module provides
``add_arguments(parser)`` and ``make_service(args) -> Service`` (``ipcnet.cli.serve_http``
for the web server; the small services are here).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

HELP = "serve echo, increment, discard, daytime or http on addresses under a concurrency model"

OTHER_SERVICES = {"http": ("ipcnet.cli.serve_http", "HTTP/1.1 static files from ROOT")}


def common_options() -> argparse.ArgumentParser:
    """The options every service takes (also used by ``ipcnet rpc serve``)."""
    from ipcnet.drivers import MODEL_HELP

    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("serving")
    g.add_argument(
        "--model", "-m", choices=list(MODEL_HELP), default="epoll", help="concurrency model"
    )
    g.add_argument(
        "--workers", type=int, default=4, metavar="N", help="pool threads / prefork processes (4)"
    )
    g.add_argument(
        "--inner",
        choices=[m for m in MODEL_HELP if m != "prefork"],
        default="epoll",
        help="model inside each prefork worker (epoll)",
    )
    g.add_argument(
        "--reuse-port", action="store_true", help="prefork: one SO_REUSEPORT socket per worker"
    )
    g.add_argument(
        "--max-conns", type=int, default=1024, metavar="K", help="connections per process (1024)"
    )
    g.add_argument(
        "--queue", type=int, default=0, metavar="Q", help="pool: waiting connections (4 x workers)"
    )
    g.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds for in-flight work at stop (10)",
    )
    g.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="close silent connections (300; 0 = never)",
    )
    g.add_argument(
        "--trace", action="store_true", help="print each kernel-level step (for learning)"
    )
    g.add_argument(
        "--stats", metavar="URL", help="serve the counters as JSON on this address (unix:///path)"
    )
    g.add_argument("-v", "--verbose", action="store_true", help="log connection-level events")
    return p


def _models_epilog() -> str:
    from ipcnet.drivers import MODEL_HELP

    return "models:\n" + "".join(f"  {name:<10} {text}\n" for name, text in MODEL_HELP.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ipcnet.protocols import SERVICES

    small = {name: text for name, (_, text) in SERVICES.items()}
    other = {name: text for name, (_, text) in OTHER_SERVICES.items()}
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "services:\n"
        + "".join(f"  {n:<10} {t}\n" for n, t in (small | other).items())
        + "\n"
        + _models_epilog()
    )
    common = common_options()
    sub = parser.add_subparsers(dest="service", metavar="SERVICE", required=True)
    for name, text in small.items():
        p = _service_parser(sub, name, text, common)
        p.add_argument(
            "addresses",
            nargs="+",
            metavar="ADDRESS",
            help="tcp://host:port, unix:///path, udp://...",
        )
        if name == "increment":
            p.add_argument(
                "--once", action="store_true", help="answer one byte, then close (as the seed does)"
            )
        p.set_defaults(_make=_make_small)
    wanted = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "serve" else None
    for name, (module_name, text) in OTHER_SERVICES.items():
        p = _service_parser(sub, name, text, common)
        if wanted not in (None, name):
            continue  # import a service's CLI only when it is the one asked for
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.add_arguments(p)
        p.set_defaults(_make=module.make_service)


def _service_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    text: str,
    common: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        parents=[common],
        help=text,
        description=text,
        epilog=_models_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _make_small(args: argparse.Namespace) -> Any:
    from ipcnet.protocols import SERVICES

    service_class = SERVICES[args.service][0]
    if args.service == "increment":
        return service_class(once=args.once)  # type: ignore[call-arg]
    return service_class()


def config_from(args: argparse.Namespace) -> Any:
    from ipcnet.drivers import ServeConfig

    return ServeConfig(
        model=args.model,
        workers=args.workers,
        inner=args.inner,
        max_conns=args.max_conns,
        queue=args.queue,
        grace=args.grace,
        idle_timeout=args.idle_timeout or None,
        trace=args.trace,
        stats=args.stats,
        reuse_port=args.reuse_port,
    )


def serve_until_stopped(service: Any, addresses: list[str], args: argparse.Namespace) -> int:
    """Log setup, serve, print the listening lines; 1 if prefork workers cannot start."""
    import logging

    from ipcnet.drivers import serve
    from ipcnet.drivers.prefork import BootFailure

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="ipcnet serve: %(levelname)s %(message)s",
        stream=sys.stderr,
    )

    def ready(core: Any) -> None:
        for address in core.bound:
            print(
                f"ipcnet serve: {service.name} listening on {address} (model {args.model})",
                file=sys.stderr,
                flush=True,
            )

    try:
        serve(service, addresses, config_from(args), ready)
    except BootFailure as exc:
        print(f"ipcnet serve: {exc}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    if not hasattr(args, "_make"):
        print(
            f"ipcnet serve: {args.service} is not available in this installation", file=sys.stderr
        )
        return 2
    service = args._make(args)
    return serve_until_stopped(service, list(args.addresses), args)
