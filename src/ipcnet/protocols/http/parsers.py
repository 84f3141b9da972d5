"""Request-head parsers: small adapters over llhttp (httptools) and h11, one interface.

Role: turn one complete request head (request line + headers + blank line, as the session
cut it from the stream) into a ``Head``, or raise ``BadRequest``. The HTTP grammar is the
parser's: we never hand-parse tokens, field syntax or obs-fold. Rules:
- ``check_head`` then applies the framing rules both parsers must agree on (RFC 9112 §6):
  one valid Host (§3.2), one Content-Length field with one value, no Transfer-Encoding with
  Content-Length or in HTTP/1.0; a transfer coding other than a final chunked -> 400, an
  unknown coding before chunked -> 501 (§6.1, §6.3); HTTP/1.x for any minor x >= 1 is
  handled as 1.1 (§2.3), another major version gets 505;
- both parsers give the same answers: llhttp refuses a method, a version or a target form
  it does not know, so the httptools adapter, when the request line is otherwise well
  formed, parses the head again with ``GET``, ``HTTP/1.1`` or ``/`` in their place and
  reports what was sent (the session then answers 501, serves HTTP/1.2 as 1.1, refuses
  the target, as with h11);
- field values come without the OWS around them (RFC 9112 §5), from both;
- control characters, bare CR or LF and obs-fold are refused by both: llhttp refuses them
  itself, and the h11 adapter, since h11 tolerates some, runs ``check_bytes`` first;
- ``make_parser("auto")`` prefers httptools (C, fast) and falls back to h11 (pure Python).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

from ipcnet.errors import BadRequest
from ipcnet.protocols.http.messages import Head
from ipcnet.protocols.http.target import GOOD_HOSTS, check_host

# the request line's method and version, when llhttp refused one of them (see _retry)
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
_VCHARS = re.compile(rb"[\x21-\x7e]+")  # a request-target as h11 takes it
_TRAILING_OWS = re.compile(rb"(?<=[\x21-\xff])[ \t]+\r\n")  # not a line of OWS alone


class HeadParser(Protocol):
    name: str

    def parse(self, head: bytes) -> Head: ...


class HttptoolsParser:
    """llhttp through httptools; one parser object reused while messages end cleanly."""

    name = "httptools"

    def __init__(self) -> None:
        import httptools

        self._mod: Any = httptools
        self._parser: Any = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._complete = False

    # llhttp callbacks
    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp drops the OWS before a value but keeps the OWS after it (h11 drops both)
        self._headers.append((name.lower(), value.rstrip(b" \t")))

    def on_message_complete(self) -> None:
        self._complete = True

    def parse(self, head: bytes) -> Head:
        mod = self._mod
        parser = self._parser
        if parser is None:
            parser = self._parser = mod.HttpRequestParser(self)
        self._url = b""
        self._headers = []
        self._complete = False
        try:
            parser.feed_data(head)
        except mod.HttpParserUpgrade:
            self._parser = None  # llhttp stops at an upgrade (or CONNECT): start afresh
        except mod.HttpParserError as exc:
            self._parser = None
            return self._retry(head, exc)
        if not self._complete:
            self._parser = None  # a body follows: this parser is mid-message
        try:
            method = parser.get_method()
            version = parser.get_http_version()
        except Exception:  # pragma: no cover - the head was incomplete
            raise BadRequest(400, "incomplete request head") from None
        # "METHOD SP target SP HTTP/x.y" CR: llhttp allows more spaces, h11 does not. An index,
        # not bytes.find (its argument parsing costs more than the rest of the check), unless
        # llhttp says 0.9: then the version may be missing (the line ends after the target)
        end = len(method) + len(self._url) + 10
        if head[end] != 13 if version != "0.9" else head.count(b" ", 0, head.find(b"\r\n")) != 2:
            raise BadRequest(400, "the request line must be: method SP target SP version")
        return Head(method.decode("ascii"), self._url, version, self._headers)

    def _retry(self, head: bytes, exc: Exception) -> Head:
        """llhttp refused the head: if a request-line part h11 would take is the cause (a
        method, version or target form llhttp does not know), parse with it normalised;
        so too OWS after a field value (llhttp refuses a Transfer-Encoding ending in HTAB)."""
        end = head.find(b"\r\n")
        fields = head[end:]
        trimmed = _TRAILING_OWS.sub(b"\r\n", fields)
        if end > 0 and trimmed != fields:
            return self.parse(head[:end] + trimmed)
        parts = head[:end].split(b" ")
        if len(parts) == 3:
            method, target, version = parts
            rest = head[end:]
            if method != b"GET" and _TOKEN.fullmatch(method):
                found = self.parse(b"GET " + target + b" " + version + rest)
                found.method = method.decode("ascii")
                return found
            if version not in (b"HTTP/1.1", b"HTTP/1.0") and _VERSION.fullmatch(version):
                found = self.parse(method + b" " + target + b" HTTP/1.1" + rest)
                found.version = version[5:].decode("ascii")  # check_head decides
                return found
            if target != b"/" and _VCHARS.fullmatch(target):  # the session's to judge
                found = self.parse(method + b" / " + version + rest)
                found.target = target
                return found
        raise BadRequest(400, f"bad request: {str(exc).lower()}") from None


class H11Parser:
    """h11's parser, one Connection per head (h11 keeps no state we need across them)."""

    name = "h11"

    def __init__(self) -> None:
        import h11

        self._h11: Any = h11

    def parse(self, head: bytes) -> Head:
        check_bytes(head)
        h11 = self._h11
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=len(head) + 1)
        conn.receive_data(head)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            if status == 501:  # h11 takes no transfer coding but chunked: sort it as we do
                line = head[: head.find(b"\r\n")]
                length = b"\r\ncontent-length:" in head.lower()
                check_codings(_CODING.findall(head), length, line[-3:].decode("latin-1"))
            raise BadRequest(status if status in (431, 505) else 400, str(exc).lower()) from None
        if not isinstance(event, h11.Request):
            raise BadRequest(400, "incomplete request head")
        headers = [(bytes(k).lower(), bytes(v)) for k, v in event.headers.raw_items()]
        kept = [(k, v) for k, v in headers if k != b"content-length"]
        if len(kept) != len(headers):  # h11 merged repeats: show check_head what was sent
            headers = kept + [(b"content-length", v) for v in _FIELD_CL.findall(head)]
        return Head(
            event.method.decode("ascii"),
            bytes(event.target),
            event.http_version.decode("ascii"),
            headers,
        )


