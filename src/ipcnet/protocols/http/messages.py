"""What a request head says, once parsed: a frozen record, and the error a bad one raises.

Role: the vocabulary shared by the parser adapters and the session. Rules: header names are
lower-case bytes, values are bytes as received; the parsers fill a ``Head`` and raise
``ipcnet.errors.BadRequest`` (a RemoteProtocolError carrying the status to answer) for
anything they reject.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Head:
    """A parsed request line and header section."""

    method: str
    target: bytes
    version: str  # "1.0", "1.1"
    headers: list[tuple[bytes, bytes]]
    fields: dict[bytes, bytes] = field(default_factory=dict)  # last value of each name

    def get(self, name: bytes) -> bytes | None:
        """The last value of header ``name`` (lower-case), or None (after check_head)."""
        return self.fields.get(name)

    def all(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]

    def combined(self, name: bytes) -> bytes | None:
        """Every line of header ``name`` as one value, joined by ", " (RFC 9110 §5.3), or
        None; for a singleton field sent twice the result is not a valid value."""
        if name not in self.fields:
            return None
        return b", ".join(self.all(name))
