"""Framing: cut byte streams into messages (sans-IO codecs) and MessageChannel over them.

    >>> from ipcnet.framing import LengthPrefixed
    >>> decoder = LengthPrefixed().decoder()
    >>> decoder.frames(b"\\x00\\x00\\x00\\x02hi\\x00\\x00")
    [b'hi']

Framings: ``length`` (u32 big-endian prefix), ``length64``, ``newline``, ``netstring``,
``content-length`` (language-server headers). Codecs: ``bytes``, ``json``, ``msgpack``.
Each is one row of its registry (``FRAMINGS``, ``CODECS``: name -> constructor and help).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipcnet.framing.codecs import (
    CODECS,
    DEFAULT_CODEC,
    BytesCodec,
    Codec,
    CodecEntry,
    JSONCodec,
    MsgpackCodec,
    codec,
)
from ipcnet.framing.decoders import (
    DEFAULT_MAX_SIZE,
    FRAMINGS,
    ContentLength,
    Decoder,
    Framing,
    FramingEntry,
    LengthPrefixed,
    Netstring,
    NewlineDelimited,
    framing,
)
from ipcnet.framing.errors import DecodeError, FrameTooLarge, IncompleteFrame

if TYPE_CHECKING:
    from ipcnet.framing.channel import MessageChannel

__all__ = [
    "CODECS",
    "DEFAULT_CODEC",
    "DEFAULT_MAX_SIZE",
    "FRAMINGS",
    "BytesCodec",
    "Codec",
    "CodecEntry",
    "ContentLength",
    "DecodeError",
    "Decoder",
    "FrameTooLarge",
    "Framing",
    "FramingEntry",
    "IncompleteFrame",
    "JSONCodec",
    "LengthPrefixed",
    "MessageChannel",
    "MsgpackCodec",
    "Netstring",
    "NewlineDelimited",
    "codec",
    "framing",
]


def __getattr__(name: str) -> object:
    if name == "MessageChannel":  # imports the channel (and transports) only when used
        from ipcnet.framing.channel import MessageChannel

        return MessageChannel
    raise AttributeError(f"module 'ipcnet.framing' has no attribute {name!r}")
