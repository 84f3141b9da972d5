"""Descriptor passing over unix stream and seqpacket sockets (SCM_RIGHTS).

Role: ``send_fds(sock, data, fds)`` sends bytes with descriptors attached; ``recv_fds(sock,
size, max_fds)`` receives bytes and the descriptors that came with them. Rules:
- On a stream socket the descriptors travel with the first byte of ``data``, so ``data``
  must not be empty; the receiver gets them with the read that returns that byte (the
  kernel never merges two descriptor-carrying sends into one read).
- At most ``max_fds`` are taken (``MAX_FDS`` = 253 by default, the kernel's SCM_MAX_FD);
  when more arrive (MSG_CTRUNC), every descriptor that did arrive is closed and
  ``LimitExceeded`` is raised: none leaks, none is half-delivered. When they fit but this
  process has no free descriptors for them all (also MSG_CTRUNC), it is ``Busy``, the same way.
- ``size`` is 1 or more: the kernel hands a stream's descriptors to a 0-byte read (which
  looks like eof) and drops a seqpacket packet read with no room.
- A descriptor in ``fds`` that is not open is named in the error (the kernel says EBADF).
- Received descriptors are close-on-exec (MSG_CMSG_CLOEXEC). A plain read of a socket
  (Channel.read) leaves no descriptor behind: the kernel closes those nobody asked for.
- A seqpacket packet larger than ``size`` raises ``Truncated`` (its descriptors closed).
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import socket
from collections.abc import Sequence

from ipcnet.errors import Busy, Closed, LimitExceeded, Truncated, Unsupported
from ipcnet.transports.oserrors import translate, translating

MAX_FDS = 253  # SCM_MAX_FD in the kernel: the most one sendmsg may carry
_INT = array.array("i").itemsize


def send_fds(sock: socket.socket, data: bytes | memoryview, fds: Sequence[int], where: str) -> None:
    """sendmsg(2) ``data`` with ``fds`` attached (the whole of ``data``, blocking)."""
    _check(sock, where)
    if len(fds) > MAX_FDS:
        raise LimitExceeded(
            f"cannot send {len(fds)} descriptors at once on {where} (max {MAX_FDS})"
        )
    if not data:
        raise Unsupported(f"send_fds on {where} needs at least one byte to carry the descriptors")
    view = memoryview(data).cast("B")
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
    with translating("send descriptors to", where):
        try:
            sent = sock.sendmsg([view], ancillary if fds else [], socket.MSG_NOSIGNAL)
        except OSError as exc:
            bad = [fd for fd in fds if not _is_open(fd)] if exc.errno == errno.EBADF else []
            if bad:
                raise Closed(
                    f"closed: descriptor {bad[0]} is not open: cannot send it on {where}"
                ) from exc
            raise
        if sent < len(view):  # the rest carries no descriptors: a plain sendall
            sock.sendall(view[sent:], socket.MSG_NOSIGNAL)


def recv_fds(sock: socket.socket, size: int, max_fds: int, where: str) -> tuple[bytes, list[int]]:
    """recvmsg(2): up to ``size`` bytes (b"" at EOF) and the descriptors sent with them."""
    _check(sock, where)
    if not 0 <= max_fds <= MAX_FDS:
        raise LimitExceeded(f"max_fds must be 0..{MAX_FDS}, not {max_fds}")
    if size < 1:
        raise LimitExceeded(f"size must be 1 or more, not {size} (descriptors come with a byte)")
    space = socket.CMSG_SPACE(max(max_fds, 1) * _INT)
    try:
        data, ancillary, flags, _ = sock.recvmsg(size, space, socket.MSG_CMSG_CLOEXEC)
    except OSError as exc:
        raise translate(exc, "receive descriptors from", where) from exc
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            got = array.array("i")
            got.frombytes(payload[: len(payload) - len(payload) % _INT])
            fds.extend(got)
    if flags & socket.MSG_CTRUNC and len(fds) < (space - socket.CMSG_LEN(0)) // _INT:
        _close_all(fds)  # room for more, yet cut: the kernel could not install them all
        raise Busy(
            f"too many open files: receive descriptors from {where}; the {len(fds)} that "
            f"could be taken were closed (the {len(data)} bytes with them were consumed)"
        )
    if flags & socket.MSG_CTRUNC or len(fds) > max_fds:
        _close_all(fds)
        raise LimitExceeded(
            f"more than {max_fds} descriptors arrived from {where}; all were closed "
            f"(the {len(data)} bytes with them were consumed)"
        )
    if flags & socket.MSG_TRUNC:
        _close_all(fds)
        raise Truncated(f"a packet from {where} was larger than {size} bytes; it was dropped")
    return data, fds


def _check(sock: socket.socket, where: str) -> None:
    if sock.fileno() < 0:
        raise Closed(f"closed: cannot pass descriptors on {where}: this side closed it")
    if sock.family != socket.AF_UNIX or sock.type not in (
        socket.SOCK_STREAM,
        socket.SOCK_SEQPACKET,
    ):
        raise Unsupported(
            f"descriptor passing needs a unix stream or seqpacket socket, not {where}"
        )


def _is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except (OSError, ValueError, OverflowError):
        return False
    return True


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
