"""``ipcnet demo``: one message through every IPC mechanism of the seeds, as a table."""

from __future__ import annotations

import argparse

HELP = (
    "send one message through pipe, fifo, socketpair, unix, tcp and udp and show the kernel objects"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object per transport")


def run(args: argparse.Namespace) -> int:
    import json

    from ipcnet.tour import MESSAGE, run_tour

    stops = []
    if not args.json:
        print(f"sending {MESSAGE!r} ({len(MESSAGE)} bytes) to a child process and back\n")
        header = f"{'transport':<14} {'sent':>5} {'back':>5} {'round trip':>11}"
        print(f"{header}  kernel objects (parent side)")
    for stop in run_tour():
        stops.append(stop)
        if args.json:
            print(json.dumps(stop.__dict__ | {"objects": list(stop.objects)}), flush=True)
            continue
        rtt = f"{stop.seconds * 1e6:9.0f} µs" if stop.error is None else "     failed"
        detail = ", ".join(stop.objects) if stop.error is None else stop.error
        print(f"{stop.transport:<14} {stop.sent:>5} {stop.received:>5} {rtt}  {detail}", flush=True)
    failed = [s for s in stops if s.error is not None]
    if not args.json:
        print(f"\n{len(stops) - len(failed)} of {len(stops)} transports carried the message.")
    return 1 if len(failed) == len(stops) else 0
