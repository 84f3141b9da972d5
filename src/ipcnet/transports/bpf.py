"""The bpf(2) system call, through ctypes: maps, program loading and object info.

Role: the few BPF commands ipcnet's XDP filter (``ipcnet.xdp``) needs, each a function
that packs ``union bpf_attr`` (linux/bpf.h) with ``struct`` and calls
``syscall(__NR_bpf, ...)``. Rules: no policy here; the errnos that are answers, not
failures, are answered here (ENOENT: no such key, the last key, a program gone); every
other failure is a plain OSError (errno set), which the caller runs inside
``xdperrors.translating`` to become an ipcnet error; descriptors returned are the
caller's to close.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from functools import cache

# commands (enum bpf_cmd)
MAP_CREATE, MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, MAP_GET_NEXT_KEY = 0, 1, 2, 3, 4
PROG_LOAD = 5
PROG_GET_FD_BY_ID, MAP_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD = 13, 14, 15
LINK_GET_FD_BY_ID, LINK_GET_NEXT_ID = 30, 31
LINK_TYPE_XDP = 6  # enum bpf_link_type

PROG_TYPE_XDP = 6
BPF_XDP = 37  # enum bpf_attach_type
MAP_TYPE_HASH, MAP_TYPE_PERCPU_ARRAY = 1, 6
ANY = 0  # map update flags: BPF_ANY

OBJ_NAME_LEN = 16
_NR_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
_ATTR_SIZE = 128  # large enough for every command used here; the kernel wants the rest zero

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class VerifierError(OSError):
    """BPF_PROG_LOAD failed; ``log`` is what the kernel's verifier wrote."""

    def __init__(self, code: int, reason: str, log: str) -> None:
        super().__init__(code, reason)
        self.log = log


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    machine = platform.machine()
    nr = _NR_BPF.get(machine)
    if nr is None:
        raise OSError(errno.EOPNOTSUPP, f"bpf(2) syscall number unknown on {machine}")
    ret = int(_libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr))))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def _attr(fmt: str, *values: object, offset: int = 0) -> ctypes.Array[ctypes.c_char]:
    attr = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into(fmt, attr, offset, *values)
    return attr


def _addr(buf: ctypes.Array[ctypes.c_char] | None) -> int:
    return 0 if buf is None else ctypes.addressof(buf)


def _name(name: str) -> bytes:
    return name.encode()[: OBJ_NAME_LEN - 1]


@cache
def possible_cpus() -> int:
    """How many per-CPU copies a per-CPU map value has (the kernel's possible CPUs)."""
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count


