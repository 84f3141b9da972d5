"""Codecs: messages (Python values) to frame payloads and back: bytes, JSON, msgpack.

Role: the other half of a message channel, independent of the framing. Rules:
- ``decode`` raises only DecodeError (a RemoteProtocolError) on bad input, whatever the
  input: invalid UTF-8, NaN/Infinity, lone surrogates, nesting beyond the parser's limit,
  numbers too large to hold;
- nothing here can run code from the wire: no pickle, marshal or eval, ever;
- one codec serves every connection of a service and every thread of a client: encode and
  decode keep no state between calls that two calls at once could share;
- JSON uses orjson when it is installed (the stdlib otherwise, held to the same rules);
  msgpack needs the ``msgpack`` package;
- ``CODECS`` is the one table of them (name -> constructor and help); the CLI's choices
  come from it.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ipcnet.errors import LocalProtocolError
from ipcnet.framing.errors import DecodeError, over_limit

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is in the "fast" extra
    orjson = None  # type: ignore[assignment]

MAX_DEPTH = 512  # nesting the stdlib JSON fallback accepts (orjson stops at 1024)
_DIGIT_MARKS = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_RUN = b"0" * 19  # 19 digits in a row, in a payload translated by _DIGIT_MARKS
_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL).sub  # a JSON string
_NOT_FINITE = "cannot encode as JSON: NaN and Infinity are not JSON"
_UNSAID = {"StackError": "nesting too deep", "FormatError": "reserved type byte 0xc1"}


class Codec(ABC):
    name: str = "codec"
    #: its payloads never hold a newline byte (a newline framing then needs no scan, copy or
    #: wrapper: ``line_encoder``)
    newline_free: bool = False

    def line_encoder(self, limit: int) -> Callable[[Any], bytes] | None:
        """``obj -> encode(obj) + b"\\n"`` made in one step, LimitExceeded (``over_limit``)
        when the payload is over ``limit`` bytes; None unless ``newline_free``."""
        return None

    @abstractmethod
    def encode(self, obj: Any) -> bytes:
        """The payload for ``obj``; LocalProtocolError if it cannot be represented."""

    @abstractmethod
    def decode(self, data: bytes) -> Any:
        """The value in ``data``; DecodeError if it is not a valid payload."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class BytesCodec(Codec):
    """Frames are the messages: bytes in, bytes out."""

    name = "bytes"

    def encode(self, obj: Any) -> bytes:
        if not isinstance(obj, (bytes, bytearray, memoryview)):
            raise LocalProtocolError(f"the bytes codec sends bytes, not {type(obj).__name__}")
        return bytes(obj)

    def decode(self, data: bytes) -> Any:
        return bytes(data)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:24]} is out of range")
    return value


def _check_finite(data: bytes, obj: Any) -> bytes:
    """``data``, orjson's encoding of ``obj``, unless orjson wrote a NaN or an infinity as
    null (JSON has neither: LocalProtocolError, as the stdlib's allow_nan=False raises);
    only an output holding null is looked into."""
    if data.find(b"null") >= 0 and _not_finite(obj):  # find: ``in`` costs a TypeError
        raise LocalProtocolError(_NOT_FINITE)
    return data


_LEAVES = frozenset({str, int, bool, type(None)})  # what most of a message is: passed by


def _not_finite(value: Any) -> bool:
    """True if a float in ``value`` is NaN or infinite. Recursive, and safe so: orjson,
    which has just encoded it, refuses nesting deeper than 255."""
    if isinstance(value, float):  # subclasses too: orjson writes them as floats
        return value - value != 0.0  # nan - nan and inf - inf are nan
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return False
    for item in value:  # noqa: SIM110 - a loop: any() with a generator costs twice as much
        if type(item) not in _LEAVES and _not_finite(item):
            return True
    return False


