"""MessageChannel: whole messages over a Channel, through a framing and a codec.

Role: the blocking, file-like way to use the sans-IO codecs: ``send(obj)`` writes one
frame, ``recv()`` returns the next message. Rules: everything read goes to the decoder
(small frames: many per ``readinto`` of a reusable buffer), except a large body whose length
the framing announced, which is read straight into its own bytes (``DIRECT_READ``); nothing
read is ever dropped, even when a read times out; at a clean EOF ``recv`` raises EOFError
(iteration just stops), inside a frame IncompleteFrame (which is also an EOFError: catch it
first); the frame limit is the framing's ``max_size``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ipcnet.channel import Channel
from ipcnet.errors import IncompleteRead
from ipcnet.framing.codecs import BytesCodec, Codec
from ipcnet.framing.decoders import Framing, LengthPrefixed

READ_SIZE = 64 * 1024
DIRECT_READ = 32 * 1024  # a body this large is read straight into its own bytes


class MessageChannel:
    """Send and receive messages (not bytes) over a Channel."""

    def __init__(
        self, channel: Channel, framing: Framing | None = None, codec: Codec | None = None
    ) -> None:
        self.channel = channel
        self.framing = framing or LengthPrefixed()
        self.codec = codec or BytesCodec()
        self.decoder = self.framing.decoder()
        self._scratch = memoryview(bytearray(READ_SIZE))
        self._eof = False
        self._large = False  # the last frame was large: read headers alone, bodies directly

    def send(self, obj: Any) -> None:
        """Encode and frame ``obj`` and write it whole."""
        self.send_frame(self.codec.encode(obj))

    def send_frame(self, payload: bytes) -> None:
        """Write one frame holding ``payload`` as it is (no codec); a large payload is
        written after its header rather than copied behind it."""
        if len(payload) < DIRECT_READ:
            self.channel.write(self.framing.encode(payload))
            return
        for part in self.framing.encode_parts(payload):
            self.channel.write(part)

    def recv_frame(self) -> bytes:
        """The next frame's payload; EOFError at a clean end, IncompleteFrame mid-frame."""
        decoder = self.decoder
        while True:
            frame = decoder.next_frame()
            if frame is not None:
                self._large = len(frame) >= DIRECT_READ
                return frame
            if self._eof:
                raise EOFError(f"end of messages from {self.channel.transport.where}")
            missing = decoder.missing()
            if missing is not None and missing >= DIRECT_READ:
                self._large = True
                return decoder.complete(self._read_exactly(missing))
            # after a large frame, read only up to the next boundary (the next header), so
            # that the next body can be read straight into its own bytes
            view = self._scratch[:missing] if self._large and missing else self._scratch
            got = self.channel.readinto(view)
            if got == 0:
                self._eof = True
                decoder.feed_eof()
                continue
            decoder.feed(view[:got])

    def _read_exactly(self, n: int) -> bytes:
        """``n`` bytes read straight from the channel. Cut short by EOF (IncompleteFrame) or
        an error such as a timeout, what came is handed to the decoder first, so nothing is
        lost and the next ``recv`` goes on where this one stopped."""
        chunks: list[bytes] = []
        try:
            while n:
                chunk = self.channel.read(n)
                if not chunk:
                    break
                chunks.append(chunk)
                n -= len(chunk)
        finally:
            if n:
                for part in chunks:
                    self.decoder.feed(part)
        if n:
            self._eof = True
            self.decoder.feed_eof()  # inside a frame: raises IncompleteFrame
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def recv(self) -> Any:
        """The next message, decoded."""
        return self.codec.decode(self.recv_frame())

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                frame = self.recv_frame()
            except EOFError as exc:
                if isinstance(exc, IncompleteRead):
                    raise
                return
            yield self.codec.decode(frame)

    def send_eof(self) -> None:
        self.channel.send_eof()

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> MessageChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MessageChannel {self.channel.transport.where} {self.framing.name}>"
