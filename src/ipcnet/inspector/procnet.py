"""The fallback: parse /proc/net/{tcp,udp,udplite,raw}[6], /proc/net/unix and /proc/net/packet
(proc(5)).

Role: the same ``SocketRow``s as ``netlink.py``, from the text tables, for kernels or
sandboxes where sock_diag is unavailable. The parsers take text so tests can feed them.
Rules:
- Fields are split with ``str.split`` (no regex); addresses decode per ``hexaddr``.
- What /proc does not say is unknown (None), never guessed: the backlog of a TCP listener,
  the uid of a unix socket, a unix socket's peer, the uid and queues of a TIME_WAIT socket
  (in either substate, TIME_WAIT or FIN_WAIT2), the uid of a request socket (SYN_RECV:
  /proc prints its listener's, sock_diag nothing, so neither).
- /proc/net/unix prints a path raw, so a newline in a path starts a line of its own text,
  which may even look like a row (a forged row). Every line is checked against the exact
  kernel format; a line that fails is the rest of the previous row's path (that row is
  rebuilt and marked inexact). Rows that may be forged (the table has more rows than the
  kernel's unix socket count in /proc/net/protocols, or no process holds the inode of a
  row that follows a named one, or an inode appears twice) keep their data but are marked
  ``exact=False`` with a note, and their path is made unknown; when the suspects are
  exactly the extra rows, they are folded back into the path they came from.
  /proc prints an abstract name's leading NUL (and any NUL in it) as ``@``, so ``@x`` may
  also be a relative path starting with ``@``; only sock_diag tells them apart.
- /proc/net is the reader's network namespace, like the netlink dump.
- The kernel writes these tables a page per read(2) and resumes its walk where it stopped;
  a socket that moves in the table between two reads can be printed twice (the repeat is
  dropped here: same addresses, state and inode) or not at all (no reader can prevent
  that; the netlink dump has the same limit).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ipcnet.errors import IPCError
from ipcnet.inspector.hexaddr import decode_endpoint
from ipcnet.inspector.model import TIMERS, SocketRow, state_name
from ipcnet.transports.procfs import read_text

_UNIX_TYPES = {1: "stream", 2: "dgram", 5: "seqpacket"}
# SS_UNCONNECTED, SS_CONNECTING (an embryo not yet accepted), SS_CONNECTED, SS_DISCONNECTING
_UNIX_STATES = {1: "UNCONN", 2: "ESTABLISHED", 3: "ESTABLISHED", 4: "UNCONN"}
_HEX = frozenset("0123456789abcdefABCDEF")
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_inet(text: str, proto: str) -> list[SocketRow]:
    """Rows of /proc/net/{tcp,udp,raw}[6] text; ``proto`` is the file's name (tcp6, ...)."""
    stype = {"tcp": "stream", "udp": "dgram", "raw": "raw"}[proto[:3]]
    is_tcp = proto[:3] == "tcp"
    rows: list[SocketRow] = []
    new = tuple.__new__
    seen: set[tuple[str, str, str, str]] = set()
    lines = text.split("\n")
    for line in lines[1:]:
        f = line.split()
        if len(f) < 10:
            continue
        key = (f[1], f[2], f[3], f[9])  # addresses, state, inode
        if key in seen:
            continue  # printed again by a walk that resumed after the table changed
        seen.add(key)
        try:
            lh, lp = decode_endpoint(f[1])
            rh, rp = decode_endpoint(f[2])
            st = int(f[3], 16)
            txq, _, rxq = f[4].partition(":")
            tr, _, when = f[5].partition(":")
            retrans = int(f[6], 16)
            uid = int(f[7])
            ino = int(f[9])
            tx, rx = int(txq, 16), int(rxq, 16)
            timer = int(tr, 16)
            expires = int(when, 16)
        except ValueError:
            continue
        # a TIME_WAIT socket (also in substate FIN_WAIT2) runs the timewait timer and
        # prints 0s for its queues and uid; a request socket's line (get_openreq4/6) is as
        # short and holds its listener's uid, which sock_diag does not report: unknown
        tw = timer == 3 and is_tcp
        request = st == 3 and is_tcp and len(f) == 12
        listen = st == 10 and is_tcp
        if is_tcp:
            tname: str | None = TIMERS.get(timer, str(timer))
            # jiffies_delta_to_clock_t: clock ticks (USER_HZ); negative deltas wrap
            tms: int | None = 0 if expires >= 1 << 31 else expires * 1000 // _CLK_TCK
            rtx: int | None = retrans
        else:
            tname = tms = rtx = None
        rows.append(
            new(
                SocketRow,
                (
                    proto,
                    stype,
                    state_name(proto, st),
                    lh,
                    lp,
                    rh,
                    rp,
                    None,
                    None if tw else rx,
                    None if tw or listen else tx,  # /proc does not print a listener's backlog
                    None if tw or request else uid,
                    ino or None,
                    tname,
                    tms,
                    rtx,
                    None,
                    "proc",
                    True,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                ),
            )
        )
    return rows


