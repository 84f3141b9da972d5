"""Download and mirroring clients that no one here wrote, end to end, against
``ipcnet serve http ROOT``, beside nginx 1.22 (``autoindex on``) and ``python -m
http.server`` on the same tree: wget (``-r -np -nH``, ``--mirror`` with If-Modified-Since,
``-c``), curl (``-C -``, ``-r``, ``-z``, ``--head``, ``-L``, ``--http1.0``,
``--path-as-is``, globbing on one connection), aria2c (``-x4 -s4`` parallel Range
requests), lftp's ``mirror`` (which parses the listing's HTML), wget2, httpie and Python's
urllib. The clients come from Debian (``scripts/system-deps wget curl aria2c lftp wget2
http``); a test whose client is missing skips and says which.

Defects found (each test below fails on the code before its fix):

1. Under ``--model asyncio`` with uvloop installed (the default install: the ``fast``
   extra), every file was read whole into memory for every request that missed the cache,
   with no bound: the CLI turns sendfile off there (uvloop has no ``loop.sendfile``) and the
   Resolver then lifted both its in-memory limits to 1 TiB. ``curl -r -10`` of a 5 GiB
   file made the server pread all 5 GiB (35 s, 5 GiB of RSS); aria2c ``-x4`` on it asked
   for 4 of them at once. DESIGN.md "Bounded everything"; nginx, and ipcnet under every
   other model, send such a file from its descriptor. The asyncio driver already copies a
   file region in 256 KiB chunks where the loop cannot sendfile, so the bound is only the
   Resolver's: ``test_asyncio_on_uvloop_does_not_read_a_large_file_into_memory``.
2. A directory of more than 10,000 entries was listed with 10,000 of them, an arbitrary
   (readdir-order) subset, and nothing on the page said so: ``wget -r`` mirrored a tree
   short by the rest, silently (nginx's autoindex and http.server list all 10,050 of our
   case). DESIGN.md: every bound has "a clear refusal when exceeded". The bound stays (the
   page is built in memory); the page now says how many entries it left out:
   ``test_a_listing_over_its_bound_says_how_many_entries_it_left_out``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from http_cases.kit import http_server
from ipcnet.testing.pairs import free_port
from test_proxy_conformance import _peer

pytestmark = pytest.mark.xdist_group("fetch-audit7")

GIB = 1 << 30


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    assert m is not None, status
    return int(m.group(1)) * 1024


def _get(port: int, target: str, fields: tuple[str, ...] = (), timeout: float = 5) -> bytes:
    """One GET on its own connection, read to EOF (Connection: close)."""
    head = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    head += "".join(f"{f}\r\n" for f in fields) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    return b"".join(chunks)


# --- 1. asyncio on uvloop: a large file is sent from its descriptor, not read whole -----


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop not installed")
def test_asyncio_on_uvloop_does_not_read_a_large_file_into_memory(tmp_path: Path) -> None:
    size = 2 * GIB + 4096  # sparse: no disk; offsets past 2 GiB
    with open(tmp_path / "huge.bin", "wb") as f:
        f.truncate(size)
        f.seek(size - 10)
        f.write(b"0123456789")
    with http_server(tmp_path, "asyncio") as (server, _, port):
        started = time.monotonic()
        answer = _get(port, "/huge.bin", ("Range: bytes=-10",))
        seconds = time.monotonic() - started
        peak = _peak_rss(server.proc.pid)
    assert answer.startswith(b"HTTP/1.1 206 ")
    assert b"\r\nContent-Range: bytes %d-%d/%d\r\n" % (size - 10, size - 1, size) in answer
    assert answer.endswith(b"\r\n\r\n0123456789")
    assert peak < 512 * 1024 * 1024, f"the server's peak RSS was {peak >> 20} MiB"
    assert seconds < 3, f"10 bytes took {seconds:.1f} s"


# --- 2. a listing over its bound says what it left out --------------------------------


def test_a_listing_over_its_bound_says_how_many_entries_it_left_out(tmp_path: Path) -> None:
    from ipcnet.httpd.files import MAX_LISTING

    many = tmp_path / "many"
    many.mkdir()
    for i in range(MAX_LISTING + 7):
        (many / f"f{i:06d}").touch()
    with http_server(tmp_path) as (_, _, port):
        answer = _get(port, "/many/")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.count(b'<a href="f') == MAX_LISTING
    assert b"7 more entries not listed" in answer


# --- what was already right: real clients end to end, beside nginx and http.server -----

WGET, CURL, ARIA2C, LFTP = (shutil.which(c) for c in ("wget", "curl", "aria2c", "lftp"))
# names a mirror must carry over byte for byte (no "%XX" in them: wget itself decodes
# those in its local names, from every server alike)
NAMES = [
    "a b.txt",
    "ünï €.txt",
    "100%.txt",
    "hash#tag.txt",
    "q?uery.txt",
    "plus+sign.txt",
    "amp&lt;.txt",
    "<b>x.txt",
    "quote\"s'.txt",
    "semi;colon.txt",
    "colon:x.txt",
    "~tilde.txt",
    "-dash",
    "..dots",
    ".hidden",
]
BIG = 8 * 1024 * 1024  # over the in-memory limit: sent with sendfile


def _tree(root: Path) -> None:
    for name in NAMES:
        (root / name).write_text(f"content of {name}\n")
    (root / "empty").touch()
    (root / "sp ace dir").mkdir()
    (root / "sp ace dir" / "inner #1.txt").write_text("inner\n")
    (root / "d?q#h%").mkdir()
    (root / "d?q#h%" / "in.txt").write_text("in\n")
    (root / ".dotdir").mkdir()
    (root / ".dotdir" / "x").write_text("x\n")
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "b" / "c" / "deep.txt").write_text("deep\n")
    (root / "link to a").symlink_to("a b.txt")
    (root / "big.bin").write_bytes(os.urandom(BIG))
    old = time.time() - 86400 * 3  # whole seconds in the past: Last-Modified is exact
    for path in root.rglob("*"):
        os.utime(path, (int(old), int(old)), follow_symlinks=False)


def _files(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (symlinks followed), by relative name."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "index.html"
    }


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fetch-root")
    _tree(path)
    return path


@pytest.fixture(scope="module")
def ipcnet(root: Path) -> Iterator[int]:
    with http_server(root) as (_, _, port):
        yield port


@pytest.fixture(scope="module")
def nginx(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed")
    tmp = tmp_path_factory.mktemp("fetch-nginx")
    port = free_port()
    temps = " ".join(f"{k}_temp_path {tmp}/{k};" for k in ("client_body", "proxy", "fastcgi"))
    temps += f" uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;"
    (tmp / "nginx.conf").write_text(
        f"daemon off; master_process off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{ include /etc/nginx/mime.types; access_log off; {temps}\n"
        f"  server {{ listen 127.0.0.1:{port}; root {root}; autoindex on;"
        " absolute_redirect off; } }\n"
    )
    argv = ["nginx", "-p", str(tmp), "-e", f"{tmp}/error.log", "-c", f"{tmp}/nginx.conf"]
    with _peer(argv, port):
        yield port


@pytest.fixture(scope="module")
def pyhttp(root: Path) -> Iterator[int]:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    argv += ["--directory", str(root)]
    with _peer(argv, port):
        yield port


def run(*argv: str | None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [a for a in argv if a is not None],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=20,
        check=False,
    )


needs_wget = pytest.mark.skipif(WGET is None, reason="wget is not installed")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


@needs_wget
def test_wget_recursive_mirror_is_byte_identical(root: Path, ipcnet: int, tmp_path: Path) -> None:
    out = run(WGET, "-q", "-r", "-np", "-nH", "-e", "robots=off", f"http://127.0.0.1:{ipcnet}/",
              cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert _files(tmp_path) == _files(root)


@needs_wget
def test_wget_mirror_timestamps_and_a_second_run_gets_304(
    root: Path, ipcnet: int, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{ipcnet}/"
    first = run(WGET, "--mirror", "-np", "-nH", "-e", "robots=off", url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    for name in [*NAMES, "big.bin", "a/b/c/deep.txt"]:  # Last-Modified became the mtime
        assert int((tmp_path / name).stat().st_mtime) == int((root / name).stat().st_mtime)
    again = run(WGET, "--mirror", "-np", "-nH", "-e", "robots=off", url, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("304 Not Modified") == len(_files(root))  # If-Modified-Since
    assert not re.search(r"big\.bin.{1,3} saved", again.stderr)  # 304: not fetched again


def _hrefs(port: int, path: str = "/") -> set[str]:
    body = _get(port, path).partition(b"\r\n\r\n")[2].decode()
    links = {h.removeprefix("./") for h in re.findall(r'href="([^"]*)"', body)}
    return links - {"../"}


def test_listing_links_are_encoded_as_nginx_and_http_server_encode_them(
    ipcnet: int, nginx: int, pyhttp: int
) -> None:
    ours = _hrefs(ipcnet)
    assert ours == _hrefs(pyhttp)
    assert {h for h in ours if not h.startswith(".")} == _hrefs(nginx)  # nginx hides dotfiles
    assert "hash%23tag.txt" in ours and "q%3Fuery.txt" in ours and "100%25.txt" in ours
    assert _hrefs(ipcnet, "/d%3Fq%23h%25/") == {"in.txt"}


@needs_curl
@pytest.mark.parametrize(
    "target",
    ["/sp%20ace%20dir?x=%20y&z=1", "/d%3Fq%23h%25?a=b#frag", "/a/b?%C3%BC", "/a/./b/../b"],
)
def test_a_directory_redirect_keeps_query_and_encoding_as_nginx(
    ipcnet: int, nginx: int, target: str
) -> None:
    def location(port: int) -> str:
        out = run(CURL, "-sS", "-I", "--path-as-is", f"http://127.0.0.1:{port}{target}")
        assert out.stdout.startswith("HTTP/1.1 301"), out.stdout
        return re.search(r"(?im)^location: (\S+)", out.stdout).group(1)  # type: ignore[union-attr]

    assert location(ipcnet) == location(nginx)
    follow = run(CURL, "-sS", "-L", "-o", "/dev/null", "-w", "%{http_code}",
                 f"http://127.0.0.1:{ipcnet}{target}")  # fmt: skip
    assert follow.stdout == "200"


def _cut_download(port: int, dest: Path, keep: int) -> None:
    """Read ``keep`` body bytes of /big.bin, then cut the connection (the client leaves)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < keep:
            data += sock.recv(1 << 16)
        dest.write_bytes(data.partition(b"\r\n\r\n")[2][:keep])


