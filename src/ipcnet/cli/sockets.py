"""``ipcnet sockets``: the kernel's socket tables (and pipes, fds, counters) as data.

Letters follow ss: -t -u -x -w -0 pick tables (and netstat's -U for UDP-Lite), -l listening,
-a all, -n numeric, -p processes, -e extended, -4/-6; argparse keeps -h for help. The
inspector is imported inside ``run`` so ``ipcnet --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING

from ipcnet.cli.argtypes import nonempty, timeout, whole

if TYPE_CHECKING:
    from ipcnet.inspector.model import SocketRow

CLEAR_SCREEN = "\x1b[H\x1b[2J"  # cursor home, erase the screen

HELP = "list sockets, pipes and fds like ss/netstat/lsof (table, JSON, CSV; --watch, --stats)"

EPILOG = """\
states: established syn-sent syn-recv fin-wait-1 fin-wait-2 time-wait closed close-wait
last-ack listening closing (ss's words; closed = unconn), and bound-inactive (tcp sockets
only bound: not in all); groups: all connected synchronized bucket big.
Without -a, -l or --state: connected sockets except TIME_WAIT/SYN_RECV (like ss), and
with -0 every packet socket (ss: their one state, UNCONN, is their default);
--pid/--process imply -a. JSON: {"version": 1, "netns": ..., "sockets": [row...]};
row keys are documented in ipcnet.inspector.model.SCHEMA.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    t = parser.add_argument_group("tables")
    t.add_argument("-t", "--tcp", action="store_true", help="TCP sockets")
    t.add_argument("-u", "--udp", action="store_true", help="UDP sockets")
    t.add_argument("-U", "--udplite", action="store_true", help="UDP-Lite sockets (as netstat)")
    t.add_argument("-x", "--unix", action="store_true", help="unix sockets")
    t.add_argument("-w", "--raw", action="store_true", help="raw sockets")
    t.add_argument("-0", "--packet", action="store_true", help="packet (AF_PACKET) sockets")
    t.add_argument(
        "-4", "--ipv4", dest="ip_version", action="store_const", const=4, help="IPv4 only"
    )
    t.add_argument(
        "-6", "--ipv6", dest="ip_version", action="store_const", const=6, help="IPv6 only"
    )
    f = parser.add_argument_group("filters")
    f.add_argument("-l", "--listening", action="store_true", help="listening sockets only")
    f.add_argument("-a", "--all", action="store_true", help="sockets in every state")
    f.add_argument(
        "--state", action="append", metavar="STATE", help="only this state or group (repeatable)"
    )
    f.add_argument("--port", metavar="N", help="local or remote port (number or service)")
    f.add_argument(
        "--address",
        metavar="ADDR",
        help="local or remote address, or a prefix such as 10.0.0.0/8 (ss's src/dst)",
    )
    f.add_argument(
        "--pid",
        type=whole(1),
        action="append",
        metavar="PID",
        help="only sockets this process holds (repeatable)",
    )
    f.add_argument(
        "--process",
        metavar="NAME",
        type=nonempty("a process name"),
        help="only sockets of processes named NAME",
    )
    o = parser.add_argument_group("output")
    o.add_argument("-n", "--numeric", action="store_true", help="no service or user names")
    o.add_argument("-p", "--processes", action="store_true", help="show the owning pid/program/fds")
    o.add_argument("-e", "--extended", action="store_true", help="show user, inode, timer")
    o.add_argument("-H", "--no-header", action="store_true", help="no table/CSV header")
    fmt = o.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON document")
    fmt.add_argument("--jsonl", action="store_true", help="one JSON object per line")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row")
    o.add_argument(
        "--watch",
        type=timeout,
        metavar="SECONDS",
        help="refresh every SECONDS; mark new (+) and closed (-) sockets",
    )
    m = parser.add_argument_group("other views")
    m.add_argument(
        "--fds", action="store_true", help="with --pid: the fd table (fd -> socket:[inode] -> row)"
    )
    m.add_argument(
        "--pipes", action="store_true", help="pipes and fifos with the processes at both ends"
    )
    m.add_argument(
        "--stats",
        action="store_true",
        help="protocol counters (netstat -s) from /proc/net/snmp and netstat",
    )
    m.add_argument(
        "--source",
        choices=("auto", "netlink", "proc"),
        default="auto",
        help="where socket rows come from (default: sock_diag, /proc fallback)",
    )


def run(args: argparse.Namespace) -> int:
    from ipcnet.inspector import output

    out = sys.stdout
    try:
        if args.stats:
            from ipcnet.inspector.stats import protocol_stats

            stats = protocol_stats()
            if args.json or args.jsonl:
                import json

                json.dump(
                    {"version": output.JSON_VERSION, "stats": stats},
                    out,
                    indent=None if args.jsonl else 2,
                )
                out.write("\n")
            else:
                _write_lines(out, output.stats_lines(stats))
            return 0
        if args.fds:
            return _fds(args)
        if args.pipes:
            return _pipes(args)
        if args.watch is not None:
            return _watch(args)
        rows = _fetch(args)
        _render(args, rows)
        return 0
    except ValueError as exc:
        print(f"ipcnet sockets: {exc}", file=sys.stderr)
        return 2


def _states(args: argparse.Namespace) -> list[str] | None:
    from ipcnet.inspector.filters import DEFAULT_STATES, LISTENING_STATES

    if args.state:
        return list(args.state)
    if args.all or ((args.pid or args.process) and not args.listening):
        return None
    if args.listening:
        return sorted(LISTENING_STATES)
    return sorted(DEFAULT_STATES)


