"""The HTTP session without sockets: feed bytes, run its jobs inline, look at the actions.
Also the pure pieces: target gate, Range, conditional requests."""

from __future__ import annotations

import errno
import functools
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from http_cases.kit import SMALL, make_site, remove_site
from ipcnet.httpd import HttpOptions, make_service
from ipcnet.protocols.base import (
    Close,
    Outcome,
    Peer,
    Run,
    SendFile,
    ShutdownWrite,
    Timer,
    as_list,
)
from ipcnet.protocols.http import BadRequest, Head, HttpService, Limits
from ipcnet.protocols.http.conditional import if_range_holds, parse_http_date, preconditions
from ipcnet.protocols.http.parsers import check_bytes, parser_available
from ipcnet.protocols.http.ranges import parse_range
from ipcnet.protocols.http.target import parse_target


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    path = make_site()
    yield path
    remove_site(path)


def service(root: Path, **limits: float) -> HttpService:
    return make_service(root, HttpOptions(quiet=True, limits=Limits(**limits)))  # type: ignore[arg-type]


def drive(session: object, actions: object) -> list[object]:
    """Carry out Run jobs inline, as a blocking driver does; return the other actions."""
    out: list[object] = []
    pending = list(as_list(actions))  # type: ignore[arg-type]
    while pending:
        action = pending.pop(0)
        if isinstance(action, Run):
            try:
                outcome = Outcome(value=action.job())
            except Exception as exc:
                outcome = Outcome(error=exc)
            pending = list(as_list(session.resume(action, outcome))) + pending  # type: ignore[attr-defined]
        else:
            out.append(action)
    return out


def wire(actions: list[object]) -> bytes:
    data = b""
    for a in actions:
        if isinstance(a, (bytes, bytearray, memoryview)):
            data += bytes(a)
        elif isinstance(a, SendFile):
            import os

            data += os.pread(a.fd, a.count, a.offset)
            if a.close:
                os.close(a.fd)
    return data


