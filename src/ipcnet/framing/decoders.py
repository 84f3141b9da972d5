"""Sans-IO frame codecs: length prefix, newline, netstring, Content-Length headers.

Role: cut a byte stream into messages ("chunked messages", seed 000 §5.3) and back. A
``Framing`` makes ``Decoder`` objects (one per connection) and encodes payloads. Rules:
- no I/O: a decoder is fed bytes (``feed``) and hands out whole frames (``next_frame`` or
  iteration); ``feed_eof`` says the stream ended and raises IncompleteFrame unless that
  happened at a frame boundary (for newline framing the end is one: it ends a last line
  that has no newline, as JSON Lines allows, and that line is then the next frame);
- the size limit is checked before a frame's body is buffered: a declared length over
  ``max_size`` raises FrameTooLarge at once, and a line is refused as soon as more than
  ``max_size`` bytes arrived without a newline;
- after an error the decoder is ``failed`` (every later call raises again) unless the
  framing survives it: a newline decoder skips to the end of an over-long line and goes on,
  a Content-Length decoder skips a message in a charset other than utf-8 (DecodeError);
- a zero-length frame is an empty message (b""), never EOF;
- a payload is any bytes-like object, framed as its bytes: a declared length and the limit
  count bytes, not items (``len()`` of a memoryview of 4-byte ints is a quarter of its
  bytes), as multiprocessing's ``send_bytes`` counts them;
- ``FRAMINGS`` is the one table of them (name -> constructor and help); the CLI's choices
  come from it.
"""

from __future__ import annotations

import re
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ipcnet.errors import LimitExceeded, RemoteProtocolError
from ipcnet.framing.errors import DecodeError, FrameTooLarge, IncompleteFrame, over_limit

if TYPE_CHECKING:
    from ipcnet.framing.codecs import Codec

DEFAULT_MAX_SIZE = 16 * 1024 * 1024
HEADER_LIMIT = 8192  # Content-Length: the whole header block


Payload = bytes | bytearray | memoryview


def flat(payload: Payload) -> bytes | bytearray | memoryview:
    """``payload`` as a buffer whose ``len()`` is its size in bytes: bytes and bytearray as
    they are, any other bytes-like object as a flat view of its bytes (copied only when it
    is not contiguous)."""
    if payload.__class__ is bytes or payload.__class__ is bytearray:
        return payload
    view = memoryview(payload)
    return view.cast("B") if view.c_contiguous else view.tobytes()


