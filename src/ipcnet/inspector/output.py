"""Render inspector rows: aligned table, JSON, JSON lines, CSV; pipes, fd tables, counters.

Role: formatting only; the rows are computed elsewhere.
Rules:
- JSON/JSONL/CSV carry exactly ``SocketRow.to_dict()`` (keys in ``SCHEMA`` order), so a
  script sees the same fields whatever the format; JSON wraps them as
  ``{"version": 1, "sockets": [...]}``. Unknown is ``null`` (empty in CSV).
- The table is for eyes: unknown is ``?``, an IPv6 wildcard that takes IPv4 too is ``*``
  and a bound device follows the address (``[fe80::1]%eth0:80``), as in ss, and a packet
  socket is ss's ``p_raw``/``p_dgr`` with ``ETHERTYPE:DEVICE`` (``*:*``, ``ipv6:lo``,
  ``[2048]:*`` with ``-n``); names are
  escaped (a newline, a tab or any control character in a unix path is shown as ``\\n``,
  ``\\t``, ``\\xNN``, and ``\\`` as ``\\\\``) so an odd name can never forge a line or a
  column.
- ``numeric`` (``-n``) turns /etc/services and user names off.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from ipcnet.inspector.hexaddr import format_endpoint
from ipcnet.inspector.model import SCHEMA, FdRow, Owner, PipeRow, SocketRow
from ipcnet.inspector.names import service_name, user_name

JSON_VERSION = 1
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def printable(text: str) -> str:
    """``text`` with control characters and backslashes escaped (one line, unambiguous)."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)


def _num(v: int | None) -> str:
    return "?" if v is None else str(v)


def owners_label(owners: tuple[Owner, ...] | None) -> str:
    if owners is None:
        return "?"
    if not owners:
        return "-"
    return ",".join(printable(o.label()) for o in owners)


# EtherType names as ss prints them (iproute2's ll_proto table; ETH_P_ALL is "*")
_ETHER_NAMES = {
    0x0001: "802_3", 0x0004: "802_2", 0x0060: "loop", 0x0800: "ip", 0x0806: "arp",
    0x8035: "rarp", 0x86DD: "ipv6", 0x8100: "802.1Q", 0x88A8: "802.1ad",
    0x8847: "mpls_unicast", 0x8848: "mpls_multicast",
}  # fmt: skip


def endpoints(row: SocketRow, numeric: bool) -> tuple[str, str]:
    """The Local and Peer columns of the table."""
    if row.proto == "packet":  # ss: PROTOCOL:DEVICE and no peer
        num = row.local_port
        if num == 3:  # ETH_P_ALL
            proto = "*"
        else:
            name = None if numeric or num is None else _ETHER_NAMES.get(num)
            proto = name or f"[{_num(num)}]"
        return f"{proto}:{row.interface or '*'}", "*"
    if row.proto == "unix":
        local = "*" if row.path is None else printable(row.path)
        if not row.exact and row.path is None:
            local = "?"
        local += f" {_num(row.inode)}" if row.inode is not None else ""
        if row.peer_inode is None:
            peer = "*" if row.source == "netlink" else "?"
        else:
            peer = f"{printable(row.peer_path) if row.peer_path else '*'} {row.peer_inode}"
        return local, peer
    lh, rh = row.local_host, row.remote_host
    if row.v6only is False:  # a dual-stack wildcard takes IPv4 too: "*", as ss shows it
        lh, rh = (None if h == "::" else h for h in (lh, rh))
    dev = row.interface
    if row.proto[:3] == "raw":
        proto_no = row.local_port
        local = f"{format_endpoint(lh, None, device=dev)[:-2]}:{_num(proto_no)}"
        return local, format_endpoint(rh, None)
    kind = row.proto[:3]
    lsvc = None if numeric else service_name(row.local_port, kind)
    rsvc = None if numeric else service_name(row.remote_port, kind)
    return (
        format_endpoint(lh, row.local_port, lsvc, dev),
        format_endpoint(rh, row.remote_port, rsvc),
    )


