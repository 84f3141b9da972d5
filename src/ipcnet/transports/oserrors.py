"""The one place where OSError becomes an ipcnet error.

Role: every transport wraps its system calls in ``translating(op, where)`` (or calls
``translate``); nothing above the transports layer ever sees an OSError. Rules: the
original OSError is chained as ``__cause__``; messages are lower-case, name the operation
and the address, and for the common mistakes say what to check.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from ipcnet import errors

_RESET = {errno.ECONNRESET, errno.ECONNABORTED}
_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN}
_NOT_AVAILABLE = {errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT}
_MAKES_A_NAME = {"bind", "listen on", "create"}  # ENOENT here: its directory is missing
_NO_FILE = {errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.ENXIO}


def translate(exc: BaseException, op: str, where: object) -> errors.IPCError:
    """Map an OSError (or socket.gaierror) raised while doing ``op`` on ``where``.

    Pass the Address itself as ``where`` when there is one: its scheme's row names what is
    missing ("no fifo at ...", "no socket at ...").
    """
    if isinstance(exc, errors.IPCError):
        return exc
    if isinstance(exc, socket.gaierror):
        return errors.ResolveError(f"cannot resolve {where}: {exc.strerror or exc}")
    if isinstance(exc, TimeoutError) and not getattr(exc, "errno", None):
        return errors.Timeout(f"timed out: {op} {where}")
    if not isinstance(exc, OSError):
        return errors.IPCError(f"{op} {where}: {exc}")
    code = exc.errno
    reason = exc.strerror or str(exc)
    if code == errno.EPIPE:
        return errors.PeerClosed(f"peer closed: {op} {where}")
    if code in _RESET:
        return errors.Reset(f"connection reset by peer: {op} {where}")
    if code == errno.ECONNREFUSED:
        return errors.Refused(
            f"connection refused: nothing listens on {where} (is the server running?)"
        )
    if code in _UNREACHABLE:
        return errors.Unreachable(f"{reason.lower()}: {op} {where}")
    if code == errno.ETIMEDOUT:
        return errors.Timeout(f"timed out: {op} {where}")
    if code == errno.EADDRINUSE:
        return errors.AddressInUse(f"address in use: {where} (another socket is bound there)")
    if code in _NOT_AVAILABLE:
        return errors.AddressNotAvailable(f"address not available: {where} ({reason.lower()})")
    if code in (errno.ENOENT, errno.ENOTDIR) and op in _MAKES_A_NAME:
        why = "a directory on its path does not exist"
        if code == errno.ENOTDIR:
            why = "a part of its path is not a directory"
        return errors.NoSuchFile(f"cannot {op} {where}: {why}")
    if code in (errno.ENOENT, errno.ENOTDIR):
        from ipcnet.addresses import Address  # loaded already if ``where`` is one

        noun = where.spec.noun if isinstance(where, Address) else "socket"
        return errors.NoSuchSocket(f"no {noun} at {where}")
    if code == errno.ENOTSOCK:
        return errors.NoSuchSocket(f"not a socket: {where}")
    if code == errno.EPROTOTYPE:  # a unix socket of another type is bound at that name
        from ipcnet.addresses import Address

        what = f"not a {where.kind} socket" if isinstance(where, Address) else "wrong socket type"
        return errors.NoSuchSocket(
            f"{what}: {where} (the one there is of another type: "
            "unix://, unixgram:// or unixpacket://)"
        )
    if code in (errno.EACCES, errno.EPERM):
        return errors.PermissionDenied(f"permission denied: {op} {where}")
    if code == errno.EMSGSIZE:
        return errors.MessageTooLarge(f"message too large for {where}")
    if code in (errno.EMFILE, errno.ENFILE):
        return errors.Busy(f"too many open files: {op} {where}")
    if code in (errno.EAGAIN, errno.ENOBUFS):
        return errors.Busy(f"{reason.lower()}: {op} {where}")
    if code == errno.EBADF:
        return errors.Closed(f"closed: {op} {where}")
    return errors.Broken(f"{reason.lower()}: {op} {where}")


@contextmanager
def translating(op: str, where: object) -> Iterator[None]:
    """Run a block of system calls; re-raise any OSError as its ipcnet error."""
    try:
        yield
    except OSError as exc:
        raise translate(exc, op, where) from exc


@contextmanager
def translating_file(op: str, where: object) -> Iterator[None]:
    """As ``translating``, for plain files (the web server's): a path that names nothing
    that can be opened (ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG, ENXIO) is NoSuchFile."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _NO_FILE:
            raise errors.NoSuchFile(f"no such file: {where}") from exc
        raise translate(exc, op, where) from exc
