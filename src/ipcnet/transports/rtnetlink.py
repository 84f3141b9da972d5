"""rtnetlink for XDP: which program each interface runs, and attaching or removing one.

Role: ``RTM_GETLINK`` (one interface, or a dump of all) read for ``IFLA_XDP``, and
``RTM_SETLINK`` with a nested ``IFLA_XDP`` to attach or detach, exactly what
``ip link set dev X xdp ...`` sends, over a NETLINK_ROUTE ``netlink.NetlinkSocket``
(linux/rtnetlink.h and linux/if_link.h, packed with ``struct``). Rules: an error reply is
a ``NetlinkError`` (an OSError) carrying the kernel's extended ack text ("native and
generic XDP can't be active at the same time"), which the caller runs inside
``xdperrors.translating`` to become an ipcnet error; the errnos that are answers (a
program replaced meanwhile, an interface gone) are answered here; the caller's network
namespace is the one seen and changed, or the one named by ``netns`` (a descriptor from
``netns.current()``): an interface index means something only in its own namespace.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from ipcnet.transports.netlink import NetlinkSocket

RTM_GETLINK, RTM_SETLINK = 18, 19
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_ACK_TLVS = 0x200
NETLINK_EXT_ACK, SOL_NETLINK = 11, 270
NLMSGERR_ATTR_MSG = 1
NLA_F_NESTED = 0x8000

IFLA_IFNAME, IFLA_XDP, IFLA_ALT_IFNAME = 3, 43, 53
IFNAMSIZ = 16  # with the terminating NUL
ALTIFNAMSIZ = 128  # an alternative name (ip link property add dev X altname NAME)
IFLA_XDP_FD, IFLA_XDP_ATTACHED, IFLA_XDP_FLAGS, IFLA_XDP_PROG_ID = 1, 2, 3, 4
IFLA_XDP_DRV_PROG_ID, IFLA_XDP_SKB_PROG_ID, IFLA_XDP_HW_PROG_ID = 5, 6, 7
IFLA_XDP_EXPECTED_FD = 8

XDP_FLAGS_UPDATE_IF_NOEXIST, XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE = 1, 2, 4
XDP_FLAGS_HW_MODE, XDP_FLAGS_REPLACE = 8, 16
# IFLA_XDP_ATTACHED values, and the flags that address each mode when detaching
MODES = {1: "native", 2: "generic", 3: "offload"}
MODE_FLAGS = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE, "offload": 8}
_MODE_ATTRS = {IFLA_XDP_DRV_PROG_ID: "native", IFLA_XDP_SKB_PROG_ID: "generic", 7: "offload"}

_NLHDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_RTA = struct.Struct("=HH")


@dataclass(frozen=True)
class Attached:
    """One XDP program on an interface."""

    prog_id: int
    mode: str  # native, generic or offload


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    xdp: tuple[Attached, ...]  # usually none or one; two when native and offload coexist


class NetlinkError(OSError):
    """The kernel refused a request; ``said`` is its extended ack message, if any."""

    def __init__(self, code: int, reason: str, said: str) -> None:
        super().__init__(code, reason)
        self.said = said


def _attr(kind: int, payload: bytes) -> bytes:
    raw = _RTA.pack(_RTA.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _attrs(buf: bytes, off: int, end: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while off + _RTA.size <= end:
        length, kind = _RTA.unpack_from(buf, off)
        if length < _RTA.size:
            break
        found[kind & ~NLA_F_NESTED] = buf[off + _RTA.size : off + length]
        off += (length + 3) & ~3
    return found


def _request(msg_type: int, flags: int, body: bytes, netns: int | None = None) -> list[bytes]:
    """Send one request; return the payload of every reply message until done or acked."""
    sock = NetlinkSocket(socket.NETLINK_ROUTE, "route", netns)
    try:
        sock.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        sock.send(_NLHDR.pack(_NLHDR.size + len(body), msg_type, flags, 1, 0) + body)
        buf = bytearray(1 << 16)
        replies: list[bytes] = []
        while True:
            data = bytes(memoryview(buf)[: sock.recv_into(buf, len(buf))])
            off = 0
            while off + _NLHDR.size <= len(data):
                length, kind, mflags, _seq, _pid = _NLHDR.unpack_from(data, off)
                payload = data[off + _NLHDR.size : off + length]
                off += (length + 3) & ~3
                if kind == NLMSG_DONE:
                    return replies
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", payload)
                    if code == 0:
                        return replies
                    said = ""
                    if mflags & NLM_F_ACK_TLVS:  # after the error code and the echoed header
                        (echoed,) = struct.unpack_from("=I", payload, 4)
                        start = 4 + (echoed if not mflags & 0x100 else _NLHDR.size)
                        text = _attrs(payload, start, len(payload)).get(NLMSGERR_ATTR_MSG, b"")
                        said = text.rstrip(b"\0").decode(errors="replace")
                    raise NetlinkError(-code, os.strerror(-code), said)
                replies.append(payload)
            if not flags & NLM_F_DUMP and replies:
                return replies
    finally:
        sock.close()


def _link(payload: bytes) -> Link:
    _family, _type, index, _flags, _change = _IFINFO.unpack_from(payload)
    attrs = _attrs(payload, _IFINFO.size, len(payload))
    name = attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode()
    xdp: list[Attached] = []
    nested = attrs.get(IFLA_XDP)
    if nested:
        x = _attrs(nested, 0, len(nested))
        (attached,) = x.get(IFLA_XDP_ATTACHED, b"\0")[:1]
        if attached == 4:  # XDP_ATTACHED_MULTI: one id per mode
            for kind, mode in _MODE_ATTRS.items():
                if kind in x:
                    xdp.append(Attached(struct.unpack("=I", x[kind])[0], mode))
        elif attached and IFLA_XDP_PROG_ID in x:
            prog_id = struct.unpack("=I", x[IFLA_XDP_PROG_ID])[0]
            xdp.append(Attached(prog_id, MODES.get(attached, str(attached))))
    return Link(index, name, tuple(xdp))


def get_link(name: str) -> Link:
    """The interface called ``name``, its name or one of its alternative names, as
    ``ip link show dev NAME`` finds it (OSError ENODEV if there is none). A name longer
    than IFLA_IFNAME takes is asked for as IFLA_ALT_IFNAME."""
    raw = name.encode()
    if len(raw) >= ALTIFNAMSIZ:  # the kernel's answer would be ERANGE, from its policy
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
    kind = IFLA_IFNAME if len(raw) < IFNAMSIZ else IFLA_ALT_IFNAME
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(kind, raw + b"\0")
    (reply,) = _request(RTM_GETLINK, NLM_F_REQUEST, body)
    return _link(reply)


def link_by_index(index: int, netns: int | None = None) -> Link | None:
    """The interface with index ``index`` (of namespace ``netns``), or None if it is gone."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0)
    try:
        (reply,) = _request(RTM_GETLINK, NLM_F_REQUEST, body, netns)
    except NetlinkError as exc:
        if exc.errno != errno.ENODEV:
            raise
        return None
    return _link(reply)


