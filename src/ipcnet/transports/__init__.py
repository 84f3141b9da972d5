"""Transports: the only code in ipcnet that touches sockets and file descriptors.

Role: turn a parsed Address into an open StreamTransport, listener or DatagramEndpoint.
Rules: one function per direction (open_stream, open_listener, open_datagram) dispatches
on the scheme; every OSError leaves as an ipcnet error (see ``oserrors``).
"""

from __future__ import annotations

import socket
import subprocess

from ipcnet.addresses import Address
from ipcnet.errors import Unsupported
from ipcnet.transports import inet, inherited, pipes, unix
from ipcnet.transports.base import StreamTransport
from ipcnet.transports.datagram import DatagramEndpoint
from ipcnet.transports.oserrors import translating
from ipcnet.transports.pipes import FifoListener, PipeStream
from ipcnet.transports.shm import ShmListener
from ipcnet.transports.sockets import SocketListener, SocketStream, stream_for

Listener = SocketListener | FifoListener | ShmListener

__all__ = [
    "DatagramEndpoint",
    "FifoListener",
    "Listener",
    "PipeStream",
    "SocketListener",
    "SocketStream",
    "StreamTransport",
    "make_pipe",
    "make_socketpair",
    "open_datagram",
    "open_listener",
    "open_stream",
    "spawn",
    "stdio",
]

make_pipe = pipes.make_pipe
stdio = pipes.stdio


def spawn(address: Address) -> tuple[PipeStream, subprocess.Popen[bytes]]:
    return pipes.spawn(address)


def make_socketpair(kind: int = socket.SOCK_STREAM) -> tuple[SocketStream, SocketStream]:
    """socketpair(2): two connected unix sockets."""
    with translating("create", "socketpair:"):
        a, b = socket.socketpair(socket.AF_UNIX, kind)
    return stream_for(a, "socketpair:"), stream_for(b, "socketpair:")


def open_stream(address: Address, connect_timeout: float | None) -> StreamTransport:
    """Connect to (or open) a stream address."""
    scheme = address.scheme
    where = str(address)
    if scheme in ("tcp", "tcp4", "tcp6"):
        return stream_for(inet.connect(address, socket.SOCK_STREAM, connect_timeout), where)
    if scheme in ("unix", "unixpacket"):
        return stream_for(unix.connect(address, connect_timeout), where)
    if scheme == "fifo":
        return pipes.open_fifo_writer(address, connect_timeout)
    if scheme == "stdio":
        return pipes.stdio()
    if scheme == "exec":
        return pipes.spawn(address)[0]
    if scheme in ("fd", "systemd"):
        return _inherited_stream(address)
    if scheme == "shm":  # issue 13
        from ipcnet.transports import shm

        return shm.connect(address, connect_timeout)
    if scheme in ("pipe", "socketpair"):
        raise Unsupported(f"{address} has no name to connect to; call ipcnet.{scheme}() instead")
    raise Unsupported(f"{address} is a datagram address; use open_datagram()")


def _inherited_stream(address: Address) -> StreamTransport:
    fd = inherited.resolve_fd(address)
    where = str(address)
    if not inherited.is_socket(fd):
        return PipeStream(fd, fd, where, shared=True)
    sock = inherited.adopt_socket(fd)
    if inherited.is_listening(sock):
        sock.detach()
        raise Unsupported(f"{address} is a listening socket; use listen() to accept on it")
    if sock.type == socket.SOCK_DGRAM:
        sock.detach()
        raise Unsupported(f"{address} is a datagram socket; use open_datagram()")
    return stream_for(sock, where)


def open_listener(
    address: Address, backlog: int = 128, mode: int = 0o600, reuse_port: bool = False
) -> Listener:
    """Bind and listen on a stream address (a fifo listener creates the fifo)."""
    scheme = address.scheme
    if scheme in ("tcp", "tcp4", "tcp6"):
        sock = inet.bind(address, socket.SOCK_STREAM, backlog, reuse_port=reuse_port)
        return SocketListener(sock, address.with_port(sock.getsockname()[1]))
    if scheme in ("unix", "unixpacket"):
        sock, cleanup = unix.bind(address, backlog, mode)
        return SocketListener(sock, address, cleanup)
    if scheme == "fifo":
        return FifoListener(address, mode)
    if scheme == "shm":  # issue 13
        return ShmListener(address, backlog, mode)
    if scheme in ("fd", "systemd"):
        fd = inherited.resolve_fd(address)
        if not inherited.is_socket(fd):
            raise Unsupported(f"{address} is not a socket; connect() to use it as a stream")
        sock = inherited.adopt_socket(fd)
        if not inherited.is_listening(sock):
            sock.detach()
            raise Unsupported(f"{address} is not a listening socket; connect() to use it")
        return SocketListener(sock, address)
    raise Unsupported(f"cannot listen on {address}: not a stream address with a name")


def open_datagram(
    address: Address,
    *,
    listen: bool = False,
    max_size: int = 65536,
    mode: int = 0o600,
) -> DatagramEndpoint:
    """A datagram endpoint bound to the address (listen=True) or connected to it."""
    scheme = address.scheme
    where = str(address)
    if scheme in ("udp", "udp4", "udp6"):
        if listen:
            sock = inet.bind(address, socket.SOCK_DGRAM, None)
            bound = address.with_port(sock.getsockname()[1])
            return DatagramEndpoint(sock, str(bound), max_size=max_size)
        sock = inet.connect(address, socket.SOCK_DGRAM, None)
        return DatagramEndpoint(sock, where, max_size=max_size)
    if scheme == "unixgram":
        if listen:
            sock, cleanup = unix.bind(address, None, mode)
            return DatagramEndpoint(sock, where, max_size=max_size, cleanup=cleanup)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with translating("connect to", address):
            try:
                sock.bind("")  # autobind an abstract name so that replies can reach us
                sock.connect(address.unix_sockaddr)
            except OSError:
                sock.close()
                raise
        return DatagramEndpoint(sock, where, max_size=max_size)
    if scheme == "mq":  # issue 13
        from ipcnet.transports import mq

        return mq.open_queue(address, listen=listen, mode=mode)
    if scheme in ("fd", "systemd"):
        fd = inherited.resolve_fd(address)
        sock = inherited.adopt_socket(fd)
        if sock.type != socket.SOCK_DGRAM:
            sock.detach()
            raise Unsupported(f"{address} is not a datagram socket")
        return DatagramEndpoint(sock, where, max_size=max_size)
    raise Unsupported(f"{address} is not a datagram address (use udp:// or unixgram://)")
