"""Where OSError from the XDP machinery becomes an ipcnet error (``oserrors`` for the rest).

Role: ``bpf`` (bpf(2)), ``rtnetlink``, ``netns`` and the xdp build cache raise plain
OSError; every public entry point of ``ipcnet.xdp`` runs its kernel calls inside
``translating(op, dev)``, so the package above sees ipcnet errors only. Rules: the
OSError is chained as ``__cause__``; an ipcnet error raised inside passes unchanged; the
kernel's own words are kept (a ``NetlinkError``'s extended ack, a ``VerifierError``'s
log); messages are lower-case, name the operation and the interface, and say what to do
about permissions; a failed file operation (the build cache) names the file.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from ipcnet import errors
from ipcnet.transports.bpf import VerifierError
from ipcnet.transports.rtnetlink import ALTIFNAMSIZ, IFNAMSIZ, NetlinkError

NEED = "xdp needs root (or CAP_BPF and CAP_NET_ADMIN)"
VERIFIER_LINES = 15
# what BPF_PROG_LOAD's errno means, in bpf(2)'s words (its strerror, "permission denied"
# for EACCES, would read as missing privileges, which have a message of their own)
VERDICTS = {errno.EACCES: "deemed unsafe", errno.EINVAL: "invalid", errno.E2BIG: "too large"}


def translate(exc: OSError, op: str, where: str) -> errors.IPCError:
    """The ipcnet error for ``exc``, raised while doing ``op`` on interface ``where``."""
    code = exc.errno
    reason = (exc.strerror or str(exc)).lower()
    if isinstance(exc, VerifierError):  # its last lines say why
        tail = "\n".join("  " + line for line in exc.log.rstrip().splitlines()[-VERIFIER_LINES:])
        verdict = VERDICTS.get(code or 0)
        if verdict:
            reason = f"{verdict}: {errno.errorcode[code or 0]}, bpf(2)"
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
        long = len(where.encode()) >= IFNAMSIZ
        why = (
            f" (interface names are at most {IFNAMSIZ - 1} bytes, alternative names "
            f"{ALTIFNAMSIZ - 1})"
            if long
            else ""
        )
        return errors.AddressNotAvailable(f"{op} {where}: no interface named {where!r}{why}")
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
    """Run a block of bpf(2), rtnetlink and file calls; re-raise any OSError as its ipcnet
    error."""
    try:
        yield
    except errors.IPCError:
        raise  # already ours (Timeout is also a TimeoutError)
    except OSError as exc:
        raise translate(exc, op, where) from exc