def make_parser(name: str = "auto") -> HeadParser:
    """``auto``: httptools when installed, else h11; or exactly the one named."""
    if name in ("auto", "httptools"):
        try:
            return HttptoolsParser()
        except ImportError:
            if name == "httptools":
                raise
    if name in ("auto", "h11"):
        return H11Parser()
    raise ValueError(f"unknown http parser {name!r} (choose httptools or h11)")


def parser_available(name: str) -> bool:
    try:
        make_parser(name)
    except ImportError:
        return False
    return True


# control characters no request head may contain, whatever the parser tolerates
_CONTROLS = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])


def check_bytes(raw: bytes) -> None:
    """What llhttp refuses and h11 tolerates, refused before h11 sees the head.

    Refused: control characters, a CR or LF that is not part of CRLF, and obs-fold (a line
    starting with SP/HTAB). Each test is one scan in C: this runs on every request."""
    crlf = raw.count(b"\r\n")
    if (
        len(raw.translate(None, _CONTROLS)) != len(raw)
        or raw.count(b"\r") != crlf
        or raw.count(b"\n") != crlf
        or b"\n " in raw
        or b"\n\t" in raw
    ):
        raise BadRequest(400, "control character, bare CR/LF or obs-fold in the request head")


# field values h11 does not hand over as sent: the Transfer-Encoding of a head it refused
# as a whole, and repeated or listed Content-Length fields, which it merges (see H11Parser)
_CODING = re.compile(rb"(?im)^transfer-encoding:[ \t]*(.*?)[ \t]*\r$")
_FIELD_CL = re.compile(rb"(?im)^content-length:[ \t]*(.*?)[ \t]*\r$")


def check_codings(values: Sequence[bytes], with_length: bool, version: str) -> None:
    """Transfer-Encoding (RFC 9112 §6.1, §6.3): only chunked, last, in HTTP/1.1, alone."""
    codings = [c.strip().lower() for value in values for c in value.split(b",")]
    if with_length:
        raise BadRequest(400, "both content-length and transfer-encoding")
    if version == "1.0":
        raise BadRequest(400, "transfer-encoding in an HTTP/1.0 request")
    if not codings or codings[-1] != b"chunked" or b"chunked" in codings[:-1]:
        raise BadRequest(400, "transfer-encoding must end with chunked, once")
    if len(codings) > 1:
        raise BadRequest(501, "transfer coding not implemented (only chunked is)")


def _digits(value: bytes) -> int:
    if not value or not value.isdigit() or len(value) > 18:
        raise BadRequest(400, "bad content-length")
    return int(value)


def check_head(head: Head) -> tuple[bool, bool]:
    """Framing rules both parsers must agree on; returns (keep_alive, has_body).

    One pass over the fields, which also fills ``head.fields`` (name -> last value). The
    checks come in the parsers' own order (framing, the Host count, then the version), so
    that both give the same status to a head with several faults.
    """
    version = head.version
    fields = head.fields
    hosts = 0
    lengths: list[bytes] = []
    codings: list[bytes] = []
    tokens: set[bytes] = set()
    for name, value in head.headers:
        fields[name] = value
        if name == b"host":
            hosts += 1
        elif name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
        elif name == b"content-length":
            lengths.append(value)
        elif name == b"transfer-encoding":
            codings.append(value)
    if version != "1.1" and version != "1.0" and version[:2] == "1.":
        version = "1.1"  # RFC 9112 §2.3: the highest minor version we support
    if codings:
        check_codings(codings, bool(lengths), version)
    if len(lengths) > 1 or (lengths and b"," in lengths[0]):  # as llhttp (RFC 9110 §8.6)
        raise BadRequest(400, "more than one content-length value")
    length = _digits(lengths[0].strip()) if lengths else 0
    if hosts > 1 or (not hosts and version == "1.1"):
        raise BadRequest(400, "a request needs exactly one host header")
    if version != "1.1" and version != "1.0":
        raise BadRequest(505, f"HTTP/{version} is not supported")
    if hosts and (host := fields[b"host"]) not in GOOD_HOSTS:
        check_host(host)
    if version == "1.1":
        keep_alive = b"close" not in tokens
    else:
        keep_alive = b"keep-alive" in tokens and b"close" not in tokens
    return keep_alive, bool(codings) or length > 0
