"""TCP and UDP sockets from inet addresses, the way the seeds build them.

Role: getaddrinfo with AF_UNSPEC (or the family the scheme pins), then socket/connect or
socket/bind/listen. Rules: a client tries every result in turn, in getaddrinfo's order
(RFC 6724), as socket.create_connection does; unlike it, the timeout is one deadline for
the whole connect, and an attempt with more addresses after it gets only its share of the
time left (curl's rule), so an address that drops SYNs cannot use up the next one's time.
If none works, the first failure is raised, its message naming the address it was and
every other address tried. A server on the wildcard host (``tcp://:P``) binds one IPv6
socket with IPV6_V6ONLY off (so IPv4 clients reach it too) and falls back to IPv4 where
the machine has no IPv6; ``tcp://[::]:P`` is IPv6 only (nginx's ``listen [::]:P``); a
named host binds one socket, on its first address (``localhost``: ::1 where /etc/hosts
lists it first), or the next only where the first cannot exist here: a taken address
fails the listen.

Not RFC 8305 happy eyeballs (trio's default, asyncio's ``happy_eyeballs_delay``): racing
a second connect after 250 ms needs non-blocking sockets and opens connections that are
closed at once, which servers and relays count and log; glibc already puts an address
with no route or no source address last, and the deadline's shares bound a black hole.
The deadline counts a name's lookup too (Go's Dialer, curl): it runs on a lookup thread.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import queue
import socket
import threading
import time
from collections.abc import Callable

from ipcnet.addresses import Address
from ipcnet.errors import AddressNotAvailable, IPCError, ResolveError, Timeout
from ipcnet.transports.oserrors import translate
from ipcnet.transports.sockets import scope_name

_FAMILY = {None: socket.AF_UNSPEC, 4: socket.AF_INET, 6: socket.AF_INET6}
_NOT_HERE = {errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT}  # next address
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


def _resolve_within(
    address: Address, socktype: int, timeout: float | None
) -> list[tuple[int, int, int, tuple[object, ...]]]:
    """``_resolve`` for a client, a name's lookup bounded by ``timeout`` (Go's Dialer and
    curl count it in the connect's time): getaddrinfo cannot be interrupted, so a lookup
    that may ask DNS runs on a ``_Lookups`` thread, left to finish if time runs out."""
    if timeout is None or not address.host or _is_literal(address.host):
        return _resolve(address, socktype, passive=False)  # no DNS: instant
    box: list[object] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            box.append(_resolve(address, socktype, passive=False))
        except BaseException as exc:  # handed to the caller, raised in its thread
            box.append(exc)
        done.set()

    _LOOKUPS.submit(lookup)
    if not done.wait(timeout):
        raise Timeout(f"timed out: resolve {address} after {_seconds(timeout)} s")
    result = box[0]
    if isinstance(result, BaseException):
        raise result
    return result  # type: ignore[return-value]


class _Lookups:
    """Threads that run name lookups and stay for more (a new thread costs 0.5-1 ms, a
    handoff 40 us): one more starts when none is idle, up to ``LIMIT`` (a lookup that hangs
    keeps its thread until glibc gives up); one idle for ``IDLE`` seconds ends, so that a
    process that forks later has none (CPython 3.12 warns of a fork with threads); a
    forked child starts afresh (``after_in_child``)."""

    LIMIT = 32
    IDLE = 5.0

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0  # threads waiting for a job
        self._threads = 0
        self._backlog = 0  # jobs queued with no thread for them (at the limit)

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif self._threads < self.LIMIT:
                self._threads += 1
                threading.Thread(target=self._work, name="ipcnet lookup", daemon=True).start()
            else:
                self._backlog += 1  # the next thread free takes it
            self._jobs.put(job)

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self.IDLE)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # (else a job was put for this thread just now)
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue
            job()
            with self._lock:
                if self._backlog:
                    self._backlog -= 1
                else:
                    self._idle += 1


_LOOKUPS = _Lookups()
os.register_at_fork(after_in_child=_LOOKUPS._reset)


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
    """A socket connected to the first address that accepts, all within ``timeout``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    infos = _resolve_within(address, socktype, timeout)
    failures: list[tuple[tuple[object, ...], OSError, float | None]] = []
    for i, (family, kind, proto, sockaddr) in enumerate(infos):
        share = None
        if deadline is not None:
            share = max(deadline - time.monotonic(), 0.0) / (len(infos) - i)
            if share <= 0 and failures:
                break  # no time left for the rest (rounding: the last one had it all)
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as exc:  # no IPv6 on this machine, say
            failures.append((sockaddr, exc, share))
            continue
        try:
            sock.settimeout(share)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            failures.append((sockaddr, exc, share))
            continue
        sock.settimeout(None)
        return sock
    raise _connect_failed(address, failures)


