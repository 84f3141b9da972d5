"""Differential cases against ss that the generated comparison (session 6) found wrong.

One child in a fresh network namespace makes the sockets and reads them both ways (ss, and
``list_sockets`` through sock_diag and /proc); the comparisons happen here:
- a half-open connection (SYN_RECV, a request socket) of a listener that is not root, and
  an orphaned FIN_WAIT2 end (a TIME_WAIT socket in that substate): the kernel fills their
  uid with a placeholder 0 (inet_req_diag_fill, inet_twsk_diag_fill; /proc prints 0 for
  the second and the listener's uid for the first), so the rows must say unknown, not
  root, from both sources, as for TIME_WAIT;
- ``--address`` with an IPv6 prefix selects the IPv4-mapped IPv6 sockets it contains, as
  ss's ``( src PREFIX or dst PREFIX )`` does (their rows show the IPv4 address);
- an unknown ``--state`` word is answered with ss's words, which ss takes too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from inspector_helpers import in_netns, netns
from ipcnet.inspector import filters
from test_inspector_vs_ss import _split

pytestmark = [
    pytest.mark.skipif(
        shutil.which("ss") is None or shutil.which("nft") is None, reason="needs ss and nft"
    ),
    pytest.mark.xdist_group("inspector-differential"),  # one namespace, built once
]

ADDRESSES = ["::/0", "::/64", "::ffff:0:0/95", "127.0.0.0/8", "0.0.0.0/0", "::1", "127.0.0.1"]

CODE = r"""
import json, os, socket, subprocess, time
from ipcnet.inspector import list_sockets

def run(*argv):
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

keep = []
def new(*a):
    s = socket.socket(*a); keep.append(s); return s
# IPv4, IPv6 and IPv4-mapped IPv6 connections (both ends of each) and their listeners
l4 = new(); l4.bind(("127.0.0.1", 0)); l4.listen()
dual = new(socket.AF_INET6); dual.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
dual.bind(("::", 0)); dual.listen()
new().connect(("127.0.0.1", dual.getsockname()[1]))          # v4 client, mapped server end
new(socket.AF_INET6).connect(("::ffff:127.0.0.1", l4.getsockname()[1]))  # mapped client
new(socket.AF_INET6).connect(("::1", dual.getsockname()[1]))
new().connect(l4.getsockname())
u = new(socket.AF_INET6, socket.SOCK_DGRAM); u.connect(("::ffff:127.0.0.1", 9))
# a listener of uid 65534 whose half-open connection stays in SYN_RECV: the last ACK of the
# handshake is dropped
r, w = os.pipe()  # the child's port up
r2, w2 = os.pipe()  # "exit now" down
child = os.fork()
if child == 0:
    os.setgid(65534); os.setuid(65534)
    lst = socket.socket(); lst.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 4)
    lst.bind(("127.0.0.1", 0)); lst.listen()
    gone = socket.socket(); gone.connect(l4.getsockname())  # closed first: an orphan that
    ports = f"{lst.getsockname()[1]} {gone.getsockname()[1]}"  # waits in FIN_WAIT2 as a
    gone.close()  # TIME_WAIT socket (tcp_time_wait's substate)
    os.write(w, ports.encode()); os.read(r2, 1); os._exit(0)
port, orphan = map(int, os.read(r, 32).split())
subprocess.run(["nft", "-f", "-"], check=True, text=True, input=
    "table inet t {\n chain in {\n type filter hook input priority 0;\n"
    f" tcp dport {port} tcp flags & (syn | ack) == ack drop\n }}\n}}\n")
syn = new(); syn.setblocking(False)
try:
    syn.connect(("127.0.0.1", port))
except BlockingIOError:
    pass
# TCP Fast Open without cookies: data in the SYN makes a full socket in SYN_RECV at once,
# which has its owner's uid and the data in its Recv-Q
with open("/proc/sys/net/ipv4/tcp_fastopen", "w") as f:
    f.write(str(0x207))  # client and server, data in the SYN without a cookie
tfo = new(); tfo.setblocking(False)
try:
    tfo.sendto(b"hi", socket.MSG_FASTOPEN, ("127.0.0.1", port))
