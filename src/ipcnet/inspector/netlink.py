"""The fast path: dump socket tables through NETLINK_SOCK_DIAG, like ``ss`` does.

Role: one request per table (tcp/udp/udplite/raw x IPv4/IPv6 via inet_diag, unix via
unix_diag, AF_PACKET via packet_diag), parsed straight from the receive buffer into
``SocketRow`` tuples.
Rules:
- Standard library only: an AF_NETLINK socket (``transports.netlink``, which does the
  I/O) and ``struct`` (linux/inet_diag.h, linux/unix_diag.h, linux/packet_diag.h,
  linux/sock_diag.h). One dump
  at a time per netlink socket.
- The kernel filters by state (the request's bitmask), so ``-l`` costs nothing for the
  sockets it does not want; everything else is filtered by the caller.
- Hot loop: precompiled ``Struct.unpack_from`` on the buffer, no regex, no per-row dicts;
  rows are built with ``tuple.__new__``.
- A table the kernel cannot dump (module not loaded, EPERM in a sandbox, the socket
  refused or failing) raises ``NetlinkUnavailable``; the caller falls back to /proc for
  that table only.
- The dump shows the caller's network namespace only: the kernel uses the netns of the
  netlink socket, which is ours.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from collections.abc import Callable, Iterator

from ipcnet.errors import IPCError, Unsupported
from ipcnet.inspector.model import TIMERS, SocketRow, state_name
from ipcnet.transports.netlink import NetlinkSocket, interface_names

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300

UDIAG_SHOW_NAME = 0x01
UDIAG_SHOW_PEER = 0x04
UDIAG_SHOW_RQLEN = 0x10
UDIAG_SHOW_UID = 0x40
UNIX_DIAG_NAME = 0
UNIX_DIAG_PEER = 2
UNIX_DIAG_RQLEN = 4
UNIX_DIAG_UID = 7
INET_DIAG_SHUTDOWN = 8  # u8, sent for every full socket (not for request or TIME_WAIT ones)
INET_DIAG_SKV6ONLY = 11  # u8, sent for AF_INET6 sockets in LISTEN or CLOSE

PACKET_SHOW_INFO = 0x01
PACKET_SHOW_MEMINFO = 0x10
PACKET_DIAG_INFO = 0
PACKET_DIAG_UID = 5
PACKET_DIAG_MEMINFO = 6
SK_MEMINFO_RMEM_ALLOC = 0
SK_MEMINFO_WMEM_ALLOC = 2

ALL_STATES = 0xFFF  # ss's SS_ALL: ESTABLISHED..CLOSING (see filters.ALL_STATE_NAMES)

_NLHDR = struct.Struct("=IHHII")  # nlmsg_len, type, flags, seq, pid
_INET_REQ = struct.Struct("=BBBBI HH16s16sI8s")  # inet_diag_req_v2
_UNIX_REQ = struct.Struct("=BBHIII8s")  # unix_diag_req
# inet_diag_msg: family state timer retrans | sport dport (be16) | src dst | if cookie |
# expires rqueue wqueue uid inode
_INET_MSG = struct.Struct("=xBBBHH16s16sI8xIIIII")
_INET_ROW = struct.Struct("=IH2xI4x" + _INET_MSG.format[1:])  # nlmsghdr + inet_diag_msg
_UNIX_MSG = struct.Struct("=BBBxI8x")  # family type state pad ino cookie
_PACKET_REQ = struct.Struct("=BBHII8s")  # packet_diag_req: family protocol pad ino show cookie
_PACKET_MSG = struct.Struct("=BBHI8x")  # packet_diag_msg: family type num ino cookie
_RTA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_U32X2 = struct.Struct("=II")
_ERR = struct.Struct("=i")

_UNIX_TYPES = {socket.SOCK_STREAM: "stream", socket.SOCK_DGRAM: "dgram", 5: "seqpacket"}
_INET_TYPES = {"tcp": "stream", "udp": "dgram", "udplite": "dgram", "raw": "raw"}
_PROTO_NUMBERS = {"tcp": 6, "udp": 17, "udplite": 136, "raw": 255}  # IPPROTO_*

_BUFSIZE = 1 << 16


class NetlinkUnavailable(Unsupported):
    """The kernel cannot dump this table through sock_diag (use /proc)."""


def open_socket() -> NetlinkSocket:
    """A NETLINK_SOCK_DIAG socket; raises NetlinkUnavailable if the kernel refuses one."""
    try:
        return NetlinkSocket(NETLINK_SOCK_DIAG, "sock_diag")
    except IPCError as exc:
        raise NetlinkUnavailable(str(exc)) from exc


def _batches(sock: NetlinkSocket, request: bytes, seq: int) -> Iterator[tuple[bytearray, int]]:
    """Send one dump request; yield (buffer, bytes received) per recv until NLMSG_DONE.

    The caller walks the messages of a batch itself (see ``_messages``); the generator
    only checks for DONE and ERROR, so the hot loop pays one yield per ~32 KiB, not per row.
    """
    header = _NLHDR.pack(
        _NLHDR.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
    )
    buf = bytearray(_BUFSIZE + 128)  # slack: a row's struct may be read past a short tail
    unpack_hdr = _NLHDR.unpack_from
    try:
        sock.send(header + request)
    except IPCError as exc:
        raise NetlinkUnavailable(str(exc)) from exc
    while True:
        try:
            n = sock.recv_into(buf, _BUFSIZE)
        except IPCError as exc:
            raise NetlinkUnavailable(str(exc)) from exc
        if n == 0:
            raise NetlinkUnavailable("netlink dump ended without NLMSG_DONE")
        # the last message of a batch tells whether the dump is over
        off = last = 0
        while off + 16 <= n:
            length = unpack_hdr(buf, off)[0]
            if length < 16:
                raise NetlinkUnavailable("malformed netlink message")
            last = off
            off += (length + 3) & ~3
        length, mtype, _flags, mseq, _pid = unpack_hdr(buf, last)
        done = mtype == NLMSG_DONE and mseq == seq
        # a dump that fails ends with an error code: in NLMSG_ERROR, or in NLMSG_DONE's
        # payload (ENOENT there: no handler for the protocol, e.g. raw_diag not loaded)
        if (mtype == NLMSG_ERROR or done) and mseq == seq and length >= 20:
            code = -_ERR.unpack_from(buf, last + 16)[0]
            if code > 0 or not done:
                raise NetlinkUnavailable(f"sock_diag: {os.strerror(code)}")
        yield buf, (last if done else n)
        if done:
            return


def _messages(buf: bytearray, n: int, seq: int) -> Iterator[tuple[int, int]]:
    """(payload offset, payload length) of each SOCK_DIAG_BY_FAMILY message of a batch."""
    unpack_hdr = _NLHDR.unpack_from
    off = 0
    while off + 16 <= n:
        length, mtype, _flags, mseq, _pid = unpack_hdr(buf, off)
        if mtype == SOCK_DIAG_BY_FAMILY and mseq == seq:
            yield off + 16, length - 16
        off += (length + 3) & ~3


def dump_inet(
    sock: NetlinkSocket, proto: str, family: int, states: int = ALL_STATES, seq: int = 1
) -> list[SocketRow]:
    """Every tcp/udp/raw socket of one address family whose state bit is in ``states``."""
    ipproto = _PROTO_NUMBERS[proto]
    if proto == "tcp" and states & (1 << 3):
        states |= 1 << 12  # request sockets (NEW_SYN_RECV) are what users call SYN_RECV
    # raw_diag reads the wanted protocol from the pad byte; IPPROTO_RAW means "all".
    pad = socket.IPPROTO_RAW if proto == "raw" else 0
    req = _INET_REQ.pack(family, ipproto, 0, pad, states, 0, 0, b"", b"", 0, b"\xff" * 8)
    name = proto if family == socket.AF_INET else proto + "6"
    stype = _INET_TYPES[proto]
    is_tcp = proto == "tcp"
    v4 = family == socket.AF_INET
    unpack_row = _INET_ROW.unpack_from
    new = tuple.__new__
    row_cls = SocketRow
    hosts: dict[bytes, str] = {}  # raw address -> display form: most rows share a few
    ports: dict[int, int] = {}  # native-order u16 -> the port number (be16 swapped)
    timers = {k: v for k, v in TIMERS.items()} if is_tcp else {}
    states_by_num = {n: state_name(name, n) for n in range(14)}
    if is_tcp:  # a TCP socket in CLOSE is dumped only as bound-inactive (states bit 13)
        states_by_num[7] = "BOUND_INACTIVE"
    v6only_states = () if v4 else (7, 10)
    devices: dict[int, str] = {}
    rows: list[SocketRow] = []
    append = rows.append
    for buf, n in _batches(sock, req, seq):
        off = 0
        while off + 16 <= n:
            # header and inet_diag_msg in one call
            (length, mtype, mseq, st, timer, retrans, sp, dp, src, dst, ifx, expires, rq, wq,
             uid, ino) = unpack_row(buf, off)  # fmt: skip
            row_off = off
            off += (length + 3) & ~3
            if mtype != SOCK_DIAG_BY_FAMILY or mseq != seq:
                continue
            lh = hosts.get(src)
            if lh is None:
                lh = hosts[src] = _host(src, v4)
            rh = hosts.get(dst)
            if rh is None:
                rh = hosts[dst] = _host(dst, v4)
            sport = ports.get(sp)
            if sport is None:
                sport = ports[sp] = _PORT_SWAP(sp)
            dport = ports.get(dp)
            if dport is None:
                dport = ports[dp] = _PORT_SWAP(dp)
            # mini sockets carry placeholder 0s (inet_twsk_diag_fill, inet_req_diag_fill)
            if timer == 3 and is_tcp:  # a TIME_WAIT socket, also in substate FIN_WAIT2
                rq = wq = uid = None
            elif st == 3 and is_tcp and _u8(buf, row_off, length, INET_DIAG_SHUTDOWN) is None:
                uid = None  # a request socket: its queues are empty, its uid unknown
            state = states_by_num.get(st) or state_name(name, st)
            v6only = None
            if st in v6only_states:
                skv6only = _u8(buf, row_off, length, INET_DIAG_SKV6ONLY)
                v6only = None if skv6only is None else skv6only != 0
            dev = None
            if ifx:
                dev = devices.get(ifx)
                if dev is None:
                    dev = devices[ifx] = _device(ifx)
            if is_tcp:
                append(
                    new(
                        row_cls,
                        (
                            name, stype, state, lh, sport, rh, dport, None, rq, wq, uid,
                            ino or None, timers.get(timer) or str(timer), expires, retrans,
                            None, "netlink", True, None, None, None, v6only, dev, None,
                        ),
                    )
                )  # fmt: skip
            else:
                append(
                    new(
                        row_cls,
                        (
                            name, stype, state, lh, sport, rh, dport, None, rq, wq, uid,
                            ino or None, None, None, None, None, "netlink", True, None, None,
                            None, v6only, dev, None,
                        ),
                    )
                )  # fmt: skip
    return rows


def _device(index: int) -> str:
    """The name of interface ``index``; ``if<index>`` (as ss prints it) if it has none."""
    try:
        name = interface_names().get(index)
    except IPCError:
        name = None
    return name or f"if{index}"


def _u8(buf: bytearray, off: int, length: int, wanted: int) -> int | None:
    """The u8 attribute ``wanted`` of the row at ``off``, None if absent."""
    pos, end = off + _INET_ROW.size, off + length
    while pos + 4 <= end:
        alen, atype = _RTA.unpack_from(buf, pos)
        if alen < 4:
            break
        if atype == wanted and alen >= 5:
            return buf[pos + 4]
        pos += (alen + 3) & ~3
    return None


_MAPPED = b"\0" * 10 + b"\xff\xff"


def _host(raw: bytes, v4: bool) -> str:
    if v4:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if raw[:12] == _MAPPED:
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return socket.inet_ntop(socket.AF_INET6, raw)


def _port_swap_native(p: int) -> int:
    """A be16 read as a native u16 -> the port number."""
    return ((p & 0xFF) << 8) | (p >> 8)


_PORT_SWAP: Callable[[int], int] = _port_swap_native if sys.byteorder == "little" else (lambda p: p)


def dump_unix(sock: NetlinkSocket, states: int = ALL_STATES, seq: int = 1) -> list[SocketRow]:
    """Every unix socket whose state bit is in ``states``, with exact names and peers."""
    show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID
    req = _UNIX_REQ.pack(socket.AF_UNIX, 0, 0, states, 0, show, b"\xff" * 8)
    unpack_msg = _UNIX_MSG.unpack_from
    unpack_rta = _RTA.unpack_from
    u32 = _U32.unpack_from
    u32x2 = _U32X2.unpack_from
    fsdecode = os.fsdecode
    new = tuple.__new__
    types = _UNIX_TYPES
    names = {n: state_name("unix", n) for n in range(14)}
    rows: list[SocketRow] = []
    append = rows.append
    for buf, n in _batches(sock, req, seq):
        for off, length in _messages(buf, n, seq):
            _fam, stype, st, ino = unpack_msg(buf, off)
            path: str | None = None
            abstract: bool | None = None
            peer = rq = wq = uid = None
            pos, end = off + 16, off + length
            while pos + 4 <= end:
                alen, atype = unpack_rta(buf, pos)
                if alen < 4:
                    break
                if atype == UNIX_DIAG_NAME:
                    raw = bytes(buf[pos + 4 : pos + alen])
                    abstract = raw[:1] == b"\0"  # else a file, whose name may start with "@"
                    if abstract:
                        path = "@" + fsdecode(raw[1:])
                    else:
                        path = fsdecode(raw.partition(b"\0")[0])
                elif atype == UNIX_DIAG_PEER:
                    peer = u32(buf, pos + 4)[0] or None
                elif atype == UNIX_DIAG_RQLEN:
                    rq, wq = u32x2(buf, pos + 4)
                elif atype == UNIX_DIAG_UID:
                    uid = u32(buf, pos + 4)[0]
                pos += (alen + 3) & ~3
            append(
                new(
                    SocketRow,
                    (
                        "unix",
                        types.get(stype, str(stype)),
                        names.get(st) or state_name("unix", st),
                        None,
                        None,
                        None,
                        None,
                        path,
                        rq,
                        wq,
                        uid,
                        ino or None,
                        None,
                        None,
                        None,
                        peer,
                        "netlink",
                        True,
                        None,
                        None,
                        None,
                        None,
                        None,
                        abstract,
                    ),
                )
            )
    return rows


_PACKET_TYPES = {socket.SOCK_RAW: "raw", socket.SOCK_DGRAM: "dgram"}


def dump_packet(sock: NetlinkSocket, seq: int = 1) -> list[SocketRow]:
    """Every AF_PACKET socket (state UNCONN, as ss shows them): the EtherType it takes as its
    local port, its device, queues (rmem/wmem allocated, as ss's Recv-Q), uid and inode."""
    show = PACKET_SHOW_INFO | PACKET_SHOW_MEMINFO
    req = _PACKET_REQ.pack(socket.AF_PACKET, 0, 0, 0, show, b"\xff" * 8)
    unpack_rta = _RTA.unpack_from
    u32 = _U32.unpack_from
    new = tuple.__new__
    devices: dict[int, str] = {}
    rows: list[SocketRow] = []
    for buf, n in _batches(sock, req, seq):
        for off, length in _messages(buf, n, seq):
            _fam, stype, num, ino = _PACKET_MSG.unpack_from(buf, off)
            dev = uid = rq = wq = None
            pos, end = off + _PACKET_MSG.size, off + length
            while pos + 4 <= end:
                alen, atype = unpack_rta(buf, pos)
                if alen < 4:
                    break
                if atype == PACKET_DIAG_INFO and alen >= 8:
                    ifx = u32(buf, pos + 4)[0]
                    if ifx:
                        dev = devices.get(ifx)
                        if dev is None:
                            dev = devices[ifx] = _device(ifx)
                elif atype == PACKET_DIAG_UID and alen >= 8:
                    uid = u32(buf, pos + 4)[0]
                elif atype == PACKET_DIAG_MEMINFO and alen >= 4 + 4 * (SK_MEMINFO_WMEM_ALLOC + 1):
                    rq = u32(buf, pos + 4 + 4 * SK_MEMINFO_RMEM_ALLOC)[0]
                    wq = u32(buf, pos + 4 + 4 * SK_MEMINFO_WMEM_ALLOC)[0]
                pos += (alen + 3) & ~3
            rows.append(
                new(
                    SocketRow,
                    (
                        "packet", _PACKET_TYPES.get(stype, str(stype)), "UNCONN", None,
                        num, None, None, None, rq, wq, uid, ino or None, None, None,
                        None, None, "netlink", True, None, None, None, None, dev, None,
                    ),
                )
            )  # fmt: skip
    return rows


__all__ = [
    "ALL_STATES",
    "NetlinkSocket",
    "NetlinkUnavailable",
    "dump_inet",
    "dump_packet",
    "dump_unix",
    "open_socket",
]
