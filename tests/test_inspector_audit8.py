"""A generated socket zoo side by side with ss -e, netstat -p and lsof (audit 8).

A child in a fresh network namespace builds sockets from combinations: TCP and UDP over
IPv4, IPv6, dual-stack and IPv4-mapped IPv6 and link-local IPv6 (with its scope), each as a
listener or bound socket, a connected pair, a half-closed pair and a TIME_WAIT pair; a
listener whose accept queue is full; a connection whose Send-Q and Recv-Q are full; raw
ICMP/ICMPv6; packet sockets; unix stream/dgram/seqpacket named with spaces, newlines,
non-UTF-8 bytes, 107 bytes, abstract names with NULs inside, unnamed and socketpairs; held
by the parent, a forked child, a child that became uid 65534, and a dup'd fd. It reads every table with
ss, netstat and lsof and through ``ipcnet sockets`` (``--json`` and the text table), and
runs every port and address of the zoo through both tools' filters. The comparisons happen
here; what differs on purpose is allowed, by name, in the docstring of the test it touches.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any

import pytest

from inspector_helpers import in_netns, netns, run_cli
from test_inspector_conformance import _lsof_sockets
from test_inspector_vs_ss import SS_STATES, _split

pytestmark = pytest.mark.xdist_group("inspector-audit8")  # one zoo, built once

# ss's state words and groups (ss(8) STATE-FILTER)
SS_WORDS = [
    "established", "syn-sent", "syn-recv", "fin-wait-1", "fin-wait-2", "time-wait", "closed",
    "close-wait", "last-ack", "listening", "closing", "all", "connected", "synchronized",
    "bucket", "big",
]  # fmt: skip
# --address A and the ss expression that selects the same: an IPv4-mapped address or
# prefix is its IPv4 one for ipcnet (rows show mapped addresses as IPv4), ss takes it as
# IPv6 and selects only the IPv6 sockets that bear it
ADDRESSES = {
    "127.0.0.1": "127.0.0.1", "127.0.0.0/8": "127.0.0.0/8", "::1": "[::1]", "::/0": "::/0",
    "0.0.0.0/0": "0.0.0.0/0", "fe80::1": "[fe80::1]", "fe80::/10": "fe80::/10",
    "::ffff:127.0.0.1": "127.0.0.1", "::ffff:0:0/96": "0.0.0.0/0", "10.0.0.0/8": "10.0.0.0/8",
    "::ffff:0:0/95": "::ffff:0:0/95",
}  # fmt: skip
NETIDS = ("tcp", "udp", "raw", "u_str", "u_dgr", "u_seq", "p_raw", "p_dgr")

ZOO = r"""
import json, os, socket, subprocess, sys, time
from ipcnet.inspector import list_sockets

def run(*argv):
    return subprocess.run(argv, capture_output=True, check=True).stdout.decode("utf-8", "surrogateescape")

def nft(rule):
    subprocess.run(["nft", "add", "rule", "inet", "t", "in", *rule.split()], check=True)

subprocess.run(["nft", "-f", "-"], check=True, text=True,
               input="table inet t {\n chain in {\n type filter hook input priority 0;\n }\n}\n")
subprocess.run(["ip", "addr", "add", "fe80::1/64", "dev", "lo"], check=True)
for _ in range(100):  # the link-local address must leave "tentative" before it is bound
    if "tentative" not in run("ip", "-6", "addr", "show", "dev", "lo"):
        break
    time.sleep(0.02)
LO = socket.if_nametoindex("lo")
keep = []
def new(*a):
    s = socket.socket(*a); keep.append(s); return s
V4, V6 = socket.AF_INET, socket.AF_INET6
# endpoint kinds: (name, listener family, bind address, client family, connect address, v6only)
KINDS = [
    ("v4", V4, ("127.0.0.1",), V4, ("127.0.0.1",), None),
    ("v4any", V4, ("0.0.0.0",), V4, ("127.0.0.1",), None),
    ("v6", V6, ("::1",), V6, ("::1",), None),
    ("v6only", V6, ("::",), V6, ("::1",), 1),
    ("dual", V6, ("::",), V4, ("127.0.0.1",), 0),
    ("mapped", V6, ("::ffff:127.0.0.1",), V6, ("::ffff:127.0.0.1",), None),
    ("linklocal", V6, ("fe80::1", 0, LO), V6, ("fe80::1", 0, LO), None),
]
def addr(base, port):
    return (base[0], port, *base[1:]) if len(base) == 3 else (base[0], port)
def listener(fam, base, v6only, backlog=8):
    s = new(fam, socket.SOCK_STREAM)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind(addr(base, 0)); s.listen(backlog); return s
