"""Attach ipcnet's XDP filter to an interface, change its rules live, read its counters.

Role: the library behind ``ipcnet xdp``. ``attach()`` builds (once) and loads the program,
creates its two maps, fills the rules map, then attaches it with rtnetlink; the returned
``XdpFilter`` updates rules and reads counters through the maps while the program runs.
The state lives in the kernel only: ``find(dev)`` rebuilds a handle in a later process
from the program id the interface reports and the map ids the program holds.
Rules: only the named interface is ever touched; an interface that already runs an XDP
program is left alone unless ``replace=True`` (the kernel enforces it with
XDP_FLAGS_UPDATE_IF_NOEXIST, so a race cannot slip through); ``detach()`` removes a
program only if it is still the one this handle attached (XDP_FLAGS_REPLACE with the
expected descriptor), from the network namespace the handle was made in; a program a
bpf link holds (libxdp attaches so) is named with its link and left alone, since netlink
cannot remove or replace it whatever the flags; the kernel calls (``transports.bpf``,
``transports.rtnetlink``) run inside ``transports.xdperrors.translating``, so only ipcnet
errors leave, and none is caught here to change its meaning.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from ipcnet.errors import AddressInUse, IPCError, PermissionDenied, Unsupported
from ipcnet.transports import bpf, netns, procfs, rtnetlink
from ipcnet.transports.xdperrors import NEED, translating
from ipcnet.xdp import build, elf
from ipcnet.xdp.rules import COUNTERS, KEY, VALUE, Rule, decode, map_entries, parse_rules

Mode = Literal["auto", "native", "generic"]
PROGRAM = "ipcnet_xdp"
RULES_MAP, STATS_MAP = "ipcnet_rules", "ipcnet_stats"
_ATTACH_FLAGS = {
    "auto": 0,
    "native": rtnetlink.XDP_FLAGS_DRV_MODE,
    "generic": rtnetlink.XDP_FLAGS_SKB_MODE,
}
_CAP_NET_ADMIN, _CAP_SYS_ADMIN, _CAP_BPF = 12, 21, 39
_PSEUDO_MAP_FD = 1


def require_privileges() -> None:
    """PermissionDenied unless this process may load BPF programs and change links."""
    status = procfs.read_text("/proc/self/status") or ""
    caps = next(
        int(line.split()[1], 16) for line in status.splitlines() if line.startswith("CapEff:")
    )
    missing = []
    if not caps >> _CAP_BPF & 1 and not caps >> _CAP_SYS_ADMIN & 1:
        missing.append("CAP_BPF")
    if not caps >> _CAP_NET_ADMIN & 1:
        missing.append("CAP_NET_ADMIN")
    if missing:
        raise PermissionDenied(f"{NEED}: this process lacks {' and '.join(missing)}")


@dataclass(frozen=True)
class RuleStats:
    rule: Rule
    packets: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.rule.action,
            "rule": self.rule.target,
            "packets": self.packets,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class Stats:
    """Counters summed over CPUs: per rule, and for packets no rule matched (passed)."""

    dev: str
    prog_id: int
    rules: list[RuleStats]
    unmatched_packets: int
    unmatched_bytes: int

    @property
    def dropped(self) -> int:
        return sum(r.packets for r in self.rules if r.rule.action == "drop")

    def to_dict(self) -> dict[str, Any]:
        return {
            "dev": self.dev,
            "prog_id": self.prog_id,
            "rules": [r.to_dict() for r in self.rules],
            "unmatched": {"packets": self.unmatched_packets, "bytes": self.unmatched_bytes},
        }


@dataclass(frozen=True)
class Program:
    """One XDP program on one interface, as ``ipcnet xdp show`` lists it."""

    dev: str
    ifindex: int
    prog_id: int
    mode: str
    name: str = ""
    tag: str = ""
    jited: bool = False
    rules: list[Rule] = field(default_factory=list)  # ipcnet's own programs only
    ipcnet: bool = False
    link: int | None = None  # the bpf link holding it, if one does (not netlink's to remove)

    def held(self) -> str:
        """What holds it, for a message: '' if netlink may remove or replace it."""
        if self.link is None:
            return ""
        return (
            f"program {self.prog_id} {self.name!r} is held by bpf link {self.link} ({self.mode} "
            f"mode), which netlink can neither remove nor replace; left alone (bpftool link "
            f"detach id {self.link} removes it)"
        )

    def to_dict(self) -> dict[str, Any]:
        d = {
            k: getattr(self, k)
            for k in ("dev", "ifindex", "prog_id", "mode", "name", "tag", "jited", "ipcnet", "link")
        }
        d["rules"] = [{"action": r.action, "rule": r.target} for r in self.rules]
        return d


class XdpFilter:
    """ipcnet's XDP program on one interface: ``update()``, ``stats()``, ``detach()``.

    Used as a context manager it detaches on exit. ``close()`` only lets go of the
    descriptors: the program stays attached (as after ``ipcnet xdp attach``), and so it
    does if the process is killed by a signal: the interface holds it, not the process.
    The handle keeps the network namespace its interface was found in: ``detach()`` acts
    there, whichever thread (in whichever namespace) calls it."""

    def __init__(
        self, dev: str, ifindex: int, mode: str, prog_fd: int, maps: dict[str, int], ns: int
    ):
        self.dev, self.ifindex, self.mode = dev, ifindex, mode
        self._prog_fd, self._maps, self._netns = prog_fd, maps, ns
        self.prog_id = bpf.ProgInfo(prog_fd).id
        self._attached = True

    def __repr__(self) -> str:
        return f"<XdpFilter {self.dev} prog {self.prog_id} {self.mode}>"

    def _fd(self, name: str) -> int:
        if self._prog_fd < 0:
            raise Unsupported(f"xdp filter on {self.dev} is closed")
        return self._maps[name]

    def _slots(self) -> dict[int, Rule]:
        return _slots(self._fd(RULES_MAP))

    def rules(self) -> list[Rule]:
        with translating("read xdp rules on", self.dev):
            return [rule for _, rule in sorted(self._slots().items())]

    def update(self, drop: Iterable[str | Rule] = (), count: Iterable[str | Rule] = ()) -> None:
        """Replace the rules; the program keeps running (no reload, no detach). A rule that
        stays keeps its counters; a new one starts from zero."""
        wanted = parse_rules(drop, count)
        with translating("update xdp rules on", self.dev):
            _write_rules(self._fd(RULES_MAP), self._fd(STATS_MAP), wanted, self._slots())

    def stats(self) -> Stats:
        with translating("read xdp counters on", self.dev):
            slots = self._slots()
            fd = self._fd(STATS_MAP)
            totals = {slot: _counters(fd, slot) for slot in (0, *sorted(slots))}
        rows = [RuleStats(rule, *totals[slot]) for slot, rule in sorted(slots.items())]
        return Stats(self.dev, self.prog_id, rows, *totals[0])

    def attached(self) -> bool:
        """Does the interface still run this program (not detached, replaced or gone)?"""
        if not self._attached or self._prog_fd < 0:
            return False
        with translating("look up xdp on", self.dev):
            link = rtnetlink.link_by_index(self.ifindex, self._netns)
        return link is not None and any(a.prog_id == self.prog_id for a in link.xdp)

    def detach(self) -> None:
        """Remove the program from the interface if it is still this one; idempotent."""
        if not self._attached or self._prog_fd < 0:
            return
        self._attached = False
        with translating("detach xdp from", self.dev):
            # False if another program replaced ours or the interface went away: done too
            rtnetlink.detach_xdp(self.ifindex, self.mode, self._prog_fd, self._netns)
        self.close()

    def close(self) -> None:
        bpf.close(self._prog_fd, *self._maps.values(), self._netns)
        self._prog_fd, self._maps, self._netns = -1, {}, -1

    def __enter__(self) -> XdpFilter:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.detach()


def _slots(rules_fd: int) -> dict[int, Rule]:
    """The rules map's entries as {stats slot: Rule}."""
    entries = []
    for key in bpf.map_keys(rules_fd, KEY.size):
        value = bpf.map_lookup(rules_fd, key, VALUE.size)
        if value is not None:  # deleted since the walk began
            entries.append((key, value))
    return decode(entries)


