"""TCP and UDP sockets from inet addresses, the way the seeds build them.

Role: getaddrinfo with AF_UNSPEC (or the family the scheme pins), then socket/connect or
socket/bind/listen. Rules: a client tries every result in turn and reports the first
failure if none works; a server on the wildcard host binds one IPv6 socket with
IPV6_V6ONLY off (so IPv4 clients reach it too) and falls back to IPv4 where the machine
has no IPv6; a named host binds the first result that works.
"""

from __future__ import annotations

import socket

from ipcnet.addresses import Address
from ipcnet.errors import ResolveError, Timeout
from ipcnet.transports.oserrors import translate

_FAMILY = {None: socket.AF_UNSPEC, 4: socket.AF_INET, 6: socket.AF_INET6}
_NO_NAME = {
    getattr(socket, name)
    for name in ("EAI_NONAME", "EAI_NODATA", "EAI_ADDRFAMILY")
    if hasattr(socket, name)
}


def _resolve(
    address: Address, socktype: int, passive: bool
) -> list[tuple[int, int, int, tuple[object, ...]]]:
    host = address.host or None
    flags = socket.AI_PASSIVE if passive else 0
    try:
        infos = socket.getaddrinfo(
            host, address.port, _FAMILY[address.family_hint], socktype, 0, flags
        )
    except socket.gaierror as exc:
        raise _unresolved(exc, address, socktype) from exc
    except OSError as exc:
        raise translate(exc, "resolve", address) from exc
    if passive and host is None:
        # wildcard: prefer the IPv6 socket, which is dual-stack unless the scheme says 6
        infos.sort(key=lambda info: info[0] != socket.AF_INET6)
    return [(family, kind, proto, sockaddr) for family, kind, proto, _, sockaddr in infos]


def _unresolved(exc: socket.gaierror, address: Address, socktype: int) -> ResolveError:
    """getaddrinfo's failure, naming the part of the address at fault."""
    reason = (exc.strerror or str(exc)).lower()
    what = f"cannot resolve {address}"
    if exc.errno == socket.EAI_SERVICE:
        proto = "udp" if socktype == socket.SOCK_DGRAM else "tcp"
        return ResolveError(f"{what}: unknown {proto} service {address.port!r} ({reason})")
    if exc.errno in _NO_NAME and address.host and "%" in address.host:  # an IPv6 literal
        addr, _, zone = address.host.partition("%")
        return ResolveError(
            f"{what}: no scope {zone!r} for {addr}: give an interface's name (link-local "
            f"addresses only) or its number ({reason})"
        )
    if exc.errno in _NO_NAME and address.host:
        family = f" with an IPv{address.family_hint} address" if address.family_hint else ""
        return ResolveError(f"{what}: no host {address.host!r}{family} ({reason})")
    return ResolveError(f"{what}: {reason}")


def connect(address: Address, socktype: int, timeout: float | None) -> socket.socket:
    """A socket connected to the first address that accepts; errors name the URL."""
    first_error: OSError | None = None
    for family, kind, proto, sockaddr in _resolve(address, socktype, passive=False):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            first_error = first_error or exc
            continue
        sock.settimeout(None)
        return sock
    assert first_error is not None
    if isinstance(first_error, TimeoutError) and timeout is not None:
        raise Timeout(f"timed out: connect to {address} after {timeout:g} s") from first_error
    raise translate(first_error, "connect to", address) from first_error


def bind(
    address: Address, socktype: int, backlog: int | None, reuse_port: bool = False
) -> socket.socket:
    """A socket bound to the address (and listening, when backlog is not None)."""
    first_error: OSError | None = None
    for family, kind, proto, sockaddr in _resolve(address, socktype, passive=True):
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as exc:  # no IPv6 on this machine, say
            first_error = first_error or exc
            continue
        try:
            if socktype == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                v6only = address.family_hint == 6 or bool(address.host)
                # Linux binds a v4-mapped address only on a dual-stack socket
                v6only = v6only and not str(sockaddr[0]).startswith("::ffff:")
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
            sock.bind(sockaddr)
            if backlog is not None:
                sock.listen(backlog)
        except OSError as exc:
            sock.close()
            first_error = first_error or exc
            continue
        return sock
    assert first_error is not None
    raise translate(
        first_error, "listen on" if backlog is not None else "bind", address
    ) from first_error
