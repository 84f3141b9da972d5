"""Descriptors handed to us: ``fd://N`` and systemd socket activation (``systemd://``).

Role: find out what an inherited descriptor is (socket of which family and type, listening
or connected, or a pipe/tty/file) and open it as what it is: a stream (one-way when the
descriptor is open one way: a pipe end, a file opened for reading or writing only), a
listener or a datagram endpoint; the wrong one is refused with what to call instead.
Rules: systemd descriptors are used only when LISTEN_PID names this process, as
sd_listen_fds(3) requires; they start at fd 3 and are chosen by index or LISTEN_FDNAMES
(each "unknown" when unset, and by name only when there is one per fd); the variables are
read once and unset, and a descriptor taken gets FD_CLOEXEC, so children inherit neither.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
import stat

from ipcnet.addresses import FD_MAX, Address
from ipcnet.errors import AddressNotAvailable, Unsupported
from ipcnet.transports import udp
from ipcnet.transports.base import StreamTransport
from ipcnet.transports.datagram import DatagramEndpoint
from ipcnet.transports.oserrors import translate
from ipcnet.transports.pipes import PipeStream
from ipcnet.transports.sockets import SocketListener, stream_for

SD_LISTEN_FDS_START = 3
_NUMBER = re.compile(r"[0-9]+")


def connect(address: Address, timeout: float | None) -> StreamTransport:
    fd = resolve_fd(address)
    where = str(address)
    if not is_socket(fd):
        read, write = _directions(fd)
        return PipeStream(fd if read else None, fd if write else None, where, shared=True)
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
    fd = resolve_fd(address)
    if not is_socket(fd):
        raise Unsupported(f"{address} is not a socket; connect() to use it as a stream")
    sock = adopt_socket(fd)
    if sock.type != socket.SOCK_DGRAM:
        sock.detach()
        raise Unsupported(f"{address} is not a datagram socket")
    # an inherited wildcard udp socket answers from each datagram's address too
    return udp.from_destination(DatagramEndpoint(sock, str(address), max_size=max_size))


def is_datagram(address: Address, fd: int | None = None) -> bool:
    """Whether ``address`` names datagrams: by its scheme, or for fd:// and systemd:// by
    the socket (``fd``: the one a SIGUSR2 upgrade handed over for it), as a server must
    know to serve a ``ListenDatagram=`` socket."""
    if address.spec.transport != "inherited":
        return address.kind == "datagram"
    fd = resolve_fd(address) if fd is None else fd
    if not is_socket(fd):
        return False
    sock = adopt_socket(fd)
    try:
        return sock.type == socket.SOCK_DGRAM
    finally:
        sock.detach()


def resolve_fd(address: Address) -> int:
    """The descriptor number an fd:// or systemd:// address stands for."""
    if address.scheme == "fd":
        assert address.fd is not None
        return _open(address.fd, address, f"descriptor {address.fd} is not open in this process")
    return _systemd_fd(address)


def _open(fd: int, address: Address, why: str) -> int:
    """``fd``, checked open (``why`` says what it not being open means)."""
    try:
        os.fstat(fd)
    except OSError as exc:
        if exc.errno == errno.EBADF:
            raise AddressNotAvailable(f"address not available: {address} ({why})") from exc
        raise translate(exc, "inspect", address) from exc
    return fd


def _directions(fd: int) -> tuple[bool, bool]:
    """(readable, writable) by the descriptor's access mode: a pipe end, or a file opened
    O_RDONLY or O_WRONLY, is a one-way stream (polling a pipe's write end for input waited
    for ever; writing a read-only one failed as if we had closed it)."""
    mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    return mode != os.O_WRONLY, mode != os.O_RDONLY


def is_socket(fd: int) -> bool:
    return stat.S_ISSOCK(os.fstat(fd).st_mode)


def adopt_socket(fd: int) -> socket.socket:
    """A socket object for an inherited socket descriptor (family and type from the kernel)."""
    return socket.socket(fileno=fd)


def is_listening(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
_passed: dict[str, str] = {}  # the variables as first read; they leave the environment then


def _environment() -> dict[str, str]:
    """sd_listen_fds(3) with unset_environment: read once, then unset so that children
    (exec:, a hook's shell) do not take the sockets for theirs; set again, read again."""
    global _passed
    if any(name in os.environ for name in _VARIABLES):
        _passed = {name: os.environ.pop(name) for name in _VARIABLES if name in os.environ}
    return _passed


def _systemd_fd(address: Address) -> int:
    env = _environment()
    pid = env.get("LISTEN_PID")
    if pid is not None and not _NUMBER.fullmatch(pid.lstrip()):
        raise AddressNotAvailable(f"address not available: {address} (bad LISTEN_PID {pid!r})")
    if pid is None or int(pid) != os.getpid():
        raise AddressNotAvailable(
            f"address not available: {address} (no sockets passed by systemd: "
            "LISTEN_PID is not this process)"
        )
    text = env.get("LISTEN_FDS")
    if text is None:
        raise AddressNotAvailable(f"address not available: {address} (LISTEN_FDS is unset)")
    if not _NUMBER.fullmatch(text.lstrip()) or not 0 < int(text) <= FD_MAX - SD_LISTEN_FDS_START:
        raise AddressNotAvailable(f"address not available: {address} (bad LISTEN_FDS {text!r})")
    count = int(text)
    value = env.get("LISTEN_FDNAMES", "")
    names = value.split(":") if value else ["unknown"] * count  # sd_listen_fds_with_names(3)
    wanted = address.name or ""
    if wanted == "" or wanted.isdigit():
        index = int(wanted or "0")
    elif len(names) != count:
        raise AddressNotAvailable(
            f"address not available: {address} "
            f"(LISTEN_FDNAMES has {len(names)} names for {count} fds)"
        )
    elif wanted in names:
        index = names.index(wanted)
    else:
        raise AddressNotAvailable(
            f"address not available: {address} (LISTEN_FDNAMES has {', '.join(names)})"
        )
    if index >= count:
        raise AddressNotAvailable(f"address not available: {address} (only {count} fds passed)")
    fd = SD_LISTEN_FDS_START + index
    _open(fd, address, f"LISTEN_FDS is {count} but descriptor {fd} is not open")
    os.set_inheritable(fd, False)  # sd_listen_fds(3) sets FD_CLOEXEC
    return fd