except BlockingIOError:
    pass
for _ in range(300):
    if len(list_sockets(["tcp"], ["syn-recv"], port=port)) == 2 and any(
        r.timer == "timewait" for r in list_sockets(["tcp"], ["fin-wait-2"], port=orphan)
    ):
        break
    time.sleep(0.01)
out = {"ss": {}, "ours": {}, "uid": {}}
for source in ("netlink", "proc"):
    out["uid"][source] = [(r.state, r.uid, r.recv_q, r.send_q) for r in list_sockets(
        ["tcp"], ["syn-recv", "listen", "fin-wait-2"], port=port, source=source)
    ] + [(r.state, r.uid, r.recv_q, r.send_q, r.timer) for r in list_sockets(
        ["tcp"], ["all"], port=orphan, source=source) if r.local_port == orphan]
for a in __ADDRESSES__:
    sa = f"[{a}]" if ":" in a else a
    out["ss"][a] = run("ss", "-tuanH", f"( src {sa} or dst {sa} )").splitlines()
    out["ours"][a] = [r.to_dict() for r in list_sockets(["tcp", "udp"], ["all"], address=a)]
os.write(w2, b"x"); os.waitpid(child, 0)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def tables() -> dict[str, Any]:
    with netns() as ns:
        r = in_netns(ns, CODE.replace("__ADDRESSES__", repr(ADDRESSES)))
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def test_mini_sockets_have_no_owner_uid(tables: dict[str, Any]) -> None:
    """The listener is uid 65534's; its SYN_RECV entry has no uid of its own (sock_diag
    says 0, which is not root, and /proc the listener's), from either source. Nor has the
    orphaned FIN_WAIT2 end, a TIME_WAIT socket like any other (uid and queues unknown).
    A Fast Open connection is a full socket in SYN_RECV: its uid is known."""
    for source in ("netlink", "proc"):
        assert sorted(map(tuple, tables["uid"][source]), key=repr) == [
            ("FIN_WAIT2", None, None, None, "timewait"),
            ("LISTEN", 65534, 1, 128 if source == "netlink" else None),  # the TFO one waits
            ("SYN_RECV", 65534, 2, 0),  # the full socket of a Fast Open: 2 bytes came
            ("SYN_RECV", None, 0, 0),
        ], source


def _ss(line: str) -> tuple[str, tuple[str, int], tuple[str, int]]:
    f = line.split()  # Netid State Recv-Q Send-Q Local Peer
    return f[0], _split(f[4]), _split(f[5])


def _ours(row: dict[str, Any]) -> tuple[str, tuple[str, int], tuple[str, int]]:
    return (
        row["proto"].rstrip("6"),
        _split(f"{row['local_host']}:{row['local_port']}"),
        _split(f"{row['remote_host']}:{row['remote_port']}"),
    )


@pytest.mark.parametrize("address", ADDRESSES)
def test_address_prefixes_select_what_ss_selects(tables: dict[str, Any], address: str) -> None:
    theirs = sorted(map(_ss, tables["ss"][address]))
    ours = sorted(map(_ours, tables["ours"][address]))
    assert ours == theirs
    assert ours  # every prefix here holds some of the sockets


def test_an_unknown_state_offers_the_words_ss_takes() -> None:
    """The error lists ss's own state words (fin-wait-1, not fin-wait1), each of which ss
    and ipcnet both take (bound-inactive: ss >= 6.8 only)."""
    with pytest.raises(ValueError) as err:
        filters.parse_states(["bogus"])
    message = str(err.value)
    assert message.startswith("unknown state 'bogus' (states: established, syn-sent, ")
    states, groups = message.removesuffix(")").split("(states: ")[1].split("; groups: ")
    words = [*states.split(", "), *groups.split(", ")]
    assert "fin-wait-1" in words and "listening" in words and "closed" in words
    for word in words:
        assert filters.parse_states([word])
        if word != "bound-inactive":
            ss = subprocess.run(["ss", "-tnH", "state", word], capture_output=True, text=True)
            assert ss.returncode == 0, (word, ss.stderr)
