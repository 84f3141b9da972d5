"""The inspector side by side with ss, netstat, lsof, ipcs, stat(1) and /proc.

A child process builds a known set of sockets inside a fresh network namespace (so no
other test's sockets are in the table): TCP in every state, listeners with a pending
connection, IPv4, IPv6, IPv4-mapped, wildcards, a device-bound and a link-local socket,
UDP connected and not, UDP-Lite, raw, and unix stream/dgram/seqpacket with odd names, all
held by two processes (and a thread). It then reads the same tables with ss, netstat and
lsof and with ``list_sockets`` through sock_diag and through /proc, and hands everything
back as JSON; the comparisons happen here. SysV objects are made in IPC namespaces of the
test's own and compared with ipcs; POSIX shm and semaphores with stat(1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import posix_ipc
import pytest

from inspector_helpers import env, in_netns, netns
from ipcnet.inspector import filters, ipc
from test_inspector_vs_ss import SS_STATES, _split

pytestmark = pytest.mark.xdist_group("inspector-zoo")  # one zoo, built once per module

# ss's state words (ss(8) "STATE-FILTER"), each with the states it selects
SS_WORDS = [
    "established", "syn-sent", "syn-recv", "syn-rcv", "fin-wait-1", "fin-wait-2",
    "time-wait", "closed", "unconnected", "close-wait", "last-ack", "listening", "closing",
    "all", "connected", "synchronized", "bucket", "big",
]  # fmt: skip
SS_FLAGS = ["-tuwn", "-tuwln"]
ADDRESSES = ["127.0.0.1", "127.0.0.0/8", "[::1]", "fe80::/10"]  # ss src/dst: local or peer

ZOO = r"""
import json, os, signal, socket, subprocess, threading, time
from ipcnet.inspector import list_sockets

def nft(*words):
    subprocess.run(["nft", *words], check=True)

def run(*argv):
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

nft("add", "table", "inet", "t")
nft("add", "chain", "inet", "t", "in", "{ type filter hook input priority 0; }")
keep = []
def new(*a):
    s = socket.socket(*a); keep.append(s); return s
def listener(fam, host, backlog=5, v6only=None):
    s = new(fam)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind((host, 0)); s.listen(backlog); return s
def pair(lst, host="127.0.0.1"):
    c = new(lst.family); c.connect((host, lst.getsockname()[1]))
    s, _ = lst.accept(); keep.append(s); return c, s

l4 = listener(socket.AF_INET, "127.0.0.1", backlog=3)
l4w = listener(socket.AF_INET, "0.0.0.0")
l6 = listener(socket.AF_INET6, "::1")
l6w = listener(socket.AF_INET6, "::", v6only=1)
ldual = listener(socket.AF_INET6, "::", v6only=0)
subprocess.run(["ip", "addr", "add", "fe80::1/64", "dev", "lo"], check=True)
onlo = new(); onlo.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
onlo.bind(("127.0.0.1", 0)); onlo.listen()                   # bound to a device: ss's %lo
scoped = new(socket.AF_INET6); scoped.bind(("fe80::1", 0, 0, socket.if_nametoindex("lo")))
scoped.listen()                                             # link-local: its scope is lo
c1, s1 = pair(l4); c1.sendall(b"x" * 10)                    # ESTABLISHED, Recv-Q 10
pending = new(); pending.connect(l4.getsockname())          # in l4's accept queue
cm = new(); cm.connect(("127.0.0.1", ldual.getsockname()[1])); sm, _ = ldual.accept()
keep.append(sm)                                             # IPv4-mapped
c6, s6 = pair(l6, "::1")
c3, s3 = pair(l4w); c3.shutdown(socket.SHUT_WR)             # FIN_WAIT2 / CLOSE_WAIT
c4, s4 = pair(l4w); c4.close(); s4.close()                  # TIME_WAIT (c4's side)
syn = new(); syn.setblocking(False)
try:
    syn.connect(("10.66.0.2", 9))                           # SYN_SENT: routed to nowhere
except BlockingIOError:
    pass
# SYN_RECV: the last ACK of the handshake is lost
lr = listener(socket.AF_INET, "127.0.0.1")
nft("add", "rule", "inet", "t", "in", "tcp", "dport", str(lr.getsockname()[1]),
    "tcp", "flags", "&", "(syn", "|", "ack)", "==", "ack", "drop")
