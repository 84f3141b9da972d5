"""The kernel's IPC objects as rows: what ``ipcnet ipcs`` shows (like lsipc and ipcs -p).

Role: collect POSIX shared memory and named semaphores (/dev/shm), POSIX message queues
(any mounted mqueue filesystem), SysV shm/msg/sem (/proc/sysvipc/*), and the memfd, eventfd
and signalfd descriptors of every process (/proc/*/fd), each with its owner, mode, size,
message count and the processes that hold or map it. Rules:
- Reading only, through ``transports.procfs``; a process or object that vanishes mid-scan
  is skipped; one whose descriptors we may not read makes ``holders`` unknown (None), never
  wrong; one whose memory maps we may not read (pid 1 in a container) is named in a note.
- ``holders`` are (pid, command) pairs: for files, the processes with a descriptor on it or
  a mapping of it (/proc/*/maps); for SysV shm, the mappers (a mapping's inode is the
  shmid; the key says nothing for IPC_PRIVATE) in our IPC namespace (each namespace has
  its own shmids); for queues, the openers.
- An object we may not open is listed all the same, as ls lists it (owner, mode): what
  only opening it tells (a queue's bytes and messages) is unknown (None), never left out.
- ``mode`` is what ls shows for files; for SysV objects, the permission bits ipcs shows
  (the kernel's SHM_DEST/SHM_LOCKED flags above them are no permissions: ``status``).
- When no mqueue filesystem is mounted, queues cannot be listed; ``notes`` says so and how
  to mount one (the queues themselves work without it).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ipcnet.errors import PermissionDenied
from ipcnet.inspector.names import user_name
from ipcnet.inspector.owners import all_pids, comm
from ipcnet.transports import procfs
from ipcnet.transports.mq import queue_messages

KINDS = (
    "posix-shm",
    "posix-sem",
    "posix-mq",
    "sysv-shm",
    "sysv-msg",
    "sysv-sem",
    "memfd",
    "eventfd",
    "signalfd",
)
SCHEMA = ("kind", "name", "id", "uid", "user", "mode", "size", "messages", "holders", "status")
MOUNTINFO = "/proc/self/mountinfo"
SHM_DIR = "/dev/shm"
SYSVIPC = "/proc/sysvipc"
SYSV_MAP = "/SYSV"  # how a SysV segment is named in /proc/<pid>/maps: /SYSV<key> (deleted)


@dataclass(frozen=True, slots=True)
class IpcRow:
    """One IPC object. ``size`` is bytes (for sysv-sem: semaphores in the set; for an
    eventfd: its counter); ``messages`` only for queues; ``holders`` (pid, comm) or None;
    ``status``: a SysV segment's ``dest`` (removed, still attached) and ``locked``, as
    ipcs shows them."""

    kind: str
    name: str
    id: int | None
    uid: int | None
    user: str | None
    mode: str | None
    size: int | None
    messages: int | None
    holders: tuple[tuple[int, str | None], ...] | None
    status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.holders is not None:
            d["holders"] = [{"pid": p, "command": c} for p, c in self.holders]
        return d


@dataclass
class _Scan:
    """What every process holds: descriptors (fd, target, stat of a path target) and the
    (inode, path) of every file mapping, by pid; the IPC namespace of those that map SysV
    shm (None: unreadable)."""

    fds: dict[int, list[tuple[int, str, os.stat_result | None]]]
    maps: dict[int, set[tuple[int, str]]]
    complete: bool  # every process's descriptors were readable
    unmapped: list[int]  # processes whose mappings we may not read (often pid 1 in a container)
    ipcns: dict[int, str | None]


def _ipc_namespace(pid: int | str) -> str | None:
    try:
        return procfs.readlink(f"/proc/{pid}/ns/ipc")
    except PermissionDenied:
        return None


def _scan(pids: Iterable[int]) -> _Scan:
    scan = _Scan({}, {}, True, [], {})
    for pid in pids:
        try:
            links = procfs.fd_links(pid, fifos=True)
        except PermissionDenied:
            scan.complete = False
            continue
        if links is None:
            continue  # gone
        try:
            maps = procfs.read_text(f"/proc/{pid}/maps")
        except PermissionDenied:
            scan.unmapped.append(pid)
            maps = None
        scan.fds[pid] = [(int(fd), target, st) for fd, target, st in links]
        mapped: set[tuple[int, str]] = set()
        for line in (maps or "").splitlines():
            fields = line.split(None, 5)
            # a SysV segment's inode is its shmid, which may be 0
            if len(fields) == 6 and (fields[4] != "0" or fields[5].startswith(SYSV_MAP)):
                mapped.add((int(fields[4]), fields[5]))
        scan.maps[pid] = mapped
        if any(path.startswith(SYSV_MAP) for _ino, path in mapped):
            scan.ipcns[pid] = _ipc_namespace(pid)
    return scan


def _holders(
    scan: _Scan, match: Any, names: dict[int, str | None], inode: int | None = None
) -> tuple[tuple[int, str | None], ...] | None:
    """Pids with a descriptor whose target ``match``es, or a mapping that matches (or, for a
    /dev/shm file, whose inode is ``inode``: glibc maps a semaphore before naming it)."""
    hits = sorted(
        {pid for pid, targets in scan.fds.items() for _fd, t, _st in targets if match(t)}
        | {
            pid
            for pid, mapped in scan.maps.items()
            if any(match(m) or (i == inode and m.startswith(SHM_DIR)) for i, m in mapped)
        }
    )
    return _named(scan, hits, names)


def _named(
    scan: _Scan, hits: list[int], names: dict[int, str | None]
) -> tuple[tuple[int, str | None], ...] | None:
    """(pid, command) of sorted ``hits``; unknown (None) if none were found but some
    process could not be read."""
    if not hits and not scan.complete:
        return None
    for pid in hits:
        if pid not in names:
            names[pid] = comm(pid)
    return tuple((pid, names[pid]) for pid in hits)


def _mode(st_mode: int) -> str:
    return f"{stat.S_IMODE(st_mode):04o}"


def mqueue_mounts(mountinfo: str = MOUNTINFO) -> list[str]:
    """Mount points of mqueue filesystems, from mountinfo (fstype after the " - ")."""
    points = []
    for line in (procfs.read_text(mountinfo) or "").splitlines():
        left, sep, right = line.partition(" - ")
        if sep and right.split(" ", 1)[0] == "mqueue":
            points.append(left.split(" ")[4].replace("\\040", " "))
    return points


def _files(scan: _Scan, names: dict[int, str | None], mounts: list[str]) -> list[IpcRow]:
    rows = []
    for entry in sorted(procfs.listdir(SHM_DIR) or ()):
        path = f"{SHM_DIR}/{entry}"
        st = procfs.stat(path)
        if st is None or not stat.S_ISREG(st.st_mode):
            continue
        kind = "posix-sem" if entry.startswith("sem.") else "posix-shm"
        name = entry[4:] if kind == "posix-sem" else entry
        rows.append(
            IpcRow(
                kind,
                name,
                st.st_ino,
                st.st_uid,
                user_name(st.st_uid),
                _mode(st.st_mode),
                st.st_size,
                None,
                _holders(scan, lambda t, p=path: t == p, names, st.st_ino),
            )
        )
    for point in mounts[:1]:  # every mqueue mount of one ipc namespace shows the same queues
        try:
            queues = sorted(procfs.listdir(point) or ())
        except PermissionDenied:
            continue
        for q in queues:
            try:
                st = procfs.stat(f"{point}/{q}")
            except PermissionDenied:
                continue
            try:
                status = procfs.read_text(f"{point}/{q}")  # "QSIZE:7 NOTIFY:0 ..."
            except PermissionDenied:  # another user's, 0600: listed as ls lists it
                status = ""
            if st is None or status is None:
                continue  # gone
            qsize = _int(status.split()[0].partition(":")[2], 10) if status else None
            rows.append(
                IpcRow(
                    "posix-mq",
                    q,
                    st.st_ino,
                    st.st_uid,
                    user_name(st.st_uid),
                    _mode(st.st_mode),
                    qsize,
                    queue_messages(q),
                    _mq_holders(scan, st.st_dev, st.st_ino, names),
                )
            )
    return rows


def _mq_holders(
    scan: _Scan, dev: int, ino: int, names: dict[int, str | None]
) -> tuple[tuple[int, str | None], ...] | None:
    hits = sorted(
        pid
        for pid, targets in scan.fds.items()
        if any(st is not None and (st.st_dev, st.st_ino) == (dev, ino) for _f, _t, st in targets)
    )
    return _named(scan, hits, names)


def _shm_mappers(
    scan: _Scan, shmid: int, names: dict[int, str | None], own: str | None
) -> tuple[tuple[int, str | None], ...] | None:
    """The processes of IPC namespace ``own`` (None: unknown, any) that map ``shmid``."""
    hits = sorted(
        pid
        for pid, mapped in scan.maps.items()
        if any(i == shmid and path.startswith(SYSV_MAP) for i, path in mapped)
        and (own is None or scan.ipcns.get(pid) in (own, None))
    )
    return _named(scan, hits, names)


def _sysv(scan: _Scan, names: dict[int, str | None]) -> list[IpcRow]:
    rows = []
    own_ns = _ipc_namespace("self")
    tables = (
        ("shm", "sysv-shm", "shmid"),
        ("msg", "sysv-msg", "msqid"),
        ("sem", "sysv-sem", "semid"),
    )
    for table, kind, id_column in tables:
        text = procfs.read_text(f"{SYSVIPC}/{table}")
        if text is None:
            continue
        lines = text.splitlines()
        head = lines[0].split() if lines else []
        for line in lines[1:]:
            v = dict(zip(head, line.split(), strict=False))
            key = int(v["key"])
            ident = int(v[id_column])
            uid = int(v["uid"])
            perms = int(v["perms"], 8)
            mode = f"{perms & 0o777:04o}"
            flags = [w for bit, w in ((0o1000, "dest"), (0o2000, "locked")) if perms & bit]
            holders: tuple[tuple[int, str | None], ...] | None = None
            messages = None
            if kind == "sysv-shm":
                size = int(v["size"])
                holders = _shm_mappers(scan, ident, names, own_ns)
            elif kind == "sysv-msg":
                size, messages = int(v["cbytes"]), int(v["qnum"])
                pids = {int(v["lspid"]), int(v["lrpid"])} - {0}
                holders = tuple((p, comm(p)) for p in sorted(pids))  # last sender, receiver
            else:
                size = int(v["nsems"])
            rows.append(
                IpcRow(
                    kind,
                    f"0x{key & 0xFFFFFFFF:08x}",
                    ident,
                    uid,
                    user_name(uid),
                    mode,
                    size,
                    messages,
                    holders,
                    (",".join(flags) or None) if kind == "sysv-shm" else None,
                )
            )
    return rows


def _anon(scan: _Scan, names: dict[int, str | None]) -> list[IpcRow]:
    """memfd objects (one row per inode) and eventfd/signalfd descriptors (one per fd)."""
    memfds: dict[int, tuple[str, os.stat_result, set[int]]] = {}
    rows = []
    for pid, targets in scan.fds.items():
        for fd, target, st in targets:
            if target.startswith("/memfd:"):
                if st is None:
                    continue  # closed meanwhile
                label = target[len("/memfd:") :].removesuffix(" (deleted)")
                memfds.setdefault(st.st_ino, (label, st, set()))[2].add(pid)
            elif target in ("anon_inode:[eventfd]", "anon_inode:[signalfd]"):
                info = _fdinfo(pid, fd)
                names.setdefault(pid, comm(pid))
                if target == "anon_inode:[eventfd]":
                    size = _int(info.get("eventfd-count"), 16)
                    ident = _int(info.get("eventfd-id"), 16)
                    rows.append(
                        IpcRow(
                            "eventfd",
                            f"pid {pid} fd {fd}",
                            ident,
                            None,
                            None,
                            None,
                            size,
                            None,
                            ((pid, names[pid]),),
                        )
                    )
                else:
                    rows.append(
                        IpcRow(
                            "signalfd",
                            f"pid {pid} fd {fd}: {_sigmask(info.get('sigmask'))}",
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                            ((pid, names[pid]),),
                        )
                    )
    for pid, mapped in scan.maps.items():  # a memfd may be only mapped, its fd closed
        for ino, path in mapped:
            if path.startswith("/memfd:") and ino in memfds:
                memfds[ino][2].add(pid)
    for ino, (label, st, pids) in sorted(memfds.items()):
        for pid in pids:
            names.setdefault(pid, comm(pid))
        rows.append(
            IpcRow(
                "memfd",
                label,
                ino,
                st.st_uid,
                user_name(st.st_uid),
                _mode(st.st_mode),
                st.st_size,
                None,
                tuple((p, names[p]) for p in sorted(pids)),
            )
        )
    return rows


def _fdinfo(pid: int, fd: int) -> dict[str, str]:
    try:
        text = procfs.read_text(f"/proc/{pid}/fdinfo/{fd}") or ""
    except PermissionDenied:
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def _int(text: str | None, base: int) -> int | None:
    try:
        return None if text is None else int(text, base)
    except ValueError:
        return None


def _sigmask(text: str | None) -> str:
    from ipcnet.transports.signals import signal_name  # real-time ones as kill -l names them

    mask = _int(text, 16)
    if mask is None:
        return "?"
    out = []
    for bit in range(64):
        if mask >> bit & 1:
            try:
                out.append(signal_name(bit + 1))
            except ValueError:  # 32 and 33: glibc's own, no name
                out.append(str(bit + 1))
    return ",".join(out) or "-"


def collect(
    kinds: Iterable[str] | None = None,
    pids: Iterable[int] | None = None,
    mountinfo: str = MOUNTINFO,
) -> tuple[list[IpcRow], list[str]]:
    """Rows of the wanted ``kinds`` (all if None), holders sought among ``pids`` (all),
    and notes on what could not be listed."""
    wanted = set(KINDS if kinds is None else kinds)
    scan = _scan(all_pids() if pids is None else pids)
    names: dict[int, str | None] = {}
    notes = []
    mounts = mqueue_mounts(mountinfo)
    if "posix-mq" in wanted and not mounts:
        notes.append(
            "no mqueue filesystem is mounted: POSIX message queues are not listed "
            "(mount -t mqueue none /dev/mqueue)"
        )
    if not scan.complete:
        notes.append("some processes could not be read: holders may be unknown (?)")
    if scan.unmapped:
        pids_text = ", ".join(map(str, scan.unmapped[:5])) + (
            " ..." if len(scan.unmapped) > 5 else ""
        )
        notes.append(
            f"the memory maps of pid {pids_text} could not be read: holders count their "
            "descriptors only"
        )
    rows = _files(scan, names, mounts) + _sysv(scan, names) + _anon(scan, names)
    return [r for r in rows if r.kind in wanted], notes