def _counters(fd: int, slot: int) -> tuple[int, int]:
    ncpu = bpf.possible_cpus()
    raw = bpf.map_lookup(fd, struct.pack("=I", slot), COUNTERS.size * ncpu)
    if raw is None:
        return 0, 0
    packets = bytes_ = 0
    for cpu in range(ncpu):
        p, b = COUNTERS.unpack_from(raw, cpu * COUNTERS.size)
        packets, bytes_ = packets + p, bytes_ + b
    return packets, bytes_


def _write_rules(
    rules_fd: int, stats_fd: int, wanted: list[Rule], current: dict[int, Rule]
) -> None:
    """Make the rules map hold ``wanted`` while packets flow: every wanted key is written
    (a key that stays is overwritten in place) before any stale key is deleted, so a packet
    both rule sets treat alike is never treated otherwise mid-update (a key deleted before
    its replacement was written let traffic through). A rule that stays keeps its slot and
    counters; a new rule gets a slot no current key points at (the stats map has room for
    the old and the new set), zeroed before it is used."""
    kept = {rule: slot for slot, rule in current.items() if rule in wanted}
    free = [s for s in range(1, bpf.MapInfo(stats_fd).max_entries) if s not in current]
    zero = bytes(COUNTERS.size * bpf.possible_cpus())
    slots = []
    for rule in wanted:
        slot = kept.get(rule)
        if slot is None:
            if not free:  # a program loaded by an older ipcnet, with a smaller stats map
                raise Unsupported("no free counter slot: detach the xdp filter and attach it again")
            slot = free.pop(0)
            bpf.map_update(stats_fd, struct.pack("=I", slot), zero)
        slots.append((slot, rule))
    entries = map_entries(slots)
    for key, value in entries.items():
        bpf.map_update(rules_fd, key, value)
    for key in bpf.map_keys(rules_fd, KEY.size):
        if key not in entries:
            bpf.map_delete(rules_fd, key)