new().connect(lr.getsockname())
# FIN_WAIT1 / LAST_ACK: nothing from lk's port gets through
lk = listener(socket.AF_INET, "127.0.0.1"); a, b = pair(lk)
nft("add", "rule", "inet", "t", "in", "tcp", "sport", str(lk.getsockname()[1]), "drop")
a.shutdown(socket.SHUT_WR); b.recv(1); b.close()
# CLOSING: x's FINs are lost, so x gets y's FIN before its own is acknowledged
lc = listener(socket.AF_INET, "127.0.0.1"); x, y = pair(lc)
nft("add", "rule", "inet", "t", "in", "tcp", "sport", str(x.getsockname()[1]),
    "tcp", "flags", "&", "fin", "==", "fin", "drop")
x.shutdown(socket.SHUT_WR); y.shutdown(socket.SHUT_WR)
bound = new(); bound.bind(("127.0.0.1", 0))  # bound only: not in ss -a, netstat -a, /proc
u1 = new(socket.AF_INET, socket.SOCK_DGRAM); u1.bind(("127.0.0.1", 0))
u2 = new(socket.AF_INET, socket.SOCK_DGRAM); u2.connect(u1.getsockname()); u2.send(b"hello")
u6 = new(socket.AF_INET6, socket.SOCK_DGRAM); u6.bind(("::", 0))
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 136).close()
    udplite = True
except OSError:  # a kernel without UDP-Lite (it is deprecated)
    udplite = False
if udplite:
    new(socket.AF_INET, socket.SOCK_DGRAM, 136).bind(("127.0.0.1", 0))
