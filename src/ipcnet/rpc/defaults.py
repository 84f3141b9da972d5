"""Interoperable defaults: which framing and codec an address gets unless told otherwise.

Rules: the framing the scheme's row names (``Scheme.framing``): newline-delimited JSON on
sockets (what most JSON-RPC peers speak over tcp/unix), Content-Length headers on exec:,
stdio:, fd:// and pipes (how editors and language servers talk over a child's
stdin/stdout); JSON unless another codec is asked for. A codec whose payloads can hold a
newline byte (msgpack: any byte) cannot go in newline frames: then the default is the u32
length prefix, and newline framing asked for by name is refused.
"""

from __future__ import annotations

from ipcnet.addresses import Address
from ipcnet.errors import Unsupported
from ipcnet.framing import (
    DEFAULT_CODEC,
    DEFAULT_MAX_SIZE,
    Codec,
    Framing,
    NewlineDelimited,
    codec,
    framing,
)


def default_framing(address: Address) -> str:
    return address.spec.framing


def choose(
    address: Address,
    framing_choice: str | Framing | None = None,
    codec_choice: str | Codec | None = None,
    max_frame: int | None = None,
) -> tuple[Framing, Codec]:
    """The Framing and Codec for ``address``; ``None`` or ``"auto"`` picks the default;
    Unsupported for newline framing with a codec whose payloads can hold newlines."""
    chosen_codec = (
        codec_choice if isinstance(codec_choice, Codec) else codec(codec_choice or DEFAULT_CODEC)
    )
    binary = not chosen_codec.newline_free  # payloads may hold b"\n" (see Codec)
    if isinstance(framing_choice, Framing):
        chosen_framing = framing_choice
    else:
        name = framing_choice
        if name is None or name == "auto":
            name = default_framing(address)
            if binary and name == "newline":
                name = "length"
        chosen_framing = framing(name, max_frame or DEFAULT_MAX_SIZE)
    if binary and isinstance(chosen_framing, NewlineDelimited):
        raise Unsupported(
            f"{chosen_codec.name} payloads can hold newline bytes, so they cannot be "
            "newline-framed: use the length, netstring or content-length framing"
        )
    return chosen_framing, chosen_codec
