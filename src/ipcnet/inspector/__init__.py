"""The socket inspector: the kernel's socket, pipe and fd tables as data.

Role: the public API behind ``ipcnet sockets``.

    list_sockets(protocols=None, states=None, *, ip_version=None, port=None, address=None,
                 pids=None, process=None, owners=False, source="auto") -> list[SocketRow]
    sockets_of_pid(pid) -> list[SocketRow]          # with owners; for status pages
    process_fds(pid) -> list[FdRow]                  # fd -> socket:[inode] -> its row
    list_pipes(fifos=True, pids=None) -> list[PipeRow]
    protocol_stats() -> {group: {counter: value}}    # netstat -s

Rules:
- Data comes from NETLINK_SOCK_DIAG (``netlink.py``), table by table falling back to
  /proc/net (``procnet.py``) where the kernel refuses a dump; ``source`` pins either.
- Only the caller's network namespace is listed (both sources are per-netns); a pid that
  lives in another namespace contributes no rows.
- Filters run before the pid join, and the join (``owners.py``) scans /proc/*/fd only for
  the inodes that passed, only when owners are asked for (or a pid/process filter needs it).
- Unknown stays unknown: ``None`` fields, never a guess.
- Only ``ipcnet.errors`` (and ``ipcnet.addresses``) are imported from the rest of ipcnet,
  and ``ipcnet.transports.procfs`` and ``.netlink`` for the kernel's files and sockets.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from typing import Literal

from ipcnet.errors import IPCError
from ipcnet.inspector import filters, netlink, procnet
from ipcnet.inspector import owners as fdscan
from ipcnet.inspector.model import SCHEMA, FdRow, Owner, PipeEnd, PipeRow, SocketRow
from ipcnet.inspector.stats import protocol_stats
from ipcnet.transports import procfs

Source = Literal["auto", "netlink", "proc"]
_FAMILIES = {4: 2, 6: 10}  # AF_INET, AF_INET6


class _Dumper:
    """Dumps tables one after another over one lazily opened netlink socket."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.sock: netlink.NetlinkSocket | None = None
        self.seq = 0

    def table(self, table: str, mask: int) -> list[SocketRow]:
        if self.source != "proc":
            try:
                if self.sock is None:
                    self.sock = netlink.open_socket()
                self.seq += 1
                proto, version = filters.TABLES[table]
                if proto == "unix":
                    return _with_unix_peers(netlink.dump_unix(self.sock, mask, self.seq))
                if proto == "packet":  # always UNCONN: no state to ask the kernel for
                    return netlink.dump_packet(self.sock, self.seq)
                assert version is not None
                return netlink.dump_inet(self.sock, proto, _FAMILIES[version], mask, self.seq)
            except netlink.NetlinkUnavailable:
                if self.source == "netlink":
                    raise
        if table == "unix":
            return procnet.read_unix()
        if table == "packet":
            return procnet.read_packet()
        return procnet.read_inet(table)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _with_unix_peers(rows: list[SocketRow]) -> list[SocketRow]:
    names = {r.inode: r.path for r in rows if r.path is not None}
    if not names:
        return rows
    return [r._replace(peer_path=names[r.peer_inode]) if r.peer_inode in names else r for r in rows]


def _inodes_of(pids: Iterable[int]) -> frozenset[int]:
    inodes: set[int] = set()
    for pid in pids:
        inodes |= fdscan.socket_inodes_of(pid)
    return frozenset(inodes)


def list_sockets(
    protocols: Iterable[str] | None = None,
    states: Iterable[str] | None = None,
    *,
    ip_version: int | None = None,
    port: int | str | None = None,
    address: str | None = None,
    pids: Iterable[int] | None = None,
    process: str | None = None,
    owners: bool = False,
    source: Source = "auto",
) -> list[SocketRow]:
    """The sockets of this network namespace that pass every filter.

    ``protocols``: tcp, udp, udplite, raw (each both IP versions), unix, packet, or tcp6, udp6,
    ...; None = all. ``states``: names or groups (see ``filters.parse_states``); None = all.
    ``ip_version``: 4 or 6 (leaves out unix and packet). ``port``: local or remote port (number or
    service name). ``address``: local or peer address in this address or prefix
    (``10.0.0.0/8``; inet tables only). ``pids``/``process``: only sockets these processes hold.
    ``owners``: fill ``SocketRow.owners`` (the /proc/*/fd join).
    """
    tables = filters.select_tables(protocols, ip_version)
    wanted_states = None if states is None else filters.parse_states(states)
    inode_filter: frozenset[int] | None = None
    if pids is not None or process is not None:
        pid_list = list(pids or ())
        if process is not None:
            pid_list += fdscan.pids_named(process)
        inode_filter = _inodes_of(pid_list)
    rowfilter = filters.RowFilter(
        wanted_states,
        None if port is None else filters.resolve_port(port),
        inode_filter,
        None if address is None else filters.parse_address(address),
    )
    if rowfilter.port is not None:
        tables = [t for t in tables if t[:3] in ("tcp", "udp")]
    if rowfilter.network is not None:
        version = rowfilter.network.version
        tables = [t for t in tables if filters.TABLES[t][1] in (version, 6)]  # 6: mapped v4
    mask = filters.state_mask(wanted_states)
    dumper = _Dumper(source)
    rows: list[SocketRow] = []
    gc_was_on = gc.isenabled()
    gc.disable()  # 10k+ new tuples would trigger many useless cyclic collections
    try:
        for table in tables:
            got = dumper.table(table, mask)
            rows.extend(filter(rowfilter, got) if rowfilter.active() else got)
        if owners:
            rows = join_owners(rows)
    finally:
        dumper.close()
        if gc_was_on:
            gc.enable()
    return rows


