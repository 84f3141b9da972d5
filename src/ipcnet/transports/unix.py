"""unix:// and unixpacket://: UNIX-domain stream and seqpacket sockets (paths and @names).

Role: socket/connect and socket/bind/listen for unix, unixgram and unixpacket addresses
(``connect_socket``, ``bind_socket``; unixgram's endpoints are in ``unixgram``).
Rules for a path listener: an existing file is removed only if it is a socket and nothing
answers on it (a live one is "address in use", anything else is left alone); the new
socket file gets ``mode`` (0600 by default) before listen(), so nobody else can connect in
between; on close it is removed only if it is still the file this listener created.
Abstract names live in no filesystem and are never stat()ed or unlinked.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Callable

from ipcnet.addresses import Address
from ipcnet.errors import AddressInUse
from ipcnet.transports import procfs
from ipcnet.transports.oserrors import translate
from ipcnet.transports.sockets import SocketListener, SocketStream, stream_for

SOCKTYPE = {
    "unix": socket.SOCK_STREAM,
    "unixpacket": socket.SOCK_SEQPACKET,
    "unixgram": socket.SOCK_DGRAM,
}


def connect(address: Address, timeout: float | None) -> SocketStream:
    return stream_for(connect_socket(address, timeout), str(address))


def listen(address: Address, backlog: int, mode: int, reuse_port: bool) -> SocketListener:
    sock, cleanup = bind_socket(address, backlog, mode)
    return SocketListener(sock, address, cleanup)


def connect_socket(address: Address, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, SOCKTYPE[address.scheme])
    try:
        sock.settimeout(timeout)
        sock.connect(address.unix_sockaddr)
        sock.settimeout(None)
    except OSError as exc:
        sock.close()
        raise translate(exc, "connect to", address) from exc
    return sock


def bind_socket(
    address: Address, backlog: int | None, mode: int = 0o600
) -> tuple[socket.socket, Callable[[], None]]:
    """A bound (and, with a backlog, listening) socket and the function that cleans up after it."""
    socktype = SOCKTYPE[address.scheme]
    if not address.abstract:
        _remove_stale(address, socktype)
    sock = socket.socket(socket.AF_UNIX, socktype)
    try:
        sock.bind(address.unix_sockaddr)
        if not address.abstract:
            os.chmod(address.path or "", mode)
        if backlog is not None:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise translate(exc, "listen on" if backlog is not None else "bind", address) from exc
    return sock, claim(address)


def claim(address: Address) -> Callable[[], None]:
    """What removes the socket file ``address`` names now, if it is still that file
    when called, in this process (nothing for abstract names): a forked child that closes
    its copy of a listener, as the notes' fork server does, leaves the parent's file."""
    if address.abstract:
        return _nothing
    path = address.path or ""
    identity, owner = _identity(path), os.getpid()

    def cleanup() -> None:
        if identity is not None and os.getpid() == owner and _identity(path) == identity:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    return cleanup


def _nothing() -> None:
    pass


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _remove_stale(address: Address, socktype: int) -> None:
    path = address.path or ""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return  # nothing to remove: bind() says what is wrong with the path
    except OSError as exc:
        raise translate(exc, "check", address) from exc
    if not stat.S_ISSOCK(st.st_mode):
        raise AddressInUse(f"address in use: {address} exists and is not a socket (not removed)")
    if _listening_at(path):
        raise AddressInUse(f"address in use: a server listens on {address}")
    # not in /proc under this spelling: ask by connecting (a listener would queue the probe)
    probe = socket.socket(socket.AF_UNIX, socktype)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError as exc:
        if exc.errno != errno.ECONNREFUSED:
            raise translate(exc, "check", address) from exc
        os.unlink(path)  # stale: a socket file nobody listens on
        return
    finally:
        probe.close()
    raise AddressInUse(f"address in use: a server listens on {address}")


_ACCEPTCON = 0x10000  # __SO_ACCEPTCON in /proc/net/unix's Flags column: a listening socket


def _listening_at(path: str) -> bool:
    """Whether /proc/net/unix shows a socket listening on ``path`` (as spelled here, or
    made absolute), learnt without connecting: a connect probe would be queued at a live
    listener, and a one-peer one (``ipcnet connect --listen``) would take it as its peer."""
    text = procfs.read_text("/proc/net/unix")
    names = {path, os.path.abspath(path)}
    for line in (text or "").splitlines()[1:]:
        fields = line.split(None, 7)
        if len(fields) == 8 and fields[7] in names and int(fields[3], 16) & _ACCEPTCON:
            return True
    return False
