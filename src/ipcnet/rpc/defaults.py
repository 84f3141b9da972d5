"""Interoperable defaults: which framing and codec an address gets unless told otherwise.

Rules: the framing the scheme's row names (``Scheme.framing``): newline-delimited JSON on
sockets (what most JSON-RPC peers speak over tcp/unix), Content-Length headers on exec:,
stdio:, fd:// and pipes (how editors and language servers talk over a child's
stdin/stdout); JSON unless another codec is asked for.
"""

from __future__ import annotations

from ipcnet.addresses import Address
from ipcnet.framing import DEFAULT_CODEC, DEFAULT_MAX_SIZE, Codec, Framing, codec, framing


def default_framing(address: Address) -> str:
    return address.spec.framing


def choose(
    address: Address,
    framing_choice: str | Framing | None = None,
    codec_choice: str | Codec | None = None,
    max_frame: int | None = None,
) -> tuple[Framing, Codec]:
    """The Framing and Codec for ``address``; ``None`` or ``"auto"`` picks the default."""
    if isinstance(framing_choice, Framing):
        chosen_framing = framing_choice
    else:
        name = framing_choice if framing_choice not in (None, "auto") else None
        chosen_framing = framing(name or default_framing(address), max_frame or DEFAULT_MAX_SIZE)
    if isinstance(codec_choice, Codec):
        chosen_codec = codec_choice
    else:
        chosen_codec = codec(codec_choice or DEFAULT_CODEC)
    return chosen_framing, chosen_codec
