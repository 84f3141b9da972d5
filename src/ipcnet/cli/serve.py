"""``ipcnet serve SERVICE ADDRESS...``: run a service under a concurrency model."""

from __future__ import annotations

import argparse
import sys

HELP = "serve echo, increment, discard or daytime on addresses under a concurrency model"

SERVICE_HELP = {
    "echo": "RFC 862: send back every byte (stream and datagram)",
    "increment": "seed 002: answer each byte with byte+1; --once answers one and closes",
    "discard": "RFC 863: read and drop everything",
    "daytime": "RFC 867: send the date and time, then close (stream and datagram)",
}
MODEL_HELP = {
    "iterative": "server v1 (seed 000 §6.6): one connection at a time",
    "fork": "a child process per connection, parent waits (§6.7 'with protection')",
    "forkconc": "a child per connection, parent does not wait, SIGCHLD reaps (§6.8)",
    "thread": "a thread per connection, at most --max-conns (§7.3)",
    "pool": "--workers threads and a bounded queue; full = refused (§7.4)",
    "select": "one thread, select(2) readiness loop (seed 002 §7.4)",
    "poll": "one thread, poll(2) readiness loop",
    "epoll": "one thread, epoll(7) readiness loop (default)",
    "asyncio": "asyncio Protocols, on uvloop when installed",
    "prefork": "--workers processes, each running the --inner model",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "services:\n"
        + "".join(f"  {name:<11} {text}\n" for name, text in SERVICE_HELP.items())
        + "\nmodels:\n"
        + "".join(f"  {name:<11} {text}\n" for name, text in MODEL_HELP.items())
    )
    parser.add_argument(
        "service", choices=list(SERVICE_HELP), metavar="SERVICE", help="what to serve (below)"
    )
    parser.add_argument(
        "addresses",
        nargs="+",
        metavar="ADDRESS",
        help="tcp://host:port, unix:///path, udp://..., fd://N, systemd://",
    )
    parser.add_argument(
        "--model", "-m", choices=list(MODEL_HELP), default="epoll", help="concurrency model (below)"
    )
    parser.add_argument(
        "--workers", type=int, default=4, metavar="N", help="pool threads / prefork processes (4)"
    )
    parser.add_argument(
        "--inner",
        choices=[m for m in MODEL_HELP if m != "prefork"],
        default="epoll",
        help="model inside each prefork worker (epoll)",
    )
    parser.add_argument(
        "--reuse-port", action="store_true", help="prefork: one SO_REUSEPORT socket per worker"
    )
    parser.add_argument(
        "--max-conns",
        type=int,
        default=1024,
        metavar="K",
        help="connections per process before refusing (1024)",
    )
    parser.add_argument(
        "--queue",
        type=int,
        default=0,
        metavar="Q",
        help="pool: connections that may wait for a thread (4 x workers)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds in-flight work may take after SIGTERM (10)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="close connections silent this long (300; 0 = never)",
    )
    parser.add_argument(
        "--trace", action="store_true", help="print each kernel-level step (for learning)"
    )
    parser.add_argument(
        "--stats",
        metavar="URL",
        help="answer with the counters as JSON on this address (unix:///path)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="increment: answer one byte, then close (as the seed does)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log connection-level events")


def run(args: argparse.Namespace) -> int:
    import logging

    from ipcnet.drivers import ServeConfig, serve
    from ipcnet.drivers.prefork import BootFailure
    from ipcnet.protocols import SERVICES

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="ipcnet serve: %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    service_class = SERVICES[args.service][0]
    service = service_class(once=args.once) if args.service == "increment" else service_class()  # type: ignore[call-arg]
    config = ServeConfig(
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

    def ready(core: object) -> None:
        for address in core.bound:  # type: ignore[attr-defined]
            print(
                f"ipcnet serve: {args.service} listening on {address} (model {args.model})",
                file=sys.stderr,
                flush=True,
            )

    try:
        serve(service, args.addresses, config, ready)
    except BootFailure as exc:
        print(f"ipcnet serve: {exc}", file=sys.stderr)
        return 1
    return 0