def connect(lst, cfam, cbase, accept=True):
    c = new(cfam); c.connect(addr(cbase, lst.getsockname()[1]))
    if not accept:
        return c, None
    s, _ = lst.accept(); keep.append(s); return c, s
want = set()
for name, fam, base, cfam, cbase, v6only in KINDS:
    lst = listener(fam, base, v6only)
    c, s = connect(lst, cfam, cbase); c.sendall(b"12345")          # ESTABLISHED, Recv-Q 5
    c, s = connect(lst, cfam, cbase); c.shutdown(socket.SHUT_WR)   # FIN_WAIT2 / CLOSE_WAIT
    c, s = connect(lst, cfam, cbase); c.close(); s.close()         # TIME_WAIT (c's side)
    # SYN_RECV: the last ACK of the handshake is dropped
    lr = listener(fam, base, v6only)
    nft(f"tcp dport {lr.getsockname()[1]} tcp flags & (syn | ack) == ack drop")
    connect(lr, cfam, cbase, accept=False)
    # FIN_WAIT1 / LAST_ACK: nothing from the listener's port gets through
    lk = listener(fam, base, v6only); a, b = connect(lk, cfam, cbase)
    nft(f"tcp sport {lk.getsockname()[1]} drop")
    a.shutdown(socket.SHUT_WR); b.recv(1); b.close()
    # CLOSING: x's FINs are lost, so x gets y's FIN before its own is acknowledged
    lc = listener(fam, base, v6only); x, y = connect(lc, cfam, cbase)
    nft(f"tcp sport {x.getsockname()[1]} tcp flags & fin == fin drop")
    x.shutdown(socket.SHUT_WR); y.shutdown(socket.SHUT_WR)
    # UDP: bound, and a connected socket that sent it 3 bytes
    u = new(fam, socket.SOCK_DGRAM)
    if v6only is not None:
        u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    u.bind(addr(base, 0))
    v = new(cfam, socket.SOCK_DGRAM); v.connect(addr(cbase, u.getsockname()[1])); v.send(b"abc")
# a listener whose accept queue is full (backlog 1: two wait), and a third connect that
# stays in SYN_SENT
full = listener(V4, ("127.0.0.1",), None, backlog=1)
for _ in range(3):
    c = new(); c.setblocking(False)
    try:
        c.connect(full.getsockname())
    except BlockingIOError:
        pass
# a connection whose peer does not read: Send-Q and Recv-Q both full
big = listener(V4, ("127.0.0.1",), None); bc, bs = connect(big, V4, ("127.0.0.1",))
bc.setblocking(False)
try:
    while True:
        bc.send(b"x" * 65536)
except BlockingIOError:
    pass
