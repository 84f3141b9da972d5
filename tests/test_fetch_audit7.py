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
import re
import socket
import time
from pathlib import Path

import pytest

from http_cases.kit import http_server

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
