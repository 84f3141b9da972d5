"""``ipcnet demo``: one message through every IPC mechanism of the seeds, as a table.

With ``--serve`` it then keeps the demo servers running until Ctrl-C: echo on
tcp://127.0.0.1:9734 and on a unix socket, and the web server on 127.0.0.1:8000 (and
HTTPS on localhost:8443, with a certificate from ``ipcnet cert`` kept in ~/.cache/ipcnet)
over the bundled site when this installation has it.
"""

from __future__ import annotations

import argparse
import sys

HELP = (
    "one message through pipe, fifo, socketpair, unix, tcp, udp, shm and mq, a semaphore and a "
    "signal, and the kernel objects used"
)

ECHO = ["tcp://127.0.0.1:9734", "unix:///tmp/ipcnet-demo-echo.sock"]
HTTP = "tcp://127.0.0.1:8000"
HTTPS = "tls://127.0.0.1:8443"  # with a development certificate (ipcnet cert)


def _certs() -> str:
    import os

    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(cache, "ipcnet", "demo-tls")


def _tls_flags() -> list[str]:
    """The HTTPS certificate's flags (the local CA in the cache is kept and reused)."""
    from ipcnet.transports.tls.devcert import make

    issued = make(_certs())
    return ["--cert", issued.cert, "--key", issued.key]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object per transport")
    parser.add_argument(
        "--serve", action="store_true", help="then run the demo servers (echo, http) until Ctrl-C"
    )


def run(args: argparse.Namespace) -> int:
    status = _tour(args.json)
    if args.serve:
        return _serve()
    return status


def _tour(as_json: bool) -> int:
    import json

    from ipcnet.tour import MESSAGE, run_tour

    stops = []
    if not as_json:
        print(f"sending {MESSAGE!r} ({len(MESSAGE)} bytes) to a child process and back\n")
        header = f"{'transport':<14} {'sent':>5} {'back':>5} {'round trip':>11}"
        print(f"{header}  kernel objects (parent side)")
    for stop in run_tour():
        stops.append(stop)
        if as_json:
            print(json.dumps(stop.__dict__ | {"objects": list(stop.objects)}), flush=True)
            continue
        rtt = f"{stop.seconds * 1e6:9.0f} µs" if stop.error is None else "     failed"
        detail = ", ".join(stop.objects) if stop.error is None else stop.error
        print(f"{stop.transport:<14} {stop.sent:>5} {stop.received:>5} {rtt}  {detail}", flush=True)
    failed = [s for s in stops if s.error is not None]
    if not as_json:
        print(f"\n{len(stops) - len(failed)} of {len(stops)} transports carried the message.")
    return 1 if len(failed) == len(stops) else 0


def _serve() -> int:
    """Run the demo servers as child processes; Ctrl-C (or SIGTERM) stops them all."""
    import importlib.util
    import signal
    import subprocess

    from ipcnet.drivers import DEFAULT_MODEL, first

    ipcnet = [sys.executable, "-m", "ipcnet", "serve"]
    commands = [[*ipcnet, "echo", *ECHO, "--model", DEFAULT_MODEL]]
    if importlib.util.find_spec("ipcnet.httpd") is not None:
        from ipcnet.httpd import demo_site_root

        site, model = str(demo_site_root()), first(awaits=True)
        commands.append([*ipcnet, "http", site, HTTP, HTTPS, "--model", model, *_tls_flags()])
    print("\nstarting the demo servers (Ctrl-C stops them):", flush=True)
    children = [subprocess.Popen(cmd) for cmd in commands]

    def stop(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if len(commands) > 1:
        print(f"  open http://{HTTP.removeprefix('tcp://')}/ in a browser", flush=True)
        print(f"  or https://localhost:8443/ (curl --cacert {_certs()}/ca.pem)", flush=True)
    print(f"  try: printf 'hello\\n' | ipcnet connect {ECHO[0]}", flush=True)
    codes = [child.wait() for child in children]
    return max(codes, default=0)
