"""Pipes and FIFOs with the processes at both ends (from /proc/*/fd and fdinfo).

Role: no socket table lists pipes, so we rebuild one: every ``pipe:[inode]`` fd and every
fd open on a FIFO, grouped by inode, each end with pid, command, fd and mode (r/w).
Rules:
- The mode comes from ``/proc/<pid>/fdinfo/<fd>`` ("flags:" & O_ACCMODE); if that cannot
  be read the mode is None (unknown), never guessed from the fd number.
- FIFOs are recognised by ``stat`` of the fd (S_ISFIFO); only fds whose link is a path are
  stat'ed, and only when FIFOs are asked for.
- Processes that exit mid-scan are skipped; unreadable ones make the result incomplete
  (``PipeScan.complete``), so a pipe with one visible end may have another we cannot see.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection

from ipcnet.errors import IPCError, PermissionDenied
from ipcnet.inspector.model import PipeEnd, PipeRow
from ipcnet.inspector.owners import all_pids, comm
from ipcnet.transports import procfs

_MODES = {os.O_RDONLY: "r", os.O_WRONLY: "w", os.O_RDWR: "rw"}


class PipeScan:
    __slots__ = ("complete", "rows")

    def __init__(self, rows: list[PipeRow], complete: bool) -> None:
        self.rows = rows
        self.complete = complete


def fd_mode(pid: int, fd: int) -> str | None:
    """ "r", "w" or "rw" from /proc/<pid>/fdinfo/<fd>, or None if unreadable."""
    try:
        info = procfs.read_bytes(f"/proc/{pid}/fdinfo/{fd}")
    except IPCError:
        return None
    for line in (info or b"").split(b"\n"):
        if line.startswith(b"flags:"):
            try:
                return _MODES.get(int(line.split()[1], 8) & os.O_ACCMODE)
            except (ValueError, IndexError):
                return None
    return None


def scan_pipes(fifos: bool = True, inodes: Collection[int] | None = None) -> PipeScan:
    """Every pipe (and fifo if ``fifos``) open in any process; ``inodes`` narrows it."""
    found: dict[tuple[str, int], list[tuple[int, int]]] = {}
    paths: dict[int, str] = {}
    complete = True
    for pid in all_pids():
        try:
            links = procfs.fd_links(pid, fifos=fifos)
        except PermissionDenied:
            complete = False
            continue
        for name, target, st in links or ():
            if target[:6] == "pipe:[":
                ino = int(target[6:-1])
                if inodes is None or ino in inodes:
                    found.setdefault(("pipe", ino), []).append((pid, int(name)))
            elif (
                st is not None
                and stat.S_ISFIFO(st.st_mode)
                and (inodes is None or st.st_ino in inodes)
            ):
                found.setdefault(("fifo", st.st_ino), []).append((pid, int(name)))
                paths[st.st_ino] = target
    names_cache: dict[int, str | None] = {}
    rows = []
    for (kind, ino), hits in sorted(found.items()):
        ends = []
        for pid, fd in sorted(hits):
            if pid not in names_cache:
                names_cache[pid] = comm(pid)
            ends.append(PipeEnd(pid, names_cache[pid], fd, fd_mode(pid, fd)))
        rows.append(PipeRow(kind, ino, paths.get(ino) if kind == "fifo" else None, tuple(ends)))
    return PipeScan(rows, complete)


__all__ = ["PipeScan", "fd_mode", "scan_pipes"]