def test_pipelined_requests_answered_in_order_across_jobs(root: Path) -> None:
    session, _ = service(root).start(Peer(None))
    data = (
        b"GET /medium.bin HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /nothing HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    first = session.feed(data)
    assert isinstance(as_list(first)[-1], Run)  # lookups are blocking: a job, parsing stops
    actions = drive(session, first)
    text = wire(actions)
    assert text.count(b"HTTP/1.1 ") == 3
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", text) == [b"200", b"200", b"404"]
    assert any(isinstance(a, SendFile) and a.close for a in actions)  # medium.bin: sendfile


def test_header_deadline_is_armed_once_and_trickling_does_not_move_it(root: Path) -> None:
    """From the accept (nginx's client_header_timeout), not from the first byte: a client
    silent until just before it, then trickling, would have had twice the time."""
    session, first = service(root, header_timeout=5).start(Peer(None))
    assert list(as_list(first)) == [Timer(5)]
    assert as_list(session.feed(b"GET / HTTP/1.1\r\n")) == ()
    for byte in b"Host: a":
        assert not any(isinstance(a, Timer) for a in as_list(session.feed(bytes([byte]))))
    timeout = drive(session, session.on_timer())
    assert wire(timeout).startswith(b"HTTP/1.1 408 ")
    assert any(isinstance(a, ShutdownWrite) for a in timeout)
    assert session.feed(b"more ignored") is None  # lingering: read and dropped
    assert list(as_list(session.on_timer())) == [Close()]


def test_a_new_connection_silent_past_the_deadline_is_closed_without_an_answer(
    root: Path,
) -> None:
    """nginx closes it without a 408 (a browser's unused preconnection must not read
    one); bytes of a head before the deadline make it the 408 case above."""
    session, _ = service(root, header_timeout=5).start(Peer(None))
    assert list(as_list(session.on_timer())) == [Close()]
    keep_alive, _ = service(root).start(Peer(None))
    assert wire(drive(keep_alive, keep_alive.feed(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n")))
    assert keep_alive.on_timer() is None  # idle between requests: the driver's idle timeout


def test_complete_head_disarms_the_deadline(root: Path) -> None:
    session, _ = service(root).start(Peer(None))
    session.feed(b"GET /hello.txt HTTP/1.1\r\n")
    actions = drive(session, session.feed(b"Host: a\r\n\r\n"))
    assert actions[0] == Timer(None)
    assert wire(actions).endswith(SMALL)


def test_an_answer_that_closes_needs_no_disarm(root: Path) -> None:
    """The close path's answer is just [bytes, Close]: the Close ends the deadline too
    (a head answered from memory; one that needs a job keeps its disarm, see above)."""
    session, _ = service(root).start(Peer(None))
    actions = as_list(session.feed(b"OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
    assert [type(a) for a in actions] == [bytes, Close]
    assert actions[0].startswith(b"HTTP/1.1 200 ")  # type: ignore[union-attr]


def test_body_refused_then_lingers_until_eof(root: Path) -> None:
    session, _ = service(root).start(Peer(None))
    actions = as_list(session.feed(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234"))
    assert actions[0] == Timer(None)  # the first head came: the deadline from the accept is over
    assert wire(list(actions)).startswith(b"HTTP/1.1 413 ")
    assert isinstance(actions[2], ShutdownWrite)
    assert session.feed(b"56789") is None
    assert list(as_list(session.feed_eof())) == [Close()]


def test_eof_during_a_job_answers_then_closes(root: Path) -> None:
    session, _ = service(root).start(Peer(None))
    job = as_list(session.feed(b"GET /medium.bin HTTP/1.1\r\nHost: a\r\n\r\n"))[-1]
    assert session.feed_eof() is None
    assert isinstance(job, Run)
    rest = list(as_list(session.resume(job, Outcome(value=job.job()))))
    assert isinstance(rest[-1], Close)
    wire(rest)


@pytest.mark.parametrize(
    ("target", "segments", "trailing"),
    [
        (b"/", (), True),
        (b"/a/b.txt?x=1#frag", ("a", "b.txt"), False),
        (b"//a//b/", ("a", "b"), True),
        (b"/./a/.", ("a",), True),
        (b"/a%20b", ("a b",), False),
        (b"/%C3%BC", ("ü",), False),
        (b"http://host/x", ("x",), False),
        (b"http://host", (), True),
        (b"/a/../b", ("b",), False),  # RFC 3986 §5.2.4 (was refused with 403)
        (b"/a/%2e%2e/b/..", (), True),
        (b"/%252e%252e/x", ("%2e%2e", "x"), False),  # decoded once: a name, not a climb
        (b"/..%252f", ("..%2f",), False),
    ],
)
def test_target_accepted(target: bytes, segments: tuple[str, ...], trailing: bool) -> None:
    parsed = parse_target(target)
    assert (parsed.segments, parsed.trailing) == (segments, trailing)
    assert not parsed.location().startswith("//")


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (b"/..", 403),
        (b"/a/../../b", 403),
        (b"/%2e%2e/x", 403),
        (b"/a%2fb", 403),
        (b"/a%5cb", 403),
        (b"/a%00", 403),
        (b"/%zz", 400),
        (b"a/b", 400),
        (b"*", 400),
    ],
)
def test_target_refused(target: bytes, status: int) -> None:
    with pytest.raises(BadRequest) as err:
        parse_target(target)
    assert err.value.status == status


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"bytes=0-4", [(0, 4)]),
        (b"bytes=5-", [(5, 9)]),
        (b"bytes=-3", [(7, 9)]),
        (b"bytes=-30", [(0, 9)]),
        (b"bytes=0-100", [(0, 9)]),
        (b"bytes=8-9,0-1", [(8, 9), (0, 1)]),  # in the order asked (RFC 9110 §14.6)
        (b"bytes=8-9,0-1,1-2", [(8, 9), (0, 2)]),
        (b"bytes=0-3,2-5,6-6", [(0, 6)]),
        (b"bytes= 0-1 , , 3-4", [(0, 1), (3, 4)]),
        (b"bytes=10-", []),
        (b"bytes=-0", []),
        (b"bytes=3-1", None),
        (b"bytes=a-b", None),
        (b"items=0-1", None),
        (b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(17)), None),
    ],
)
def test_ranges(header: bytes, expected: list[tuple[int, int]] | None) -> None:
    assert parse_range(header, 10, 16) == expected


def _head(method: str = "GET", **fields: str) -> Head:
    head = Head(method, b"/", "1.1", [])
    for name, value in fields.items():
        head.headers.append((name.replace("_", "-").encode(), value.encode()))
        head.fields[name.replace("_", "-").encode()] = value.encode()
    return head


def test_conditional() -> None:
    etag = b'"abc-10"'
    text = "Sun, 06 Nov 1994 08:49:37 GMT"
    date = text.encode()
    stamp = parse_http_date(date)
    assert stamp == 784111777
    assert parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT") == stamp
    assert parse_http_date(b"Sun Nov  6 08:49:37 1994") == stamp
    assert parse_http_date(b"garbage") is None
    assert parse_http_date(date + b", " + date) is None  # a list is not a date
    assert parse_http_date(b"Sun, 31 Feb 1994 08:49:37 GMT") is None
    assert preconditions(_head(if_none_match='"x", W/"abc-10"'), etag, 0) == 304
    assert preconditions(_head(if_none_match="*"), etag, 0) == 304
    assert preconditions(_head("POST", if_none_match="*"), etag, 0) == 412
    assert preconditions(_head(if_none_match='"x"', if_modified_since=text), etag, 0) == 0
    assert preconditions(_head(if_modified_since=text), etag, stamp) == 304
    assert preconditions(_head(if_modified_since=text), etag, stamp + 1) == 0
    assert preconditions(_head(if_modified_since="nonsense"), etag, 0) == 0
    assert preconditions(_head("POST", if_modified_since=text), etag, 0) == 0
    assert preconditions(_head(if_match='"abc-10"'), etag, 0) == 0
    assert preconditions(_head(if_match='W/"abc-10"'), etag, 0) == 412  # weak never matches
    assert preconditions(_head(if_match="*"), None, None) == 0
    assert preconditions(_head(if_match='"x"', if_unmodified_since="garbage"), etag, 0) == 412
    assert preconditions(_head(if_unmodified_since=text), etag, stamp + 1) == 412
    assert preconditions(_head(if_unmodified_since=text), etag, stamp) == 0
    assert preconditions(_head(if_unmodified_since="garbage"), etag, stamp + 1) == 0
    assert if_range_holds(b'"abc-10"', etag, date)
    assert not if_range_holds(b'W/"abc-10"', etag, date)
    assert if_range_holds(date, etag, date)
    assert not if_range_holds(b"Sunday, 06-Nov-94 08:49:37 GMT", etag, date)  # not exact


# the rule check_bytes enforces, written the slow, obvious way
_FORBIDDEN = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n|\n[ \t]")


@given(
    st.binary(max_size=40)
    | st.lists(st.sampled_from([b"\r", b"\n", b"\t", b" ", b"a"])).map(b"".join)
)
def test_check_bytes_refuses_exactly_controls_bare_cr_lf_and_obs_fold(raw: bytes) -> None:
    if _FORBIDDEN.search(raw):
        with pytest.raises(BadRequest):
            check_bytes(raw)
    else:
        check_bytes(raw)


class FailingFiles:
    """A Filesystem whose lookups fail the way a real one does: with translated errors."""

    def __init__(self, code: int) -> None:
        self.code = code

    def cached(self, segments: tuple[str, ...], trailing: bool, gzip: bool) -> None:
        return None

    def lookup(self, segments: tuple[str, ...], trailing: bool, gzip: bool) -> object:
        from ipcnet.transports.oserrors import translating_file

        with translating_file("open", "file:///srv/www/" + "/".join(segments)):
            raise OSError(self.code, os.strerror(self.code))


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (errno.EACCES, 403),
        (errno.EPERM, 403),
        (errno.ENOENT, 404),
        (errno.ENOTDIR, 404),
        (errno.ELOOP, 404),
        (errno.ENAMETOOLONG, 404),
        (errno.EMFILE, 503),
        (errno.EIO, 500),
    ],
)
def test_lookup_errors_arrive_translated(code: int, status: int) -> None:
    """The session maps ipcnet errors, never an OSError, to statuses (issue 9, item 6)."""
    service = HttpService(FailingFiles(code))  # type: ignore[arg-type]
    for method in (b"GET", b"HEAD"):
        session, _ = service.start(Peer(None))
        text = wire(drive(session, session.feed(method + b" /x HTTP/1.1\r\nHost: a\r\n\r\n")))
        assert text.startswith(b"HTTP/1.1 %d " % status)
        assert text.endswith(b"\r\n\r\n") == (method == b"HEAD")


