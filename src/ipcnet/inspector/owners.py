"""The pid join: which processes hold which socket and pipe inodes (/proc/<pid>/fd).

Role: scan /proc/*/fd (the seed 004 view: ``3 -> socket:[20443]``) and map inodes to
``Owner``s; read one process's fd table.
Rules:
- Runs only when asked, and only for the inodes the caller wants (after filtering).
- One ``open`` per process directory and ``readlink(name, dir_fd=...)`` per fd
  (``transports.procfs.fd_links``): no path walk per fd, no stat, no regex. Targets are
  compared as strings against the wanted ``socket:[N]`` set, so unwanted fds cost a hash
  lookup.
- A process that exits mid-scan is skipped. A process we may not read makes the scan
  *incomplete*: then "no owner found" means unknown, and callers show None, not "none".
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from typing import Any

from ipcnet.errors import AddressError, IPCError, PermissionDenied
from ipcnet.inspector.model import Owner
from ipcnet.transports import procfs


class Scan:
    """Result of an fd scan: inode -> [(pid, fd)], and whether every process was readable."""

    __slots__ = ("_names", "complete", "found")

    def __init__(self) -> None:
        self.found: dict[int, list[tuple[int, int]]] = {}
        self.complete = True
        self._names: dict[int, str | None] = {}

    def owners(self, inode: int | None) -> tuple[Owner, ...] | None:
        """Owners of ``inode``; None when unknown (no inode, or an unreadable process)."""
        if inode is None:
            return None
        hits = self.found.get(inode)
        if not hits:
            return () if self.complete else None
        names = self._names
        if len(hits) == 1:  # the common case: one process, one fd
            pid, fd = hits[0]
            name = names.get(pid, _MISSING)
            if name is _MISSING:
                name = names[pid] = comm(pid)
            return (_new(Owner, (pid, name, (fd,))),)
        by_pid: dict[int, list[int]] = {}
        for pid, fd in hits:
            by_pid.setdefault(pid, []).append(fd)
        for pid in by_pid:
            if pid not in names:
                names[pid] = comm(pid)
        return tuple(Owner(pid, names[pid], tuple(sorted(fds))) for pid, fds in by_pid.items())


_MISSING: Any = object()
_new = tuple.__new__


def all_pids() -> list[int]:
    return [int(n) for n in procfs.listdir("/proc") or () if n.isdigit()]


def comm(pid: int) -> str | None:
    """The process's command name, or None if it is gone (or unreadable)."""
    try:
        data = procfs.read_bytes(f"/proc/{pid}/comm")
    except IPCError:
        return None
    return None if data is None else os.fsdecode(data.rstrip(b"\n"))


def pids_named(name: str) -> list[int]:
    """Pids whose command name (``comm``, 15 characters at most) equals ``name``."""
    want = name[:15]
    return [pid for pid in all_pids() if comm(pid) == want]


def scan_sockets(inodes: Collection[int] | None, pids: Iterable[int] | None = None) -> Scan:
    """Find the holders of socket ``inodes`` (all sockets if None) in ``pids`` (all if None)."""
    scan = Scan()
    found = scan.found
    if inodes is not None:
        wanted = {f"socket:[{i}]": i for i in inodes}
        if not wanted:
            return scan
    for pid in all_pids() if pids is None else pids:
        try:
            links = procfs.fd_links(pid)
        except PermissionDenied:
            scan.complete = False
            continue
        if links is None:
            continue  # gone
        for name, target, _ in links:
            if inodes is None:
                if target[:8] == "socket:[":
                    found.setdefault(int(target[8:-1]), []).append((pid, int(name)))
            else:
                ino = wanted.get(target)
                if ino is not None:
                    found.setdefault(ino, []).append((pid, int(name)))
    return scan


def fd_table(pid: int) -> list[tuple[int, str]]:
    """(fd, readlink target) for every open fd of ``pid``, sorted by fd.

    Raises AddressError ("no process N") if the process does not exist, PermissionDenied if
    we may not read its fds.
    """
    links = procfs.fd_links(pid)
    if links is None:
        raise AddressError(f"no process {pid}")
    return sorted((int(name), target) for name, target, _ in links)


def socket_inodes_of(pid: int) -> set[int]:
    """Inodes of the sockets ``pid`` holds; none if it is gone (PermissionDenied if we may
    not read its fds)."""
    return {int(t[8:-1]) for _, t, _ in procfs.fd_links(pid) or () if t[:8] == "socket:["}


__all__ = ["Scan", "all_pids", "comm", "fd_table", "pids_named", "scan_sockets", "socket_inodes_of"]
