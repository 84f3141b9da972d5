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

from ipcnet.cli import tlsflags
from ipcnet.cli.argtypes import MAX_WORKERS, seconds, whole
from ipcnet.cli.argtypes import address as url

HELP = "serve echo, increment, discard, daytime or http on addresses under a concurrency model"


def common_options(use: str = "serve") -> argparse.ArgumentParser:
    """The options every service takes (also used by ``ipcnet rpc serve``, ``use="rpc"``);
    choices come from the model registry, the model's default for ``use`` from it too, the
    other defaults from ``ServeConfig``."""
    from ipcnet.drivers import INNER_MODELS, MODELS, ServeConfig, default_for

    d = ServeConfig()
    model = default_for(use)
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("serving")
    g.add_argument(
        "--model",
        "-m",
        choices=list(MODELS),
        default=model,
        help=f"concurrency model ({model})",
    )
    g.add_argument(
        "--workers",
        type=whole(1, MAX_WORKERS),
        default=d.workers,
        metavar="N",
        help=f"pool threads / prefork processes ({d.workers})",
    )
    g.add_argument(
        "--inner",
        choices=INNER_MODELS,
        default=d.inner,
        help=f"model inside each prefork worker ({d.inner})",
    )
    g.add_argument(
        "--reuse-port", action="store_true", help="prefork: one SO_REUSEPORT socket per worker"
    )
    g.add_argument(
        "--max-conns",
        type=whole(1),
        default=d.max_conns,
        metavar="K",
        help=f"connections per process ({d.max_conns})",
    )
    g.add_argument(  # nginx's listen backlog=, gunicorn's --backlog, HAProxy's backlog
        "--backlog",
        type=whole(1),
        default=d.backlog,
        metavar="B",
        help=f"listen(2) queue of each stream listener ({d.backlog}; the kernel caps it at "
        "net.core.somaxconn)",
    )
    g.add_argument(
        "--queue",
        type=whole(0),
        default=d.queue,
        metavar="Q",
        help="pool: waiting connections (4 x workers)",
    )
    g.add_argument(
        "--grace",
        type=seconds,
        default=d.grace,
        metavar="S",
        help=f"seconds for in-flight work at stop ({d.grace:g})",
    )
    g.add_argument(  # issue 14: behind a load balancer
        "--drain-delay",
        type=seconds,
        default=d.drain_delay,
        metavar="S",
        help="at SIGTERM (any stop signal), fail /_health for S seconds while still "
        "serving, then stop (for a balancer's checks: S > inter x fall; default 0)",
    )
    g.add_argument(
        "--idle-timeout",
        type=seconds,
        default=d.idle_timeout or 0.0,
        metavar="S",
        help="close silent connections (%(default)g; 0 = never)",  # a service may change it
    )
    g.add_argument(
        "--trace", action="store_true", help="print each kernel-level step (for learning)"
    )
    g.add_argument(
        "--stats",
        type=url,
        metavar="URL",
        help="serve the counters as JSON on this address (unix:///path)",
    )
    g.add_argument("-v", "--verbose", action="store_true", help="log connection-level events")
    tlsflags.add_arguments(p, client=False)  # tls:// addresses: --cert --key --ca ...
    g.add_argument(
        "--accept-proxy",
        action="store_true",
        help="every connection starts with a PROXY protocol v1/v2 header (HAProxy send-proxy)",
    )
    g.add_argument(
        "--metrics",
        type=url,
        metavar="URL",
        help="serve Prometheus text on GET /metrics at this address (tcp://127.0.0.1:9100)",
    )
    return p


def _models_epilog() -> str:
    from ipcnet.drivers import MODELS

    return "models:\n" + "".join(f"  {name:<10} {m.help}\n" for name, m in MODELS.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ipcnet.protocols import SERVICES

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _models_epilog()  # the services: argparse lists the SERVICE choices
    sub = parser.add_subparsers(dest="service", metavar="SERVICE", required=True)
    wanted = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "serve" else None
    for name, info in SERVICES.items():
        p = sub.add_parser(
            name,
            # its own copy: parents share their action objects, and a service's
            # set_defaults (http's --idle-timeout) would change every other service's
            parents=[common_options()],
            help=info.help,
            description=info.help,
            epilog=_models_epilog(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if info.cli:
            if wanted not in (None, name):
                continue  # import a service's CLI only when it is the one asked for
            try:
                module = importlib.import_module(info.cli)
            except ModuleNotFoundError as exc:
                if exc.name != info.cli:
                    raise
                continue
            module.add_arguments(p)
            p.set_defaults(_make=module.make_service)
            continue
        p.add_argument(
            "addresses",
            nargs="+",
            metavar="ADDRESS",
            help="tcp://host:port, unix:///path, udp://...",
        )
        for option in info.options:
            if option.kind is bool:
                p.add_argument(option.flag, action="store_true", help=option.help)
            else:
                p.add_argument(
                    option.flag, type=option.kind, default=option.default, help=option.help
                )
        p.set_defaults(_make=_make_from_table)


def _make_from_table(args: argparse.Namespace) -> Any:
    from ipcnet.protocols import SERVICES

    info = SERVICES[args.service]
    assert info.make is not None
    return info.make(**{o.dest: getattr(args, o.dest) for o in info.options})


def config_from(args: argparse.Namespace) -> Any:
    from ipcnet.drivers import ServeConfig

    return ServeConfig(
        model=args.model,
        workers=args.workers,
        inner=args.inner,
        max_conns=args.max_conns,
        backlog=args.backlog,
        queue=args.queue,
        grace=args.grace,
        idle_timeout=args.idle_timeout or None,
        trace=args.trace,
        stats=args.stats,
        reuse_port=args.reuse_port,
        tls=tlsflags.keywords(args),
        accept_proxy=args.accept_proxy,
        metrics=args.metrics,
        drain_delay=args.drain_delay,
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