def test_resolver_raises_no_oserror(root: Path, short_tmp: Path) -> None:
    """A socket file (ENXIO), a name too long, a missing parent: 404s, never an OSError."""
    import socket

    from ipcnet.httpd.files import Resolver

    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(short_tmp / "sock"))
    try:
        resolver = Resolver(str(short_tmp), cache_ttl=0)
        for segments in [("sock",), ("x" * 300,), ("missing", "a.txt")]:
            found = resolver.lookup(segments, False, False)
            assert getattr(found, "status", None) == 404, (segments, found)
    finally:
        listener.close()


def test_states_follow_the_transition_table(root: Path) -> None:
    """The moves of session.py's table, one by one, with the actions each returns."""
    from ipcnet.protocols.http.session import State

    session, first = service(root, header_timeout=5, linger_timeout=2).start(Peer(None))
    assert session.state is State.NEW and list(as_list(first)) == [Timer(5)]
    assert as_list(session.feed(b"GET /medium.bin HTTP/1.1\r\n")) == ()  # it runs on
    assert session.state is State.READING
    actions = as_list(session.feed(b"Host: a\r\n\r\n"))
    assert actions[0] == Timer(None) and isinstance(actions[-1], Run)
    assert session.state is State.WAITING
    assert session.feed(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") is None
    job = actions[-1]
    assert isinstance(job, Run)
    after = list(as_list(session.resume(job, Outcome(value=job.job()))))
    assert session.state is State.WAITING  # the kept request needs its own lookup
    after = drive(session, after)
    assert session.state is State.CLOSED  # it said close, and nothing came after it
    assert isinstance(after[-1], Close) and wire(after).endswith(SMALL)

    session, _ = service(root, linger_timeout=2).start(Peer(None))
    drive(session, session.feed(b"GET /hello.txt HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert session.state is State.IDLE
    failed = as_list(session.feed(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\nGET / HTTP/1.1\r\n"))
    assert wire(list(failed)).startswith(b"HTTP/1.1 400 ")
    assert list(failed[1:]) == [ShutdownWrite(), Timer(2)]
    assert session.state is State.LINGERING
    assert session.feed(b"dropped") is None
    assert list(as_list(session.on_timer())) == [Close()]
    assert session.state is State.CLOSED


# pieces of request heads, sane and not, for the two-parser agreement below
_METHODS = [b"GET", b"HEAD", b"POST", b"OPTIONS", b"FROB", b"get", b"PROPFIND", b"G(T", b"PRI"]
_TARGETS = [b"/hello.txt", b"/a?b", b"*", b"http://x/hello.txt", b"/\x7f", b"x:1", b"/%zz"]
_TARGETS += [b"/a{b}", b"/\xc3\xbc", b"http://[::1/", b"a", b"/a|b", b"/a\\b", b"/docs"]
_VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"http/1.1", b""]
_FIELDS = [b"Host: a", b"Host: a b", b"Host:", b"Host: [::1]", b"Host: a:1:2"]
_FIELDS += [b"Connection: close", b"Connection: keep-alive", b"Expect: 100-continue"]
_FIELDS += [b"Content-Length: 0", b"Content-Length: 5", b"Content-Length: 1, 1", b"X-A : b"]
_FIELDS += [b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked", b" folded"]
_FIELDS += [b"Range: bytes=0-1", b"If-None-Match: *", b'If-Match: "x"', b"X-A: \xff"]
_LINE_BYTES = st.binary(max_size=10).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@functools.cache
def _parser_service(root: Path, parser: str) -> HttpService:
    return make_service(root, HttpOptions(quiet=True, parser=parser))


@pytest.mark.skipif(not parser_available("httptools"), reason="httptools is not installed")
@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(_METHODS),
    st.sampled_from(_TARGETS) | _LINE_BYTES.map(lambda b: b"/" + b.replace(b" ", b"")),
    st.sampled_from(_VERSIONS),
    st.lists(st.sampled_from(_FIELDS) | _LINE_BYTES, max_size=4),
    st.sampled_from([b" ", b"  "]),
)
def test_both_parsers_give_the_same_answers(
    root: Path, method: bytes, target: bytes, version: bytes, fields: list[bytes], sp: bytes
) -> None:
    """httptools and h11 (the adapters and check_head) make one web server, not two."""
    raw = method + b" " + target + (sp + version if version else b"") + b"\r\n"
    raw += b"".join(f + b"\r\n" for f in fields) + b"\r\n"
    answers = []
    for parser in ("httptools", "h11"):
        session, _ = _parser_service(root, parser).start(Peer(None))
        actions = drive(session, session.feed(raw))
        text = re.sub(rb"Date: [^\r]*", b"", wire(actions))
        answers.append((text, [type(a).__name__ for a in actions], session.state))
    assert answers[0] == answers[1], raw


def test_an_expired_answer_is_renewed_by_one_lookup_while_others_still_use_it(
    tmp_path: Path,
) -> None:
    from ipcnet.httpd.files import OpenFile, Resolver

    (tmp_path / "a.txt").write_bytes(b"old")
    resolver = Resolver(str(tmp_path), cache_ttl=0.01)
    key = (("a.txt",), False, False)
    resolver.lookup(*key)
    deadline = time.monotonic() + 0.02
    while time.monotonic() < deadline:  # (expiry is by the monotonic clock: no race)
        time.sleep(0.01)
    assert resolver.cached(*key) is None  # the first to find it expired renews it
    stale = resolver.cached(*key)  # the others are still answered, not sent to lookups
    assert isinstance(stale, OpenFile) and stale.data == b"old"
    (tmp_path / "a.txt").write_bytes(b"new!")
    resolver.lookup(*key)
    fresh = resolver.cached(*key)
    assert isinstance(fresh, OpenFile) and fresh.data == b"new!"


def test_a_renewal_that_never_ran_is_taken_up_one_ttl_later(tmp_path: Path) -> None:
    from ipcnet.httpd.files import Resolver

    (tmp_path / "a.txt").write_bytes(b"old")
    resolver = Resolver(str(tmp_path), cache_ttl=0.01)
    key = (("a.txt",), False, False)
    resolver.lookup(*key)
    for _ in range(2):  # the request that should renew it left before its lookup ran
        deadline = time.monotonic() + 0.02
        while time.monotonic() < deadline:
            time.sleep(0.01)
        assert resolver.cached(*key) is None  # expired again: this request renews it


def test_a_renewal_that_finds_a_listing_drops_the_old_answer(tmp_path: Path) -> None:
    from ipcnet.httpd.files import Resolver

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "index.html").write_bytes(b"<p>index</p>")
    resolver = Resolver(str(tmp_path), cache_ttl=0.01)
    key = (("d",), True, False)
    assert resolver.lookup(*key).data == b"<p>index</p>"  # type: ignore[union-attr]
    deadline = time.monotonic() + 0.02
    while time.monotonic() < deadline:
        time.sleep(0.01)
    assert resolver.cached(*key) is None
    (tmp_path / "d" / "index.html").unlink()  # now a listing: a page, never cached
    assert resolver.lookup(*key).__class__.__name__ == "Page"
    assert resolver.cached(*key) is None  # the old index is gone, not served stale