class Decoder(ABC):
    """Bytes in, frames out; one per connection."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._pos = 0  # start of the unread part of _buf
        self._error: RemoteProtocolError | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes that arrived; frames come out of ``next_frame``."""
        if self._error is not None:
            return  # a broken stream: nothing more can be framed
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out in a frame."""
        return len(self._buf) - self._pos

    @property
    def failed(self) -> bool:
        """True once the stream can no longer be framed (the connection should end)."""
        return self._error is not None

    def next_frame(self) -> bytes | None:
        """The next whole frame, or None until more bytes arrive."""
        if self._error is not None:
            raise self._error
        try:
            frame = self._next()
        except RemoteProtocolError as exc:
            if not self._recoverable(exc):
                self._error = exc
                self._buf = bytearray()
                self._pos = 0
            raise
        if frame is None and self._pos:
            del self._buf[: self._pos]  # compact once per batch of frames, not per frame
            self._pos = 0
        return frame

    def __iter__(self) -> Iterator[bytes]:
        while (frame := self.next_frame()) is not None:
            yield frame

    def single(self, data: bytes) -> bytes | None:
        """The payload when nothing is buffered and ``data`` is exactly one whole frame
        within the limit (the common case of request/response), without buffering it;
        None otherwise, and then nothing was consumed: ``feed(data)`` as usual."""
        return None

    def whole(self, data: bytes) -> list[bytes] | None:
        """Every payload of ``data`` when nothing is buffered and ``data`` is whole frames,
        each within the limit (pipelined requests, a burst of replies), without buffering
        them; None otherwise, and then nothing was consumed: ``feed(data)`` as usual."""
        frame = self.single(data)
        return None if frame is None else [frame]

    def missing(self) -> int | None:
        """How many more bytes the decoder needs before the next step, when the framing
        tells: the rest of a length prefix, then the rest of its body; None otherwise."""
        return None

    def complete(self, rest: bytes) -> bytes:
        """The frame in progress, finished with ``rest``: exactly ``missing()`` bytes that
        the caller read past the decoder (a large body read straight from the stream)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be completed from outside")

    def _idle(self) -> bool:
        """Nothing buffered and nothing broken: a frame may start with the next byte."""
        return self._error is None and len(self._buf) == self._pos

    def frames(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """feed(data) and return every frame now complete."""
        self.feed(data)
        return list(self)

    def feed_eof(self) -> None:
        """The stream ended: fine at a frame boundary, IncompleteFrame inside a frame."""
        if self._error is not None:
            return
        if self.buffered or self._inside_frame():
            raise self._incomplete()

    def _inside_frame(self) -> bool:
        """A frame's header was read and its body has not (all) come: EOF now cuts it."""
        return False

    def _take(self, start: int, end: int, resume: int) -> bytes:
        with memoryview(self._buf) as view:  # one copy, not a slice and then a copy
            frame = view[start:end].tobytes()
        self._pos = resume
        return frame

    def _recoverable(self, exc: RemoteProtocolError) -> bool:
        return False

    @abstractmethod
    def _next(self) -> bytes | None: ...

    def _incomplete(self) -> IncompleteFrame:
        """What EOF inside a frame raises (each framing says where it was cut)."""
        got = self.buffered
        return IncompleteFrame(
            f"eof inside a frame: {got} bytes", bytes(self._buf[self._pos :]), None, got
        )


class Framing(ABC):
    """A way to cut a stream into frames: makes decoders, encodes payloads."""

    name: str = "framing"

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        self.max_size = max_size

    @abstractmethod
    def decoder(self) -> Decoder: ...

    @abstractmethod
    def encode(self, payload: bytes | bytearray | memoryview) -> bytes:
        """One frame holding ``payload``; LimitExceeded if it is over ``max_size``."""

    def encoder(self, codec: Codec) -> Callable[[Any], bytes]:
        """``obj -> frame``: ``encode(codec.encode(obj))``, fused where the pair allows;
        LimitExceeded over ``max_size`` (and the codec's LocalProtocolError) as they raise."""
        encode, frame = codec.encode, self.encode
        return lambda obj: frame(encode(obj))

    def encode_parts(self, payload: bytes | bytearray | memoryview) -> list[bytes | memoryview]:
        """``encode(payload)`` as buffers to write in turn: a large payload need not be
        copied behind its header."""
        return [self.encode(payload)]

    def _check(self, payload: Payload) -> int:
        """``payload``'s size, LimitExceeded over ``max_size``; ``payload`` is ``flat``."""
        n = len(payload)
        if n > self.max_size:
            raise over_limit(n, self.max_size)
        return n

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} max {self.max_size}>"


# --- length prefix ----------------------------------------------------------------------