new(V4, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ssh = new(); ssh.bind(("127.0.0.1", 22)); ssh.listen()  # ports with /etc/services names
new(V6, socket.SOCK_DGRAM).bind(("::1", 53))
new(V6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
PK = socket.AF_PACKET
new(PK, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL: every frame of every device
new(PK, socket.SOCK_DGRAM, socket.htons(0x0806)).bind(("lo", 0x0806))  # ARP: none on lo
new(PK, socket.SOCK_RAW, socket.htons(0x1234))
new(PK, socket.SOCK_RAW, 0)  # takes nothing until bound
pa = new(V4, socket.SOCK_DGRAM); pa.bind(("127.0.0.1", 0))
new(V4, socket.SOCK_DGRAM).sendto(b"!", pa.getsockname())  # a frame for ETH_P_ALL at least
d = __DIR__.encode()
named = [b"/sp ace", b"/new\nline", b"/bad\xff\xfe", b"/\xc3\xa9t\xc3\xa9"]
named.append(b"/" + b"L" * (107 - len(d) - 2))  # + 1 below: 107 bytes and the NUL
for kind in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
    for n in named:
        s = new(socket.AF_UNIX, kind); s.bind(d + n + str(kind).encode()[-1:]); s.listen(3)
us = new(socket.AF_UNIX); us.bind(d + b"/srv"); us.listen()
uc = new(socket.AF_UNIX); uc.connect(d + b"/srv"); ua, _ = us.accept(); keep.append(ua)
uc.sendall(b"7 bytes")  # Recv-Q 7 on ua; Send-Q: the skb's size, charged to uc
for n in named:
    new(socket.AF_UNIX, socket.SOCK_DGRAM).bind(d + n + b"d")
ab = new(socket.AF_UNIX, socket.SOCK_DGRAM); ab.bind(b"\0ab\0in side\0")
new(socket.AF_UNIX, socket.SOCK_DGRAM).connect(b"\0ab\0in side\0")
new(socket.AF_UNIX, socket.SOCK_SEQPACKET).bind(b"\0\xff\xfeodd")
os.chdir(d)
new(socket.AF_UNIX, socket.SOCK_DGRAM).bind(b"@twin")  # a file named @twin, and
new(socket.AF_UNIX, socket.SOCK_DGRAM).bind(b"\0twin")  # an abstract name "twin"
new(socket.AF_UNIX, socket.SOCK_STREAM)  # unnamed, unconnected
for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET):
    keep.extend(socket.socketpair(socket.AF_UNIX, kind))
    keep[-1].send(b"x" * 1000)
dup = os.dup(keep[0].fileno())  # one socket on two fds of the same process
rp, wp = os.pipe(); rq, wq = os.pipe()
shared = os.fork()  # holds every socket above, on the same fds
if shared == 0:
    os.close(1); os.close(2); os.read(rq, 1); os._exit(0)
nobody = os.fork()  # uid 65534, with sockets of its own
if nobody == 0:
    os.close(1); os.close(2)
    for fd in range(3, 1024):  # none of the parent's
        if fd not in (wp, rq):
            try:
                os.close(fd)
            except OSError:
                pass
    os.setgid(65534); os.setuid(65534)
    a = socket.socket(); a.bind(("127.0.0.1", 0)); a.listen()
    b = socket.socket(V6, socket.SOCK_DGRAM); b.bind(("::1", 0))
    c = socket.socket(socket.AF_UNIX); c.bind(b"\0nobody's"); c.listen()
    os.write(wp, b"x"); os.read(rq, 1); os._exit(0)
os.read(rp, 1)
states = {"SYN_RECV", "SYN_SENT", "FIN_WAIT1", "LAST_ACK", "CLOSING", "TIME_WAIT", "CLOSE_WAIT"}
for _ in range(300):  # the lost packets take a moment to make their states
    if states <= {r.state for r in list_sockets(["tcp"], ["all"])}:
        break
    time.sleep(0.01)
# the full connection's queues stop moving once both buffers are full
last = None
for _ in range(200):
    now = [(r.recv_q, r.send_q) for r in list_sockets(["tcp"], port=big.getsockname()[1])]
    if now == last:
        break
    last = now; time.sleep(0.02)
out = {"pids": {"parent": os.getpid(), "shared": shared, "nobody": nobody}, "sweep": {}}
from ipcnet.cli import sockets as cli
from ipcnet.inspector.output import socket_table
import argparse
def cli_rows(*argv):
    parser = argparse.ArgumentParser(); cli.add_arguments(parser)
    return [r.to_dict() for r in cli._fetch(parser.parse_args(list(argv)))]
out["ss"] = run("ss", "-H", "-tuxwanpe")
out["ss_packet"] = run("ss", "-H", "-0anpe")
out["packet"] = cli_rows("-0anp")
out["packet_table"] = list(socket_table(
    list_sockets(["packet"], owners=True), numeric=True, extended=True, processes=True,
    header=False))
out["packet_proc"] = [r.to_dict() for r in list_sockets(["packet"], source="proc")]
out["json"] = cli_rows("-tuxwanp")
parser = argparse.ArgumentParser(); cli.add_arguments(parser)
args = parser.parse_args(["-tuwanpe"])
out["table"] = list(socket_table(cli._fetch(args), numeric=True, extended=True, processes=True,
                                 header=False))
out["proc"] = [r.to_dict() for r in list_sockets(None, ["all"], source="proc", owners=True)]
out["netstat"] = run("netstat", "-anpW")
out["lsof"] = run("lsof", "-nP", "-a", "-p", str(nobody), "-F", "ftdinP").splitlines()
# filters: every port and every address of the zoo, ss's state words, the flag defaults
ports = sorted({r["local_port"] for r in out["json"] if r["proto"][:3] in ("tcp", "udp")})
for p in [0, *ports, "ssh", "domain"]:
    out["sweep"][f"port {p}"] = (
        run("ss", "-tuanH", f"( sport = :{p} or dport = :{p} )"),
        [r.to_dict() for r in list_sockets(["tcp", "udp"], ["all"], port=p)],
    )
for a, sa in __ADDRESSES__.items():  # (raw: ss's /0 takes raw sockets of both families)
    out["sweep"][f"address {a}"] = (
        run("ss", "-tuanH", f"( src {sa} or dst {sa} )"),
        [r.to_dict() for r in list_sockets(["tcp", "udp"], ["all"], address=a)],
    )
for w in __WORDS__:
    out["sweep"][f"state {w}"] = (
        run("ss", "-tuxwanH", "state", w), cli_rows("-tuxwn", "--state", w)
    )
    out["sweep"][f"state {w} (proc)"] = (
        out["sweep"][f"state {w}"][0], cli_rows("-tuxwn", "--state", w, "--source", "proc")
    )
for flags in ("-tuxwn", "-tuxwln", "-tuxwan", "-xln", "-6tun", "-4tuln", "-0n", "-0ln", "-t0n"):
    out["sweep"][flags] = (run("ss", flags + "eH"), cli_rows(flags))
os.write(wq, b"xx")
os.waitpid(shared, 0); os.waitpid(nobody, 0)
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "\u00b2"], "unknown port or service name '\u00b2'"),  # isdigit, not a number
        (["--port", "\u0668\u0660"], "unknown port or service name '\u0668\u0660'"),  # Arabic 80
        (["--port", "70000"], "port 70000 out of range 0-65535"),
        (["--port", "9" * 5000], "port 999999999999... out of range 0-65535"),  # int() refuses
        (["--port", "http,https"], "unknown port or service name 'http,https'"),
        (["--state", "established,listen"], "unknown state 'established,listen'"),
        (["--address", "fe80::1%lo"], "bad address 'fe80::1%lo'"),  # ss: "an inet prefix is
        (["--address", "fe80::%lo/64"], "bad address 'fe80::%lo/64'"),  # expected"
        (["--address", "1.2.3.4/40"], "bad address '1.2.3.4/40'"),
    ],
)
def test_bad_filter_input_is_a_clear_error(args: list[str], message: str) -> None:
    """ss rejects each of these; so does ipcnet, with one line naming the bad word (a
    digit that is not an ASCII one is not a port, and a zone index is not an address:
    ``fe80::1%lo`` used to select every fe80::1 socket, of any device)."""
    r = run_cli("-tan", *args)
    assert r.returncode == 2, r
    assert r.stdout == ""
    assert r.stderr.startswith(f"ipcnet sockets: {message}"), r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    for tool in ("ss", "netstat", "nft", "lsof"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    d = tmp_path_factory.mktemp("a8")
    code = ZOO.replace("__DIR__", repr(str(d))).replace("__WORDS__", repr(SS_WORDS))
    code = code.replace("__ADDRESSES__", repr(ADDRESSES))
    with netns() as ns:
        r = in_netns(ns, code, timeout=60)
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def ss_lines(text: str) -> list[str]:
    """ss's lines, with a line that a newline in a unix name broke joined back on."""
    out: list[str] = []
    for line in text.split("\n"):
        if line.split(" ", 1)[0] in NETIDS or not out:
            out.append(line)
        else:
            out[-1] += "\n" + line
    return [x for x in out if x]


def ss_users(line: str) -> list[tuple[str, int, int]]:
    found = re.findall(r'\("([^"]*)",pid=(\d+),fd=(\d+)\)', line)
    return sorted((name, int(pid), int(fd)) for name, pid, fd in found)


def our_users(row: dict[str, Any]) -> list[tuple[str, int, int]]:
    return sorted((p["name"], p["pid"], fd) for p in row["processes"] or () for fd in p["fds"])


_UNIX = re.compile(r"^(u_\w+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(.*?) (\d+)\s+(.*?) (\d+)$", re.S)


def parse_ss(line: str) -> dict[str, Any]:
    """One line of ss -tuxwanpe as a dict of our field names (ss's display forms)."""
    body = line
    for cut in (" users:((", " <->", " uid:", " ino:", " timer:("):
        body = body.split(cut, 1)[0]
    users = ss_users(line)
    if line.startswith("p_"):
        f = body.split()
        if f[1] not in SS_STATES:
            f.insert(1, "UNCONN")
        ino = re.search(r" ino:(\d+)", line)
        assert ino, line
        return {
            "key": int(ino.group(1)), "netid": f[0], "state": SS_STATES[f[1]],
            "recv_q": int(f[2]), "send_q": int(f[3]), "local": f[4], "peer": f[5],
            "users": users,
        }  # fmt: skip
    if line.startswith("u_"):
        m = _UNIX.match(body.rstrip())
        assert m, line
        netid, state, rq, sq, path, ino, _peer, peer = m.groups()
        return {
            "key": int(ino), "netid": netid, "state": SS_STATES[state], "recv_q": int(rq),
            "send_q": int(sq), "path": None if path.strip() == "*" else path.strip(),
            "peer_inode": int(peer) or None, "users": users,
        }  # fmt: skip
    f = body.split()
    uid = re.search(r" uid:(\d+)", line)
    ino = re.search(r" ino:(\d+)", line)
    return {
        "key": (f[0], _split(f[4]), _split(f[5])), "netid": f[0], "state": SS_STATES[f[1]],
        "recv_q": int(f[2]), "send_q": int(f[3]), "local": f[4], "peer": f[5],
        "uid": int(uid.group(1)) if uid else 0, "inode": int(ino.group(1)) if ino else None,
        "users": users,
    }  # fmt: skip


def ours_as_ss(row: dict[str, Any]) -> dict[str, Any]:
    """Our JSON row in the terms of ``parse_ss`` (ss prints 0 where we say unknown)."""
    state = "CLOSE" if row["state"] == "UNCONN" else row["state"]
    rq, sq = row["recv_q"], row["send_q"]
    if row["family"] == "packet":
        return {
            "key": row["inode"], "netid": f"p_{row['type'][:3]}", "state": state,
            "recv_q": rq, "send_q": 0 if sq is None else sq, "users": our_users(row),
        }  # fmt: skip
    if row["family"] == "unix":
        kind = {"stream": "u_str", "dgram": "u_dgr", "seqpacket": "u_seq"}[row["type"]]
        path = row["path"]
        if path is not None and path.startswith("@"):
            path = "@" + path[1:].replace("\0", "@")  # ss prints each NUL of the name as @
        return {
            "key": row["inode"], "netid": kind, "state": state, "recv_q": rq, "send_q": sq,
            "path": path, "peer_inode": row["peer_inode"], "users": our_users(row),
        }  # fmt: skip
    netid = row["proto"].rstrip("6")
    local = _split(f"{row['local_host']}:{row['local_port']}")
    peer = _split(f"{row['remote_host']}:{row['remote_port']}")
    return {
        "key": (netid, local, peer), "netid": netid, "state": state,
        "recv_q": 0 if rq is None else rq, "send_q": 0 if sq is None else sq,
        "uid": row["uid"] or 0, "inode": row["inode"] or 0, "users": our_users(row),
    }  # fmt: skip


def _by_key(rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = {}
    for r in rows:
        assert r["key"] not in out, r
        out[r["key"]] = r
    return out


def _big(zoo: dict[str, Any]) -> set[Any]:
    """Keys of the connection whose queues are full (they move by a few KiB as the kernel
    collapses the receive queue; both tools must see them full)."""
    return {
        ours_as_ss(r)["key"] for r in zoo["json"]
        if r["family"] == "inet" and max(r["recv_q"] or 0, r["send_q"] or 0) > 65536
    }  # fmt: skip


def test_every_row_as_ss_e_shows_it(zoo: dict[str, Any]) -> None:
    """Family, type, state, addresses, queues, uid, inode and owners of every socket of the
    zoo (inet and unix), as ss -tuxwanpe shows them."""
    theirs = _by_key([parse_ss(x) for x in ss_lines(zoo["ss"])])
    ours = _by_key([ours_as_ss(r) for r in zoo["json"]])
    for v in theirs.values():
        v.pop("local", None), v.pop("peer", None)  # display forms: the table's test
    for k, v in ours.items():
        if v["netid"] == "raw" and k in theirs:  # ss -e prints no uid:/ino: for raw sockets
            assert theirs[k]["inode"] is None and v["inode"]
            theirs[k]["inode"] = v["inode"]
    big = _big(zoo)
    assert len(big) == 2
    for key in big:
        for side in (theirs, ours):
            assert side[key]["recv_q"] > 65536 or side[key]["send_q"] > 65536
            side[key]["recv_q"] = side[key]["send_q"] = "full"
    theirs_inet = {k: v for k, v in theirs.items() if not v["netid"].startswith("u_")}
    ours_inet = {k: v for k, v in ours.items() if not v["netid"].startswith("u_")}
    for k in theirs_inet.keys() | ours_inet.keys():
        assert ours_inet.get(k) == theirs_inet.get(k), k
    assert {k: v for k, v in ours.items() if k not in ours_inet} == {
        k: v for k, v in theirs.items() if k not in theirs_inet
    }
    states = {v["state"] for v in ours.values()}
    assert set(SS_STATES.values()) <= states
    unix_queues = {v["recv_q"] for v in ours.values() if v["netid"].startswith("u_")}
    assert {7, 1000} <= unix_queues  # stream and socketpair data not yet read
    assert len(ours) > 150


def test_odd_unix_names_exactly(zoo: dict[str, Any]) -> None:
    """The exact bytes of every name: a newline, non-UTF-8 bytes (as surrogate escapes, like
    os.fsdecode), 107 bytes, NULs inside an abstract name; and the same names from /proc,
    where it can tell (it prints an abstract name's NULs as '@')."""
    paths = {r["path"] for r in zoo["json"] if r["family"] == "unix" and r["path"]}
    tails = {p.rpartition("/")[2] for p in paths if p.startswith("/")}
    for tail in ("sp ace1", "new\nline1", "bad\udcff\udcfe5", "\u00e9t\u00e9d", "srv"):
        assert tail in tails, tail
    assert any(len(os.fsencode(p)) == 107 for p in paths)
    assert {"@ab\0in side\0", "@\udcff\udcfeodd", "@nobody's"} <= paths
    proc = {r["inode"]: r for r in zoo["proc"] if r["family"] == "unix"}
    for r in zoo["json"]:
        if r["family"] == "unix":
            p = proc[r["inode"]]
            assert (p["type"], p["state"]) == (r["type"], r["state"]), r
            if p["exact"]:
                assert p["path"] == r["path"], r


def test_an_abstract_name_and_a_file_named_like_it(zoo: dict[str, Any]) -> None:
    """A file named ``@twin`` (bound by a relative path) and the abstract name ``twin`` are
    both ``@twin`` in ss, /proc and our ``path``; sock_diag tells them apart, and so does
    ``abstract``. From /proc an ``@`` name may be either: ``abstract`` is unknown there."""
    twins = sorted((r["abstract"], r["type"]) for r in zoo["json"] if r["path"] == "@twin")
    assert twins == [(False, "dgram"), (True, "dgram")]
    for r in zoo["json"]:
        if r["family"] != "unix":
            assert r["abstract"] is None
        elif r["path"] != "@twin":  # the others: "@" is abstract, "/" a file, None unnamed
            named = r["path"] is not None
            assert r["abstract"] is (r["path"].startswith("@") if named else None), r
    for r in zoo["proc"]:
        if r["family"] == "unix" and r["path"] is not None:
            assert r["abstract"] is (None if r["path"].startswith("@") else False), r


def _ss_table(zoo: dict[str, Any]) -> dict[Any, tuple[Any, ...]]:
    out = {}
    for line in ss_lines(zoo["ss"]):
        if not line.startswith("u_"):
            p = parse_ss(line)
            users = ",".join(f"{n}/{pid}/fd={fd}" for n, pid, fd in p["users"]) or "-"
            ino = "?" if p["inode"] in (None, 0) else str(p["inode"])
            out[p["key"]] = (p["netid"], p["local"], p["peer"], p["state"], ino, users)
    return out


def _labels(label: str) -> str:
    """ss lists each fd apart: python/1/fd=3,python/1/fd=5 for our python/1/fd=3,5."""
    if label in ("-", "?"):
        return "-"
    out = []
    for owner in label.split(","):
        if "/fd=" in owner:
            name_pid, _, fds = owner.rpartition("/fd=")
            out += [(name_pid, int(fd)) for fd in fds.split(";")]
        else:  # the rest of a comma-separated fd list
            out.append((out[-1][0], int(owner)))
    return ",".join(f"{np}/fd={fd}" for np, fd in sorted(out, key=lambda x: (x[0], x[1])))


def test_the_text_table_prints_what_ss_prints(zoo: dict[str, Any]) -> None:
    """Local and Peer as ss prints them (device after a link-local or bound address, ``*``
    for a dual-stack wildcard), state, inode and processes of ``-tuwanpe``, but for the
    differences the table makes on purpose: an IPv4-mapped address is shown as IPv4, a
    raw6 wildcard as [::] (ss: ``*``), a socket without an inode has ``?`` (ss: ino:0)."""
    theirs = {k: (*v[:4], v[4], _labels_ss(v[5])) for k, v in _ss_table(zoo).items()}
    ours = {}
    for line in zoo["table"]:
        # Proto State Recv-Q Send-Q Local Peer User Inode Timer Process
        f = line.split()
        netid = f[0].rstrip("6")
        key = (netid, _split(f[4]), _split(f[5]))
        state = {"UNCONN": "CLOSE"}.get(f[1], f[1])
        ours[key] = (netid, f[4], f[5], state, f[7], _labels(f[9]))
    assert ours.keys() == theirs.keys()
    for k, mine in ours.items():
        ss = list(theirs[k])
        for i in (1, 2):
            if "::ffff:" in ss[i]:
                ss[i] = ss[i].replace("[::ffff:", "").replace("]:", ":")
        if k[0] == "raw" and ss[1].startswith("*:"):
            ss[1], ss[2] = "[::]" + ss[1][1:], "[::]" + ss[2][1:]
        if k[0] == "raw" and ss[4] == "?":  # ss -e: no ino: for raw sockets
            ss[4] = mine[4]
        assert mine == tuple(ss), (mine, theirs[k])
    assert len(ours) > 100


def _labels_ss(users: str) -> str:
    return _labels(users.replace(",", ";").replace(";", ",")) if users != "-" else "-"


def test_packet_sockets_as_ss_shows_them(zoo: dict[str, Any]) -> None:
    """ss -0anpe: type, state, queues, owners, and Local as PROTOCOL:DEVICE (``*`` for
    ETH_P_ALL, ``[N]`` with -n); /proc/net/packet agrees on what it says. The ETH_P_ALL
    socket's Recv-Q moves with the zoo's traffic (retransmissions), so it is only > 0."""
    theirs = {}
    for line in ss_lines(zoo["ss_packet"]):
        p = parse_ss(line)
        theirs[p["key"]] = p
    ours = {r["inode"]: ours_as_ss(r) for r in zoo["packet"]}
    table = {}
    for line in zoo["packet_table"]:
        f = line.split()  # Proto State Recv-Q Send-Q Local Peer User Inode Timer Process
        table[int(f[7])] = (f[4], f[5], f[0])
    assert table.keys() == ours.keys() == theirs.keys() and len(ours) == 4
    locals_ = {}
    for inode, mine in ours.items():
        ss = dict(theirs[inode])
        locals_[inode] = (ss.pop("local"), ss.pop("peer"), ss["netid"])
        if locals_[inode][0] == "*:*":
            assert mine["recv_q"] > 0 and ss["recv_q"] > 0
            mine["recv_q"] = ss["recv_q"] = "moving"
        assert mine == ss
    assert table == locals_
    assert sorted(x[0] for x in table.values()) == ["*:*", "[0]:*", "[2054]:lo", "[4660]:*"]
    proc = {r["inode"]: r for r in zoo["packet_proc"]}
    for r in zoo["packet"]:
        p = proc[r["inode"]]
        for k in ("proto", "type", "state", "local_port", "uid", "interface"):
            assert p[k] == r[k], k
        assert p["send_q"] is None  # /proc/net/packet has no send queue


PROC_KNOWS = ("proto", "type", "state", "local_host", "local_port", "remote_host",
              "remote_port", "inode", "timer", "processes")  # fmt: skip


def test_proc_fallback_agrees_on_what_it_knows(zoo: dict[str, Any]) -> None:
    """The /proc tables give the same rows (link-local, mapped, odd names and all), with
    the same queues where /proc has them (not a listener's backlog, nor unix queues)."""
    big = _big(zoo)

    inexact = {r["inode"] for r in zoo["proc"] if not r["exact"]}  # "@" may be a NUL there

    def rows(which: list[dict[str, Any]], netlink: bool) -> list[Any]:
        out = []
        for r in which:
            if r["family"] == "packet":
                continue
            rq, sq = r["recv_q"], r["send_q"]
            if r["family"] == "unix":
                rq = sq = None  # /proc/net/unix prints no queues
            elif ours_as_ss(r)["key"] in big:
                rq = sq = "full"
            elif r["state"] == "LISTEN" and netlink:
                sq = None  # nor a listener's backlog
            path = None if r["inode"] in inexact else r["path"]
            out.append((tuple(json.dumps(r[k]) for k in PROC_KNOWS), path, rq, sq))
        return sorted(out, key=repr)

    assert rows(zoo["json"], True) == rows(zoo["proc"], False)
    odd = {r["inode"] for r in zoo["json"]
           if r["path"] and ("\n" in r["path"] or "\0" in r["path"])}  # fmt: skip
    assert inexact == odd and len(odd) == 4  # 3 with a newline, 1 with NULs
    # the exact unix names /proc can show: all but those with a newline or an abstract NUL
    exact = {r["path"] for r in zoo["proc"] if r["family"] == "unix" and r["exact"]}
    assert "@nobody's" in exact and any(p and p.endswith("/sp ace1") for p in exact)


def test_netstat_shows_the_same_inet_rows(zoo: dict[str, Any]) -> None:
    """netstat -anpW: proto, addresses (IPv4-mapped as IPv4, like ours), state and one owner
    pid per row; unix: inode and type."""
    names = {"stream": "STREAM", "dgram": "DGRAM", "seqpacket": "SEQPACKET"}
    theirs, theirs_unix = set(), set()
    for line in zoo["netstat"].splitlines():
        f = line.split()
        if f and f[0] in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
            state = f[5] if len(f) == 7 else ""
            pid = f[-1].split("/")[0]
            theirs.add((f[0], f[3], f[4], state, None if pid == "-" else int(pid)))
        elif f and f[0] == "unix":
            i = f.index("]")
            kind, rest = f[i + 1], f[i + 2 :]
            inode = next(int(x) for x in rest if x.isdigit())
            theirs_unix.add((inode, kind))

    def end(host: str, port: int, raw: bool) -> str:
        return f"{host}:{port if port or raw else '*'}"

    ours, ours_unix = set(), set()
    for r in zoo["json"]:
        if r["family"] == "unix":
            ours_unix.add((r["inode"], names[r["type"]]))
            continue
        raw = r["type"] == "raw"
        state = {"UNCONN": "" if not raw else "7"}.get(r["state"], r["state"])
        pids = [p["pid"] for p in r["processes"] or ()]
        ours.add((
            r["proto"], end(r["local_host"], r["local_port"], raw),
            end(r["remote_host"], r["remote_port"] if not raw else 0, False), state,
            min(pids) if pids else None,
        ))  # fmt: skip
    big = {(p, lo, pe) for p, lo, pe, *_ in ours if lo.endswith(":*")}  # nothing: a guard
    assert not big
    assert ours == theirs
    assert ours_unix == theirs_unix


def test_owners_of_another_user_as_lsof_shows_them(zoo: dict[str, Any]) -> None:
    """The uid 65534 child's own sockets: their uid, and every fd lsof gives that pid."""
    nobody = zoo["pids"]["nobody"]
    theirs = {fd: inode for fd, (inode, _kind) in _lsof_sockets(zoo["lsof"]).items()}
    ours = {}
    for r in zoo["json"]:
        for p in r["processes"] or ():
            if p["pid"] == nobody:
                assert r["uid"] == 65534, r
                ours.update({fd: r["inode"] for fd in p["fds"]})
    assert ours == theirs and len(ours) == 3


def test_shared_and_duplicated_fds(zoo: dict[str, Any]) -> None:
    """A forked child holds the same sockets on the same fds; a dup'd fd is one more fd of
    the same owner; the other user's child holds none of the parent's."""
    pids = zoo["pids"]
    for r in zoo["json"]:
        if r["inode"] is None:
            assert r["processes"] is None
            continue
        by_pid = {p["pid"]: p["fds"] for p in r["processes"]}
        if pids["nobody"] in by_pid:
            assert list(by_pid) == [pids["nobody"]]
            continue
        assert sorted(by_pid) == sorted([pids["parent"], pids["shared"]]), r
        assert by_pid[pids["parent"]] == by_pid[pids["shared"]]
    assert any(len(p["fds"]) == 2 for r in zoo["json"] for p in r["processes"] or ())


def _sweep_ours(rows: list[dict[str, Any]]) -> list[Any]:
    return sorted((ours_as_ss(r)["key"] for r in rows), key=repr)


def test_filters_select_what_ss_selects(zoo: dict[str, Any]) -> None:
    """Every port of the zoo (``--port P`` and ss's ``( sport = :P or dport = :P )``), every
    address and prefix (``--address A`` and ``( src A or dst A )``), every state word and
    group (``--state W`` and ``state W``), and the flag defaults (-l, -a, -4, -6, none)."""
    bad = {}
    for name, (ss_text, rows) in zoo["sweep"].items():
        theirs = sorted((_sweep_key(x) for x in ss_lines(ss_text)), key=repr)
        ours = _sweep_ours(rows)
        if ours != theirs:
            bad[name] = (sorted(set(map(repr, ours)) - set(map(repr, theirs))),
                         sorted(set(map(repr, theirs)) - set(map(repr, ours))))  # fmt: skip
    assert bad == {}
    assert len([k for k in zoo["sweep"] if k.startswith("port ")]) > 40
    for name in ("port 0", "port ssh", "port domain", "-0n", "state closing", "address fe80::1"):
        assert zoo["sweep"][name][1], name  # each selects something
    empty = [k for k, (_ss, rows) in zoo["sweep"].items() if not rows]
    assert empty == ["address 10.0.0.0/8"]


def _sweep_key(line: str) -> Any:
    """The key of an ss line printed with or without its State column (ss drops the column
    when a state filter selects a single state)."""
    f = line.split()
    if f[1] not in SS_STATES:
        _, _, tail = line.partition(f[0])
        line = f"{f[0]} UNCONN{tail}"
    return parse_ss(line)["key"]
