"""Descriptors handed to us: ``fd://N`` and systemd socket activation (``systemd://``).

Role: find out what an inherited descriptor is (socket of which family and type, listening
or connected, or a pipe/tty/file) and open it as what it is: a stream, a listener or a
datagram endpoint; the wrong one is refused with what to call instead.
Rules: systemd descriptors are used only when LISTEN_PID names this process, as
sd_listen_fds(3) requires; they start at fd 3 and are chosen by index or LISTEN_FDNAMES.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

from ipcnet.addresses import Address
from ipcnet.errors import AddressNotAvailable, Unsupported
from ipcnet.transports import udp
from ipcnet.transports.base import StreamTransport
from ipcnet.transports.datagram import DatagramEndpoint
from ipcnet.transports.oserrors import translate
from ipcnet.transports.pipes import PipeStream
from ipcnet.transports.sockets import SocketListener, stream_for

SD_LISTEN_FDS_START = 3


def connect(address: Address, timeout: float | None) -> StreamTransport:
    fd = resolve_fd(address)
    where = str(address)
    if not is_socket(fd):
        return PipeStream(fd, fd, where, shared=True)
    sock = adopt_socket(fd)
    if is_listening(sock):
        sock.detach()
        raise Unsupported(f"{address} is a listening socket; use listen() to accept on it")
    if sock.type == socket.SOCK_DGRAM:
        sock.detach()
        raise Unsupported(f"{address} is a datagram socket; use open_datagram()")
    return stream_for(sock, where)


def listen(address: Address, backlog: int, mode: int, reuse_port: bool) -> SocketListener:
    fd = resolve_fd(address)
    if not is_socket(fd):
        raise Unsupported(f"{address} is not a socket; connect() to use it as a stream")
    sock = adopt_socket(fd)
    if not is_listening(sock):
        sock.detach()
        raise Unsupported(f"{address} is not a listening socket; connect() to use it")
    return SocketListener(sock, address)


def datagram(address: Address, listen: bool, max_size: int, mode: int) -> DatagramEndpoint:
    sock = adopt_socket(resolve_fd(address))
    if sock.type != socket.SOCK_DGRAM:
        sock.detach()
        raise Unsupported(f"{address} is not a datagram socket")
    # an inherited wildcard udp socket answers from each datagram's address too
    return udp.from_destination(DatagramEndpoint(sock, str(address), max_size=max_size))


def resolve_fd(address: Address) -> int:
    """The descriptor number an fd:// or systemd:// address stands for."""
    if address.scheme == "fd":
        assert address.fd is not None
        try:
            os.fstat(address.fd)
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise AddressNotAvailable(
                    f"address not available: {address} "
                    f"(descriptor {address.fd} is not open in this process)"
                ) from exc
            raise translate(exc, "inspect", address) from exc
        return address.fd
    return _systemd_fd(address)


def is_socket(fd: int) -> bool:
    return stat.S_ISSOCK(os.fstat(fd).st_mode)


def adopt_socket(fd: int) -> socket.socket:
    """A socket object for an inherited socket descriptor (family and type from the kernel)."""
    return socket.socket(fileno=fd)


def is_listening(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def _systemd_fd(address: Address) -> int:
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        raise AddressNotAvailable(
            f"address not available: {address} (no sockets passed by systemd: "
            "LISTEN_PID is not this process)"
        )
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        count = 0
    if count <= 0:
        raise AddressNotAvailable(f"address not available: {address} (LISTEN_FDS is 0 or unset)")
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    wanted = address.name or ""
    if wanted == "":
        index = 0
    elif wanted.isdigit():
        index = int(wanted)
    elif wanted in names:
        index = names.index(wanted)
    else:
        raise AddressNotAvailable(
            f"address not available: {address} "
            f"(LISTEN_FDNAMES has {', '.join(names) or 'no names'})"
        )
    if index >= count:
        raise AddressNotAvailable(f"address not available: {address} (only {count} fds passed)")
    return SD_LISTEN_FDS_START + index
