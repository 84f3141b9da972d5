"""Request targets to safe path segments: the one gate between a URL and the ROOT directory.

Role: decode a request target exactly once and reduce it to a tuple of plain names that
the filesystem layer joins under ROOT. Rules (anything suspicious is refused, not repaired;
dot-segments are not suspicious, RFC 3986 gives them a meaning):
- only origin-form (``/path``) and absolute-form (``http://host/path``) targets; else 400
  (the asterisk-form ``*`` of ``OPTIONS *`` is the session's, never a path);
- an absolute-form authority must be a valid, non-empty uri-host with at most one port and
  no userinfo (RFC 9110 §4.2.1, §4.2.4); ``check_host`` is the same grammar for the Host
  field (RFC 9112 §3.2: reg-name, IPv4address or IP-literal ``[IPv6]`` / ``[vX.future]``);
- malformed percent-escapes -> 400; encoded ``/``, ``\\`` or NUL (``%2f %5c %00``) -> 403;
- the target is decoded exactly once (RFC 3986 §2.4): after decoding, a NUL or backslash
  -> 403, and any ``%`` left is part of a name: ``/%252F`` is the file named ``%2F`` and
  ``/%252e%252e/`` the directory named ``%2e%2e``, as a listing links them and as nginx
  serves them; nothing below decodes a name again, so no such name can climb;
- dot-segments are removed as RFC 3986 §5.2.4 and §6.2.2.3 have it (``%2e`` is ``.``,
  §6.2.2.2): ``/a/../b`` is ``/b``, as with nginx; a ``..`` that would climb above ROOT
  -> 403; empty segments vanish too, so a path never has ``//`` in it and a redirect built
  from the segments can never start with ``//`` (the CVE-2021-28861 open redirect).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv6Address
from urllib.parse import quote, unquote_to_bytes

from ipcnet.errors import BadRequest

_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_FORBIDDEN_ESCAPE = re.compile(rb"%(2f|5c|00)", re.IGNORECASE)
# RFC 3986 §3.2.2-3: uri-host [":" port]; reg-name = *( unreserved / pct-encoded / sub-delims )
# (an IPv4address is a reg-name by this grammar); IP-literal = "[" IPv6 / IPvFuture "]"
_AUTHORITY = re.compile(rb"(\[[^\[\]]*\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")
_IPV_FUTURE = re.compile(rb"[vV][0-9A-Fa-f]+\.[A-Za-z0-9._~!$&'()*+,;=:-]+")


def host_of(authority: bytes) -> bytes | None:
    """The uri-host of ``uri-host [":" port]``, or None when the value breaks the grammar."""
    m = _AUTHORITY.fullmatch(authority)
    if m is None:
        return None
    host = m.group(1)
    if b"%" in host and _BAD_ESCAPE.search(host):  # pct-encoded = "%" HEXDIG HEXDIG
        return None
    if host[:1] == b"[":
        inner = host[1:-1]
        if inner[:1] in (b"v", b"V"):
            return host if _IPV_FUTURE.fullmatch(inner) else None
        if b"%" in inner:  # a zone identifier is not part of RFC 3986's IPv6address
            return None
        try:
            IPv6Address(inner.decode("ascii"))
        except ValueError:
            return None
    return host


GOOD_HOSTS: set[bytes] = set()  # the same few Host values come with every request


def check_host(value: bytes) -> None:
    """The Host field (RFC 9112 §3.2); empty is valid (a target without authority)."""
    if value in GOOD_HOSTS:
        return
    if host_of(value) is None:
        raise BadRequest(400, "invalid host header")
    if len(GOOD_HOSTS) >= 1024:
        GOOD_HOSTS.clear()
    GOOD_HOSTS.add(value)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request points: names under ROOT, whether it ended with '/', the query."""

    segments: tuple[str, ...]
    trailing: bool
    query: bytes
    path: bytes  # the raw path as sent (for status endpoints and logs)

    def location(self, slash: bool = True) -> str:
        """A safe absolute-path Location for this target (always one leading '/')."""
        safe = "!$&'()*+,;=:@-._~"  # a name that is not UTF-8 goes back as its own bytes
        text = "/" + "/".join(quote(s, safe, errors="surrogateescape") for s in self.segments)
        if slash and self.segments:
            text += "/"
        if self.query:
            text += "?" + quote(self.query, safe="/?:@!$&'()*+,;=-._~%")
        return text


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """(path, query) of an origin- or absolute-form target; BadRequest for other forms."""
    if target[:1] != b"/":
        lower = target[:8].lower()
        if lower.startswith(b"http://") or lower.startswith(b"https://"):
            rest = target[target.index(b"//") + 2 :]
            end = len(rest)
            for sep in b"/?#":
                found = rest.find(sep)
                if 0 <= found < end:
                    end = found
            if not host_of(rest[:end]):  # None (invalid) or b"" (empty host)
                raise BadRequest(400, "invalid authority in the request target")
            slash = rest.find(b"/")
            question = rest.find(b"?")
            if slash < 0 or (0 <= question < slash):
                target = b"/" + (rest[question:] if question >= 0 else b"")
            else:
                target = rest[slash:]
        else:
            raise BadRequest(400, "the request target must be an absolute path")
    target = target.partition(b"#")[0]
    path, _, query = target.partition(b"?")
    return path, query


def parse_target(target: bytes) -> Target:
    """Decode and check a request target; BadRequest(400/403) if it is not acceptable."""
    path, query = split_target(target)
    if _BAD_ESCAPE.search(path):
        raise BadRequest(400, "malformed percent-encoding")
    if _FORBIDDEN_ESCAPE.search(path):
        raise BadRequest(403, "encoded '/', '\\' or NUL in the path")
    decoded = unquote_to_bytes(path) if b"%" in path else path
    if b"\x00" in decoded or b"\\" in decoded:
        raise BadRequest(403, "NUL or backslash in the path")
    segments: list[str] = []
    for raw in decoded.split(b"/"):
        if raw in (b"", b"."):
            continue
        if raw == b"..":
            if not segments:
                raise BadRequest(403, "'..' above the web root")
            segments.pop()
            continue
        segments.append(raw.decode("utf-8", "surrogateescape"))
    trailing = decoded.endswith((b"/", b"/.", b"/.."))
    return Target(tuple(segments), trailing or not segments, query, path)