def join_owners(rows: list[SocketRow]) -> list[SocketRow]:
    """The same rows with ``owners`` filled from a /proc/*/fd scan for their inodes."""
    scan = fdscan.scan_sockets({r.inode for r in rows if r.inode is not None})
    new = tuple.__new__
    owners_of = scan.owners
    # SocketRow fields: ... inode (11) ... owners (19), peer_path, v6only, interface;
    # tuple.__new__ beats _replace
    return [new(SocketRow, (*r[:19], owners_of(r[11]), *r[20:])) for r in rows]


def sockets_of_pid(pid: int, owners: bool = True) -> list[SocketRow]:
    """Every socket ``pid`` holds that lives in our network namespace, in every state."""
    return list_sockets(pids=[pid], owners=owners)


def process_fds(pid: int) -> list[FdRow]:
    """``pid``'s fd table, each fd joined to its socket row or pipe (the seed 004 view)."""
    import stat as stat_mod

    table = fdscan.fd_table(pid)
    socks = {t: int(t[8:-1]) for _fd, t in table if t[:8] == "socket:["}
    by_inode: dict[int, SocketRow] = {}
    if socks:
        for row in list_sockets(None, [*filters.ALL_STATE_NAMES, filters.BOUND_INACTIVE]):
            if row.inode is not None:
                by_inode[row.inode] = row
        scan = fdscan.scan_sockets(set(socks.values()))
        mine = set(socks.values())
        for inode, row in list(by_inode.items()):
            if inode in mine:
                by_inode[inode] = row.with_owners(scan.owners(inode))
    pipe_inodes: set[int] = set()
    ino: int | None
    kinds: list[tuple[int, str, str, int | None]] = []
    for fd, target in table:
        ino = None
        if target[:8] == "socket:[":
            kind, ino = "socket", int(target[8:-1])
        elif target[:6] == "pipe:[":
            kind, ino = "pipe", int(target[6:-1])
            pipe_inodes.add(ino)
        elif target[:1] == "/":
            try:
                st = procfs.stat(f"/proc/{pid}/fd/{fd}")
            except IPCError:
                st = None
            kind = "fifo" if st is not None and stat_mod.S_ISFIFO(st.st_mode) else "file"
            if st is not None and kind == "fifo":
                ino = st.st_ino
                pipe_inodes.add(ino)
        elif target.startswith("anon_inode:"):
            kind = "anon"
        else:
            kind = "other"
        kinds.append((fd, target, kind, ino))
    pipes_by_inode: dict[int, PipeRow] = {}
    if pipe_inodes:
        from ipcnet.inspector.pipes import scan_pipes

        for prow in scan_pipes(fifos=True, inodes=pipe_inodes).rows:
            pipes_by_inode[prow.inode] = prow
    out = []
    for fd, target, kind, ino in kinds:
        sock = by_inode.get(ino) if kind == "socket" and ino is not None else None
        pipe = pipes_by_inode.get(ino) if kind in ("pipe", "fifo") and ino is not None else None
        out.append(FdRow(pid, fd, target, kind, ino, sock, pipe))
    return out


def list_pipes(fifos: bool = True, pids: Iterable[int] | None = None) -> list[PipeRow]:
    """Every pipe (and fifo) open anywhere, with all its ends; ``pids`` keeps the pipes
    with at least one end in those processes (the other ends are still listed)."""
    from ipcnet.inspector.pipes import scan_pipes

    rows = scan_pipes(fifos=fifos).rows
    if pids is not None:
        keep = set(pids)
        rows = [r for r in rows if any(e.pid in keep for e in r.ends)]
    return rows


__all__ = [
    "SCHEMA",
    "FdRow",
    "Owner",
    "PipeEnd",
    "PipeRow",
    "SocketRow",
    "join_owners",
    "list_pipes",
    "list_sockets",
    "process_fds",
    "protocol_stats",
    "sockets_of_pid",
]
