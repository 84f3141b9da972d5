"""Handing a connection over: the action that ends a session's byte contract.

Role: a session that is done with ``feed`` and ``Send`` (a relay, once it knows where the
client goes) returns ``Handover(job)``; the driver then stops reading the connection and
runs ``job(transport)`` where blocking is harmless (inline in a blocking model, on a
worker thread for an event loop), since the job may connect somewhere. The job takes the
transport over and returns a ``Pump`` (or None when it already ended the connection
itself); the driver drives the pump until it is finished, its own way: a blocking model
waits in poll(2), a readiness loop registers the pump's descriptors.
Rules:
- after a Handover the session gets nothing more: later actions are dropped, as after Close;
- the pump owns every descriptor it was built on and closes them when it finishes; the
  driver only waits: ``advance()`` says which descriptors to wait for and how (READ and
  WRITE are poll(2)'s POLLIN and POLLOUT), ``deadline()`` when to call ``expire()``, and
  ``stop()`` ends it at once (a forced stop).
Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

READ = 0x001  # POLLIN
WRITE = 0x004  # POLLOUT


class Pump(Protocol):
    """What a Handover's job returns: a connection that moves its own bytes."""

    @property
    def finished(self) -> bool: ...

    def advance(self) -> dict[int, int]:
        """Move what can be moved now; the (fd -> READ|WRITE) to wait for ({} once finished)."""
        ...

    def deadline(self) -> float | None:
        """The time.monotonic() at which ``expire`` is due (None: no timer)."""
        ...

    def expire(self) -> bool:
        """Apply a timer that is due; True if that finished the pump."""
        ...

    def stop(self) -> None:
        """Finish now, closing everything (a forced stop)."""
        ...

    def prepend(self, data: bytes) -> None:
        """Bytes the driver read from the connection before it could stop reading (an
        event loop that reads as it adopts a socket): they go out first. Only before the
        first ``advance``."""
        ...


@dataclass(frozen=True, slots=True)
class Handover:
    """Give the connection's transport to ``job``, run where blocking is harmless."""

    job: Callable[[Any], Pump | None]


__all__ = ["READ", "WRITE", "Handover", "Pump"]
