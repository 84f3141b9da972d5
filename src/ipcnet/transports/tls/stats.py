"""TLS counters shared by every process of a server: handshakes, failures, versions, ciphers.

Role: what ``--stats`` and the status page show of TLS. Rules: the cells live in an
anonymous shared mapping made before any fork, so fork and prefork workers count where the
parent reads; a lock that works across fork (a POSIX semaphore) makes each increment
whole (one per handshake: cheap); the cipher slots are the server context's ciphers, known
before the fork, plus "other".
"""

from __future__ import annotations

import mmap
import multiprocessing
import ssl
from typing import Any

from ipcnet import errors

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
        self._names = ("handshakes", "generation", "unclean_eofs",
                       *(f"failure:{r}" for r in REASONS),
                       *(f"version:{v}" for v in VERSIONS),
                       *(f"cipher:{c}" for c in self.ciphers))  # fmt: skip
        self._index = {name: i for i, name in enumerate(self._names)}
        self._map = mmap.mmap(-1, 8 * len(self._names), mmap.MAP_SHARED)
        self._cells = memoryview(self._map).cast("q")
        self._lock = multiprocessing.Lock()

    def _add(self, *names: str) -> None:
        with self._lock:
            for name in names:
                self._cells[self._index[name]] += 1

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
        return int(self._cells[self._index["generation"]])

    def bump_generation(self) -> int:
        """Ask every process to reload; lock-free, so that a signal handler may call it."""
        self._cells[self._index["generation"]] += 1
        return self.generation

    def snapshot(self) -> dict[str, Any]:
        """Totals; the mixes and failures list only what happened (no zero rows)."""
        values = {name: int(self._cells[i]) for i, name in enumerate(self._names)}

        def group(prefix: str) -> dict[str, int]:
            return {k.partition(":")[2]: v for k, v in values.items() if k.startswith(prefix) and v}

        failures = group("failure:")
        return {
            "handshakes": values["handshakes"],
            "failed": sum(failures.values()),
            "failures": failures,
            "versions": group("version:"),
            "ciphers": group("cipher:"),
            "reloads": values["generation"],
            "unclean_eofs": values["unclean_eofs"],  # after the handshake (see drivers.tls)
        }