def _depth_ok(data: bytes, limit: int) -> bool:
    """True unless arrays and objects in ``data`` nest deeper than ``limit``: brackets are
    counted in C, and only when there are more than ``limit`` are the strings cut out (a
    bracket in a string is text) and the rest walked over its brackets."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return True
    depth = 0
    for byte in _STRING(b"", data).translate(None, _NOT_BRACKETS):
        if byte in b"[{":
            depth += 1
            if depth > limit:
                return False
        elif byte in b"]}":
            depth -= 1
    return True


class JSONCodec(Codec):
    """UTF-8 JSON (RFC 8259): no NaN/Infinity, no lone surrogates, bounded nesting; integers
    exact at any size up to the stdlib's 4300 digits (orjson only within 64 bits)."""

    name = "json"

    newline_free = True  # compact JSON escapes every newline

    def __init__(self, use_orjson: bool = True) -> None:
        self.fast = use_orjson and orjson is not None

    def line_encoder(self, limit: int) -> Callable[[Any], bytes]:
        """A closure, not a keyword partial of a method: that costs ~2,500 instructions a
        call more (CPython's partial_call with a dict of keywords)."""
        encode = self.encode
        dumps = orjson.dumps if self.fast else None
        newline = orjson.OPT_APPEND_NEWLINE if self.fast else 0

        def encode_line(obj: Any) -> bytes:
            data = None
            if dumps is not None:
                try:
                    data = dumps(obj, option=newline)
                except TypeError:
                    pass  # as in encode: the stdlib's turn
                else:  # _check_finite, inline
                    if data.find(b"null") >= 0 and _not_finite(obj):
                        raise LocalProtocolError(_NOT_FINITE)
            if data is None:
                data = encode(obj) + b"\n"
            if len(data) > limit + 1:
                raise over_limit(len(data) - 1, limit)
            return data

        return encode_line

    def encode(self, obj: Any) -> bytes:
        if self.fast:
            try:
                data: bytes = orjson.dumps(obj)
            except TypeError:
                pass  # integers over 64 bits, subclasses orjson refuses: try the stdlib
            else:
                return _check_finite(data, obj)
        try:
            return json.dumps(
                obj, allow_nan=False, ensure_ascii=False, separators=(",", ":")
            ).encode("utf-8")
        except (TypeError, ValueError, RecursionError, UnicodeEncodeError) as exc:
            raise LocalProtocolError(f"cannot encode as JSON: {exc}") from None

    def decode(self, data: bytes) -> Any:
        # orjson rounds an integer beyond 64 bits to a float (an id no longer echoed as it
        # came): a payload that may hold one (19 digits or more in a row) goes to the
        # stdlib, exact at any size. The test: digits to "0", the rest to " ", then a find
        # of 19 "0"s, two passes in C (a translate that deletes builds its table each time:
        # about 1,000 instructions more a payload)
        if self.fast and data.translate(_DIGIT_MARKS).find(_LONG_RUN) < 0:
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise DecodeError(f"invalid JSON: {exc}") from None
        try:
            if not _depth_ok(data, MAX_DEPTH):
                raise ValueError(f"nesting deeper than {MAX_DEPTH}")
            text = bytes(data).decode("utf-8")
            value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
            json.dumps(value, ensure_ascii=False).encode("utf-8")  # lone surrogates fail here
            return value
        except (ValueError, RecursionError, UnicodeError) as exc:
            raise DecodeError(f"invalid JSON: {exc}") from None


class MsgpackCodec(Codec):
    """MessagePack (needs the ``msgpack`` package): strings as str, bytes as bytes."""

    name = "msgpack"

    def __init__(self) -> None:
        import msgpack  # type: ignore[import-untyped]

        self._msgpack = msgpack
        # a Packer's buffer is its state (not thread-safe): each encode takes one of its
        # own from this free list (list pop and append are atomic), so messages packed at
        # once by threads sharing the codec, or within a packing, never mix
        self._packers: list[Callable[[Any], bytes]] = []

    def encode(self, obj: Any) -> bytes:
        packers = self._packers
        try:
            pack = packers.pop()
        except IndexError:  # every packer is in use (or none was made yet)
            pack = self._msgpack.Packer(use_bin_type=True).pack
        try:
            data: bytes = pack(obj)
        except (TypeError, ValueError, OverflowError) as exc:
            raise LocalProtocolError(f"cannot encode as msgpack: {exc}") from None
        finally:
            packers.append(pack)  # a failed pack has reset its buffer: reusable
        return data

    def decode(self, data: bytes) -> Any:
        try:
            return self._msgpack.unpackb(
                data, raw=False, strict_map_key=True, use_list=True, timestamp=0
            )
        except (ValueError, TypeError, UnicodeError, self._msgpack.UnpackException) as exc:
            why = str(exc) or _UNSAID.get(type(exc).__name__, "malformed")  # some say nothing
            raise DecodeError(f"invalid msgpack: {type(exc).__name__}: {why}") from None


@dataclass(frozen=True, slots=True)
class CodecEntry:
    """A row of CODECS: the constructor, help, and whether it encodes objects (an RPC
    payload) rather than only bytes."""

    make: Callable[[], Codec]
    help: str
    objects: bool = True


#: the registry: name -> constructor and help (a new codec is a class and a row)
CODECS: dict[str, CodecEntry] = {
    "json": CodecEntry(JSONCodec, "UTF-8 JSON (orjson when installed)"),
    "msgpack": CodecEntry(MsgpackCodec, "MessagePack (needs msgpack)"),
    "bytes": CodecEntry(BytesCodec, "raw bytes (MessageChannel only)", objects=False),
}
DEFAULT_CODEC = "json"


def codec(name: str) -> Codec:
    """A Codec by its name in CODECS."""
    entry = CODECS.get(name)
    if entry is None:
        raise ValueError(f"unknown codec {name!r}; choose from {', '.join(CODECS)}")
    return entry.make()
