"""Framing errors: the two ways a byte stream can fail to hold a frame, plus bad payloads.

Role: the framing layer raises only these (and LimitExceeded when *we* try to send too
much). Rules: every class here is a RemoteProtocolError, so "garbage raises only
RemoteProtocolError" holds for every decoder and codec; IncompleteFrame is also an
IncompleteRead (an EOFError), FrameTooLarge also a LimitExceeded.
"""

from __future__ import annotations

from ipcnet.errors import IncompleteRead, LimitExceeded, RemoteProtocolError


class IncompleteFrame(IncompleteRead, RemoteProtocolError):
    """EOF came inside a frame: ``received`` of ``expected`` bytes (None when unknown)."""

    def __init__(
        self, message: str, partial: bytes = b"", expected: int | None = None, received: int = 0
    ) -> None:
        super().__init__(message, partial=partial, expected=expected)
        self.received = received


class FrameTooLarge(LimitExceeded, RemoteProtocolError):
    """The peer declared (or sent) a frame over the limit; nothing was allocated for it."""

    def __init__(self, message: str, size: int | None, limit: int) -> None:
        super().__init__(message)
        self.size = size  # None when the frame has no declared size (a line still growing)
        self.limit = limit


class DecodeError(RemoteProtocolError):
    """A complete frame whose payload the codec cannot read (bad JSON, bad msgpack, a
    Content-Length message in a charset other than utf-8); the frames after it can be."""


def over_limit(size: int, limit: int) -> LimitExceeded:
    """What sending a frame of ``size`` payload bytes over ``limit`` raises."""
    return LimitExceeded(f"frame of {size} bytes is over the limit of {limit}")


__all__ = ["DecodeError", "FrameTooLarge", "IncompleteFrame", "over_limit"]
