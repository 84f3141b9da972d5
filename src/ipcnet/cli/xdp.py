"""``ipcnet xdp attach|update|detach|show|stats``: XDP packet filters on an interface.

Argument parsing and output only; ``ipcnet.xdp`` (imported inside ``run``) does the work.
Rules are addresses: ``--drop udp://:9`` drops UDP to port 9 (IPv4 and IPv6),
``--count tcp://[fd00::1]:80`` counts TCP segments to that address and port.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ipcnet.cli.argtypes import timeout

if TYPE_CHECKING:
    from ipcnet.xdp import Program, Stats

HELP = "drop or count packets with XDP before the kernel's stack (attach, stats, show, detach)"

EPILOG = """\
rules: udp://[HOST]:PORT or tcp://[HOST]:PORT (udp4:// udp6:// tcp4:// tcp6:// for one
family; no HOST = any address). tcp rules match every segment, SYNs included. One rule
per packet, whatever the order: a rule for one address wins over one for any address.
An IPv6 packet whose ports lie behind more than 16 extension headers is dropped by the
first drop rule covering its address.
examples:
  ipcnet xdp attach veth0 --drop udp://:9 --count tcp://:80
  ipcnet xdp update veth0 --drop udp://:9 --drop udp://[fd00::2]:53   (no reload)
  ipcnet xdp stats veth0 --watch 1
  ipcnet xdp detach veth0
"""


def _rules(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="drop the packets to this address (repeatable)",
    )
    p.add_argument(
        "--count",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="count the packets to this address and pass them on (repeatable)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = sub.add_parser("attach", help="load the filter and attach it to DEV")
    a.add_argument("dev", metavar="DEV")
    _rules(a)
    a.add_argument(
        "--mode",
        choices=("auto", "native", "generic"),
        default="auto",
        help="native: in the driver; generic: after the skb is built; auto (default): native "
        "where the driver has it",
    )
    a.add_argument("--replace", action="store_true", help="replace an XDP program DEV already runs")
    u = sub.add_parser("update", help="replace the rules of the filter on DEV (no reload)")
    u.add_argument("dev", metavar="DEV")
    _rules(u)
    d = sub.add_parser("detach", help="remove the filter from DEV")
    d.add_argument("dev", metavar="DEV")
    d.add_argument("--force", action="store_true", help="also remove a program not ipcnet's")
    s = sub.add_parser("show", help="interfaces with XDP programs: id, name, mode, jited, rules")
    s.add_argument("dev", metavar="DEV", nargs="?")
    s.add_argument("--json", action="store_true", help="one JSON document")
    st = sub.add_parser("stats", help="packets and bytes per rule, summed over CPUs")
    st.add_argument("dev", metavar="DEV")
    st.add_argument(
        "--json",
        action="store_true",
        help='JSON {"version": 1, "mode", "time", "dev", "prog_id", "rules", "unmatched"} '
        "(one line per read with --watch)",
    )
    st.add_argument(
        "--watch",
        type=timeout,
        metavar="S",
        help="read again every S seconds, until the program is detached or replaced (exit 1)",
    )


def run(args: argparse.Namespace) -> int:
    from ipcnet import xdp

    if args.action == "attach":
        f = xdp.attach(args.dev, args.drop, args.count, mode=args.mode, replace=args.replace)
        rules = ", ".join(str(r) for r in f.rules()) or "no rules (everything passes, counted)"
        print(f"attached xdp program {f.prog_id} to {f.dev} in {f.mode} mode: {rules}")
        f.close()  # it stays attached
    elif args.action == "update":
        f = xdp.find(args.dev)
        f.update(args.drop, args.count)
        print(
            f"{f.dev}: xdp program {f.prog_id} now has: "
            + (", ".join(str(r) for r in f.rules()) or "no rules")
        )
        f.close()
    elif args.action == "detach":
        gone = xdp.detach(args.dev, force=args.force)
        if not gone:
            print(f"{args.dev}: no xdp program to detach", file=sys.stderr)
        for p in gone:
            print(f"detached xdp program {p.prog_id} {p.name!r} ({p.mode}) from {p.dev}")
    elif args.action == "show":
        _show(xdp.programs(args.dev), args.json, args.dev)
    else:
        return _stats(args)
    return 0


def _show(programs: list[Program], as_json: bool, dev: str | None) -> None:
    if as_json:
        print(json.dumps({"version": 1, "programs": [p.to_dict() for p in programs]}, indent=2))
        return
    if not programs:
        print(
            f"{dev} has no xdp program" if dev else "no interface has an xdp program",
            file=sys.stderr,
        )
        return
    rows = [("dev", "ifindex", "prog", "name", "mode", "jited", "tag", "rules")]
    for p in programs:
        rules = ", ".join(str(r) for r in p.rules) if p.ipcnet else "-"
        jited = "yes" if p.jited else "no"
        rows.append((p.dev, str(p.ifindex), str(p.prog_id), p.name, p.mode, jited, p.tag, rules))
    _table(rows)


def _table(rows: Sequence[tuple[str, ...]], right: frozenset[int] = frozenset()) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def _stats(args: argparse.Namespace) -> int:
    from ipcnet import xdp

    if args.watch is not None and args.watch <= 0:
        print("ipcnet xdp: --watch needs a positive number of seconds", file=sys.stderr)
        return 2
    f = xdp.find(args.dev)
    try:
        before: Stats | None = None
        while True:
            now = f.stats()
            _print_stats(f.mode, now, before, args)
            if args.watch is None:
                return 0
            before = now
            sys.stdout.flush()
            time.sleep(args.watch)
            if not f.attached():  # its maps still read, but no interface runs it
                print(
                    f"ipcnet xdp: {f.dev}: xdp program {f.prog_id} is no longer attached "
                    "(detached or replaced)",
                    file=sys.stderr,
                )
                return 1
    finally:
        f.close()


def _print_stats(mode: str, s: Stats, before: Stats | None, args: argparse.Namespace) -> None:
    if args.json:
        doc = {"version": 1, "mode": mode, "time": round(time.time(), 3), **s.to_dict()}
        print(json.dumps(doc))
        return
    old = {r.rule: r.packets for r in before.rules} if before else {}
    rows = [("action", "rule", "packets", "bytes") + (("pkt/s",) if before else ())]
    for r in s.rules:
        rate = (str(round((r.packets - old.get(r.rule, 0)) / args.watch)),) if before else ()
        rows.append((r.rule.action, r.rule.target, str(r.packets), str(r.bytes), *rate))
    rate = ()
    if before:
        rate = (str(round((s.unmatched_packets - before.unmatched_packets) / args.watch)),)
    rows.append(("pass", "(no rule)", str(s.unmatched_packets), str(s.unmatched_bytes), *rate))
    print(f"{s.dev}: xdp program {s.prog_id} ({mode})")
    _table(rows, frozenset({2, 3, 4}))
    if args.watch is not None:
        print()
