"""The chunked transfer coding of a request body (RFC 9112 §7.1), decoded sans-IO.

Role: what a server that takes request bodies (JSON-RPC over HTTP) needs to read one sent
without a Content-Length, as requests does with a generator body, Go's net/http with an
unknown length, curl with ``-H 'Transfer-Encoding: chunked'`` (§7.1: "A recipient MUST be
able to parse the chunked transfer coding"). ``ChunkedBody.feed(buf)`` takes what it can
from the front of ``buf`` (what follows the body, a pipelined request, stays there) and
returns True once the last chunk and the trailer section are in; the body is ``body``.

Rules:
- the grammar of §7.1 exactly: chunk-size is 1*HEXDIG (no sign, no ``0x``, no space
  before it); chunk extensions are ``*( BWS ";" BWS token [ BWS "=" BWS ( token /
  quoted-string ) ] )`` and are ignored (§7.1.1: unrecognised ones MUST be); every line
  ends in CRLF, and chunk-data is followed by CRLF. Anything else is a 400: a lax reading
  of chunk boundaries is how a request is smuggled past a proxy that reads them otherwise;
- trailer fields (§7.1.2) are checked as field lines and dropped (a recipient MAY discard
  them), so none is ever taken as a header: a Content-Length in a trailer reframes nothing;
- bounded: the body by ``max_body`` (413 as soon as a chunk-size says more, before its data
  comes; the digits are counted before they are converted, §7.1), one chunk line by
  ``max_line`` and all chunk extensions of a body together by ``max_extensions`` (400,
  §7.1.1: "a server ought to limit the total length of chunk extensions"), the trailer
  section by ``max_trailer`` bytes and ``max_fields`` lines (431).
"""

from __future__ import annotations

import re

from ipcnet.errors import BadRequest

_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_EXTENSIONS = re.compile(
    rb"(?:[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?)*" % (_TOKEN, _TOKEN, _QUOTED)
)
_SIZE = re.compile(rb"[0-9A-Fa-f]+")
_FIELD_LINE = re.compile(rb"%s:[\t \x21-\x7e\x80-\xff]*" % _TOKEN)

MAX_LINE = 4096  # one chunk-size line, its extensions included
MAX_EXTENSIONS = 16 * 1024  # the chunk extensions of one body, all together


class ChunkedBody:
    """One chunked request body, decoded as its bytes arrive (see the module's rules)."""

    __slots__ = (
        "body",
        "extensions",
        "fields",
        "left",
        "max_body",
        "max_extensions",
        "max_fields",
        "max_line",
        "max_trailer",
        "state",
        "trailer",
    )

    def __init__(
        self,
        max_body: int,
        *,
        max_line: int = MAX_LINE,
        max_extensions: int = MAX_EXTENSIONS,
        max_trailer: int = 16 * 1024,
        max_fields: int = 100,
    ) -> None:
        self.body = bytearray()
        self.max_body = max_body
        self.max_line = max_line
        self.max_extensions = max_extensions
        self.max_trailer = max_trailer
        self.max_fields = max_fields
        self.state = "size"  # size -> data -> crlf -> size ... -> trailer -> done
        self.left = 0  # data bytes of the current chunk still to come
        self.extensions = 0  # bytes of chunk extensions seen
        self.trailer = 0  # bytes of trailer fields seen
        self.fields = 0

    @property
    def done(self) -> bool:
        return self.state == "done"

    def feed(self, buf: bytearray) -> bool:
        """Decode from the front of ``buf`` (the bytes taken are removed from it); True once
        the body is complete. BadRequest (400, 413 or 431) if it cannot be."""
        pos = 0
        try:
            while self.state != "done":
                if self.state == "data":
                    take = min(self.left, len(buf) - pos)
                    if not take:
                        break
                    self.body += buf[pos : pos + take]
                    pos += take
                    self.left -= take
                    if not self.left:
                        self.state = "crlf"
                elif self.state == "crlf":
                    if len(buf) - pos < 2:
                        break
                    if buf[pos : pos + 2] != b"\r\n":
                        raise BadRequest(400, "chunk data not followed by CRLF")
                    pos += 2
                    self.state = "size"
                else:
                    line = self._line(buf, pos)
                    if line is None:
                        break
                    pos += len(line) + 2
                    if self.state == "size":
                        self._size(line)
                    else:
                        self._trailer_field(line)
        finally:
            del buf[:pos]
        return self.state == "done"

    def _line(self, buf: bytearray, pos: int) -> bytes | None:
        """The next line (without its CRLF), None if it is not all here yet."""
        limit = self.max_line if self.state == "size" else max(0, self.max_trailer - self.trailer)
        end = buf.find(b"\n", pos, pos + limit + 2)
        if end < 0:
            if len(buf) - pos > limit + 1:
                if self.state == "size":
                    raise BadRequest(400, "chunk-size line too long")
                raise BadRequest(431, "trailer section too large")
            return None
        if end == pos or buf[end - 1] != 13:  # "\r"
            raise BadRequest(400, "bare LF in the chunked body")
        return bytes(buf[pos : end - 1])

    def _size(self, line: bytes) -> None:
        size = _SIZE.match(line)
        if size is None:
            raise BadRequest(400, "bad chunk-size")
        digits = size.group()
        extensions = len(line) - len(digits)
        if extensions:
            if not _EXTENSIONS.fullmatch(line, len(digits)):
                raise BadRequest(400, "bad chunk extension")
            self.extensions += extensions
            if self.extensions > self.max_extensions:
                raise BadRequest(400, "chunk extensions too long")
        if len(digits.lstrip(b"0")) > 15:  # before int(): over any body we take
            raise BadRequest(413, "chunk too large")
        n = int(digits, 16)
        if len(self.body) + n > self.max_body:
            raise BadRequest(413, f"chunked body over {self.max_body} bytes")
        if n:
            self.state, self.left = "data", n
        else:
            self.state = "trailer"  # last-chunk: the trailer section follows

    def _trailer_field(self, line: bytes) -> None:
        if not line:
            self.state = "done"
            return
        self.trailer += len(line) + 2
        self.fields += 1
        if self.fields > self.max_fields:
            raise BadRequest(431, "too many trailer fields")
        if not _FIELD_LINE.fullmatch(line):
            raise BadRequest(400, "bad trailer field")
