"""The pid join: which processes hold which socket and pipe inodes (/proc/<pid>/fd).

Role: scan /proc/*/fd (the seed 004 view: ``3 -> socket:[20443]``) and map inodes to
``Owner``s; read one process's fd table.
Rules:
- Runs only when asked, and only for the inodes the caller wants (after filtering).
- One ``open`` per process directory and ``readlink(name, dir_fd=...)`` per fd: no path
  walk per fd, no stat, no regex. Targets are compared as strings against the wanted
  ``socket:[N]`` set, so unwanted fds cost a hash lookup.
- A process that exits mid-scan is skipped. A process we may not read makes the scan
  *incomplete*: then "no owner found" means unknown, and callers show None, not "none".
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from typing import Any

from ipcnet.inspector.model import Owner

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


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
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def comm(pid: int) -> str | None:
    """The process's command name, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return os.fsdecode(f.read().rstrip(b"\n"))
    except OSError:
        return None


def pids_named(name: str) -> list[int]:
    """Pids whose command name (``comm``, 15 characters at most) equals ``name``."""
    want = name[:15]
    return [pid for pid in all_pids() if comm(pid) == want]


def scan_sockets(inodes: Collection[int] | None, pids: Iterable[int] | None = None) -> Scan:
    """Find the holders of socket ``inodes`` (all sockets if None) in ``pids`` (all if None)."""
    scan = Scan()
    found = scan.found
    readlink = os.readlink
    listdir = os.listdir
    if inodes is not None:
        wanted = {f"socket:[{i}]": i for i in inodes}
        if not wanted:
            return scan
    for pid in all_pids() if pids is None else pids:
        try:
            dfd = os.open(f"/proc/{pid}/fd", _O_DIR)
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            continue  # gone
        except PermissionError:
            scan.complete = False
            continue
        try:
            try:
                names = listdir(dfd)
            except PermissionError:
                scan.complete = False
                continue
            except OSError:
                continue
            for name in names:
                try:
                    target = readlink(name, dir_fd=dfd)
                except OSError:
                    continue  # closed meanwhile
                if inodes is None:
                    if target[:8] == "socket:[":
                        found.setdefault(int(target[8:-1]), []).append((pid, int(name)))
                else:
                    ino = wanted.get(target)
                    if ino is not None:
                        found.setdefault(ino, []).append((pid, int(name)))
        finally:
            os.close(dfd)
    return scan


def fd_table(pid: int) -> list[tuple[int, str]]:
    """(fd, readlink target) for every open fd of ``pid``, sorted by fd.

    Raises ProcessLookupError if the process does not exist, PermissionError if we may
    not read its fds.
    """
    try:
        dfd = os.open(f"/proc/{pid}/fd", _O_DIR)
    except FileNotFoundError:
        raise ProcessLookupError(f"no process {pid}") from None
    try:
        out = []
        for name in os.listdir(dfd):
            try:
                out.append((int(name), os.readlink(name, dir_fd=dfd)))
            except OSError:
                continue
    finally:
        os.close(dfd)
    out.sort()
    return out


def socket_inodes_of(pid: int) -> set[int]:
    """Inodes of the sockets ``pid`` holds (see ``fd_table`` for the errors)."""
    return {int(t[8:-1]) for _fd, t in fd_table(pid) if t[:8] == "socket:["}


__all__ = ["Scan", "all_pids", "comm", "fd_table", "pids_named", "scan_sockets", "socket_inodes_of"]