class LengthPrefixDecoder(Decoder):
    def __init__(self, max_size: int, width: int) -> None:
        super().__init__(max_size)
        self.width = width
        self._unpack = struct.Struct(">I" if width == 4 else ">Q").unpack_from
        self._need: int | None = None  # body length once the header is read

    def _next(self) -> bytes | None:
        buf, pos, width = self._buf, self._pos, self.width
        if self._need is None:
            if len(buf) - pos < width:
                return None
            (n,) = self._unpack(buf, pos)
            if n > self.max_size:
                raise FrameTooLarge(
                    f"frame of {n} bytes declared; the limit is {self.max_size}", n, self.max_size
                )
            self._need = n
            pos = self._pos = pos + width
        n = self._need
        if len(buf) - pos < n:
            return None
        self._need = None
        return self._take(pos, pos + n, pos + n)

    def missing(self) -> int | None:
        return (self.width if self._need is None else self._need) - self.buffered

    def complete(self, rest: bytes) -> bytes:
        if self._need is None or len(rest) != self._need - self.buffered:
            raise ValueError("complete() needs exactly the missing bytes of a frame in progress")
        with memoryview(self._buf) as view:
            frame = b"".join((view[self._pos :], rest)) if self.buffered else rest
        self._buf.clear()
        self._pos = 0
        self._need = None
        return frame

    def single(self, data: bytes) -> bytes | None:
        width = self.width
        if self._need is not None or not self._idle():
            return None
        if len(data) < width or self._unpack(data)[0] != len(data) - width:
            return None
        return data[width:] if len(data) - width <= self.max_size else None

    def _inside_frame(self) -> bool:
        return self._need is not None

    def _incomplete(self) -> IncompleteFrame:
        got = self.buffered
        if self._need is None:
            return IncompleteFrame(
                f"eof inside a frame header: {got} of {self.width} bytes",
                bytes(self._buf[self._pos :]),
                self.width,
                got,
            )
        return IncompleteFrame(
            f"eof inside a frame: {got} of {self._need} bytes",
            bytes(self._buf[self._pos :]),
            self._need,
            got,
        )


class LengthPrefixed(Framing):
    """A big-endian (network order) unsigned length, then the payload: u32, or u64."""

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE, width: int = 4) -> None:
        if width not in (4, 8):
            raise ValueError("width must be 4 (u32) or 8 (u64)")
        limit = 0xFFFFFFFF if width == 4 else 0xFFFFFFFFFFFFFFFF
        super().__init__(min(max_size, limit))
        self.width = width
        self.name = "length" if width == 4 else "length64"
        self._pack = struct.Struct(">I" if width == 4 else ">Q").pack

    def decoder(self) -> LengthPrefixDecoder:
        return LengthPrefixDecoder(self.max_size, self.width)

    def encode(self, payload: Payload) -> bytes:
        if payload.__class__ is not bytes:
            payload = flat(payload)
        return self._pack(self._check(payload)) + payload

    def encode_parts(self, payload: Payload) -> list[bytes | memoryview]:
        payload = flat(payload)
        return [self._pack(self._check(payload)), memoryview(payload)]


# --- newline-delimited ------------------------------------------------------------------


class NewlineDecoder(Decoder):
    def __init__(self, max_size: int) -> None:
        super().__init__(max_size)
        self._scan = 0  # bytes after _pos known to hold no b"\n"
        self._skipping = False  # inside an over-long line: drop bytes until its end
        self._ended = False  # feed_eof was called

    def _next(self) -> bytes | None:
        buf, pos = self._buf, self._pos
        end = buf.find(b"\n", pos + self._scan)
        if self._skipping:
            if end < 0:
                self._pos = len(buf)  # dropped (compacted by next_frame)
                self._scan = 0
                return None
            self._skipping = False
            pos = self._pos = end + 1
            end = buf.find(b"\n", pos)
        if end < 0:
            if len(buf) - pos > self.max_size + 1:  # + 1: room for a b"\r" before the b"\n"
                self._skipping = True
                buf.clear()  # dropped now: an endless line costs no memory
                self._pos = self._scan = 0
                raise FrameTooLarge(f"line longer than {self.max_size} bytes", None, self.max_size)
            self._scan = len(buf) - pos  # no newline in these: do not look at them again
            return None
        self._scan = 0
        stop = end - 1 if end > pos and buf[end - 1] == 13 else end  # strip one b"\r"
        if stop - pos > self.max_size:
            self._pos = end + 1
            raise FrameTooLarge(
                f"line of {stop - pos} bytes; the limit is {self.max_size}",
                stop - pos,
                self.max_size,
            )
        return self._take(pos, stop, end + 1)

    def _recoverable(self, exc: RemoteProtocolError) -> bool:
        return isinstance(exc, FrameTooLarge)

    def single(self, data: bytes) -> bytes | None:
        end = len(data) - 1
        if (
            end < 0
            or data.find(b"\n") != end
            or self._skipping
            or self._error is not None  # _idle(), written out: one call less a request
            or len(self._buf) != self._pos
        ):
            return None
        if end > 0 and data[end - 1] == 13:  # strip one b"\r"
            end -= 1
        return data[:end] if end <= self.max_size else None

    def whole(self, data: bytes) -> list[bytes] | None:
        # one split, not a feed and a find, a slice and a copy per frame (~120 bytecodes)
        if (
            data[-1:] != b"\n"
            or self._skipping
            or self._error is not None
            or len(self._buf) != self._pos
        ):
            return None
        frames = data.split(b"\n")
        frames.pop()  # the empty tail after the last b"\n"
        # strip one b"\r" before each b"\n"; not ``b"\r" in data``: bytes.__contains__
        # tries the operand as an integer first, and formats and drops a TypeError (about
        # 1,900 instructions a test); one frame: its last byte is enough
        if len(frames) == 1:
            if data[-2:-1] == b"\r":
                frames[0] = frames[0][:-1]
        elif data.find(b"\r") >= 0:
            frames = [f[:-1] if f[-1:] == b"\r" else f for f in frames]
        if len(data) > self.max_size and max(map(len, frames)) > self.max_size:
            return None  # next_frame says which is too long
        return frames

    def feed_eof(self) -> None:
        """The stream ended: a last line without its newline is a line all the same
        (JSON Lines: the last line separator is optional), handed out by ``next_frame``."""
        if self._skipping:
            self._skipping = False
            self._buf.clear()
            self._pos = 0
        if self._error is None and self.buffered and not self._ended:
            self._buf += b"\n"
        self._ended = True