_AT_NOTE = "an '@' after the first in an abstract name may be a NUL byte (/proc/net/unix)"


def _unix_fields(line: str) -> tuple[int, int, int, int, str | None] | None:
    """(flags, type, state, inode, path) if ``line`` has the exact kernel format, else None.

    The kernel prints ``"%pK: %08X %08X %08X %04X %02X %5lu"`` and, for a bound socket,
    ``" " + path`` (net/unix/af_unix.c, unix_seq_show).
    """
    head, sep, rest = line.partition(": ")
    if not sep or len(head) not in (8, 16) or not _HEX.issuperset(head):
        return None
    if len(rest) < 40 or rest[8] != " " or rest[17] != " " or rest[26] != " ":
        return None
    if rest[31] != " " or rest[34] != " ":
        return None
    refcnt, proto, flags, stype, st = rest[0:8], rest[9:17], rest[18:26], rest[27:31], rest[32:34]
    for h in (refcnt, proto, flags, stype, st):
        if not _HEX.issuperset(h):
            return None
    tail = rest[35:]
    stripped = tail.lstrip(" ")
    pad = len(tail) - len(stripped)
    ino_text, sep, path = stripped.partition(" ")
    if not ino_text.isdigit() or pad != max(0, 5 - len(ino_text)):
        return None
    return int(flags, 16), int(stype, 16), int(st, 16), int(ino_text), path if sep else None


def parse_unix(
    text: str,
    kernel_count: int | None = None,
    held: Callable[[set[int]], set[int]] | None = None,
) -> list[SocketRow]:
    """Rows of /proc/net/unix text.

    ``kernel_count``: the kernel's unix socket count (/proc/net/protocols) read around the
    text, None if unknown. ``held``: returns which of some inodes a process holds (the pid
    join), None to skip that check. Both serve to find rows forged by newlines in paths.
    """
    rows: list[SocketRow] = []
    raws: list[str] = []  # each row's text, with its continuation lines
    new = tuple.__new__
    after_named: list[int] = []  # rows that directly follow a named row: could be forged
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for line in lines[1:]:
        fields = _unix_fields(line)
        if fields is None:
            if rows:  # the rest of the previous row's path, after a newline in it
                prev = rows[-1]
                raws[-1] += "\n" + line
                rows[-1] = prev._replace(
                    path=(prev.path or "") + "\n" + line,
                    exact=False,
                    note="path rebuilt: a newline in it split the row in /proc/net/unix",
                )
            continue
        flags, stype, st, ino, path = fields
        if rows and rows[-1].path is not None:
            after_named.append(len(rows))
        # St is the socket's SS_* state, not sk_state; __SO_ACCEPTCON marks a listener
        state = "LISTEN" if flags & 0x10000 else _UNIX_STATES.get(st, f"UNKNOWN({st})")
        # the kernel prints every NUL of an abstract name as "@": a later "@" may be either
        exact = path is None or path[:1] != "@" or "@" not in path[1:]
        raws.append(line)
        rows.append(
            new(
                SocketRow,
                (
                    "unix", _UNIX_TYPES.get(stype, str(stype)), state, None, None, None, None,
                    path, None, None, None, ino or None, None, None, None, None, "proc", exact,
                    None if exact else _AT_NOTE, None, None, None, None,
                    None if path is None or path[:1] == "@" else False,
                ),
            )
        )  # fmt: skip
    seen: dict[int | None, int] = {}
    for r in rows:
        seen[r.inode] = seen.get(r.inode, 0) + 1
    excess = 0 if kernel_count is None else len(rows) - kernel_count
    # a row after a named one is a suspect until a process holds it: the count alone can
    # hide a forged row (it moves while the table is read, and counts sockets the table
    # does not show), so it only decides whether the suspects can be folded back
    suspects = after_named if excess > 0 or held is not None else []
    if suspects and held is not None:
        alive = held({i for i in (rows[k].inode for k in suspects) if i is not None})
        suspects = [k for k in suspects if rows[k].inode not in alive]
    if suspects and len(suspects) == excess and all(seen[rows[k].inode] == 1 for k in suspects):
        # exactly as many unexplained rows as extra rows: they are the rest of a path
        for k in reversed(suspects):
            prev = rows[k - 1]
            rows[k - 1] = prev._replace(
                path=f"{prev.path}\n{raws[k]}",
                exact=False,
                note="path rebuilt: a newline in it forged a row in /proc/net/unix",
            )
            raws[k - 1] += "\n" + raws[k]
            del rows[k], raws[k]
        suspects = []
    note = "row may be forged by a newline in another socket's path (/proc/net/unix)"
    flagged = set(suspects)
    for k, r in enumerate(rows):
        if k in flagged or (r.inode is not None and seen[r.inode] > 1):
            rows[k] = r._replace(exact=False, note=note, path=None)
            if k in flagged and rows[k - 1].path is not None:
                rows[k - 1] = rows[k - 1]._replace(
                    exact=False, note="its path may hold a newline; see the next row"
                )
    return rows


