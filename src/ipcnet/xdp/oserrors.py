"""The xdp package's one place where OSError becomes an ipcnet error.

Role: bpf(2), rtnetlink and the build raise plain OSError; every public entry point of
``ipcnet.xdp`` runs inside ``translating(op, dev)``, and nothing else in the package
catches OSError to change its meaning. Rules: the OSError is chained as ``__cause__``;
the kernel's own words are kept (a ``NetlinkError``'s extended ack, a ``VerifierError``'s
log); messages are lower-case and say what to do about permissions; a failed file
operation (the build cache) names the file.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from ipcnet import errors
from ipcnet.xdp.bpf import VerifierError
from ipcnet.xdp.netlink import NetlinkError

NEED = "xdp needs root (or CAP_BPF and CAP_NET_ADMIN)"
VERIFIER_LINES = 15


def translate(exc: OSError, op: str, where: str) -> errors.IPCError:
    code = exc.errno
    reason = (exc.strerror or str(exc)).lower()
    if isinstance(exc, VerifierError):  # its last lines say why
        tail = "\n".join("  " + line for line in exc.log.rstrip().splitlines()[-VERIFIER_LINES:])
        return errors.Unsupported(
            f"the kernel's verifier rejected the xdp program for {where} "
            f"({reason}); its last lines:\n{tail}"
        )
    if exc.filename:  # a file, not the kernel's BPF or netlink interface
        cls = errors.PermissionDenied if code in (errno.EPERM, errno.EACCES) else errors.IPCError
        return cls(f"{op} {where}: {exc.filename}: {reason}")
    said = exc.said if isinstance(exc, NetlinkError) else ""
    detail = f": {said}" if said else ""
    if code in (errno.EPERM, errno.EACCES):
        return errors.PermissionDenied(f"{op} {where}: permission denied ({NEED}){detail}")
    if code == errno.ENODEV:
        return errors.AddressNotAvailable(f"{op} {where}: no interface named {where!r}")
    if code in (errno.EBUSY, errno.EEXIST):
        return errors.AddressInUse(
            f"{op} {where}: the interface already has an xdp program{detail} "
            "(--replace replaces it)"
        )
    if code in (errno.EOPNOTSUPP, errno.ENOSYS):
        return errors.Unsupported(
            f"{op} {where}: not supported here{detail or ': ' + str(exc.strerror).lower()}"
        )
    return errors.IPCError(f"{op} {where}: {reason}{detail}")


@contextmanager
def translating(op: str, where: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise translate(exc, op, where) from exc
