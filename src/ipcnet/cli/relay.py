"""``ipcnet relay LISTEN TARGET...``: accept on one address, connect each client to a target.

What socat, HAProxy ``mode tcp`` and nginx ``stream`` do: any listen address to any target
address (including ``exec:cmd``, a child per connection), both directions, exact
half-close, splice(2), the PROXY protocol, udp/unixgram sessions. A stream relay runs
under ``--model`` through the driver engine (``relay.service``); datagram relays and
``--once`` run in the relay's own loop (``relay.server``). One log line per
finished connection goes to stderr (``-q`` silences it); SIGTERM/SIGINT stop gracefully
(``--grace``), a second one closes what is left. ``--once`` relays one connection and
exits; on a terminal it shows a progress line.

TLS: a tls:// (tls+unix://) LISTEN is terminated and a tls:// TARGET originated, with the
flags of ``connect``/``serve`` (``cli.tlsflags``). They go to the one TLS side; when both
sides are TLS they are the listen side's, and the target side's certificate, key and CA
are ``--target-cert``/``--target-key``/``--target-ca`` (``--insecure``/``--sni`` are
always the target's, ``--tls-tickets`` always the listen side's; ``--alpn``, ``--tls-min``
and the handshake timeout apply to both). SIGHUP reloads a terminating relay's certificate
and key for new handshakes (as stunnel does; a bad file keeps the old pair and says why).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from ipcnet.cli.argtypes import MAX_BUFFER, MAX_WORKERS, address, nonempty, seconds, timeout, whole

if TYPE_CHECKING:
    from ipcnet.relay import Relay

HELP = "relay every client of LISTEN to one of the TARGETs, both ways (socat, haproxy tcp)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("listen", metavar="LISTEN", help="address to accept clients on")
    parser.add_argument("targets", metavar="TARGET", nargs="+", help="address(es) to connect to")
    g = parser.add_argument_group("targets")
    g.add_argument(
        "--balance",
        choices=("first", "roundrobin"),
        default="first",
        help="first: in order, the next when one refuses or times out (default); "
        "roundrobin: each connection starts at the next target",
    )
    g.add_argument(
        "--connect-timeout",
        type=timeout,
        default=5.0,
        metavar="S",
        help="give up a target that has not answered in S seconds, try the next (5)",
    )
    g.add_argument("--send-proxy", choices=("v1", "v2"), help="PROXY protocol header upstream")
    g.add_argument(
        "--accept-proxy",
        action="store_true",
        help="clients must send a PROXY protocol header (v1 or v2) first",
    )
    c = parser.add_argument_group("connections")
    c.add_argument(
        "--linger",
        type=seconds,
        metavar="S",
        help="after one direction ended, end the other after S s without traffic "
        "(default: wait until it ends)",
    )
    c.add_argument(
        "--idle-timeout",
        type=timeout,
        metavar="S",
        help="end a connection silent both ways for S seconds (default: never)",
    )
    c.add_argument(
        "--max-conns",
        type=whole(1),
        default=1024,
        metavar="K",
        help="connections at once; one more is refused (1024)",
    )
    c.add_argument(
        "--grace",
        type=seconds,
        default=10.0,
        metavar="S",
        help="seconds the open connections have to finish at a stop (10)",
    )
    c.add_argument(
        "--no-splice", action="store_true", help="copy through a buffer instead of splice(2)"
    )
    c.add_argument(
        "--buffer",
        type=whole(1, MAX_BUFFER),
        default=None,
        metavar="BYTES",
        help="per direction: splice pipe (1 MiB) or copy buffer (256 KiB)",
    )
    c.add_argument("--once", action="store_true", help="relay one connection, then exit")
    d = parser.add_argument_group("datagrams (udp, unixgram)")
    d.add_argument(
        "--udp-idle",
        type=timeout,
        default=60.0,
        metavar="S",
        help="forget a client's mapping after S seconds without datagrams (60)",
    )
    d.add_argument(
        "--udp-replies", type=whole(1), metavar="N", help="end a mapping after N replies"
    )
    d.add_argument(
        "--max-datagram",
        type=whole(1, MAX_BUFFER),
        default=65536,
        metavar="BYTES",
        help="the largest datagram relayed; a larger one is dropped (64 KiB)",
    )
    from ipcnet.drivers import DEFAULT_MODEL, INNER_MODELS, MODEL_HELP

    m = parser.add_argument_group("serving (stream relays)")
    m.add_argument(
        "--model",
        "-m",
        choices=list(MODEL_HELP),
        default=DEFAULT_MODEL,  # for the relay too the fastest measured (BENCHMARKS.md)
        help=f"concurrency model ({DEFAULT_MODEL})",
    )
    m.add_argument(
        "--workers",
        type=whole(1, MAX_WORKERS),
        default=8,
        metavar="N",
        help="pool threads, prefork processes (8); the event loops connect on threads "
        "of their own, up to --max-conns, so no connect waits behind another",
    )
    m.add_argument(
        "--inner",
        choices=INNER_MODELS,
        default=DEFAULT_MODEL,
        help=f"the model inside each nesting model's workers ({DEFAULT_MODEL})",
    )
    from ipcnet.cli import tlsflags

    tlsflags.add_arguments(parser)
    t = parser.add_argument_group("tls towards the target, when LISTEN is tls:// too")
    file = nonempty("a file name")
    t.add_argument(
        "--target-cert", type=file, metavar="FILE", help="client certificate for the target"
    )
    t.add_argument(
        "--target-key", type=file, metavar="FILE", help="its key (default: in --target-cert)"
    )
    t.add_argument("--target-ca", type=file, metavar="FILE", help="trust targets signed by it")
    o = parser.add_argument_group("output")
    o.add_argument(
        "--stats", type=address, metavar="URL", help="serve the counters as JSON on this address"
    )
    o.add_argument("-q", "--quiet", action="store_true", help="no log line per connection")


def run(args: argparse.Namespace) -> int:
    import logging

    from ipcnet.relay import Relay, RelayConfig

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ipcnet relay: %(message)s"))
    log = logging.getLogger("ipcnet.relay")
    log.addHandler(handler)
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    tls_log = logging.getLogger("ipcnet.tls")  # its warnings: --insecure, a failed reload
    tls_log.addHandler(handler)
    tls_log.setLevel(logging.WARNING)
    config = RelayConfig(
        balance=args.balance,
        connect_timeout=args.connect_timeout or None,
        linger=args.linger,
        idle_timeout=args.idle_timeout or None,
        max_conns=args.max_conns,
        grace=args.grace,
        splice=not args.no_splice,
        buffer=args.buffer,
        send_proxy=args.send_proxy,
        accept_proxy=args.accept_proxy,
        udp_idle=args.udp_idle,
        udp_replies=args.udp_replies,
        max_datagram=args.max_datagram,
        once=args.once,
        stats=args.stats,
    )
    from ipcnet.addresses import parse

    config.tls, config.target_tls = _tls_sides(args)

    if not args.once and parse(args.listen).kind != "datagram":
        return _serve(args, config)
    return _own_loop(Relay(args.listen, args.targets, config), args)


def _own_loop(relay: Relay, args: argparse.Namespace) -> int:
    """``--once`` and datagram relays: the relay's own loop. A datagram relay is a
    long-running service, so it takes a service manager's signals as ``ipcnet serve``
    does: READY=1 once it listens (and the watchdog's pings), STOPPING=1, SIGHUP a reload
    (with nothing to reload), SIGUSR1 and SIGUSR2 answered, not deaths (no log file to
    reopen, no binary upgrade); ``--once`` ends at SIGHUP, as a terminal's hang-up."""
    from ipcnet.drivers import upgrade
    from ipcnet.drivers.core import STOP_SIGNALS

    signals: list[int] = []
    service = not args.once

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals.append(signum)

    def on_service_signal(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            upgrade.tell("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
            upgrade.tell("READY=1")
        else:
            name = signal.Signals(signum).name
            print(f"ipcnet relay: {name}: nothing to do for a datagram relay", file=sys.stderr)

    for sig in STOP_SIGNALS if service else (*STOP_SIGNALS, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if service:
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, on_service_signal)
    relay.start()
    print(f"ipcnet relay: {relay.address} -> {' '.join(args.targets)}", file=sys.stderr)
    pings = threading.Event()
    if service:
        upgrade.tell("READY=1", f"MAINPID={os.getpid()}", f"STATUS=relaying {relay.address}")
        upgrade.watchdog(pings)
    try:
        return _relay_until_done(relay, args, signals)
    finally:
        pings.set()


def _relay_until_done(relay: Relay, args: argparse.Namespace, signals: list[int]) -> int:
    from ipcnet.drivers import upgrade

    progress = args.once and sys.stderr.isatty()
    shown = 0.0
    started = time.monotonic()
    while not relay.wait(0.25 if progress else 0.5):
        if signals:
            break
        if progress and time.monotonic() - shown >= 0.5:
            shown = time.monotonic()
            _progress(relay.moved(), shown - started)
    if progress:
        _progress(relay.moved(), time.monotonic() - started)
        print(file=sys.stderr)
    if signals:
        if not args.once:
            upgrade.stopping()
        stopper = threading.Thread(target=relay.stop, daemon=True)
        stopper.start()
        count = len(signals)
        while stopper.is_alive():
            stopper.join(0.1)
            if len(signals) > count:  # a second signal: close what is left now
                relay.force()
                count = len(signals)
        return 0
    relay.stop()
    return 0


_SHARED = ("alpn", "tls_min", "tls_max", "handshake_timeout")


def _tls_sides(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The TLS flags split between the listen side and the targets (see the docstring)."""
    from ipcnet.addresses import parse
    from ipcnet.cli import tlsflags
    from ipcnet.errors import TLSConfigError, Unsupported
    from ipcnet.relay.service import is_tls

    given = tlsflags.keywords(args)
    target_given = {
        name: value
        for name in ("cert", "key", "ca")
        if (value := getattr(args, f"target_{name}", None)) is not None
    }
    if "key" in target_given and "cert" not in target_given:  # else "--key without --cert"
        raise TLSConfigError(
            "--target-key without --target-cert: give the certificate the key is for"
        )
    listen_tls = is_tls(parse(args.listen))
    target_tls = any(is_tls(parse(t)) for t in args.targets)
    if not (listen_tls or target_tls):
        if given or target_given:
            raise Unsupported("tls options given, but no tls:// address to use them")
        return {}, {}
    shared = {k: v for k, v in given.items() if k in _SHARED}
    client = {k: v for k, v in given.items() if k in ("insecure", "sni")}
    own = {k: v for k, v in given.items() if k in ("cert", "key", "ca")}
    if not target_tls:
        if client or target_given:
            raise Unsupported("--insecure, --sni and --target-* are for a tls:// target")
        return given, {}
    if "tls_tickets" in given and not listen_tls:
        raise Unsupported("--tls-tickets is for a tls:// listen address")
    if not listen_tls:
        return {}, {**shared, **client, **own, **target_given}
    listen = {
        **shared,
        **own,
        **({"tls_tickets": given["tls_tickets"]} if "tls_tickets" in given else {}),
    }
    return listen, {**shared, **client, **target_given}


def _progress(moved: tuple[int, int], seconds: float) -> None:
    up, down = moved
    rate = (up + down) / seconds / 1e6 if seconds > 0 else 0.0
    print(
        f"\rup {up:,} B, down {down:,} B, {rate:.1f} MB/s   ", end="", file=sys.stderr, flush=True
    )


def _serve(args: argparse.Namespace, config: object) -> int:
    """A stream relay under a concurrency model, through the driver engine."""
    from ipcnet.drivers import ServeConfig, serve
    from ipcnet.relay.server import RelayConfig
    from ipcnet.relay.service import RelayService
    from ipcnet.relay.targets import Targets

    assert isinstance(config, RelayConfig)
    config.check()
    targets = Targets(args.targets, config.balance, config.connect_timeout, tls=config.target_tls)
    for target in targets.addresses:
        if target.kind == "datagram":
            from ipcnet.errors import Unsupported

            raise Unsupported(f"target {target} is not a stream address like {args.listen}")
    from ipcnet.addresses import parse
    from ipcnet.relay.service import plain

    listen = parse(args.listen)
    service = RelayService(targets, config, targets.stats, listen)
    serving = ServeConfig(
        model=args.model,
        workers=args.workers,
        inner=args.inner,
        max_conns=config.max_conns,
        grace=config.grace,
        idle_timeout=None,  # the relay's pump keeps its own (--idle-timeout, --linger)
        stats=config.stats,
        mode=config.mode,
    )

    def ready(core: object) -> None:
        bound = getattr(core, "bound", [args.listen])
        shown = bound[0]
        if plain(listen) is not listen:  # terminated here: show the tls address
            shown = str(
                listen.with_port(int(parse(str(shown)).port or 0)) if listen.is_inet else listen
            )
        print(f"ipcnet relay: {shown} -> {' '.join(args.targets)}", file=sys.stderr)

    serve(service, [str(plain(listen))], serving, ready)
    return 0
