"""Unix sockets: paths with spaces and newlines, abstract, unnamed, peers, types."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector_helpers import in_netns, netns, unique
from ipcnet.inspector import list_sockets
from ipcnet.inspector.output import socket_table
from ipcnet.inspector.procnet import parse_unix


def _ino(s: socket.socket) -> int:
    return os.fstat(s.fileno()).st_ino


def _unix_rows(source: str = "netlink") -> dict[int | None, object]:
    return {r.inode: r for r in list_sockets(["unix"], source=source)}  # type: ignore[arg-type]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A temp dir with a short name: sun_path holds only 107 bytes."""
    d = tempfile.mkdtemp(prefix="ipi", dir="/tmp")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_odd_paths_abstract_unnamed_and_peers(short_dir: Path) -> None:
    tmp_path = short_dir
    spaced = str(tmp_path / "a b c")
    # a newline and then text shaped like a /proc/net/unix row with a fake inode
    forged = "0000000000000000: 00000002 00000000 00010000 0001 01 999999999 forged"
    newline = str(tmp_path / "x") + "\n" + forged
    abstract = unique("ipcnet-abs")
    socks = []
    try:
        for path in (spaced, newline):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.listen(3)
            socks.append(s)
        ab = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ab.bind("\0" + abstract)
        socks.append(ab)
        sp = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sp.bind(str(tmp_path / "sp"))
        sp.listen(1)
        socks.append(sp)
        cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        cli.connect(spaced)
        socks.append(cli)
        srv, _ = socks[0].accept()
        socks.append(srv)
        p1, p2 = socket.socketpair()
        socks += [p1, p2]

        rows = _unix_rows("netlink")
        assert rows[_ino(socks[0])].path == spaced  # type: ignore[attr-defined]
        assert rows[_ino(socks[0])].state == "LISTEN"  # type: ignore[attr-defined]
        assert rows[_ino(socks[0])].send_q == 3  # type: ignore[attr-defined]  # backlog
        assert rows[_ino(socks[1])].path == newline  # type: ignore[attr-defined]  # exact
        assert rows[_ino(ab)].path == "@" + abstract  # type: ignore[attr-defined]
        assert rows[_ino(ab)].type == "dgram"  # type: ignore[attr-defined]
        assert rows[_ino(sp)].type == "seqpacket"  # type: ignore[attr-defined]
        assert rows[_ino(cli)].path is None  # type: ignore[attr-defined]  # unnamed
        assert rows[_ino(cli)].peer_inode == _ino(srv)  # type: ignore[attr-defined]
        assert rows[_ino(srv)].path == spaced  # type: ignore[attr-defined]
        assert rows[_ino(cli)].peer_path == spaced  # type: ignore[attr-defined]
        assert rows[_ino(p1)].peer_inode == _ino(p2)  # type: ignore[attr-defined]
        assert rows[_ino(cli)].uid == os.geteuid()  # type: ignore[attr-defined]
        assert 999999999 not in rows  # netlink: no forged row
        assert all(r.exact for r in rows.values())  # type: ignore[attr-defined]

        # the table escapes the newline: one line per socket, the path visibly escaped
        lines = list(socket_table([rows[_ino(socks[1])]], numeric=True))  # type: ignore[list-item]
        assert len(lines) == 2 and "\\n0000000000000000" in lines[1]

        # /proc fallback: the row is there, but never presented as exact or as another row
        prows = _unix_rows("proc")
        assert prows[_ino(socks[0])].path == spaced  # type: ignore[attr-defined]
        assert prows[_ino(ab)].path == "@" + abstract  # type: ignore[attr-defined]
        forged_row = prows.get(999999999)
        assert forged_row is None or not forged_row.exact  # type: ignore[attr-defined]
        real = prows[_ino(socks[1])]
        assert not real.exact or real.path == newline  # type: ignore[attr-defined]
    finally:
        for s in socks:
            s.close()


PROC_HEADER = "Num       RefCount Protocol Flags    Type St Inode Path\n"


def _line(ino: int, path: str | None = None, flags: str = "00000000", st: str = "01") -> str:
    base = f"0000000000000000: 00000002 00000000 {flags} 0001 {st} {ino:5d}"
    return base + (f" {path}" if path is not None else "") + "\n"


def test_parse_unix_continuation_line_is_joined() -> None:
    text = PROC_HEADER + _line(100, "/tmp/x") + "rest of the name\n" + _line(101)
    rows = parse_unix(text, kernel_count=2)
    assert [r.inode for r in rows] == [100, 101]
    assert rows[0].path == "/tmp/x\nrest of the name" and not rows[0].exact
    assert rows[1].exact and rows[1].path is None


def test_parse_unix_forged_row_is_marked_not_trusted() -> None:
    forged = _line(999, "forged", flags="00010000")
    text = PROC_HEADER + _line(50) + _line(100, "/tmp/x") + forged + _line(102)
    rows = parse_unix(text, kernel_count=3)  # the kernel has 3 sockets, the text 4 rows
    by = {r.inode: r for r in rows}
    assert not by[999].exact and by[999].path is None and by[999].note
    assert not by[100].exact  # its name may hold the newline
    assert not by[102].exact  # it follows a named row too: it could be the forgery
    assert by[50].exact  # no named row before it: it cannot be a continuation
    # a suspect that some process holds is real; then the one left over is the forgery
    rows = parse_unix(text, kernel_count=3, held=lambda inos: inos & {102})
    by = {r.inode: r for r in rows}
    assert list(by) == [50, 100, 102]
    assert by[100].path == "/tmp/x\n" + forged.rstrip("\n") and by[102].exact
    # with a matching count nothing is suspect
    clean = parse_unix(PROC_HEADER + _line(100, "/a b") + _line(101, "@x"), kernel_count=2)
    assert all(r.exact for r in clean) and clean[0].path == "/a b"
    assert clean[1].path == "@x" and clean[0].state == "UNCONN"