class NewlineDelimited(Framing):
    """One message per line (JSON Lines / NDJSON); a b"\\r" before the b"\\n" is dropped."""

    name = "newline"

    def decoder(self) -> NewlineDecoder:
        return NewlineDecoder(self.max_size)

    def encode(self, payload: Payload) -> bytes:
        data = bytes(payload)
        self._check(data)
        if b"\n" in data:
            raise LimitExceeded("a newline-delimited frame cannot contain a newline")
        if data[-1:] == b"\r":  # the reader takes "\r\n" for the line's end (NDJSON)
            raise LimitExceeded("a newline-delimited frame cannot end with a carriage return")
        return data + b"\n"

    def encoder(self, codec: Codec) -> Callable[[Any], bytes]:
        line = codec.line_encoder(self.max_size)  # the payload, its newline and the limit
        if line is None:
            return super().encoder(codec)
        return line


# --- netstring --------------------------------------------------------------------------


def _bad_length(digits: bytes) -> bool:
    """True unless ``digits`` may begin a netstring's length: ASCII digits, no leading zero
    but in "0" itself (cr.yp.to/proto/netstrings.txt)."""
    return not digits.isdigit() or (len(digits) > 1 and digits[0] == 0x30)


class NetstringDecoder(Decoder):
    def __init__(self, max_size: int) -> None:
        super().__init__(max_size)
        self._digits = len(str(max_size))
        self._need: int | None = None

    def _next(self) -> bytes | None:
        buf, pos = self._buf, self._pos
        if self._need is None:
            colon = buf.find(b":", pos, pos + self._digits + 1)
            if colon < 0:
                head = bytes(buf[pos : pos + self._digits + 1])
                if head and _bad_length(head):  # at once: no colon can mend it
                    raise RemoteProtocolError(f"bad netstring length {head[:24]!r}")
                if len(head) > self._digits:
                    raise FrameTooLarge(
                        f"netstring length has more than {self._digits} digits; "
                        f"the limit is {self.max_size} bytes",
                        None,
                        self.max_size,
                    )
                return None
            digits = bytes(buf[pos:colon])
            if not digits or _bad_length(digits):
                raise RemoteProtocolError(f"bad netstring length {digits[:24]!r}")
            n = int(digits)
            if n > self.max_size:
                raise FrameTooLarge(
                    f"netstring of {n} bytes declared; the limit is {self.max_size}",
                    n,
                    self.max_size,
                )
            self._need = n
            pos = self._pos = colon + 1
        n = self._need
        if len(buf) - pos < n + 1:
            return None
        if buf[pos + n] != 0x2C:  # ","
            raise RemoteProtocolError("netstring does not end with ','")
        self._need = None
        return self._take(pos, pos + n, pos + n + 1)

    def _inside_frame(self) -> bool:
        return self._need is not None

    def _incomplete(self) -> IncompleteFrame:
        got = self.buffered
        expected = None if self._need is None else self._need + 1
        return IncompleteFrame(
            f"eof inside a netstring: {got} bytes" + (f" of {expected}" if expected else ""),
            bytes(self._buf[self._pos :]),
            expected,
            got,
        )