def _load(rules: list[Rule], source: Path) -> tuple[int, dict[str, int]]:
    """Load the program with fresh maps holding ``rules``: (program fd, {map name: fd})."""
    obj = elf.read(build.compiled(source).read_bytes())
    missing = {RULES_MAP, STATS_MAP} - set(obj.maps)
    if missing:
        raise Unsupported(f"{source} does not define the map(s) {', '.join(sorted(missing))}")
    maps: dict[str, int] = {}
    try:
        for m in obj.maps.values():
            maps[m.name] = bpf.map_create(
                m.type, m.key_size, m.value_size, m.max_entries, m.flags, m.name
            )
        _write_rules(maps[RULES_MAP], maps[STATS_MAP], rules, {})
        insns = bytearray(obj.insns)
        for index, name in obj.map_relocs:
            off = index * 8
            insns[off + 1] = (insns[off + 1] & 0x0F) | (_PSEUDO_MAP_FD << 4)  # src_reg
            struct.pack_into("=i", insns, off + 4, maps[name])
        # a rejection loads it again with the verifier's log, to say why
        return bpf.prog_load(bytes(insns), obj.license, obj.program), maps
    except BaseException:
        bpf.close(*maps.values())
        raise


def _programs(link: rtnetlink.Link) -> list[Program]:
    found: list[Program] = []
    held = bpf.xdp_links() if link.xdp else {}
    for a in link.xdp:
        fd = bpf.prog_fd_if_loaded(a.prog_id)
        if fd is None:  # gone since the dump
            continue
        try:
            info = bpf.ProgInfo(fd)
            rules: list[Rule] = []
            ours = _maps_of(info) if info.name == PROGRAM else None
            if ours is not None:
                try:
                    rules = [r for _, r in sorted(_slots(ours[RULES_MAP]).items())]
                finally:
                    bpf.close(*ours.values())
            found.append(
                Program(
                    link.name,
                    link.index,
                    a.prog_id,
                    a.mode,
                    info.name,
                    info.tag,
                    info.jited,
                    rules,
                    ours is not None,
                    held.get((a.prog_id, link.index)),
                )
            )
        finally:
            bpf.close(fd)
    return found


def _maps_of(info: bpf.ProgInfo) -> dict[str, int] | None:
    """Descriptors of ipcnet's two maps held by the program, or None if it is not ipcnet's."""
    maps: dict[str, int] = {}
    for map_id in info.map_ids:
        fd = bpf.map_fd_by_id(map_id)
        name = bpf.MapInfo(fd).name
        if name in (RULES_MAP, STATS_MAP) and name not in maps:
            maps[name] = fd
        else:
            bpf.close(fd)
    if len(maps) != 2:
        bpf.close(*maps.values())
        return None
    return maps


