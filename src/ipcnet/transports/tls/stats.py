"""TLS counters shared by every process of a server: handshakes, failures, versions, ciphers.

Role: what ``--stats`` and the status page show of TLS. Rules: the counters are
``transports.cells`` rows, one per process, so fork and prefork workers count where the
parent reads and a process killed while it counts blocks no other; the reload generation
is one cell of its own that every process reads; the cipher slots are the server
context's ciphers, known before the fork, plus "other".
"""

from __future__ import annotations

import mmap
import ssl
from typing import Any

from ipcnet import errors
from ipcnet.transports.cells import SharedCells

REASONS = tuple(
    cls.reason
    for cls in (
        errors.CertificateUntrusted,
        errors.CertificateExpired,
        errors.HostnameMismatch,
        errors.NoClientCertificate,
        errors.CertificateRejected,
        errors.ProtocolTooOld,
        errors.HandshakeTimeout,
        errors.NotTLS,
        errors.UncleanEOF,
        errors.TLSError,
    )
)
VERSIONS = ("TLSv1.2", "TLSv1.3", "other")


class TLSStats:
    """Counters for one server; ``snapshot()`` is the JSON the stats socket shows."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        ciphers = [c["name"] for c in context.get_ciphers()] if context is not None else []
        self.ciphers = (*dict.fromkeys(ciphers), "other")
        self._names = ("handshakes", "unclean_eofs",
                       *(f"failure:{r}" for r in REASONS),
                       *(f"version:{v}" for v in VERSIONS),
                       *(f"cipher:{c}" for c in self.ciphers))  # fmt: skip
        self._index = {name: i for i, name in enumerate(self._names)}
        self._cells = SharedCells(len(self._names), "ipcnet-tls-stats")
        self._generation = memoryview(mmap.mmap(-1, 8, mmap.MAP_SHARED)).cast("q")

    def _add(self, *names: str) -> None:
        self._cells.add(*(self._index[name] for name in names))

    def handshake(self, version: str | None, cipher: str | None) -> None:
        v = version if version in VERSIONS else "other"
        c = cipher if cipher in self.ciphers else "other"
        self._add("handshakes", f"version:{v}", f"cipher:{c}")

    def failure(self, error: BaseException) -> None:
        reason = getattr(error, "reason", "tls")
        self._add(f"failure:{reason if reason in REASONS else 'tls'}")

    def unclean_eof(self) -> None:
        """A peer ended its stream without close_notify after the handshake."""
        self._add("unclean_eofs")

    @property
    def generation(self) -> int:
        """How many reloads were asked for (SIGHUP), by any process of the server."""
        return int(self._generation[0])

    def bump_generation(self) -> int:
        """Ask every process to reload; lock-free, so that a signal handler may call it."""
        self._generation[0] += 1
        return self.generation

    def snapshot(self) -> dict[str, Any]:
        """Totals; the mixes and failures list only what happened (no zero rows)."""
        values = dict(zip(self._names, self._cells.totals(), strict=True))

        def group(prefix: str) -> dict[str, int]:
            return {k.partition(":")[2]: v for k, v in values.items() if k.startswith(prefix) and v}

        failures = group("failure:")
        return {
            "handshakes": values["handshakes"],
            "failed": sum(failures.values()),
            "failures": failures,
            "versions": group("version:"),
            "ciphers": group("cipher:"),
            "reloads": self.generation,
            "unclean_eofs": values["unclean_eofs"],  # after the handshake (see drivers.tls)
        }