def _connect_failed(
    address: Address, failures: list[tuple[tuple[object, ...], OSError, float | None]]
) -> IPCError:
    """The first failure, naming its address (unless the URL does) and the others'."""
    sockaddr, exc, share = failures[0]
    at = where(address, sockaddr)
    error: IPCError
    if isinstance(exc, TimeoutError) and not exc.errno and share is not None:
        error = Timeout(f"timed out: connect to {at} after {_seconds(share)} s")
    elif _needs_zone(sockaddr, exc):
        error = _zone_needed(address, sockaddr)
    else:
        error = translate(exc, "connect to", at)
    if len(failures) > 1:
        others = ", ".join(f"{_sockaddr_text(sa)} ({_why(e, t)})" for sa, e, t in failures[1:])
        error.args = (f"{error}; also tried {others}",)
    error.__cause__ = exc
    return error


def _why(exc: OSError, share: float | None) -> str:
    if isinstance(exc, TimeoutError) and not exc.errno and share is not None:
        return f"timed out after {_seconds(share)} s"
    return (exc.strerror or str(exc)).lower()


def _seconds(value: float) -> str:
    """0.3, 0.5 (of 0.4993 left), 30, 0.05: to a tenth, which is what a reader needs."""
    text = f"{value:.1f}" if value >= 0.1 else f"{value:.2g}"
    return text.removesuffix(".0")


def _sockaddr_text(sockaddr: tuple[object, ...]) -> str:
    host, port = str(sockaddr[0]), sockaddr[1]
    if ":" not in host:
        return f"{host}:{port}"
    scope = sockaddr[3] if len(sockaddr) > 3 else 0
    if scope and "%" not in host:
        host = f"{host}%{scope_name(int(str(scope)))}"
    return f"[{host}]:{port}"


def where(address: Address, sockaddr: tuple[object, ...]) -> str:
    """The address for messages: the URL, and the address it resolved to if it is a name
    (``udp://localhost:P at [::1]:P``), as nc -v and wget say which one they tried."""
    if _is_literal(address.host):
        return str(address)
    return f"{address} at {_sockaddr_text(sockaddr)}"


def _is_literal(host: str | None) -> bool:
    try:
        ipaddress.ip_address((host or "").partition("%")[0])
    except ValueError:
        return False
    return True


def _needs_zone(sockaddr: tuple[object, ...], exc: OSError) -> bool:
    """EINVAL for a link-local IPv6 address given without its zone (scope_id 0): fe80::/10,
    or a multicast group of interface-local or link-local scope (ffx1::, ffx2::, RFC 4291
    §2.7), as the kernel's __ipv6_addr_needs_scope_id has it."""
    if exc.errno != errno.EINVAL or len(sockaddr) < 4 or sockaddr[3]:
        return False
    ip = ipaddress.IPv6Address(str(sockaddr[0]).partition("%")[0])
    return ip.is_link_local or (ip.is_multicast and ip.packed[1] & 0x0F in (1, 2))


def _zone_needed(address: Address, sockaddr: tuple[object, ...]) -> AddressNotAvailable:
    example = f"{address.scheme}://[{sockaddr[0]}%25<interface>]:{address.port}"
    return AddressNotAvailable(
        f"address not available: {address} (a link-local address needs a zone, the "
        f"interface it is on: {example})"
    )


def bind(
    address: Address, socktype: int, backlog: int | None, reuse_port: bool = False
) -> socket.socket:
    """A socket bound to the address (and listening, when backlog is not None).

    The next resolved address is tried only where this one cannot exist on this machine
    (no IPv6, say); one that is taken (EADDRINUSE) or forbidden fails the listen, as in
    nginx, Go and asyncio: binding 127.0.0.1 because [::1] is taken would leave the
    name's IPv6 clients to the other server."""
    op = "listen on" if backlog is not None else "bind"
    infos = _resolve(address, socktype, passive=True)
    failure: tuple[tuple[object, ...], OSError] | None = None
    for family, kind, proto, sockaddr in infos:
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as exc:  # no IPv6 on this machine, say
            failure = failure or (sockaddr, exc)
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
            failure = failure or (sockaddr, exc)
            if exc.errno in _NOT_HERE:
                continue
            failure = (sockaddr, exc)
            break
        return sock
    assert failure is not None
    sockaddr, error = failure
    if _needs_zone(sockaddr, error):
        raise _zone_needed(address, sockaddr) from error
    raise translate(error, op, where(address, sockaddr)) from error
