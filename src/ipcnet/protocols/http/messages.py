"""What a request head says, once parsed: a frozen record, and the error a bad one raises.

Role: the vocabulary shared by the parser adapters and the session. Rules: header names are
lower-case bytes, values are bytes as received; the parsers fill a ``Head`` and raise
``BadRequest`` (with the status to answer) for anything they reject. ``BadRequest`` is a
``RemoteProtocolError`` of the ipcnet error tree (the peer sent an invalid request).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ipcnet.errors import RemoteProtocolError


class BadRequest(RemoteProtocolError):
    """The client's request cannot be served; ``status`` says why (400, 414, 431, 505...)."""

    def __init__(self, status: int, detail: str = "") -> None:
        super().__init__(detail or str(status))
        self.status = status
        self.detail = detail


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