def socket_table(
    rows: Iterable[SocketRow],
    *,
    numeric: bool = False,
    extended: bool = False,
    processes: bool = False,
    marks: Mapping[tuple[object, ...], str] | None = None,
    header: bool = True,
) -> Iterator[str]:
    """Lines of the aligned table (ss's columns, plus User/Inode/Timer with ``extended``)."""
    cols = ["Proto", "State", "Recv-Q", "Send-Q", "Local", "Peer"]
    if extended:
        cols += ["User", "Inode", "Timer"]
    if processes:
        cols.append("Process")
    table: list[tuple[str, ...]] = []
    append = table.append
    svc = None if numeric else service_name
    for r in rows:
        proto = r.proto
        if proto[:3] == "tcp" and r.v6only is not False and r.interface is None:  # the bulk
            lh, rh = r.local_host, r.remote_host
            lp: int | str | None = r.local_port
            rp: int | str | None = r.remote_port
            if svc is not None:
                lp = svc(r.local_port, "tcp") or lp
                rp = (svc(r.remote_port, "tcp") or rp) if rp else rp
            local = f"[{lh}]:{lp}" if ":" in lh else f"{lh}:{lp}"  # type: ignore[operator]
            peer = f"[{rh}]:{rp or '*'}" if ":" in rh else f"{rh}:{rp or '*'}"  # type: ignore[operator]
        else:
            local, peer = endpoints(r, numeric)
        rq, sq = r.recv_q, r.send_q
        line: tuple[str, ...] = (
            f"u_{r.type[:3]}"
            if proto == "unix"
            else f"p_{r.type[:3]}"
            if proto == "packet"
            else proto,
            r.state,
            "?" if rq is None else str(rq),
            "?" if sq is None else str(sq),
            local,
            peer,
        )
        if extended:
            user = None if numeric or r.uid is None else user_name(r.uid)
            timer = "-" if r.timer in (None, "off") else f"{r.timer}:{r.timer_ms}ms/{r.retransmits}"
            line += (user or _num(r.uid), _num(r.inode), timer)
        if processes:
            line += (owners_label(r.owners),)
        if not r.exact:
            line = (*line[:-1], f"{line[-1]}  [{r.note}]")
        if marks is not None:
            line = (marks.get(r.key(), " "), *line)
        append(line)
    if marks is not None:
        cols.insert(0, " ")
    widths = [len(c) for c in cols]
    if table:
        widths = [
            max(w, max(map(len, column)))
            for w, column in zip(widths, zip(*table, strict=True), strict=True)
        ]
    right = {cols.index(c) for c in ("Recv-Q", "Send-Q")}
    last = len(cols) - 1
    spec = " ".join(
        "{}" if i == last else ("{:>%d}" if i in right else "{:<%d}") % w
        for i, w in enumerate(widths)
    )
    fmt = spec.format
    if header:
        yield fmt(*cols).rstrip()
    for line in table:
        yield fmt(*line).rstrip()


def write_json(
    rows: Iterable[SocketRow],
    out: IO[str],
    *,
    numeric: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> None:
    import json

    doc: dict[str, Any] = {"version": JSON_VERSION, **(extra or {})}
    doc["sockets"] = [r.to_dict(not numeric) for r in rows]
    json.dump(doc, out, indent=2)
    out.write("\n")


def write_jsonl(
    rows: Iterable[SocketRow],
    out: IO[str],
    *,
    numeric: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> None:
    import json

    dumps = json.JSONEncoder(separators=(",", ":")).encode
    for r in rows:
        d = r.to_dict(not numeric)
        if extra:
            d.update(extra)
        out.write(dumps(d))
        out.write("\n")


def _csv_cell(key: str, value: Any) -> Any:
    if value is None:
        return ""
    if key == "processes":
        return ";".join(
            f"{p['name'] or '?'}/{p['pid']}/fd={','.join(map(str, p['fds']))}" for p in value
        )
    return value


def write_csv(
    rows: Iterable[SocketRow], out: IO[str], *, numeric: bool = False, header: bool = True
) -> None:
    import csv

    w = csv.writer(out, lineterminator="\n")
    if header:
        w.writerow(SCHEMA)
    for r in rows:
        d = r.to_dict(not numeric)
        w.writerow([_csv_cell(k, d[k]) for k in SCHEMA])


def pipe_table(rows: Iterable[PipeRow]) -> Iterator[str]:
    """One line per pipe: kind, inode, path, then its ends as name/pid/fd(mode)."""
    lines = []
    for r in rows:
        ends = " ".join(
            f"{printable(e.name or '?')}/{e.pid}/fd={e.fd}({e.mode or '?'})" for e in r.ends
        )
        lines.append((r.kind, str(r.inode), printable(r.path) if r.path else "-", ends))
    widths = [
        max([len(h)] + [len(x[i]) for x in lines])
        for i, h in enumerate(("Kind", "Inode", "Path", "Ends"))
    ]
    yield " ".join(
        h.ljust(w) for h, w in zip(("Kind", "Inode", "Path", "Ends"), widths, strict=True)
    ).rstrip()
    for x in lines:
        yield " ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)).rstrip()


def fd_lines(rows: Iterable[FdRow], *, numeric: bool = False) -> Iterator[str]:
    """The seed 004 view: ``fd -> target -> its table row``."""
    for r in rows:
        head = f"{r.fd:>4} -> {printable(r.target)}"
        if r.socket is not None:
            s = r.socket
            local, peer = endpoints(s, numeric)
            yield (
                f"{head}  {s.proto} {s.state} {local} {peer} recv-q={_num(s.recv_q)} "
                f"send-q={_num(s.send_q)} others={owners_label(_others(s.owners, r.pid))}"
            )
        elif r.kind == "socket":
            yield f"{head}  (in no socket table of this network namespace)"
        elif r.pipe is not None:
            ends = " ".join(
                f"{printable(e.name or '?')}/{e.pid}/fd={e.fd}({e.mode or '?'})"
                for e in r.pipe.ends
                if not (e.pid == r.pid and e.fd == r.fd)
            )
            yield f"{head}  {r.kind} ends: {ends or '-'}"
        else:
            yield head


def _others(owners: tuple[Owner, ...] | None, pid: int) -> tuple[Owner, ...] | None:
    if owners is None:
        return None
    return tuple(o for o in owners if o.pid != pid)


def stats_lines(stats: Mapping[str, Mapping[str, int]]) -> Iterator[str]:
    for group, counters in stats.items():
        yield f"{group}:"
        for name, value in counters.items():
            yield f"    {name}: {value}"


__all__ = [
    "JSON_VERSION",
    "endpoints",
    "fd_lines",
    "owners_label",
    "pipe_table",
    "printable",
    "socket_table",
    "stats_lines",
    "write_csv",
    "write_json",
    "write_jsonl",
]