@pytest.mark.parametrize("client", ["curl", "wget"])
def test_resume_after_a_cut_connection_gives_identical_bytes(
    root: Path, ipcnet: int, tmp_path: Path, client: str
) -> None:
    tool = CURL if client == "curl" else WGET
    if tool is None:
        pytest.skip(f"{client} is not installed")
    dest = tmp_path / "big.bin"
    _cut_download(ipcnet, dest, 3 * 1024 * 1024 + 17)
    url = f"http://127.0.0.1:{ipcnet}/big.bin"
    argv = [tool, "-sS", "-C", "-", "-o", str(dest), url] if client == "curl" else [
        tool, "-q", "-c", "-O", str(dest), url]  # fmt: skip
    out = run(*argv)
    assert out.returncode == 0, out.stderr
    assert dest.read_bytes() == (root / "big.bin").read_bytes()
    again = run(*argv)  # complete already: a 416 with bytes */len, which both take as done
    assert again.returncode == 0, again.stderr
    assert dest.read_bytes() == (root / "big.bin").read_bytes()


@pytest.mark.skipif(ARIA2C is None, reason="aria2c is not installed")
@pytest.mark.parametrize("model", ["epoll", "thread", "asyncio"])
def test_aria2c_split_download_is_identical(root: Path, tmp_path: Path, model: str) -> None:
    with http_server(root, model) as (_, _, port):
        out = run(ARIA2C, "-q", "-x4", "-s4", "-k1M", "-d", str(tmp_path),
                  "--allow-overwrite=true", f"http://127.0.0.1:{port}/big.bin")  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "big.bin").read_bytes() == (root / "big.bin").read_bytes()