def test_parse_unix_states_and_duplicate_inodes() -> None:
    text = (
        PROC_HEADER
        + _line(5, "/l", flags="00010000")
        + _line(6, st="03")
        + _line(6, st="03")
        + _line(7, st="01")
    )
    rows = parse_unix(text)
    assert [r.state for r in rows] == ["LISTEN", "ESTABLISHED", "ESTABLISHED", "UNCONN"]
    assert [r.exact for r in rows] == [True, False, False, True]


def test_proc_fallback_forged_row_in_private_netns() -> None:
    """In a fresh namespace the unix table holds only our sockets: the count check is exact."""
    code = r"""
import json, os, socket, tempfile
from ipcnet.inspector import list_sockets
d = tempfile.mkdtemp()
forged = "0000000000000000: 00000002 00000000 00010000 0001 01 999999999 forged"
s = socket.socket(socket.AF_UNIX); s.bind(os.path.join(d, "x") + "\n" + forged); s.listen()
t = socket.socket(socket.AF_UNIX); t.bind(os.path.join(d, "a b")); t.listen()
rows = list_sockets(["unix"], source="proc")
print(json.dumps([[r.inode, r.path, r.exact] for r in rows]))
print(json.dumps([os.fstat(s.fileno()).st_ino, os.fstat(t.fileno()).st_ino]))
"""
    import json

    forged_line = "0000000000000000: 00000002 00000000 00010000 0001 01 999999999 forged"
    with netns() as ns:
        r = in_netns(ns, code)
    assert r.returncode == 0, r.stderr
    rows_text, inos_text = r.stdout.splitlines()
    rows = {ino: (path, exact) for ino, path, exact in json.loads(rows_text)}
    s_ino, t_ino = json.loads(inos_text)
    assert rows[t_ino][0].endswith("/a b") and rows[t_ino][1]
    # the kernel counts 2 sockets, the text shows 3 rows, no process holds 999999999:
    # the forged row is folded back into the path it came from
    assert 999999999 not in rows
    assert rows[s_ino][0].endswith("/x\n" + forged_line) and not rows[s_ino][1]
    assert len(rows) == 2


def test_unix_in_other_netns_not_mixed_in() -> None:
    name = unique("ipcnet-ns-abs")
    code = f"""
import socket, time, sys
s = socket.socket(socket.AF_UNIX); s.bind("\\0{name}"); s.listen()
print("ready", flush=True); sys.stdin.read()
"""
    import subprocess
    import sys

    from inspector_helpers import env

    with netns() as ns:
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env(),
        )
        try:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
            paths = {r.path for r in list_sockets(["unix"])}
            paths_proc = {r.path for r in list_sockets(["unix"], source="proc")}
            assert "@" + name not in paths and "@" + name not in paths_proc
            # but its process is ours to see: its fd table shows the socket outside our tables
            from ipcnet.inspector import process_fds

            fds = process_fds(p.pid)  # ip netns exec execs the child: same pid
            sock_fds = [f for f in fds if f.kind == "socket"]
            assert sock_fds and all(f.socket is None for f in sock_fds)
        finally:
            assert p.stdin is not None
            p.stdin.close()
            p.wait(timeout=10)


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
def test_unix_queue_lengths(kind: int) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    try:
        b.send(b"z" * 10)
        row = _unix_rows()[_ino(a)]
        assert row.recv_q is not None and row.recv_q > 0  # type: ignore[attr-defined]
    finally:
        a.close()
        b.close()


def test_abstract_name_with_nul_or_at_is_not_exact_from_proc() -> None:
    """/proc prints each NUL of an abstract name as "@": such text cannot be decoded."""
    plain, with_nul, with_at = unique("ipcnet-p"), unique("ipcnet-n"), unique("ipcnet-a")
    names = {"plain": "\0" + plain, "nul": "\0" + with_nul + "\0x", "at": "\0" + with_at + "@x"}
    socks = {k: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for k in names}
    try:
        for k, name in names.items():
            socks[k].bind(name)
        proc = _unix_rows("proc")
        ino = {k: _ino(s) for k, s in socks.items()}
        assert proc[ino["plain"]].exact  # type: ignore[attr-defined]
        for k in ("nul", "at"):  # both print as ...@x: neither row may claim to be exact
            row = proc[ino[k]]
            assert row.path.endswith("@x") and not row.exact  # type: ignore[attr-defined]
            assert "NUL" in row.note  # type: ignore[attr-defined]
        exact = _unix_rows("netlink")  # sock_diag gives the name's bytes
        assert exact[ino["nul"]].path == "@" + with_nul + "\0x"  # type: ignore[attr-defined]
        assert exact[ino["at"]].path == "@" + with_at + "@x"  # type: ignore[attr-defined]
        assert exact[ino["nul"]].exact and exact[ino["at"]].exact  # type: ignore[attr-defined]
    finally:
        for s in socks.values():
            s.close()