def links() -> list[Link]:
    """Every interface of this network namespace."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return [_link(p) for p in _request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, body)]


def set_xdp(
    index: int, fd: int, flags: int, expected_fd: int | None = None, netns: int | None = None
) -> None:
    """Attach program ``fd`` to interface ``index`` (``fd`` -1 detaches). With
    ``expected_fd`` the kernel changes it only if that program is the one attached."""
    nested = _attr(IFLA_XDP_FD, struct.pack("=i", fd))
    if expected_fd is not None:
        flags |= XDP_FLAGS_REPLACE
        nested += _attr(IFLA_XDP_EXPECTED_FD, struct.pack("=i", expected_fd))
    nested += _attr(IFLA_XDP_FLAGS, struct.pack("=I", flags))
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0) + _attr(IFLA_XDP | NLA_F_NESTED, nested)
    _request(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, body, netns)


def attach_xdp(index: int, fd: int, flags: int, clear: Iterable[str] = ()) -> None:
    """``set_xdp``; if the kernel refuses because a program runs in another mode (EEXIST:
    it will not run native and generic at once), remove the programs of the modes in
    ``clear`` first and attach again."""
    try:
        set_xdp(index, fd, flags)
    except NetlinkError as exc:
        clear = list(clear)
        if exc.errno != errno.EEXIST or not clear:
            raise
        for mode in clear:
            set_xdp(index, -1, MODE_FLAGS[mode])
        set_xdp(index, fd, flags)


def detach_xdp(index: int, mode: str, expected_fd: int, netns: int | None = None) -> bool:
    """Remove program ``expected_fd`` from interface ``index`` (of namespace ``netns``) if
    it is still the one attached in ``mode``; False if another replaced it (EEXIST) or the
    interface is gone (ENODEV), and nothing was done."""
    try:
        set_xdp(index, -1, MODE_FLAGS[mode], expected_fd, netns)
    except NetlinkError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENODEV):
            raise
        return False
    return True