class Netstring(Framing):
    """D. J. Bernstein's netstrings: ``12:hello world!,``."""

    name = "netstring"

    def decoder(self) -> NetstringDecoder:
        return NetstringDecoder(self.max_size)

    def encode(self, payload: Payload) -> bytes:
        data = bytes(payload)
        return b"%d:%s," % (self._check(data), data)


# --- Content-Length headers (language-server style) -------------------------------------

#: a header field line (RFC 9110 §5.1, §5.5; the LSP's headers follow HTTP's): a token, a
#: colon, a value of visible bytes, spaces and tabs. A control byte (a lone LF, NUL...) or
#: a space in a name is refused: readers that cut lines at LF, or drop the high bit of
#: each byte as vscode-jsonrpc does, would frame the stream otherwise than we do
_FIELD_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):([\t\x20-\x7e\x80-\xff]*)").fullmatch


def _not_utf8(content_type: bytes) -> bytes | None:
    """The charset a Content-Type value names if it is not utf-8 (``utf8`` is taken as
    utf-8, as the LSP asks for backward compatibility); None for utf-8 or no charset."""
    for param in content_type.split(b";")[1:]:
        key, _, value = param.partition(b"=")
        if key.strip(b" \t").lower() == b"charset":
            charset = value.strip(b" \t").strip(b'"')
            return None if charset.lower() in (b"utf-8", b"utf8") else charset
    return None


class ContentLengthDecoder(Decoder):
    """Header lines are read one by one as each completes (its CRLF came), so a bad one
    is refused at once: a line ended by LF alone, or one that is no field line (spaces
    alone, which some readers take for the empty line that ends the headers), would
    otherwise leave both sides waiting, the peer for an answer and this reader for CRLF
    CRLF; the errors are those of the whole block, in the order of its lines."""

    def __init__(self, max_size: int, header_limit: int = HEADER_LIMIT) -> None:
        super().__init__(max_size)
        self.header_limit = header_limit
        self._digits = len(str(max_size))
        self._need: int | None = None
        self._read = 0  # bytes of the header block (from _pos) read as whole lines so far
        self._length: int | None = None  # the Content-Length those lines gave
        self._charset: bytes | None = None  # a charset they named that is not utf-8
        self._refused: str | None = None  # why the message in progress is refused

    def _next(self) -> bytes | None:
        buf, pos = self._buf, self._pos
        if self._need is None:
            limit = pos + self.header_limit
            start = pos + self._read
            while True:
                lf = buf.find(b"\n", start, limit)
                if lf < 0:
                    if len(buf) >= limit:
                        raise RemoteProtocolError(f"header block longer than {self.header_limit}")
                    self._read = start - pos
                    return None
                if lf == start or buf[lf - 1] != 13:  # 13: b"\r"
                    line = bytes(buf[start:lf])
                    raise RemoteProtocolError(
                        f"header line {line[:40]!r} ends with LF alone; header lines end with CRLF"
                    )
                if lf - 1 == start and start > pos:  # the empty line: the end of the block
                    break
                self._field(bytes(buf[start : lf - 1]))
                start = lf + 1
            if self._length is None:
                raise RemoteProtocolError("message without a Content-Length header")
            if self._charset is not None:  # refused once its body is in: the stream goes on
                self._refused = (
                    f"a message in charset {self._charset[:24]!r}: the content is utf-8, "
                    "the only encoding of the LSP base protocol"
                )
            self._need, self._length, self._charset, self._read = self._length, None, None, 0
            pos = self._pos = lf + 1
        n = self._need
        if len(buf) - pos < n:
            return None
        self._need = None
        if self._refused is not None:
            self._pos = pos + n  # skipped: the next message starts after it
            why, self._refused = self._refused, None
            raise DecodeError(why)  # a whole frame whose payload cannot be read
        return self._take(pos, pos + n, pos + n)

    def _recoverable(self, exc: RemoteProtocolError) -> bool:
        return isinstance(exc, DecodeError)  # a message in another charset: skipped

    def _field(self, line: bytes) -> None:
        """One header line: a field line (RFC 9110 §5), Content-Length once, in range."""
        field = _FIELD_LINE(line)
        if field is None:
            raise RemoteProtocolError(f"bad header line {line[:40]!r}")
        name = field[1].lower()
        if name == b"content-type":
            self._charset = _not_utf8(field[2])
            return
        if name != b"content-length":
            return  # other fields: accepted and ignored
        value = field[2].strip(b" \t")
        if self._length is not None:
            raise RemoteProtocolError("more than one Content-Length header")
        if not value.isdigit():
            raise RemoteProtocolError(f"bad Content-Length {value[:24]!r}")
        digits = value.lstrip(b"0") or b"0"
        if len(digits) > self._digits:  # refused unread: int() fails on 4300 digits
            raise FrameTooLarge(
                f"Content-Length of {len(digits)} digits; the limit is {self.max_size} bytes",
                None,
                self.max_size,
            )
        length = int(digits)
        if length > self.max_size:
            raise FrameTooLarge(
                f"message of {length} bytes declared; the limit is {self.max_size}",
                length,
                self.max_size,
            )
        self._length = length

    def _inside_frame(self) -> bool:
        return self._need is not None

    def _incomplete(self) -> IncompleteFrame:
        got = self.buffered
        if self._need is None:
            return IncompleteFrame(
                f"eof inside a header block: {got} bytes", bytes(self._buf[self._pos :]), None, got
            )
        return IncompleteFrame(
            f"eof inside a message: {got} of {self._need} bytes",
            bytes(self._buf[self._pos :]),
            self._need,
            got,
        )