_PACKET_TYPES = {3: "raw", 2: "dgram"}  # SOCK_RAW, SOCK_DGRAM


def parse_packet(text: str, devices: dict[int, str] | None = None) -> list[SocketRow]:
    """Rows of /proc/net/packet text (packet_seq_show: sk RefCnt Type Proto Iface R Rmem
    User Inode; Proto is the EtherType in hex). /proc has no send queue: unknown."""
    rows: list[SocketRow] = []
    new = tuple.__new__
    for line in text.split("\n")[1:]:
        f = line.split()
        if len(f) < 9:
            continue
        try:
            stype, proto, ifx = int(f[2]), int(f[3], 16), int(f[4])
            rmem, uid, ino = int(f[6]), int(f[7]), int(f[8])
        except ValueError:
            continue
        dev = None if not ifx else (devices or {}).get(ifx, f"if{ifx}")
        rows.append(
            new(
                SocketRow,
                (
                    "packet", _PACKET_TYPES.get(stype, str(stype)), "UNCONN", None, proto, None,
                    None, None, rmem, None, uid, ino or None, None, None, None, None, "proc",
                    True, None, None, None, None, dev, None,
                ),
            )
        )  # fmt: skip
    return rows


def read_packet() -> list[SocketRow]:
    """Rows of /proc/net/packet; [] if absent."""
    from ipcnet.transports.netlink import interface_names

    text = read_text("/proc/net/packet")
    if text is None:
        return []
    try:
        devices = interface_names()
    except IPCError:
        devices = {}
    return parse_packet(text, devices)


def unix_socket_count() -> int | None:
    """The kernel's count of unix sockets in this netns (/proc/net/protocols), or None."""
    try:
        text = read_text("/proc/net/protocols")
    except IPCError:
        return None
    if text is None:
        return None
    total = None  # kernels >= 5.15 count UNIX (dgram) and UNIX-STREAM apart
    for line in text.split("\n"):
        f = line.split()
        if f and f[0] in ("UNIX", "UNIX-STREAM") and len(f) > 2 and f[2].isdigit():
            total = (total or 0) + int(f[2])
    return total


def read_inet(proto: str) -> list[SocketRow]:
    """Rows of /proc/net/<proto> (tcp, udp, udplite, raw and their 6s); [] if absent."""
    text = read_text(f"/proc/net/{proto}")
    return [] if text is None else parse_inet(text, proto)


def read_unix(attempts: int = 5) -> list[SocketRow]:
    """The table, with the kernel's count read before and after it.

    A count that moved while the text was read says nothing about the text (a socket
    closed in between hides a forged row), so the read is retried; if the count never
    holds still, it is unknown and ``parse_unix`` falls back on the pid join alone.
    """
    count: int | None = None
    text = ""
    for _ in range(attempts):
        before = unix_socket_count()
        read = read_text("/proc/net/unix")
        if read is None:
            return []
        text, after = read, unix_socket_count()
        if before is not None and before == after:
            count = before
            break
    return parse_unix(text, count, _held)


def _held(inodes: set[int]) -> set[int]:
    from ipcnet.inspector.owners import scan_sockets

    scan = scan_sockets(inodes)
    return set(scan.found) if scan.complete else set(inodes)  # unreadable: assume held


__all__ = [
    "parse_inet",
    "parse_packet",
    "parse_unix",
    "read_inet",
    "read_packet",
    "read_text",
    "read_unix",
    "unix_socket_count",
]