def _fetch(args: argparse.Namespace) -> list[SocketRow]:
    from ipcnet.inspector import list_sockets

    protocols = [
        p
        for p, on in (
            ("tcp", args.tcp),
            ("udp", args.udp),
            ("udplite", args.udplite),
            ("unix", args.unix),
            ("raw", args.raw),
            ("packet", args.packet),
        )
        if on
    ] or None
    states = _states(args)
    tables: list[tuple[list[str] | None, list[str] | None]] = [(protocols, states)]
    if args.packet and not (args.state or args.all or args.listening) and states is not None:
        # ss: a table asked for by name adds its own default states; a packet socket's is
        # its only one (UNCONN), so -0 lists them without -a, while ss alone does not
        tables = [([p for p in protocols or () if p != "packet"], states), (["packet"], None)]
    rows: list[SocketRow] = []
    for tabs, sts in tables:
        if tabs == []:
            continue
        rows += list_sockets(
            tabs,
            sts,
            ip_version=args.ip_version,
            port=args.port,
            address=args.address,
            pids=args.pid,
            process=args.process,
            owners=args.processes,
            source=args.source,
        )
    return rows


def _netns() -> int | None:
    from ipcnet.errors import IPCError
    from ipcnet.transports import procfs

    try:
        st = procfs.stat("/proc/self/ns/net")
    except IPCError:
        return None
    return None if st is None else st.st_ino


def _render(args: argparse.Namespace, rows: list[SocketRow]) -> None:
    from ipcnet.inspector import output

    out = sys.stdout
    if args.json:
        output.write_json(rows, out, numeric=args.numeric, extra={"netns": _netns()})
    elif args.jsonl:
        output.write_jsonl(rows, out, numeric=args.numeric)
    elif args.csv:
        output.write_csv(rows, out, numeric=args.numeric, header=not args.no_header)
    else:
        _write_lines(
            out,
            output.socket_table(
                rows,
                numeric=args.numeric,
                extended=args.extended,
                processes=args.processes,
                header=not args.no_header,
            ),
        )


def _write_lines(out: IO[str], lines: Iterable[str]) -> None:
    text = "\n".join(lines)
    if text:
        out.write(text + "\n")


def _fds(args: argparse.Namespace) -> int:
    from ipcnet.inspector import output, process_fds

    if not args.pid or len(args.pid) != 1:
        print("ipcnet sockets: --fds needs exactly one --pid", file=sys.stderr)
        return 2
    rows = process_fds(args.pid[0])  # "no process N" is an IPCError: main() prints it
    if args.json or args.jsonl:
        import json

        docs = [r.to_dict(not args.numeric) for r in rows]
        if args.json:
            json.dump(
                {"version": output.JSON_VERSION, "pid": args.pid[0], "fds": docs},
                sys.stdout,
                indent=2,
            )
            sys.stdout.write("\n")
        else:
            for d in docs:
                sys.stdout.write(json.dumps(d) + "\n")
    else:
        _write_lines(sys.stdout, output.fd_lines(rows, numeric=args.numeric))
    return 0


def _pipes(args: argparse.Namespace) -> int:
    import json

    from ipcnet.inspector import list_pipes, output

    rows = list_pipes(fifos=True, pids=args.pid)
    if args.json:
        json.dump(
            {"version": output.JSON_VERSION, "pipes": [r.to_dict() for r in rows]},
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    elif args.jsonl:
        for r in rows:
            sys.stdout.write(json.dumps(r.to_dict()) + "\n")
    else:
        _write_lines(sys.stdout, output.pipe_table(rows))
    return 0


def _watch(args: argparse.Namespace) -> int:
    import json
    import time

    from ipcnet.inspector import output

    if args.json or args.csv:
        print("ipcnet sockets: --watch works with the table or --jsonl", file=sys.stderr)
        return 2
    if args.watch <= 0:
        print("ipcnet sockets: --watch needs a positive number of seconds", file=sys.stderr)
        return 2
    prev: dict[tuple[object, ...], SocketRow] = {}
    first = True
    # like watch(1); a pipe gets every table, and so does a terminal that says it cannot
    # take escape codes (TERM=dumb: Emacs shell buffers, some CI logs)
    redraw = not args.jsonl and sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
    while True:
        rows = _fetch(args)
        cur = {r.key(): r for r in rows}
        now = time.strftime("%H:%M:%S")
        new = [k for k in cur if k not in prev]
        closed = [k for k in prev if k not in cur]
        if args.jsonl:
            events = [("present" if first else "new", cur[k]) for k in new]
            events += [("closed", prev[k]) for k in closed]
            for event, r in events:
                d = r.to_dict(not args.numeric)
                d["event"] = event
                d["time"] = time.time()
                sys.stdout.write(json.dumps(d) + "\n")
        else:
            marks = {} if first else {**{k: "+" for k in new}, **{k: "-" for k in closed}}
            shown = list(rows) + [prev[k] for k in closed]
            if redraw:
                sys.stdout.write(CLEAR_SCREEN)
            sys.stdout.write(
                f"--- {now}  {len(cur)} sockets, +{0 if first else len(new)} new, "
                f"-{len(closed)} closed ---\n"
            )
            _write_lines(
                sys.stdout,
                output.socket_table(
                    shown,
                    numeric=args.numeric,
                    extended=args.extended,
                    processes=args.processes,
                    marks=marks,
                    header=not args.no_header,
                ),
            )
        sys.stdout.flush()
        prev = cur
        first = False
        time.sleep(args.watch)