class ContentLength(Framing):
    """``Content-Length: N\\r\\n\\r\\n`` then N bytes, as the Language Server Protocol frames;
    a header line that is no field line, or is ended by LF alone, is refused as soon as it
    ends; a message whose Content-Type names a charset other than utf-8 (or utf8) is
    refused (DecodeError) and skipped; other header fields are read and ignored."""

    name = "content-length"

    def decoder(self) -> ContentLengthDecoder:
        return ContentLengthDecoder(self.max_size)

    def encode(self, payload: Payload) -> bytes:
        data = bytes(payload)
        return b"Content-Length: %d\r\n\r\n%s" % (self._check(data), data)


@dataclass(frozen=True, slots=True)
class FramingEntry:
    """A row of FRAMINGS: how to make the framing (given its max frame size), and help."""

    make: Callable[[int], Framing]
    help: str


#: the registry: name -> constructor and help (a new framing is a class and a row)
FRAMINGS: dict[str, FramingEntry] = {
    "length": FramingEntry(
        lambda n: LengthPrefixed(n, 4), "u32 big-endian length, then the payload"
    ),
    "length64": FramingEntry(
        lambda n: LengthPrefixed(n, 8), "u64 big-endian length, then the payload"
    ),
    "newline": FramingEntry(NewlineDelimited, "one message per line (JSON Lines)"),
    "netstring": FramingEntry(Netstring, "netstrings: 5:hello,"),
    "content-length": FramingEntry(
        ContentLength, "Content-Length: N headers, as language servers frame"
    ),
}
ALIASES = {"lsp": "content-length", "ndjson": "newline", "line": "newline"}


def framing(name: str, max_size: int = DEFAULT_MAX_SIZE) -> Framing:
    """A Framing by its name in FRAMINGS (``lsp`` and ``ndjson`` are accepted aliases)."""
    entry = FRAMINGS.get(ALIASES.get(name, name))
    if entry is None:
        raise ValueError(f"unknown framing {name!r}; choose from {', '.join(FRAMINGS)}")
    return entry.make(max_size)
