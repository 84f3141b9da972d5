"""``ipcnet ipcs``: the IPC objects the kernel holds, with their owners and holders.

Like ``lsipc`` and ``ipcs -p`` together, plus what they miss: POSIX shared memory and
semaphores (/dev/shm), POSIX message queues (a mounted mqueue filesystem), and the memfd,
eventfd and signalfd descriptors of every process (/proc/*/fd). Table, JSON or CSV. A
separate subcommand, not ``sockets --ipc``: its rows have other columns (size, messages,
holders) and none of a socket's (state, queues, addresses).
"""

from __future__ import annotations

import argparse
import sys
from typing import IO, TYPE_CHECKING

from ipcnet.cli.argtypes import whole

if TYPE_CHECKING:
    from ipcnet.inspector.ipc import IpcRow

HELP = "list shared memory, message queues, semaphores, memfd/eventfd/signalfd (like lsipc)"

EPILOG = """\
kinds: posix-shm posix-sem posix-mq sysv-shm sysv-msg sysv-sem memfd eventfd signalfd.
JSON: {"version": 1, "ipc": [row...], "notes": [...]}; row keys: kind name id uid user
mode size messages holders ([{"pid", "command"}], null when unknown) status (sysv-shm:
dest, locked).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument(
        "-k",
        "--kind",
        action="append",
        metavar="KIND",
        help="only this kind (repeat for more; a prefix such as posix or sysv picks a family)",
    )
    parser.add_argument(
        "-p", "--pid", type=whole(1), action="append", help="only objects PID holds"
    )
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON document")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row")


def run(args: argparse.Namespace) -> int:
    from ipcnet.inspector.ipc import KINDS, collect

    kinds = None
    if args.kind:
        kinds = [k for k in KINDS if any(k == w or k.startswith(w + "-") for w in args.kind)]
        unknown = [w for w in args.kind if not any(k == w or k.startswith(w + "-") for k in KINDS)]
        if unknown:  # a usage error, as ``sockets --state bogus`` is
            print(
                f"ipcnet ipcs: unknown kind {unknown[0]!r} (known: {', '.join(KINDS)})",
                file=sys.stderr,
            )
            return 2
    rows, notes = collect(kinds)
    if args.pid:
        wanted = set(args.pid)
        rows = [r for r in rows if r.holders and wanted & {p for p, _ in r.holders}]
    out = sys.stdout
    if args.json:
        import json

        doc = {"version": 1, "ipc": [r.to_dict() for r in rows], "notes": notes}
        json.dump(doc, out, indent=2)
        out.write("\n")
    elif args.csv:
        _csv(rows, out)
    else:
        for line in _table(rows):
            out.write(line + "\n")
        for note in notes:
            print(f"ipcnet ipcs: {note}", file=sys.stderr)
    return 0


def _holders_text(holders: tuple[tuple[int, str | None], ...] | None) -> str:
    if holders is None:
        return "?"
    return ",".join(f"{c or '?'}/{p}" for p, c in holders) or "-"


def _messages_text(row: IpcRow) -> str:
    """A queue's count, "?" if unknown (we may not open it); "-" for what has none."""
    if row.messages is not None:
        return str(row.messages)
    return "?" if row.kind in ("posix-mq", "sysv-msg") else "-"


def _table(rows: list[IpcRow]) -> list[str]:
    from ipcnet.inspector.output import printable

    head = ("Kind", "Name", "Id", "Owner", "Mode", "Size", "Msgs", "Holders")
    cells = [
        (
            r.kind,
            printable(r.name),
            "?" if r.id is None else str(r.id),
            r.user or ("?" if r.uid is None else str(r.uid)),
            (r.mode or "-") + (f" {r.status}" if r.status else ""),
            "?" if r.size is None else str(r.size),
            _messages_text(r),
            printable(_holders_text(r.holders)),
        )
        for r in rows
    ]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(head)]
    right = {2, 5, 6}

    def line(values: tuple[str, ...]) -> str:
        parts = [
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(head)] + [line(c) for c in cells]


def _csv(rows: list[IpcRow], out: IO[str]) -> None:
    import csv

    from ipcnet.inspector.ipc import SCHEMA

    w = csv.writer(out, lineterminator="\n")
    w.writerow(SCHEMA)
    for r in rows:
        d = r.to_dict()
        d["holders"] = (
            "" if r.holders is None else ";".join(f"{c or '?'}/{p}" for p, c in r.holders)
        )
        w.writerow(["" if d[k] is None else d[k] for k in SCHEMA])