raw4 = new(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
raw6 = new(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
d = __DIR__
us = new(socket.AF_UNIX); us.bind(d + "/with space"); us.listen(4)
uc = new(socket.AF_UNIX); uc.connect(d + "/with space"); ua, _ = us.accept(); keep.append(ua)
un = new(socket.AF_UNIX, socket.SOCK_DGRAM); un.bind(d + "/new\nline")
ud = new(socket.AF_UNIX, socket.SOCK_DGRAM); ud.connect(d + "/new\nline"); ud.send(b"abc")
new(socket.AF_UNIX).connect(d + "/with space")  # never accepted: an embryo, no inode
ab = new(socket.AF_UNIX, socket.SOCK_SEQPACKET); ab.bind("\0abstract name"); ab.listen()
keep += socket.socketpair() + socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # threads share fds
child = os.fork()
if child == 0:
    os.close(1); os.close(2); time.sleep(60); os._exit(0)  # not holding the test's pipes
want = {"SYN_RECV", "SYN_SENT", "FIN_WAIT1", "LAST_ACK", "CLOSING", "TIME_WAIT"}
for _ in range(300):  # the lost packets take a moment to make their states
    if want <= {r.state for r in list_sockets(["tcp"], ["all"])}:
        break
    time.sleep(0.01)
out = {"pids": [os.getpid(), child], "ss": {}, "ours": {}, "udplite": udplite}
for word in __WORDS__:
    out["ss"][word] = run("ss", "-tuwanH", "state", word).splitlines()
    try:
        out["ours"][word] = [r.to_dict() for r in list_sockets(["tcp", "udp", "raw"], [word])]
    except ValueError as exc:  # a word ss takes and we do not
        out["ours"][word] = str(exc)
import argparse
from ipcnet.cli import sockets as cli
for flags in __FLAGS__:  # the command line's defaults: no state (connected), -l
    parser = argparse.ArgumentParser(); cli.add_arguments(parser)
    out["ss"][flags] = run("ss", flags + "H").splitlines()
    out["ours"][flags] = [r.to_dict() for r in cli._fetch(parser.parse_args([flags]))]
for address in __ADDRESSES__:
    out["ss"][address] = run("ss", "-tuwanH", f"( src {address} or dst {address} )").splitlines()
    out["ours"][address] = [
        r.to_dict() for r in list_sockets(["tcp", "udp", "raw"], ["all"], address=address)
    ]
port = l4w.getsockname()[1]  # a listener, its CLOSE_WAIT and TIME_WAIT ends, their peers
out["ss"]["--port"] = run("ss", "-tuwanH", f"( sport = :{port} or dport = :{port} )").splitlines()
out["ours"]["--port"] = [r.to_dict() for r in list_sockets(["tcp", "udp", "raw"], ["all"], port=port)]
out["ss_all"] = run("ss", "-tuwanpH").splitlines()
from ipcnet.inspector.output import socket_table
listening = list_sockets(["tcp", "udp"], ["listen", "unconn"])
out["table"] = list(socket_table(listening, numeric=True))
out["table_sources"] = [(r.proto, r.source, r.v6only) for r in listening]
out["ss_unix"] = run("ss", "-xanpH").splitlines()
out["netstat_udplite"] = run("netstat", "-anU").splitlines()
for source in ("auto", "proc"):  # auto: sock_diag, and /proc where it has no handler
    out[source] = [r.to_dict() for r in list_sockets(None, ["all"], owners=True, source=source)]
from ipcnet.inspector import process_fds
out["bound"] = [bound.getsockname()[1], [
    (r.state, r.local_port) for r in list_sockets(["tcp"], ["bound-inactive"])
], [(f.kind, f.socket and f.socket.state) for f in process_fds(os.getpid())
    if f.fd == bound.fileno()]]
out["fds"] = [(f.fd, f.inode, f.socket and f.socket.to_dict()) for f in process_fds(os.getpid())
              if f.kind == "socket"]
out["lsof"] = run("lsof", "-nP", "-a", "-p", str(os.getpid()), "-F", "ftdinP").splitlines()
os.kill(child, signal.SIGKILL)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    for tool in ("ss", "netstat", "nft", "lsof"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    d = tmp_path_factory.mktemp("zoo")
    with netns(drop_route="10.66.0.0/24") as ns:
        code = ZOO.replace("__DIR__", repr(str(d))).replace("__WORDS__", repr(SS_WORDS))
        code = code.replace("__FLAGS__", repr(SS_FLAGS)).replace("__ADDRESSES__", repr(ADDRESSES))
        r = in_netns(ns, code)
    assert r.returncode == 0, r.stderr
    yield json.loads(r.stdout)


def _ours_inet(row: dict[str, Any]) -> tuple[str, tuple[str, int], tuple[str, int]]:
    def end(host: str, port: int) -> tuple[str, int]:
        return _split(f"{host}:{port}")

    return (
        row["proto"].rstrip("6"),
        end(row["local_host"], row["local_port"]),
        end(row["remote_host"], row["remote_port"]),
    )


def _ss_inet(line: str) -> tuple[str, tuple[str, int], tuple[str, int]]:
    f = line.split()  # Netid [State] Recv-Q Send-Q Local Peer [Process]
    i = 4 if f[1] in SS_STATES else 3
    return f[0], _split(f[i]), _split(f[i + 1])


@pytest.mark.parametrize("word", [*SS_WORDS, *SS_FLAGS, *ADDRESSES, "--port"])
def test_state_words_select_what_ss_selects(zoo: dict[str, Any], word: str) -> None:
    assert not isinstance(zoo["ours"][word], str), zoo["ours"][word]
    ours = sorted(map(_ours_inet, zoo["ours"][word]))
    theirs = sorted(map(_ss_inet, zoo["ss"][word]))
    assert ours == theirs


def test_every_tcp_state_with_the_queues_ss_shows(zoo: dict[str, Any]) -> None:
    """State, Recv-Q and Send-Q of every row (a listener's: accept queue and backlog), and
    its owners (command, pid, fd)."""
    theirs = {}
    for line in zoo["ss_all"]:
        f = line.split()
        rq, sq = int(f[2]), int(f[3])
        theirs[(f[0], _split(f[4]), _split(f[5]))] = (SS_STATES[f[1]], rq, sq, _ss_users(line))
    ours = {}
    for row in zoo["auto"]:
        if row["family"] == "unix" or row["proto"].startswith("udplite"):
            continue
        state = "CLOSE" if row["state"] == "UNCONN" else row["state"]
        rq, sq = row["recv_q"], row["send_q"]
        if row["state"] == "TIME_WAIT":  # ss prints the kernel's 0s; ours: unknown
            assert (rq, sq) == (None, None)
            rq = sq = 0
        ours[_ours_inet(row)] = (state, rq, sq, _our_users(row))
    assert ours == theirs
    states = {v[0] for v in ours.values()}
    assert {
        "LISTEN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "CLOSE_WAIT",
        "LAST_ACK", "TIME_WAIT", "CLOSING", "CLOSE",
    } <= states  # fmt: skip
    listeners = sorted(v[1:3] for v in ours.values() if v[0] == "LISTEN")
    assert (1, 3) in listeners  # one connection waiting to be accepted, backlog 3


def test_wildcards_and_devices_as_ss_prints_them(zoo: dict[str, Any]) -> None:
    """0.0.0.0, [::] for a v6-only socket, * for one that takes IPv4 too, and the device of
    a socket bound to one (or to a link-local address) after its address."""
    theirs = sorted(
        (f[0], f[4], f[5]) for f in map(str.split, zoo["ss_all"])
        if f[0] in ("tcp", "udp") and f[1] in ("LISTEN", "UNCONN")
    )  # fmt: skip
    ours = sorted((f[0].rstrip("6"), f[4], f[5]) for f in map(str.split, zoo["table"][1:]))
    assert ours == theirs, zoo["table_sources"]
    hosts = {x[1].rpartition(":")[0] for x in ours}
    assert hosts >= {"*", "[::]", "0.0.0.0", "[::1]", "127.0.0.1%lo", "[fe80::1]%lo"}
    devices = {(r["state"], r["local_host"]) for r in zoo["auto"] if r["interface"] == "lo"}
    assert devices == {("LISTEN", "127.0.0.1"), ("LISTEN", "fe80::1")}
    assert {r["interface"] for r in zoo["auto"]} == {"lo", None}
    dual = [r for r in zoo["auto"] if r["v6only"] is False]
    assert {(r["proto"], r["local_host"]) for r in dual} == {("tcp6", "::"), ("udp6", "::")}


def _ss_users(line: str) -> list[tuple[str, int, int]]:
    """(command, pid, fd) of ss -p's users:(("name",pid=1,fd=3),...)."""
    users = re.findall(r'\("([^"]*)",pid=(\d+),fd=(\d+)\)', line)
    return sorted((name, int(pid), int(fd)) for name, pid, fd in users)


def _our_users(row: dict[str, Any]) -> list[tuple[str, int, int]]:
    return sorted((p["name"], p["pid"], fd) for p in row["processes"] or () for fd in p["fds"])


def _unix_ss(line: str) -> tuple[str, str, int, int, int, str, int]:
    f = line.split()  # u_str ESTAB 0 0 /p a t h 123 * 456 users:(...)
    while f[-1].startswith("users:"):
        f.pop()
    path = " ".join(f[4:-3])
    return f[0], SS_STATES[f[1]], int(f[2]), int(f[3]), int(f[-3]), path, int(f[-1])


def test_unix_rows_names_peers_and_owners_match_ss(zoo: dict[str, Any]) -> None:
    theirs = {}
    for line in zoo["ss_unix"]:
        if not (line.startswith("u_") and line.rstrip().endswith("))")):
            continue  # a line that a newline in a path broke in two
        kind, state, rq, sq, ino, path, peer = _unix_ss(line)
        owners = _ss_users(line)
        theirs[ino] = (kind, state, rq, sq, None if path == "*" else path, peer or None, owners)
    ours = {}
    for row in zoo["auto"]:
        if row["family"] != "unix" or "\n" in (row["path"] or "") or row["inode"] is None:
            continue  # ss breaks the line of a newline; an embryo has no inode to match
        kind = {"stream": "u_str", "dgram": "u_dgr", "seqpacket": "u_seq"}[row["type"]]
        state = "CLOSE" if row["state"] == "UNCONN" else row["state"]
        owners = _our_users(row)
        ours[row["inode"]] = (
            kind, state, row["recv_q"], row["send_q"], row["path"], row["peer_inode"], owners
        )  # fmt: skip
    assert ours == {k: v for k, v in theirs.items() if k in ours}
    assert len(ours) == len(theirs) == 10
    paths = {v[4] for v in ours.values()}
    listeners = {v[4].rpartition("/")[2]: v[2:4] for v in ours.values() if v[1] == "LISTEN"}
    assert listeners == {"with space": (1, 4), "@abstract name": (0, 128)}  # pending, backlog
    assert "@abstract name" in paths and any(p and p.endswith("/with space") for p in paths)
    newline = [r for r in zoo["auto"] if r["path"] and r["path"].endswith("/new\nline")]
    assert len(newline) == 1 and newline[0]["recv_q"] == 3


def test_owners_are_both_processes_once_each(zoo: dict[str, Any]) -> None:
    parent, child = zoo["pids"]
    for row in zoo["auto"]:
        if row["inode"] is None:
            assert row["processes"] is None  # TIME_WAIT, the pending connection: no inode
            continue
        pids = [p["pid"] for p in row["processes"]]
        assert sorted(pids) == sorted({parent, child}), row  # threads add no owner
        fds = {tuple(p["fds"]) for p in row["processes"]}
        assert len(fds) == 1  # the fork kept the same fd numbers


def test_udplite_rows_as_netstat_shows_them(zoo: dict[str, Any]) -> None:
    if not zoo["udplite"]:
        pytest.skip("this kernel has no UDP-Lite")
    theirs = [line.split()[3] for line in zoo["netstat_udplite"] if line.startswith("udpl")]
    ours = [f"{r['local_host']}:{r['local_port']}" for r in zoo["auto"]
            if r["proto"] == "udplite"]  # fmt: skip
    assert len(theirs) == 1 and ours == theirs
    assert [r["proto"] for r in zoo["proc"] if r["proto"].startswith("udplite")] == ["udplite"]


PROC_KNOWS = ("proto", "type", "state", "local_host", "local_port", "remote_host",
              "remote_port", "inode", "timer", "processes")  # fmt: skip


def test_netlink_and_proc_agree(zoo: dict[str, Any]) -> None:
    """Every row, from both sources, on what /proc knows; queues where /proc has them."""

    def rows(source: str) -> list[tuple[Any, ...]]:
        out = []
        for r in zoo[source]:
            if r["proto"] == "unix" and r["inode"] is None:
                continue  # an embryo (not yet accepted): only /proc lists it
            key = (*(r[k] for k in PROC_KNOWS), r["path"])  # /proc rebuilds a newline's path
            out.append(key)
        return sorted(out, key=repr)

    assert rows("auto") == rows("proc")
    embryos = [r for r in zoo["proc"] if r["proto"] == "unix" and r["inode"] is None]
    assert [(r["type"], r["state"]) for r in embryos] == [("stream", "ESTABLISHED")]
    raw = sorted((r["proto"], r["local_port"]) for r in zoo["auto"] if r["type"] == "raw")
    assert raw == [("raw", 1), ("raw6", 58)]

    def queues(source: str) -> dict[tuple[Any, ...], tuple[int | None, int | None]]:
        return {
            tuple(r[k] for k in PROC_KNOWS[:-1]): (r["recv_q"], r["send_q"])
            for r in zoo[source]
            if r["family"] != "unix" and r["state"] != "LISTEN"  # /proc: no backlog
        }

    assert queues("auto") == queues("proc")


def test_json_types(zoo: dict[str, Any]) -> None:
    ints = ("local_port", "remote_port", "recv_q", "send_q", "uid", "inode", "timer_ms",
            "retransmits", "peer_inode")  # fmt: skip
    for r in zoo["auto"] + zoo["proc"]:
        for k in ints:
            assert r[k] is None or type(r[k]) is int, (k, r)
        assert type(r["exact"]) is bool
        for p in r["processes"] or ():
            assert type(p["pid"]) is int and all(type(fd) is int for fd in p["fds"])


def test_bound_only_tcp_sockets_by_name_and_in_the_fd_view(zoo: dict[str, Any]) -> None:
    """Kernels >= 6.6 dump them when asked for by their own state, as ss >= 6.8 does."""
    port, listed, fd_view = zoo["bound"]
    release = tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    if release < (6, 6):
        assert listed == []
        return
    assert listed == [["BOUND_INACTIVE", port]]  # JSON turned the tuples into lists
    assert fd_view == [["socket", "BOUND_INACTIVE"]]


def _lsof_sockets(lines: list[str]) -> dict[int, tuple[int, str]]:
    """fd -> (inode, protocol) of lsof -F ftdinP's socket files (one field per line)."""
    out: dict[int, tuple[int, str]] = {}
    f: dict[str, str] = {}
    for line in [*lines, "f"]:
        if line[0] == "f" and f.get("t") in ("IPv4", "IPv6", "unix", "raw", "raw6", "sock"):
            inode = int(f["d"] if f["t"] in ("IPv4", "IPv6") else f["i"])
            kind = {"unix": f["n"].rpartition("type=")[2], "raw": "RAW", "raw6": "RAW"}.get(
                f["t"], f.get("P") or f["n"].removeprefix("protocol: ")
            )
            out[int(f["f"])] = (inode, kind)
        if line[0] == "f":
            f = {}
        f[line[0]] = line[1:]
    return out


def test_the_fd_view_as_lsof_shows_it(zoo: dict[str, Any]) -> None:
    """fd -> socket inode and protocol: the same sockets lsof -p lists, each with its row."""
    kinds = {"tcp": "TCP", "udp": "UDP", "udplite": "UDPLITE", "raw": "RAW"}
    ours = {}
    for fd, inode, row in zoo["fds"]:
        assert row is not None, (fd, inode)  # every socket of the zoo is in some table
        kind = row["type"].upper() if row["proto"] == "unix" else kinds[row["proto"].rstrip("6")]
        ours[fd] = (inode, kind)
    theirs = _lsof_sockets(zoo["lsof"])
    assert ours == theirs
    assert {k for _i, k in ours.values()} == {
        "TCP", "UDP", "RAW", "STREAM", "DGRAM", "SEQPACKET", *(["UDPLITE"] * zoo["udplite"])
    }  # fmt: skip


def test_ss_state_groups() -> None:
    """ss(8): synchronized is every connected state but syn-sent (syn-recv is in it)."""
    assert "SYN_RECV" in filters.parse_states(["synchronized"])
    assert filters.parse_states(["closed"]) == filters.parse_states(["unconnected"])


@pytest.mark.parametrize("text", ["nope", "10.0.0.0/33", "1.2.3", ""])
def test_a_bad_address_filter_says_what_is_wrong(text: str) -> None:
    with pytest.raises(ValueError, match=rf"^bad address {text!r} \(an IP address, or a prefix"):
        filters.parse_address(text)
    assert str(filters.parse_address("::ffff:10.1.2.3")) == "10.1.2.3/32"  # as rows show it


SYSV = r"""
import ctypes, json, subprocess, sys
from ipcnet.inspector import ipc
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
CREAT = 0o1000
dest = libc.shmget(0, 4096, CREAT | 0o600)        # private, attached, then removed: "dest"
idle = libc.shmget(0, 8192, CREAT | 0o640)        # private, attached by nobody
keyed = libc.shmget(0x1234, 12288, CREAT | 0o666)
for ident in (dest, keyed):
    assert libc.shmat(ident, None, 0) != ctypes.c_void_p(-1).value
libc.shmctl(dest, 0, None)  # IPC_RMID
class Msg(ctypes.Structure):
    _fields_ = [("mtype", ctypes.c_long), ("mtext", ctypes.c_char * 16)]
q = libc.msgget(0x4321, CREAT | 0o620)
for size in (5, 7):
    assert libc.msgsnd(q, ctypes.byref(Msg(1, b"hello, world")), size, 0) == 0
assert libc.semget(0, 2, CREAT | 0o640) >= 0
sys.stdin.readline()  # the other namespace's segment is attached now
rows = [
    {"kind": r.kind, "key": r.name, "id": r.id, "owner": r.user, "perms": r.mode,
     "size": r.size, "messages": r.messages, "status": r.status,
     "holders": None if r.holders is None else [p for p, _ in r.holders]}
    for r in ipc.collect(["sysv-shm", "sysv-msg", "sysv-sem"])[0]
]
ipcs = {f: subprocess.run(["ipcs", f], capture_output=True, text=True, check=True).stdout
        for f in ("-m", "-q", "-s")}
print(json.dumps({"pid": __import__("os").getpid(), "rows": rows, "ipcs": ipcs}))
"""

OTHER_NS = r"""
import ctypes, sys
libc = ctypes.CDLL(None)
libc.shmat.restype = ctypes.c_void_p
ident = libc.shmget(0, 4096, 0o1000 | 0o600)  # shmid 0 of a namespace of its own
assert ident == 0 and libc.shmat(ident, None, 0) != ctypes.c_void_p(-1).value
print("attached", flush=True)
sys.stdin.read()
"""


def _ipcs_rows(text: str) -> list[list[str]]:
    return [ln.split() for ln in text.splitlines() if ln.startswith("0x")]


def test_sysv_objects_as_ipcs_shows_them() -> None:
    """Keys, ids, owners, perms, sizes, message counts and attach counts, in an IPC
    namespace of the test's own; mappers in another IPC namespace are not holders."""
    for tool in ("unshare", "ipcs"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    unshare = ["unshare", "--ipc", sys.executable, "-c"]
    other = subprocess.Popen(
        [*unshare, OTHER_NS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None
        if other.stdout.readline() != "attached\n":
            pytest.skip("cannot make an IPC namespace here (unshare --ipc)")
        r = subprocess.run(
            [*unshare, SYSV], input="go\n", capture_output=True, text=True, env=env(), timeout=30
        )
    finally:
        assert other.stdin is not None
        other.stdin.close()
        other.wait(10)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    shm = {
        int(f[1]): f for f in _ipcs_rows(doc["ipcs"]["-m"])
    }  # key shmid owner perms bytes nattch
    rows = {(x["kind"], x["id"]): x for x in doc["rows"]}
    assert len(shm) == 3
    for ident, (key, _id, owner, perms, size, nattch, *status) in shm.items():
        row = rows["sysv-shm", ident]
        assert (row["key"], row["owner"], int(row["size"])) == (key, owner, int(size))
        assert int(row["perms"], 8) == int(perms, 8)  # 600, not 1600 when "dest"
        assert row["holders"] == [doc["pid"]] * int(nattch), (ident, status)
        assert row["status"] == (status[0] if status else None)  # "dest" for the removed one
    assert rows["sysv-shm", 0]["status"] == "dest"  # a fresh namespace: the first shmid is 0
    ((key, ident, owner, perms, used, messages),) = _ipcs_rows(doc["ipcs"]["-q"])
    row = rows["sysv-msg", int(ident)]
    assert (row["key"], row["owner"], row["size"], row["messages"]) == (
        key, owner, int(used), int(messages)
    )  # fmt: skip
    assert int(row["perms"], 8) == int(perms, 8) and (row["size"], row["messages"]) == (12, 2)
    ((key, ident, owner, perms, nsems),) = _ipcs_rows(doc["ipcs"]["-s"])
    row = rows["sysv-sem", int(ident)]
    assert (row["key"], row["owner"], row["size"], int(row["perms"], 8)) == (
        key, owner, int(nsems), int(perms, 8)
    )  # fmt: skip


def test_posix_shm_and_semaphore_as_ls_shows_them() -> None:
    """Name (a space in it), owner, mode (the sticky bit too) and size, as stat(1) reads the
    /dev/shm files; a semaphore is its sem.NAME file."""
    name = f"ipcnet t-{uuid.uuid4().hex[:8]}"
    shm = posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, mode=0o640, size=5000)
    sem = posix_ipc.Semaphore("/" + name, posix_ipc.O_CREX, mode=0o600, initial_value=2)
    try:
        os.chmod(f"/dev/shm/{name}", 0o1640)
        rows = {(r.kind, r.name): r for r in ipc.collect(["posix-shm", "posix-sem"])[0]}
        for kind, file in (("posix-shm", name), ("posix-sem", f"sem.{name}")):
            stat = subprocess.run(
                ["stat", "-c", "%a %s %u", f"/dev/shm/{file}"],
                capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
            mode, size, uid = stat
            row = rows[kind, name]
            assert (row.mode, row.size, row.uid) == (f"{int(mode, 8):04o}", int(size), int(uid))
    finally:
        shm.unlink()
        shm.close_fd()
        sem.unlink()
        sem.close()