@needs_curl
def test_curl_globbing_keeps_one_connection_through_errors(ipcnet: int, tmp_path: Path) -> None:
    names = "{a%20b.txt,empty,nope,sp%20ace%20dir,big.bin,hash%23tag.txt}"
    out = run(CURL, "-sS", "-v", f"http://127.0.0.1:{ipcnet}/{names}", "-o", "#1",
              cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    statuses = re.findall(r"< HTTP/1.1 (\d+)", out.stderr)
    assert statuses == ["200", "200", "404", "301", "200", "200"]
    assert out.stderr.count("Connected to") == 1  # 404 and 301 kept it alive
    assert (tmp_path / "big.bin").stat().st_size == BIG


@needs_curl
@pytest.mark.parametrize("version", ["--http1.1", "--http1.0"])
def test_head_equals_get_and_416_names_the_length(ipcnet: int, version: str) -> None:
    url = f"http://127.0.0.1:{ipcnet}/big.bin"

    def head_of(*args: str) -> list[str]:
        out = run(CURL, "-sS", version, "-D", "-", "-o", "/dev/null", *args, url)
        return [line for line in out.stdout.splitlines() if not line.startswith("Date:")]

    assert head_of() == head_of("-I")
    past = head_of("-r", f"{BIG}-")
    assert past[0].startswith("HTTP/1.1 416 ")
    assert f"Content-Range: bytes */{BIG}" in past
    last = head_of("-r", "-5")
    assert f"Content-Range: bytes {BIG - 5}-{BIG - 1}/{BIG}" in last


@needs_curl
def test_curl_time_conditions_as_nginx(root: Path, ipcnet: int, nginx: int) -> None:
    mtime = int((root / "big.bin").stat().st_mtime)
    dates = [time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(mtime + d)) for d in (-1, 0)]
    for port in (ipcnet, nginx):
        url = f"http://127.0.0.1:{port}/big.bin"
        seen = []
        for z in [*dates, *("-" + d for d in dates)]:
            out = run(CURL, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-z", z, url)
            seen.append(out.stdout)
        # -z -DATE sends If-Unmodified-Since; the server's 200 for a file not older than
        # DATE is shown by curl as a 304 of its own ("Simulate an HTTP 304 response")
        assert seen == ["200", "304", "412", "304"], port
    last_modified = run(CURL, "-sS", "-I", f"http://127.0.0.1:{ipcnet}/big.bin").stdout
    assert f"Last-Modified: {dates[1]}" in last_modified  # IMF-fixdate, RFC 9110 §5.6.7


@pytest.mark.skipif(LFTP is None, reason="lftp is not installed")
def test_lftp_mirror_reads_the_listing(root: Path, ipcnet: int, tmp_path: Path) -> None:
    script = (
        "set net:max-retries 1; set net:timeout 5; set cmd:fail-exit yes;"
        f" open http://127.0.0.1:{ipcnet}/; mirror / {tmp_path}/m"
    )
    out = run(LFTP, "-c", script)
    assert out.returncode == 0, out.stderr
    mirrored = _files(tmp_path / "m")
    expected = {k: v for k, v in _files(root).items() if not k.startswith("~")}  # lftp's own
    assert mirrored == expected


@needs_curl
def test_range_offsets_past_4_gib(tmp_path: Path) -> None:
    size = 5 * GIB  # sparse
    marks = {2**31 - 3: b"ABCDEF", 2**32 - 3: b"GHIJKL", size - 6: b"MNOPQR"}
    with open(tmp_path / "huge.bin", "wb") as f:
        f.truncate(size)
        for offset, data in marks.items():
            f.seek(offset)
            f.write(data)
    with http_server(tmp_path) as (_, _, port):
        for offset, data in marks.items():
            got = run(
                CURL, "-sS", "-r", f"{offset}-{offset + 5}", f"http://127.0.0.1:{port}/huge.bin"
            )
            assert got.stdout.encode() == data
        both = run(CURL, "-sS", "-r", f"{2**31 - 3}-{2**31 + 2},{2**32 - 3}-{2**32 + 2}",
                   f"http://127.0.0.1:{port}/huge.bin").stdout  # fmt: skip
        assert f"Content-Range: bytes {2**31 - 3}-{2**31 + 2}/{size}\n\nABCDEF" in both
        assert f"Content-Range: bytes {2**32 - 3}-{2**32 + 2}/{size}\n\nGHIJKL" in both