def map_create(
    map_type: int, key_size: int, value_size: int, max_entries: int, flags: int, name: str
) -> int:
    attr = _attr(
        "=IIIIIII16s", map_type, key_size, value_size, max_entries, flags, 0, 0, _name(name)
    )
    return _bpf(MAP_CREATE, attr)


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    """The value stored under ``key`` (``value_size`` bytes), or None if there is none."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_size)
    try:
        _bpf(MAP_LOOKUP_ELEM, _attr("=I4xQQ", fd, _addr(k), _addr(v)))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    return v.raw


def map_update(fd: int, key: bytes, value: bytes, flags: int = ANY) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    _bpf(MAP_UPDATE_ELEM, _attr("=I4xQQQ", fd, _addr(k), _addr(v), flags))


def map_delete(fd: int, key: bytes) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    _bpf(MAP_DELETE_ELEM, _attr("=I4xQ", fd, _addr(k)))


def map_keys(fd: int, key_size: int) -> list[bytes]:
    """Every key of a hash map (BPF_MAP_GET_NEXT_KEY from no key until ENOENT)."""
    keys: list[bytes] = []
    nxt = ctypes.create_string_buffer(key_size)
    cur: ctypes.Array[ctypes.c_char] | None = None
    while True:
        try:
            _bpf(MAP_GET_NEXT_KEY, _attr("=I4xQQ", fd, _addr(cur), _addr(nxt)))
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return keys
            raise
        keys.append(nxt.raw)
        cur = ctypes.create_string_buffer(nxt.raw, key_size)


def prog_load(insns: bytes, license: str, name: str, log_size: int = 1 << 22) -> int:
    """Load an XDP program; its descriptor. If the kernel refuses it, load it again with
    the verifier's log (level 1, into a buffer of ``log_size`` bytes): that rejection
    raises ``VerifierError``, which carries the log so the caller can show its last lines,
    and the first refusal's errno (bpf(2): EACCES deemed unsafe, EINVAL invalid, E2BIG too
    large): the second load's may be ENOSPC, which says only that the log did not fit (the
    kernel keeps its tail). A refusal for want of privilege (EPERM) is no verdict on the
    program: it is raised as it came, with no second load."""
    try:
        return _prog_load(insns, license, name, None)
    except OSError as first:
        if first.errno == errno.EPERM:
            raise
        log = ctypes.create_string_buffer(log_size)
        try:
            return _prog_load(insns, license, name, log)
        except OSError as exc:
            text = log.value.decode(errors="replace")
            code = first.errno or exc.errno or 0
            raise VerifierError(code, os.strerror(code), text) from exc


def _prog_load(
    insns: bytes, license: str, name: str, log: ctypes.Array[ctypes.c_char] | None
) -> int:
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    attr = _attr(
        "=IIQQIIQII16sII",
        PROG_TYPE_XDP,
        len(insns) // 8,
        _addr(code),
        _addr(lic),
        0 if log is None else 1,  # log_level
        0 if log is None else len(log),
        _addr(log),
        0,  # kern_version
        0,  # prog_flags
        _name(name),
        0,  # prog_ifindex
        BPF_XDP,  # expected_attach_type
    )
    return _bpf(PROG_LOAD, attr)


def prog_fd_by_id(prog_id: int) -> int:
    return _bpf(PROG_GET_FD_BY_ID, _attr("=I", prog_id))


def prog_fd_if_loaded(prog_id: int) -> int | None:
    """``prog_fd_by_id``, or None if the program is gone (unloaded since its id was read)."""
    try:
        return prog_fd_by_id(prog_id)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def map_fd_by_id(map_id: int) -> int:
    return _bpf(MAP_GET_FD_BY_ID, _attr("=I", map_id))


def _info(fd: int, size: int, map_ids: ctypes.Array[ctypes.c_char] | None = None) -> bytes:
    info = ctypes.create_string_buffer(size)
    if map_ids is not None:  # bpf_prog_info.nr_map_ids (52) and .map_ids (56)
        struct.pack_into("=IQ", info, 52, len(map_ids) // 4, _addr(map_ids))
    _bpf(OBJ_GET_INFO_BY_FD, _attr("=IIQ", fd, size, _addr(info)))
    return info.raw


class ProgInfo:
    """The parts of ``struct bpf_prog_info`` ipcnet shows."""

    __slots__ = ("id", "jited", "map_ids", "name", "tag", "type")

    def __init__(self, fd: int) -> None:
        ids = ctypes.create_string_buffer(4 * 64)
        raw = _info(fd, 88, ids)
        self.type, self.id = struct.unpack_from("=II", raw, 0)
        self.tag = raw[8:16].hex()
        jited_len, nr_maps = (
            struct.unpack_from("=I", raw, 16)[0],
            struct.unpack_from("=I", raw, 52)[0],
        )
        self.jited = jited_len > 0
        self.map_ids = list(struct.unpack_from(f"={min(nr_maps, 64)}I", ids.raw, 0))
        self.name = raw[64:80].split(b"\0", 1)[0].decode(errors="replace")


class MapInfo:
    """The parts of ``struct bpf_map_info`` ipcnet needs."""

    __slots__ = ("id", "key_size", "max_entries", "name", "type", "value_size")

    def __init__(self, fd: int) -> None:
        raw = _info(fd, 40)
        self.type, self.id, self.key_size, self.value_size, self.max_entries = struct.unpack_from(
            "=IIIII", raw, 0
        )
        self.name = raw[24:40].split(b"\0", 1)[0].decode(errors="replace")


def xdp_links() -> dict[tuple[int, int], int]:
    """Every XDP bpf link (BPF_LINK_CREATE, as libxdp attaches): {(program id, ifindex):
    link id}. A link holds its program on the interface: netlink can neither remove nor
    replace it ("Can't replace active BPF XDP link"); its owner, or ``bpftool link
    detach``, can. A link gone while walked is skipped."""
    found: dict[tuple[int, int], int] = {}
    link_id = 0
    while True:
        attr = _attr("=I", link_id)
        try:
            _bpf(LINK_GET_NEXT_ID, attr)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return found
            raise
        (link_id,) = struct.unpack_from("=I", attr, 4)  # next_id
        try:
            fd = _bpf(LINK_GET_FD_BY_ID, _attr("=I", link_id))
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                continue
            raise
        try:  # struct bpf_link_info: type, id, prog_id, then (8-aligned) xdp.ifindex
            kind, _, prog_id, _, ifindex = struct.unpack_from("=IIIII", _info(fd, 64))
        finally:
            os.close(fd)
        if kind == LINK_TYPE_XDP:
            found[prog_id, ifindex] = link_id


def close(*fds: int) -> None:
    """Let go of program and map descriptors, and a handle's namespace descriptor
    (negative ones stand for none)."""
    for fd in fds:
        if fd >= 0:
            os.close(fd)
