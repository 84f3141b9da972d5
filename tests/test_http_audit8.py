"""A generated differential sweep of the static web server against nginx 1.22 (audit 8).

`ipcnet serve http ROOT` and a real nginx serve the same tree (files of 0, 1, 10 KiB and
245 KiB, directories with and without an index, names with '%', spaces, unicode) and get
the same ~740 raw requests, built by combining methods, request-target forms (percent-
encodings, dot segments, double slashes, absolute- and asterisk-form), versions, Host
fields, every Range form of RFC 9110 §14 and every precondition of §13. The answers are
compared on status, Content-Length, Content-Range, multipart parts, Location, Allow, type,
validators and body; every difference must be one of ``DELIBERATE`` (each with the rule
that allows it), and each defect the sweep found has its own named test.

Two known differences, decided: a file named ``%2F`` (``/%252F``) is now served, as by
nginx (decoding once cannot make a name climb; the 403 refused the listing's own links);
HEAD with a Range keeps its 200 (RFC 9110 §14.2: a Range MUST be ignored on a method that
defines no range handling, and only GET does; nginx answers 206).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import pytest

from http_cases.kit import RawReader, connect, exchange, http_server, remove_site
from ipcnet.protocols.http.parsers import parser_available
from test_files_differential import nginx  # noqa: F401  (the nginx fixture, on our root)

pytestmark = pytest.mark.xdist_group("http-audit8")

MTIME = 1_600_000_000  # every file's mtime: a known Last-Modified and ETag on both servers
LM = formatdate(MTIME, usegmt=True)
PAST = "Sun, 06 Nov 1994 08:49:37 GMT"
FUTURE = "Fri, 01 Jan 2100 00:00:00 GMT"
RFC850 = "Sunday, 13-Sep-20 12:26:40 GMT"  # LM in the rfc850-date form
ASCTIME = "Sun Sep 13 12:26:40 2020"  # LM in the asctime-date form
TEN = bytes(range(256)) * 40  # 10 KiB
BIG = bytes(range(251)) * 1000  # 245 KiB
FILES: dict[str, bytes] = {
    "empty.txt": b"",
    "one.txt": b"x",
    "ten.bin": TEN,
    "big.bin": BIG,  # over the in-memory limit: sent with sendfile, multipart too
    "d/index.html": b"<p>d index</p>\n",
    "d/f.txt": b"in d\n",
    "list/a.txt": b"a\n",  # a directory without an index
    "%2F": b"literally percent-2F\n",
    "%2e%2e/in.txt": b"in a directory named %2e%2e\n",
    "a b.txt": b"space\n",
    "per%cent.txt": b"per cent\n",
    "ünï.txt": b"unicode\n",
    "q?x.txt": b"question\n",
    "h#.txt": b"hash\n",
    "sp ace/index.html": b"sp\n",
    "q?d/index.html": b"q\n",
    "h#d/index.html": b"h\n",
    "\u00fc/index.html": b"u\n",
    "%41/index.html": b"percent-41\n",
    "a;b/index.html": b"semicolon\n",
    "it's/index.html": b"quote\n",
    "a,b+c=d@e:f/index.html": b"sub-delims\n",
    "[x]/index.html": b"brackets\n",
    "page.html": b"<p>page</p>\n",
    "style.css": b"p {}\n",
    "app.js": b"1\n",
    "data.json": b"{}\n",
    "pic.svg": b"<svg/>\n",
    "arch.tar.gz": b"gz\n",
    "README": b"readme\n",
    "x.unknownext": b"?\n",
}


def etag(name: str) -> str:
    return f'"{MTIME:x}-{len(FILES[name]):x}"'  # nginx's format, and ipcnet's


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = Path(tmp_path_factory.mktemp("www-audit8"))
    for name, data in FILES.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    for dirpath, dirnames, filenames in os.walk(path):
        for entry in (*dirnames, *filenames):
            os.utime(os.path.join(dirpath, entry), (MTIME, MTIME))
    os.chmod(path, 0o755)
    yield path
    remove_site(path)


@pytest.fixture(scope="module", params=[("epoll", "httptools"), ("thread", "h11")], ids=str)
def ours(root: Path, request: pytest.FixtureRequest) -> Iterator[int]:
    """Both parsers, a readiness loop and a blocking model (every model and parser pair
    agreed on every case of the sweep when it was written)."""
    model, parser = request.param
    if not parser_available(parser):
        pytest.skip(f"{parser} is not installed")
    with http_server(root, model=model, extra=("--quiet", "--parser", parser)) as (_, _, port):
        yield port


# --- the generator -------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    name: str
    raw: bytes
    method: str


def req(
    name: str,
    target: str | bytes,
    *fields: str,
    method: str = "GET",
    version: str = "HTTP/1.1",
    host: str | None = "example",
) -> Req:
    path = target if isinstance(target, bytes) else target.encode()
    lines = [method.encode() + b" " + path + (b" " + version.encode() if version else b"")]
    if host is not None:
        lines.append(b"Host: " + host.encode())
    lines += [f.encode("latin-1") for f in fields]
    return Req(name, b"\r\n".join(lines) + b"\r\n\r\n", method)


TARGETS = [
    "/one.txt", "/ten.bin", "/empty.txt", "/missing", "/missing/", "/d", "/d/", "/d/f.txt",
    "/list", "/list/", "/", "/d?x=1", "/d/?x=1", "/one.txt/", "/d/f.txt/", "//one.txt",
    "//d//f.txt", "/./one.txt", "/d/./f.txt", "/d/../one.txt", "/d/x/../f.txt",
    "/d/f.txt/..", "/d/..", "/..", "/../one.txt", "/d/../../one.txt", "/%2e%2e/one.txt",
    "/d/%2e%2e/one.txt", "/d/%2E%2e/one.txt", "/d/.%2e/one.txt", "/%2e/one.txt",
    "/d%2Ff.txt", "/d%2ff.txt", "/d%5cf.txt", "/one.txt%00", "/one.txt%00.html",
    "/%252F", "/%252e%252e/in.txt", "/%25", "/%", "/%zz", "/%2", "/per%25cent.txt",
    "/per%cent.txt", "/a%20b.txt", "/%C3%BCn%C3%AF.txt", "/%c3%bcn%c3%af.txt",
    "/%c0%ae%c0%ae/one.txt", "/%c0%af", "/%ff", "/%ff%fe.txt", "/q%3Fx.txt", "/h%23.txt",
    "/one.txt?a=b", "/one.txt?", "/one.txt?a=%zz", "/one.txt#frag", "/one.txt?x#y",
    "/d#x", "/d?x#y", "/o%6ee.txt", "http://example/one.txt", "http://example/d",
    "http://example", "http://example?x", "HTTP://EXAMPLE/one.txt", "http://other:1/d/f.txt",
    "https://example/one.txt", "*", "one.txt", "/ünï.txt", "/sp%20ace", "/q%3Fd",
    "/h%23d", "/%C3%BC", "/%2541", "/%2541/", "/d/x/..", "//d", "///d", "/d/.", "/d/%2e",
    "/sp%20ace?a=b%20c", "/d?%zz", "/d?x=%2F&y=/", "/d?x#", "/d??", "/%64", "/%64/",
    "/page.html", "/style.css", "/app.js", "/data.json", "/pic.svg", "/arch.tar.gz",
    "/a;b", "/a%3Bb", "/it's", "/it%27s", "/a,b+c=d@e:f", "/a%2Cb%2Bc%3Dd%40e%3Af",
    "/%5Bx%5D", "/[x]", "/a;b?q=1;2", "/README", "/x.unknownext", "/PAGE.HTML", "http://example//d", "http://example/%2e%2e/d",
    "http://example:80", "/d/index.html", "/d/index.html/", "/index.html",
]  # fmt: skip


# range-sets that break RFC 9110 §14.1.1's grammar: ipcnet ignores them, nginx answers 416
INVALID = [
    "bytes=1-0", "bytes=5-2", "bytes=-", "bytes=a-b", "bytes=0-1;x", "bytes=--1",
    "bytes=-1-2", "bytes=1--2", "bytes=+1-2", "bytes=0x1-2", "bytes=1-2-3", "bytes=1-\xd9\xa3",
    "bytes=0-0,bytes=1-1", "bytes=0-0;1-1", "bytes=0-0 1-1", "bytes==0-1", "bytes=0-1=",
]  # fmt: skip


def generate() -> list[Req]:
    out: list[Req] = []
    # every target form, GET and HEAD
    for target in TARGETS:
        for method in ("GET", "HEAD"):
            out.append(req(f"{method} {target}", target, method=method))
    # methods
    for method in ("POST", "OPTIONS", "PUT", "DELETE", "TRACE", "PATCH", "FROB", "get", "Get"):
        for target in ("/one.txt", "/d/", "/d", "/missing", "*"):
            out.append(req(f"{method} {target}", target, method=method))
    out.append(req("POST body", "/one.txt", "Content-Length: 2", method="POST"))
    # versions and Host
    for version in ("HTTP/1.0", "HTTP/1.1", "HTTP/1.2", "HTTP/1.9", "HTTP/2.0", "HTTP/2",
                    "HTTP/0.9", "HTTP/1", "HTTP/1.1.1", "HTTX/1.1", "http/1.1", "HTTP/10.0",
                    "HTTP/1.01", ""):  # fmt: skip
        for host in ("example", None):
            tag = "host" if host else "nohost"
            out.append(req(f"version {version or '-'} {tag}", "/one.txt", version=version,
                           host=host))  # fmt: skip
    for fields, tag in (
        (("Host: a", "Host: a"), "dup-same"),
        (("Host: a", "Host: b"), "dup-diff"),
        (("Host:",), "empty"),
        (("Host: a:80",), "port"),
        (("Host: a b",), "space"),
        (("Host: [::1]",), "ipv6"),
    ):
        for version in ("HTTP/1.1", "HTTP/1.0"):
            out.append(req(f"host {tag} {version}", "/one.txt", *fields, version=version,
                           host=None))  # fmt: skip
    # ranges on files of 0, 1 and 10 KiB
    specs = [
        "bytes=0-0", "bytes=0-", "bytes=1-", "bytes=0-1", "bytes=-1", "bytes=-0",
        "bytes=-2", "bytes=-20000", "bytes=100-199", "bytes=10239-", "bytes=10240-",
        "bytes=10239-99999", "bytes=0-0,2-3", "bytes=0-1,1-2", "bytes=0-1,2-3",
        "bytes=5-9,0-4", "bytes=0-9,-5", "bytes=0-,0-", "bytes=-1,0-0", "bytes=1-0",
        "bytes=5-2", "bytes=0-1,5-2", "bytes=", "bytes=-", "bytes=a-b", "bytes=0-1,",
        "bytes=,0-1", "bytes=0-1,,2-3", "bytes= 0-1", "bytes=0-1 , 3-4", "bytes=0 - 1",
        "Bytes=0-1", "BYTES=0-1", "bytes =0-1", "bytes=0-1\t,2-3", "bits=0-1", "0-1",
        "bytes=0-1;x", "bytes=00-01", "bytes=99999999999999999999-", "bytes=-99999999999999999999",
        "bytes=0-99999999999999999999", "bytes=10000-10239,0-1", "bytes=20000-30000",
        "bytes=20000-30000,0-0", "bytes=0-0,20000-30000", "bytes=1-1,0-0,2-2",
        "bytes=0-5000,4000-10239", "bytes=0-0,-1", "bytes=0-1,0-1,0-1",
        *INVALID, "bytes=\t0-1", "bytes=0-0,\t1-1",
    ]  # fmt: skip
    for name in ("empty.txt", "one.txt", "ten.bin", "big.bin"):
        for spec in dict.fromkeys(specs):  # (INVALID repeats a few)
            out.append(req(f"range {name} {spec}", f"/{name}", f"Range: {spec}"))
    many = [",".join(f"{i * 10}-{i * 10 + 1}" for i in range(n)) for n in (16, 17)]
    for spec in (*many, "bytes=250990-251010", "bytes=-251000", "bytes=-250999",
                 "bytes=200000-200001,100-101,5000-5001", "bytes=250999-250999"):  # fmt: skip
        spec = spec if spec.startswith("bytes=") else "bytes=" + spec
        out.append(req(f"range big {len(spec)} {spec[:40]}", "/big.bin", f"Range: {spec}"))
    for spec in ("bytes=0-0", "bytes=0-1,3-4", "bytes=99999-"):
        out.append(req(f"HEAD range {spec}", "/ten.bin", f"Range: {spec}", method="HEAD"))
    out.append(req("range two fields", "/ten.bin", "Range: bytes=0-0", "Range: bytes=1-1"))
    out.append(req("range on a dir", "/d/", "Range: bytes=0-0"))
    out.append(req("range on a listing", "/list/", "Range: bytes=0-0"))
    out.append(req("range on 404", "/missing", "Range: bytes=0-0"))
    # preconditions
    for name in ("one.txt", "empty.txt"):
        tag = etag(name)
        conds = [
            f"If-None-Match: {tag}", f"If-None-Match: W/{tag}", 'If-None-Match: W/"x"',
            f'If-None-Match: "x", {tag}', "If-None-Match: *", f"If-None-Match: {tag[1:-1]}",
            'If-None-Match: "x"', f"If-Match: {tag}", f"If-Match: W/{tag}", "If-Match: *",
            'If-Match: "x"', f'If-Match: "x", {tag}', f"If-Modified-Since: {LM}",
            f"If-Modified-Since: {PAST}", f"If-Modified-Since: {FUTURE}",
            f"If-Modified-Since: {RFC850}", f"If-Modified-Since: {ASCTIME}",
            "If-Modified-Since: garbage", f"If-Modified-Since: {LM}, {LM}",
            f"If-Modified-Since: {LM.lower()}", f"If-Unmodified-Since: {LM}",
            f"If-Unmodified-Since: {PAST}", f"If-Unmodified-Since: {FUTURE}",
            "If-Unmodified-Since: garbage", f"If-Unmodified-Since: {RFC850}",
        ]  # fmt: skip
        for cond in conds:
            out.append(req(f"cond {name} {cond}", f"/{name}", cond))
        both = [
            (f"If-None-Match: {tag}", f"If-Modified-Since: {PAST}"),
            ('If-None-Match: "x"', f"If-Modified-Since: {LM}"),
            (f"If-Match: {tag}", f"If-Unmodified-Since: {PAST}"),
            ('If-Match: "x"', f"If-None-Match: {tag}"),
            (f"If-Unmodified-Since: {PAST}", f"If-None-Match: {tag}"),
        ]
        for pair in both:
            out.append(req(f"cond {name} {' + '.join(pair)}", f"/{name}", *pair))
        for cond in (f"If-None-Match: {tag}", 'If-Match: "x"', f"If-Modified-Since: {LM}"):
            out.append(req(f"HEAD cond {name} {cond}", f"/{name}", cond, method="HEAD"))
    for cond in (
        "If-None-Match: *",
        'If-Match: "x"',
        "If-Match: *",
        f"If-Modified-Since: {FUTURE}",
    ):
        for target in ("/missing", "/d/", "/d"):
            out.append(req(f"cond {target} {cond}", target, cond))
    tag = etag("ten.bin")
    for if_range in (tag, f"W/{tag}", '"x"', LM, PAST, RFC850, "garbage", f"{tag}, {tag}"):
        for spec in ("bytes=0-1", "bytes=0-1,5-6", "bytes=20000-"):
            out.append(req(f"if-range {if_range} {spec}", "/ten.bin", f"Range: {spec}",
                           f"If-Range: {if_range}"))  # fmt: skip
    out.append(req("if-range no range", "/ten.bin", f"If-Range: {tag}"))
    out.append(req("range + inm", "/ten.bin", "Range: bytes=0-1", f"If-None-Match: {tag}"))
    out.append(req("range + if-match fail", "/ten.bin", "Range: bytes=0-1", 'If-Match: "x"'))
    out.append(req("416 + if-match fail", "/ten.bin", "Range: bytes=99999-", 'If-Match: "x"'))
    out.append(req("416 + inm", "/ten.bin", "Range: bytes=99999-", f"If-None-Match: {tag}"))
    # bodies, framing and other fields on a GET
    for fields, tag in (
        (("Content-Length: 0",), "cl-0"),
        (("Expect: 100-continue",), "expect"),
        (("Connection: close",), "close"),
        (("Connection: keep-alive, foo",), "keep-alive-list"),
        (("Accept-Encoding: gzip",), "gzip"),
        (("Accept: text/html;q=0",), "accept-none"),
        (("Cache-Control: no-cache", "Pragma: no-cache"), "no-cache"),
        (("If-None-Match: nope",), "inm-unquoted"),
        (('If-None-Match: "x",,"y"',), "inm-empty-element"),
        ((f"If-None-Match: ,{etag('one.txt')}",), "inm-leading-comma"),
        ((f"If-None-Match: {etag('one.txt')},",), "inm-trailing-comma"),
        ((f'If-None-Match: "x",{etag("one.txt")}',), "inm-no-space"),
        (('If-None-Match: "x"', f"If-None-Match: {etag('one.txt')}"), "inm-two-fields"),
        (("If-Match: nope",), "im-unquoted"),
        (("If-Match: *, *",), "im-star-list"),
        (('If-None-Match: *, "x"',), "inm-star-list"),
        ((f"If-None-Match: w/{etag('one.txt')}",), "inm-lower-w"),
        ((f"If-None-Match:  {etag('one.txt')}  ",), "inm-ows"),
        ((f"If-Match: w/{etag('one.txt')}",), "im-lower-w"),
        ((f"If-Match: x{etag('one.txt')}",), "im-junk-before"),
        ((f"If-Match: {etag('one.txt')}x",), "im-junk-after"),
        ((f"If-None-Match: x{etag('one.txt')}",), "inm-junk-before"),
        ((f'If-None-Match: "a,b", {etag("one.txt")}',), "inm-comma-in-tag"),
        ((f'If-Match: "a,b", {etag("one.txt")}',), "im-comma-in-tag"),
        ((f"If-Match: {etag('one.txt')} {etag('one.txt')}",), "im-no-comma"),
        ((f"If-Modified-Since: {LM[:-4]}",), "ims-no-gmt"),
        ((f"If-Modified-Since: {LM.replace('GMT', 'UTC')}",), "ims-utc"),
        (("If-Modified-Since: Sun, 31 Feb 2020 00:00:00 GMT",), "ims-31-feb"),
        (("If-Modified-Since: Mon, 13 Sep 2020 12:26:40 GMT",), "ims-wrong-weekday"),
        ((f"If-Modified-Since:  {LM} ",), "ims-ows"),
        (("If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT",), "ims-epoch"),
    ):
        out.append(req(f"field {tag}", "/one.txt", *fields))
    for version in ("HTTP/1.0", "HTTP/1.2"):
        out.append(req(f"{version} range", "/ten.bin", "Range: bytes=0-1,4-5", version=version))
        out.append(req(f"{version} inm", "/ten.bin", f"If-None-Match: {etag('ten.bin')}",
                       version=version))  # fmt: skip
        out.append(req(f"{version} dir", "/d", version=version))
    for target in ("http://ex%41mple/one.txt", "http://example:99999/one.txt",
                   "http://example:/one.txt", "http://EXAMPLE.:80/d", "http://[::1]/one.txt"):  # fmt: skip
        out.append(req(f"authority {target}", target))
    out.append(req("GET with a body", "/one.txt", "Content-Length: 2"))
    out.append(req("HEAD with a body", "/one.txt", "Content-Length: 2", method="HEAD"))
    out.append(req("GET chunked", "/one.txt", "Transfer-Encoding: chunked"))
    out.append(req("OPTIONS body", "/one.txt", "Content-Length: 2", method="OPTIONS"))
    out.append(req("uri 8100", "/" + "a" * 8100))
    out.append(req("uri 9000", "/" + "a" * 9000))
    names = [r.name for r in out]
    assert len(names) == len(set(names)), "case names must be unique"
    return out


CASES = generate()

# --- one exchange ---------------------------------------------------------------------------


@dataclass
class Answer:
    status: int  # 0: no status line (an HTTP/0.9 answer), -1: closed without an answer
    headers: dict[str, str]
    body: bytes
    framed: bool = True  # (pipelined) the request after it got its own answer, or EOF


NEXT = b"GET /one.txt HTTP/1.1\r\nHost: example\r\n\r\n"


def ask(port: int, case: Req, pipelined: bool = False) -> Answer:
    """One answer. ``pipelined``: NEXT is sent behind the request, to check RFC 9112 §6.3
    framing (a true Content-Length, no body on HEAD or 304): NEXT gets its own answer, or
    the connection closes."""
    with connect(port, timeout=5) as sock:
        sock.sendall(case.raw + NEXT if pipelined else case.raw)
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if not buf.startswith(b"HTTP/"[: len(buf)]):
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        if not buf:
            return Answer(-1, {}, b"")
        if not buf.startswith(b"HTTP/"):
            return Answer(0, {}, buf)
        raw_head, _, body = buf.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            headers[key] = headers[key] + ", " + value.strip() if key in headers else value.strip()
        status = int(lines[0].split()[1])
        length = int(headers.get("content-length", "0"))
        if case.method == "HEAD" or status in (204, 304):
            length = 0
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        answer = Answer(status, headers, body[:length])
        if pipelined:
            reader = RawReader(sock)
            reader.buf = body[length:]
            try:
                after = reader.response()
            except (AssertionError, ValueError, IndexError, ConnectionResetError):
                answer.framed = False
            else:
                answer.framed = after is None or (after.status, after.body) == (200, b"x")
        return answer


_BOUNDARY = re.compile(r"boundary=(\S+)")


def parts(answer: Answer) -> list[tuple[str | bytes, ...]] | None:
    """The (Content-Range, media type, data) of each part of a multipart/byteranges body."""
    found = _BOUNDARY.search(answer.headers.get("content-type", ""))
    if not found:
        return None
    boundary = b"--" + found.group(1).strip('"').encode()
    out = []
    for chunk in answer.body.split(boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.partition(b"\r\n\r\n")
        crange = re.search(rb"(?i)content-range: *([^\r\n;]*)", head)
        ctype = re.search(rb"(?i)content-type: *([^\r\n;]*)", head)
        fields = [m.group(1).decode() if m else "" for m in (crange, ctype)]
        out.append((*fields, data.removesuffix(b"\r\n")))
    return out


def seen(answer: Answer) -> dict[str, object]:
    """What both servers must agree on (error pages, Server, Date, ETag text aside)."""
    h = answer.headers
    out: dict[str, object] = {"status": answer.status}
    multipart = h.get("content-type", "").startswith("multipart/byteranges")
    if answer.status in (200, 206, 304):
        out["etag"] = h.get("etag")
        out["last-modified"] = h.get("last-modified")
    if answer.status in (200, 206):
        if not multipart:
            ctype = h.get("content-type")  # nginx: no charset (its `charset off`)
            out["content-type"] = ctype.split(";")[0] if ctype else None
        if multipart:
            out["parts"] = parts(answer)
        else:
            out["body"] = answer.body
            out["content-length"] = h.get("content-length")
    out["content-range"] = h.get("content-range")
    out["location"] = h.get("location")
    out["allow"] = h.get("allow")
    out["multipart"] = multipart
    return out


# --- what the sweep found: one test each --------------------------------------------------


def get(port: int, target: str, *fields: str, method: str = "GET") -> Answer:
    return ask(port, req(target, target, *fields, method=method))


@pytest.mark.parametrize(
    ("target", "status", "body"),
    [
        ("/%252F", 200, FILES["%2F"]),  # the file named %2F
        ("/%252f", 404, None),  # %2f: another name (nginx: the same)
        ("/%252e%252e/in.txt", 200, FILES["%2e%2e/in.txt"]),  # in the directory named %2e%2e
        ("/%252e%252e/%252e%252e/one.txt", 404, None),  # names, never a climb
        ("/d/..%252fone.txt", 404, None),  # the name "..%2fone.txt" in d/
        ("/%255c", 404, None),
    ],
)
def test_a_percent_escape_left_after_decoding_is_part_of_a_name(
    ours: int,
    nginx: int,  # noqa: F811
    target: str,
    status: int,
    body: bytes | None,
) -> None:
    """RFC 3986 §2.4: a target is decoded once, so ``/%252F`` names the file ``%2F``. ipcnet
    took every still-encoded ``.``, ``/``, ``\\``, NUL for double encoding and answered 403,
    though nothing decodes a name again (a name cannot climb) and its own listing links
    the file so: a link on its own page was refused. nginx serves it."""
    answer = get(ours, target)
    assert answer.status == status
    if body is not None:
        assert answer.body == body
    theirs = get(nginx, target)  # (its type for a name without an extension: text/plain)
    assert (theirs.status, theirs.body if status == 200 else None) == (status, body)


def test_a_listing_link_to_a_percent_named_file_works(ours: int) -> None:
    listing = get(ours, "/").body.decode()
    hrefs = re.findall(r'href="([^"]+)"', listing)
    assert "%252F" in hrefs and "%252e%252e/" in hrefs
    for href in hrefs:
        answer = get(ours, "/" + href.removeprefix("./"))
        assert answer.status == 200, href


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "TRACE", "PATCH", "FROB", "get"])
def test_the_asterisk_form_is_for_options_only(
    ours: int,
    nginx: int,  # noqa: F811
    method: str,
) -> None:
    """RFC 9112 §3.2.4: the asterisk-form is only used for a server-wide OPTIONS; §3: an
    invalid request-line SHOULD get 400. ipcnet answered ``POST *`` with 405 and an Allow
    for a resource ``*`` that is none (``FROB *`` 501), though ``GET *`` got 400; nginx 400."""
    raw = f"{method} * HTTP/1.1\r\nHost: example\r\n\r\n".encode()
    response, closed = exchange(ours, raw)
    assert response is not None and response.status == 400, response and response.raw_head
    assert "allow" not in response.headers
    assert not closed  # a target error, as for GET *: the connection stays usable
    assert ask(nginx, Req(method, raw, method)).status == 400
    options, _ = exchange(ours, b"OPTIONS * HTTP/1.1\r\nHost: example\r\n\r\n")
    assert options is not None and options.status == 200


@pytest.mark.parametrize(
    "fields",
    [
        ("Range: bytes=0-0", "Range: bytes=1-1"),
        ("Range: bytes=0-0", "Range: bytes=0-0"),
        ("Range: bytes=0-1", f"If-Range: {etag('ten.bin')}", f"If-Range: {etag('ten.bin')}"),
        ("Range: bytes=0-1", f"If-Range: {LM}", f"If-Range: {LM}"),
    ],
    ids=["two-ranges", "the-same-range-twice", "if-range-tag-twice", "if-range-date-twice"],
)
def test_a_range_or_if_range_sent_twice_is_ignored(ours: int, fields: tuple[str, ...]) -> None:
    """RFC 9110 §5.3: a field sent in several lines is their values joined by commas; Range
    and If-Range are single values (§14.2, §13.1.5), so two of them are not a valid one and
    the Range is ignored (200, the whole file). ipcnet used the last line and answered 206
    (nginx uses the first: a cache and a server in a chain could each pick another)."""
    single = get(ours, "/ten.bin", *fields[:1] + fields[2:3])
    assert single.status == 206  # one of each is honoured
    answer = get(ours, "/ten.bin", *fields)
    assert answer.status == 200, answer.headers
    assert "content-range" not in answer.headers and answer.body == TEN


@pytest.mark.parametrize(
    ("field", "status"),
    [
        ("If-Match: {tag}", 200),
        ("If-Match: w/{tag}", 412),  # §8.8.3: weak = %s"W/", case-sensitive
        ("If-Match: x{tag}", 412),
        ("If-Match: {tag}x", 412),
        ("If-Match: {tag} {tag}", 412),  # two tags need a comma between them
        ('If-Match: "a,b", {tag}', 200),  # etagc takes a comma: two members
        ("If-None-Match: W/{tag}", 304),
        ("If-None-Match: w/{tag}", 200),
        ("If-None-Match: x{tag}", 200),
        ("If-None-Match: ,{tag},", 304),  # §5.6.1.2: empty members are ignored
    ],
)
def test_an_entity_tag_inside_junk_matches_nothing(
    ours: int,
    nginx: int,  # noqa: F811
    field: str,
    status: int,
) -> None:
    """RFC 9110 §8.8.3, §13.1.1-2: If-Match and If-None-Match are lists of entity-tags.
    ipcnet took any quoted string found anywhere in the value for one, so ``If-Match:
    x"<tag>"`` passed (200, where a lost-update check must fail: 412) and ``If-None-Match:
    w/"<tag>"`` answered 304; nginx parses the members."""
    value = field.format(tag=etag("one.txt"))
    assert get(ours, "/one.txt", value).status == status
    assert get(nginx, "/one.txt", value).status == status


# --- the sweep ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Why:
    """A deliberate difference: cases whose name matches ``names`` with these statuses."""

    names: str  # a regular expression searched in the case name
    ours: int | None  # ipcnet's status (None: any)
    nginx: int | None
    reason: str


DELIBERATE = [
    Why(r"^(GET|HEAD) (/|/list/|/d/\.\.|http://example(\?x|:80)?)$|^range on a listing$",
        200, 403, "nginx's autoindex is off in the shared fixture; ipcnet lists directories"),
    Why(r"^(GET|HEAD) (http://example)?/(d/)?(\.\.|%2e%2e)(/|$)|/d/\.\./\.\./", 403, 400,
        "a '..' above ROOT: both refuse it; 403 is ipcnet's documented answer"),
    Why(r"%2[Ff]f\.txt$", 403, 200, "RFC 3986 §2.2: %2F is data, not a '/'; nginx decodes it into a "
        "separator, ipcnet refuses an encoded '/' (README: Safety)"),
    Why(r"%5cf\.txt$", 403, 404, "an encoded backslash: ipcnet refuses it (README: Safety)"),
    Why(r"%00", 403, 400, "an encoded NUL: both refuse it, 403 is ipcnet's documented answer"),
    Why(r"^(GET|HEAD) /ünï\.txt$", 400, 200,
        "RFC 9112 §3.2, RFC 3986 §2: a request-target is ASCII; nginx takes raw UTF-8"),
    Why(r"^(POST|PUT|DELETE|TRACE|PATCH) (/one\.txt|/d/?|/missing)$|^POST body$", 405, None,
        "RFC 9110 §15.5.6: a 405 MUST carry Allow, nginx's has none; and nginx checks the "
        "resource first (301, 404), ipcnet the method: the RFC sets no order"),
    Why(r"^OPTIONS ", 200, None, "RFC 9110 §9.3.7: ipcnet answers OPTIONS (and OPTIONS *) with "
        "Allow; nginx's static module answers 405 (400 for *)"),
    Why(r"^FROB ", 501, None, "RFC 9110 §15.6.2: an unrecognised method SHOULD get 501; nginx 405"),
    Why(r"^(get|Get) ", 501, 400, "RFC 9110 §9.1: methods are case-sensitive tokens, 'get' is a "
        "valid unknown one (501); nginx refuses lower case with 400"),
    Why(r"^version HTTP/(2|10\.0|1\.01) ", 400, None, "RFC 9112 §2.3: HTTP-version is "
        "HTTP/DIGIT.DIGIT; nginx takes other spellings (505, or 200 for 1.01)"),
    Why(r"^version HTTP/0\.9 ", 505, 400, "major version 0 is not supported: 505 (§15.6.6)"),
    Why(r"^version - ", 400, 0, "no version: nginx still speaks HTTP/0.9, which RFC 9112 dropped"),
    Why(r"^authority http://ex%41mple/", 200, 400, "RFC 3986 §3.2.2: a reg-name may be "
        "pct-encoded; nginx refuses a '%' in the host"),
    Why(r"^(GET|HEAD) /(%5Bx%5D|\[x\])$", 301, 301, "RFC 3986 §3.3: '[' and ']' are not "
        "pchars, so the Location encodes them (/%5Bx%5D/); nginx sends them raw"),
    Why(r"^host empty ", 200, 400, "RFC 9112 §3.2, RFC 9110 §7.2: an empty Host is valid"),
    Why(r"^range empty\.txt ", 416, 200, "RFC 9110 §14.1.1: a first-pos at or past the length is "
        "unsatisfiable -> 416; nginx ignores every Range on an empty file"),
    Why(r"^range .* (" + "|".join(map(re.escape, INVALID)) + "|bytes=-99999999999999999999)$",
        200, 416,
        "an invalid Range: RFC 9110 §14.2 lets a server ignore it (ipcnet, 200); nginx 416s it "
        "(on an empty file a suffix-range is ignored: no Content-Range can name 0 bytes)"),
    Why(r"^range .* bytes=(0-1,5-2|0 - 1)$", 200, 206, "an invalid range-spec makes the "
        "ranges-specifier invalid: ignored (§14.2); nginx serves the valid part"),
    Why(r"^range .* bytes=(0-1,|,0-1|0-1,,2-3|0-1\t,2-3|\t0-1|0-0,\t1-1)$", 206, 416, "RFC 9110 §5.6.1.2: a "
        "recipient MUST accept empty list elements (and OWS by a comma); nginx 416s them"),
    Why(r"^range .* bytes=(-|0-)99999999999999999999$", 206, 416, "RFC 9110 §14.1.1: a position "
        "of any size is valid (past the end: to the end, or the whole); nginx overflows to 416"),
    Why(r"^range (one|ten|big)\.\w+ bytes=(0-9,-5|0-,0-|-1,0-0|0-0,-1|0-1,0-1,0-1|0-5000,4000-10239|"
        r"0-1,1-2|0-1,2-3|5-9,0-4|1-1,0-0,2-2)$", 206, None, "RFC 9110 §14.6: overlapping or "
        "adjacent ranges MAY be coalesced (ipcnet: one part); nginx sends every part, or 200 "
        "when they add up past the length (§14.2 allows ignoring)"),
    Why(r"^range big 119 ", 200, 206, "17 ranges: over --max-ranges (16), the header is "
        "ignored (RFC 9110 §14.2 lets a server ignore many small ranges); nginx sends 17 parts"),
    Why(r"^HEAD range ", 200, None, "RFC 9110 §14.2: a server MUST ignore Range on a method "
        "that defines no range handling; only GET does (nginx: 206, 416)"),
    Why(r"^range two fields$", 200, 206, "RFC 9110 §5.3: two Range lines join into an invalid "
        "value, ignored; nginx uses the first (test_a_range_or_if_range_sent_twice_is_ignored)"),
    Why(r"If-Modified-Since: " + FUTURE, 304, 200, "RFC 9110 §13.1.3: not modified since a "
        "later date -> 304; nginx's default `if_modified_since exact` wants the same date"),
    Why(r"If-Modified-Since: " + LM + ", ", 200, 304, "RFC 9110 §13.1.3: a list of dates MUST "
        "be ignored; nginx takes the first"),
    Why(r"If-Unmodified-Since: garbage", 200, 412, "RFC 9110 §13.1.4: an invalid date MUST "
        "be ignored; nginx 412s"),
    Why(r"If-None-Match: \S+ \+ If-Modified-Since", 304, 200, "RFC 9110 §13.1.3: "
        "If-Modified-Since MUST be ignored when If-None-Match is sent; nginx evaluates it"),
    Why(r"If-Match: \S+ \+ If-Unmodified-Since", 200, 412, "RFC 9110 §13.1.4: "
        "If-Unmodified-Since MUST be ignored when If-Match is sent; nginx evaluates it"),
    Why(r"^if-range " + re.escape(RFC850), 200, None, "RFC 9110 §13.1.5: a date must exactly "
        "match the Last-Modified field value; nginx compares the parsed times"),
    Why(r"^416 \+ ", 416, None, "RFC 9110 §13.2.1: preconditions are ignored when the answer "
        "without them would not be 2xx or 412; nginx evaluates them first"),
    Why(r"^field expect$", 200, 100, "RFC 9110 §10.1.1: a server MAY omit 100 (Continue) when "
        "the framing says there is no content; nginx sends it"),
    Why(r"^field inm-two-fields$", 304, 400, "RFC 9110 §5.3: If-None-Match is a list, two "
        "lines are one list; nginx refuses the second line"),
    Why(r"^field ims-(no-gmt|utc)$", 200, 304, "RFC 9110 §13.1.3: a value that is not an "
        "HTTP-date MUST be ignored; nginx's parser takes these"),
    Why(r"^(GET|HEAD|OPTIONS) (with a )?body$|^GET chunked$", 413, None, "content on a "
        "GET, HEAD or OPTIONS gets 413 (README: Safety; RFC 9110 §9.3.1 gives it no meaning); "
        "nginx reads and drops it"),
    Why(r"^(GET|HEAD) /app\.js$", 200, 200, "RFC 9239: text/javascript; nginx's table is older"),
    Why(r"^(GET|HEAD) /(arch\.tar\.gz|README|x\.unknownext|%252F)$", 200, 200, "a name nginx's table "
        "lacks gets its default_type text/plain; ipcnet application/gzip for .gz and "
        "application/octet-stream otherwise (RFC 9110 §8.3)"),
]  # fmt: skip


def test_sweep_against_nginx(ours: int, nginx: int) -> None:  # noqa: F811
    """Every generated request: ipcnet and nginx agree, or the difference is deliberate;
    and ipcnet's answer is framed so that the next request on the connection is answered."""
    unexplained = []
    used: set[int] = set()
    for case in CASES:
        a, b = ask(ours, case, pipelined=True), ask(nginx, case)
        if not a.framed:
            unexplained.append(f"{case.name!r}: the answer is not framed right")
        if seen(a) == seen(b):
            continue
        why = [
            i
            for i, w in enumerate(DELIBERATE)
            if re.search(w.names, case.name)
            and w.ours in (None, a.status)
            and w.nginx in (None, b.status)
        ]
        if why:
            used.add(why[0])
            continue
        x, y = seen(a), seen(b)
        unexplained.append(f"{case.name!r}: " + ", ".join(
            f"{k} {str(x[k])[:40]} vs nginx {str(y.get(k))[:40]}" for k in x if x[k] != y.get(k)
        ))  # fmt: skip
    assert not unexplained, f"{len(unexplained)} unexplained differences:\n" + "\n".join(
        unexplained[:40]
    )
    stale = [w.names for i, w in enumerate(DELIBERATE) if i not in used]
    assert not stale, f"allow-list entries that explain nothing (remove them): {stale}"


@pytest.mark.parametrize(
    ("target", "canonical"),
    [
        ("/%5Fhealth", "/_health"),
        ("/%5fstatus.json", "/_status.json"),
        ("//_health", "/_health"),
        ("/./_metrics", "/_metrics"),
        ("/d/../_health", "/_health"),
        ("http://example/_h%65alth", "/_health"),
    ],
)
def test_a_status_endpoint_in_any_equivalent_spelling(
    ours: int, target: str, canonical: str
) -> None:
    """RFC 3986 §6.2.2: ``/%5Fhealth``, ``//_health`` and ``/./_health`` are ``/_health``,
    as every file path already is (``/%64/`` is ``/d/``), and as nginx's ``location =
    /_health`` matches them. The status endpoints matched the raw path only: 404."""
    expected = get(ours, canonical)
    assert expected.status == 200
    answer = get(ours, target)
    assert answer.status == 200
    assert answer.headers["content-type"] == expected.headers["content-type"]
    assert get(ours, canonical + "/").status == 404  # still a name, not a prefix