def attach(
    dev: str,
    drop: Iterable[str | Rule] = (),
    count: Iterable[str | Rule] = (),
    mode: Mode = "auto",
    replace: bool = False,
    source: str | Path = build.SOURCE,
) -> XdpFilter:
    """Attach ipcnet's XDP filter to ``dev`` with these rules; ``mode`` auto uses the
    driver's native XDP where it has one, else generic (``handle.mode`` says which).
    ``source``: another C program to build and load instead, declaring the same maps."""
    if mode not in _ATTACH_FLAGS:
        raise Unsupported(f"unknown xdp mode {mode!r} (native, generic or auto)")
    rules = parse_rules(drop, count)
    require_privileges()
    with translating("attach xdp to", dev):
        link = rtnetlink.get_link(dev)
        there_now = _programs(link)
        for p in there_now:  # neither --replace nor a plain attach can move it
            if p.held():
                raise AddressInUse(f"attach xdp to {dev}: {p.held()}")
        if link.xdp and not replace:
            there = link.xdp[0]
            name = next((f" {p.name!r}" for p in there_now if p.prog_id == there.prog_id), "")
            raise AddressInUse(
                f"attach xdp to {dev}: it already has xdp program {there.prog_id}{name} in "
                f"{there.mode} mode; left alone (--replace replaces it)"
            )
    with translating("load", dev):
        prog_fd, maps = _load(rules, Path(source))
    ns = -1
    try:
        with translating("attach xdp to", dev):
            flags = _ATTACH_FLAGS[mode] | (0 if replace else rtnetlink.XDP_FLAGS_UPDATE_IF_NOEXIST)
            # with replace, a program in the other mode is removed first (the kernel will
            # not run both)
            clear = [a.mode for a in link.xdp] if replace else []
            rtnetlink.attach_xdp(link.index, prog_fd, flags, clear)
            prog_id = bpf.ProgInfo(prog_fd).id
            now = next((a for a in rtnetlink.get_link(dev).xdp if a.prog_id == prog_id), None)
            if now is None:
                raise IPCError(f"attach xdp to {dev}: replaced by another program at once")
            ns = netns.current()
        return XdpFilter(dev, link.index, now.mode, prog_fd, maps, ns)
    except BaseException:
        bpf.close(prog_fd, *maps.values(), ns)
        raise


def find(dev: str) -> XdpFilter:
    """A handle on the ipcnet filter already attached to ``dev`` (by an earlier process)."""
    require_privileges()
    with translating("open xdp filter on", dev):
        link = rtnetlink.get_link(dev)
        if not link.xdp:
            raise Unsupported(f"no xdp program on {dev} (ipcnet xdp attach {dev} ... adds one)")
        a = link.xdp[0]
        fd = bpf.prog_fd_by_id(a.prog_id)
        info = bpf.ProgInfo(fd)
        maps = _maps_of(info) if info.name == PROGRAM else None
        if maps is None:
            bpf.close(fd)
            raise Unsupported(
                f"xdp program {a.prog_id} {info.name!r} on {dev} was not loaded by ipcnet"
            )
        try:
            return XdpFilter(dev, link.index, a.mode, fd, maps, netns.current())
        except BaseException:
            bpf.close(fd, *maps.values())
            raise


def detach(dev: str, force: bool = False) -> list[Program]:
    """Remove the XDP program(s) from ``dev``: ipcnet's, or any with ``force``, each only
    if it is still the one attached when it is removed. Returns what was removed (empty if
    there was nothing)."""
    require_privileges()
    with translating("detach xdp from", dev):
        link = rtnetlink.get_link(dev)
        programs = _programs(link)
        for p in programs:
            if not p.ipcnet and not force:
                raise Unsupported(
                    f"detach xdp from {dev}: program {p.prog_id} {p.name!r} was not loaded by "
                    "ipcnet; left alone (--force removes it)"
                )
            if p.held():
                raise AddressInUse(f"detach xdp from {dev}: {p.held()}")
        removed = []
        for p in programs:  # each only if still attached: one that replaced it is left alone
            fd = bpf.prog_fd_if_loaded(p.prog_id)
            if fd is not None:
                try:
                    if rtnetlink.detach_xdp(link.index, p.mode, fd):
                        removed.append(p)
                finally:
                    bpf.close(fd)
        return removed


def programs(dev: str | None = None) -> list[Program]:
    """Every interface's XDP programs (or ``dev``'s): id, name, mode, jited, rules."""
    require_privileges()
    with translating("list xdp programs on", dev or "all interfaces"):
        found = [rtnetlink.get_link(dev)] if dev else rtnetlink.links()
        return [p for link in found for p in _programs(link)]
