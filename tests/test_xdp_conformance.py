"""XDP filter conformance: the packets iptables and nftables match, parsed as the kernel does.

Hand-made Ethernet frames (an AF_PACKET socket in namespace a) cross the veth pair to
vb, where ipcnet's filter counts them, an nftables netdev-ingress chain on the same
device counts them (``udp dport P counter``, one port per case), and so do iptables-legacy
and ip6tables-legacy rules in the raw PREROUTING chain (``-p udp --dport P``): the
counters must agree frame for frame (where they do not, the table below says why), and
the UDP socket behind each port shows what the kernel delivered. The cases are the ones a parser gets wrong: IPv4 options, fragments, IPv6
extension headers (hop-by-hop, destination options, fragment, AH), VLAN tags, a wrong IP
version, truncated headers. Then rules are replaced while a flood runs (no packet that
both rule sets drop may pass), and addresses that mean "any" are read as such.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable

import pytest

from ipcnet import errors, xdp
from ipcnet.xdp.rules import parse_rule
from test_xdp import A4, A6, B4, B6, MAC_A, MAC_B, REASON, SRC, Pair, pending, receive, run
from test_xdp import ns as ns
from test_xdp import pair as pair

pytestmark = [pytest.mark.xdist_group("xdp")]
if REASON:  # test_xdp.py's: root, clang, bpftool, bpf(2)
    pytestmark.append(pytest.mark.skip(reason=REASON))

ETH_IP, ETH_IP6, ETH_VLAN, ETH_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8
UDP, HOP, ROUTING, FRAG, AH, DSTOPTS = 17, 0, 43, 44, 51, 60


def _sum16(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp(src: str, dst: str, port: int, payload: bytes = b"conformance") -> bytes:
    """A UDP header and payload to ``port``, its checksum right for ``src`` -> ``dst``."""
    length = 8 + len(payload)
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    pseudo = socket.inet_pton(fam, src) + socket.inet_pton(fam, dst)
    if fam == socket.AF_INET6:
        pseudo += struct.pack("!I3xB", length, UDP)
    else:
        pseudo += struct.pack("!xBH", UDP, length)
    head = struct.pack("!HHHH", 40000, port, length, 0)
    check = _sum16(pseudo + head + payload) or 0xFFFF
    return struct.pack("!HHHH", 40000, port, length, check) + payload


def ipv4(l4: bytes, options: bytes = b"", frag: int = 0, version: int = 4) -> bytes:
    ihl = 5 + len(options) // 4
    head = struct.pack(
        "!BBHHHBBH4s4s", version << 4 | ihl, 0, ihl * 4 + len(l4), 7, frag, 64, UDP, 0,
        socket.inet_aton(A4), socket.inet_aton(B4),
    ) + options  # fmt: skip
    return head[:10] + struct.pack("!H", _sum16(head)) + head[12:] + l4


def ipv6(chain: bytes, first: int) -> bytes:
    return struct.pack("!IHBB", 6 << 28, len(chain), first, 64) + socket.inet_pton(
        socket.AF_INET6, A6
    ) + socket.inet_pton(socket.AF_INET6, B6) + chain  # fmt: skip


def opts(nexthdr: int) -> bytes:
    """A hop-by-hop or destination options header: 6 bytes of PadN."""
    return struct.pack("!BBBB4x", nexthdr, 0, 1, 4)


def frame(ethertype: int, packet: bytes, *tags: tuple[int, int]) -> bytes:
    """An Ethernet frame from a to b, with VLAN ``tags`` (TPID, VID), outermost first."""
    mac = bytes.fromhex(MAC_B.replace(":", "")) + bytes.fromhex(MAC_A.replace(":", ""))
    tag = b"".join(struct.pack("!HH", tpid, vid) for tpid, vid in tags)
    return mac + tag + struct.pack("!H", ethertype) + packet


# (name, the frame given its port, does the kernel deliver it to the socket?)
Case = tuple[str, Callable[[int], bytes], bool]
CASES: list[Case] = [
    ("ipv4", lambda p: frame(ETH_IP, ipv4(udp(A4, B4, p))), True),
    ("ipv4 options ihl=7", lambda p: frame(ETH_IP, ipv4(udp(A4, B4, p), b"\x01" * 8)), True),
    ("ipv4 first fragment", lambda p: frame(ETH_IP, ipv4(udp(A4, B4, p), frag=0x2000)), False),
    ("ipv4 later fragment", lambda p: frame(ETH_IP, ipv4(udp(A4, B4, p), frag=0x0001)), False),
    ("version 6 in ipv4", lambda p: frame(ETH_IP, ipv4(udp(A4, B4, p), version=6)), False),
    ("ipv4 truncated udp", lambda p: frame(ETH_IP, ipv4(udp(A4, B4, p))[:24]), False),
    ("ipv4 shorter than its length", lambda p: frame(ETH_IP, ipv4(udp(A4, B4, p))[:30]), False),
    ("ipv4 in vlan 10", lambda p: frame(ETH_IP, ipv4(udp(A4, B4, p)), (ETH_VLAN, 10)), False),
    (  # one tag is read, as the stack strips one before nft's ingress hook sees the frame
        "ipv4 in 802.1ad 100 + vlan 10",
        lambda p: frame(ETH_IP, ipv4(udp(A4, B4, p)), (ETH_QINQ, 100), (ETH_VLAN, 10)),
        False,
    ),
    ("ipv6", lambda p: frame(ETH_IP6, ipv6(udp(A6, B6, p), UDP)), True),
    (
        "ipv6 shorter than its length",
        lambda p: frame(ETH_IP6, ipv6(udp(A6, B6, p), UDP)[:50]),
        False,
    ),
    (
        "ipv6 destination options",
        lambda p: frame(ETH_IP6, ipv6(opts(UDP) + udp(A6, B6, p), DSTOPTS)),
        True,
    ),
    (
        "ipv6 hop-by-hop + destination options",
        lambda p: frame(ETH_IP6, ipv6(opts(DSTOPTS) + opts(UDP) + udp(A6, B6, p), HOP)),
        True,
    ),
    (
        "ipv6 atomic fragment",  # RFC 6946: offset 0, no more fragments: a whole datagram
        lambda p: frame(ETH_IP6, ipv6(struct.pack("!BxHI", UDP, 0, 9) + udp(A6, B6, p), FRAG)),
        True,
    ),
    (
        "ipv6 first of two fragments",
        lambda p: frame(ETH_IP6, ipv6(struct.pack("!BxHI", UDP, 1, 10) + udp(A6, B6, p), FRAG)),
        False,
    ),
    (
        "ipv6 later fragment",
        lambda p: frame(ETH_IP6, ipv6(struct.pack("!BxHI", UDP, 8, 11) + udp(A6, B6, p), FRAG)),
        False,
    ),
    (
        "ipv6 authentication header",  # no SA: the kernel drops it, but it has ports
        lambda p: frame(
            ETH_IP6, ipv6(struct.pack("!BBxxII", UDP, 4, 1, 1) + bytes(12) + udp(A6, B6, p), AH)
        ),
        False,
    ),
    (
        "ipv6 truncated destination options",
        lambda p: frame(ETH_IP6, ipv6(struct.pack("!BB", UDP, 200) + udp(A6, B6, p), DSTOPTS)),
        False,
    ),
]


# frames with no destination port to match: a filter that finds one misparses them
NO_PORTS = {
    "ipv4 later fragment",
    "version 6 in ipv4",
    "ipv4 truncated udp",
    "ipv4 shorter than its length",
    "ipv6 shorter than its length",
    "ipv6 later fragment",
    "ipv6 truncated destination options",
    "ipv4 in 802.1ad 100 + vlan 10",
}
# where nft's netdev ingress differs, and why we follow iptables and the stack instead:
# nft reads "ports" from a later IPv4 fragment's data (its payload expression does not
# check the offset), where xt_udp (fragoff != 0: no match) and the stack see none; and nft
# stops at an AH header (ipv6_find_hdr with IP6_FH_F_AUTH), where ip6tables walks past it
# to the UDP header that AH authenticates but does not hide
NFT_DIFFERS = {"ipv4 later fragment": 1, "ipv6 authentication header": 0}


def nft_counters(pair: Pair) -> dict[int, int]:
    """{port: packets} of the ``udp dport P counter`` rules on vb's ingress."""
    shown = json.loads(run("ip", "netns", "exec", pair.b, "nft", "-j", "list", "ruleset").stdout)
    found = {}
    for item in shown["nftables"]:
        rule = item.get("rule")
        if rule is None:
            continue
        exprs = rule["expr"]
        port = next(e["match"]["right"] for e in exprs if "match" in e)
        found[port] = next(e["counter"]["packets"] for e in exprs if "counter" in e)
    return found


IPTABLES = ("iptables-legacy", "ip6tables-legacy")  # x_tables itself: xt_udp, not nft
# iptables' PREROUTING comes after the stack's first checks: a frame tagged for a VLAN with
# no device here never gets there (ours and nft's ingress see it, and count it)
XT_NEVER_SEES = {"ipv4 in vlan 10"}


def iptables_counters(pair: Pair) -> dict[int, int]:
    """{port: packets} of the ``-t raw -A PREROUTING -p udp --dport P`` rules, both families."""
    found: dict[int, int] = {}
    for tool in IPTABLES:
        shown = run("ip", "netns", "exec", pair.b, tool, "-t", "raw", "-L", "PREROUTING", "-nvx")
        for line in shown.stdout.splitlines()[2:]:
            port = int(line.rsplit("dpt:", 1)[1])
            found[port] = found.get(port, 0) + int(line.split()[0])
    return found


@pytest.mark.parametrize("mode", ["native", "generic"])
def test_frames_counted_as_nftables_counts_them_and_delivered_as_the_kernel_does(
    ns: Pair, mode: str
) -> None:
    if any(shutil.which(tool) is None for tool in IPTABLES):
        pytest.skip("iptables-legacy is not installed (make system-deps installs iptables)")
    socks = [ns.udp(ns.b, socket.AF_INET6) for _ in CASES]  # dual-stack, one port per case
    ports = [s.getsockname()[1] for s in socks]
    for tool in IPTABLES:
        for p in ports:
            run("ip", "netns", "exec", ns.b, tool, "-t", "raw", "-A", "PREROUTING", "-p", "udp",
                "--dport", str(p))  # fmt: skip
    rules = "".join(f"udp dport {p} counter\n" for p in ports)
    hook = 'type filter hook ingress device "vb" priority 0;'
    script = f"table netdev ipcnet {{\nchain in {{\n{hook}\n{rules}}}\n}}\n"
    run("ip", "netns", "exec", ns.b, "nft", "-f", "-", input=script)
    raw = ns.call(ns.a, socket.socket, socket.AF_PACKET, socket.SOCK_RAW)
    try:
        raw.bind(("va", 0))
        with ns.call(ns.b, xdp.attach, "vb", count=[f"udp://:{p}" for p in ports], mode=mode) as f:
            assert f.mode == mode
            for (_, build, _), port in zip(CASES, ports, strict=True):
                raw.send(build(port))
            theirs, xt = nft_counters(ns), iptables_counters(ns)
            ours = {int(r.rule.port): r.packets for r in f.stats().rules}
            got = {
                name: (ours[p], theirs[p], xt[p], receive(s, 1, 0.5) if delivered else pending(s))
                for (name, _, delivered), p, s in zip(CASES, ports, socks, strict=True)
            }
            ns.call(ns.b, f.detach)
    finally:
        raw.close()
        run("ip", "netns", "exec", ns.b, "nft", "delete", "table", "netdev", "ipcnet", check=False)
        for tool in IPTABLES:
            run("ip", "netns", "exec", ns.b, tool, "-t", "raw", "-F", "PREROUTING", check=False)
        for s in socks:
            s.close()
    want = {}
    for name, _, delivered in CASES:
        matched = int(name not in NO_PORTS)
        nft = NFT_DIFFERS.get(name, matched)
        want[name] = (matched, nft, 0 if name in XT_NEVER_SEES else matched, int(delivered))
    assert got == want


def test_rules_replaced_while_a_flood_runs_never_let_through_what_both_sets_drop(
    ns: Pair,
) -> None:
    sock = ns.udp(ns.b)
    port = sock.getsockname()[1]
    any_host, one_host = [f"udp://:{port}"], [f"udp://{B4}:{port}"]  # both drop it all
    done = threading.Event()
    sent = [0]

    def flood() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            while not done.is_set() and sent[0] < 500_000:
                out.sendto(b"x", (B4, port))
                sent[0] += 1

    f = ns.call(ns.b, xdp.attach, "vb", drop=any_host)
    try:
        sender = threading.Thread(target=ns.call, args=(ns.a, flood))
        sender.start()
        try:
            for i in range(200):
                f.update(drop=one_host if i % 2 == 0 else any_host)
        finally:
            done.set()
            sender.join()
        assert sent[0] > 0
        assert receive(sock, 1, 0.3) == 0  # not one datagram reached the socket
        assert f.stats().dropped <= sent[0]
    finally:
        ns.call(ns.b, f.detach)
        sock.close()


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("udp://0.0.0.0:53", "udp4://:53"),  # bind()'s any address: every IPv4 destination
        ("udp://[::]:53", "udp6://:53"),
        ("tcp://[::ffff:10.77.0.2]:80", "tcp://10.77.0.2:80"),  # on the wire, that is IPv4
        ("udp://[fe80::2%vb]:53", "udp://[fe80::2]:53"),  # packets carry no scope
    ],
)
def test_any_and_mapped_addresses_mean_what_bind_means(text: str, target: str) -> None:
    assert parse_rule(text, "drop") == parse_rule(target, "drop")


@pytest.mark.parametrize("text", ["udp://10.0.0.0/24:53", "udp://[fd00::/64]:53"])
def test_a_prefix_is_refused_by_name(text: str) -> None:
    with pytest.raises(errors.InvalidAddress, match=r"prefixes \(.*/\d+\) are not supported"):
        parse_rule(text, "drop")


def test_a_name_longer_than_any_interface_is_no_interface(ns: Pair) -> None:
    name = "x" * 16  # IFNAMSIZ with its NUL: the kernel's policy refuses it with ERANGE
    why = f"attach xdp to {name}: no interface named '{name}' (interface names are at most 15"
    with pytest.raises(errors.AddressNotAvailable, match=re.escape(why)):
        ns.call(ns.b, xdp.attach, name, drop=["udp://:9"])


def test_a_killed_loader_leaves_the_program_attached_until_detach_frees_it(ns: Pair) -> None:
    """As with ``ip link set dev X xdp obj ...``, the interface holds the program, not the
    process: SIGKILL inside the ``with`` block does not detach it; ``xdp.detach(dev)``
    (``ipcnet xdp detach``) does, and then the kernel frees the program and both maps."""
    code = (
        "import os, signal\nfrom ipcnet import xdp\n"
        "with xdp.attach('vb', drop=['udp://:9']) as f:\n"
        "    print(f.prog_id, flush=True)\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    r = run("ip", "netns", "exec", ns.b, sys.executable, "-c", code, check=False, env=env)
    assert r.returncode == -signal.SIGKILL
    prog_id = int(r.stdout)
    assert ns.xdp_in(ns.b) == [("vb", prog_id, "driver")]
    map_ids = json.loads(run("bpftool", "-j", "prog", "show", "id", str(prog_id)).stdout)["map_ids"]
    (removed,) = ns.call(ns.b, xdp.detach, "vb")
    assert removed.prog_id == prog_id and ns.xdp_in(ns.b) == []
    objects = [("prog", prog_id), *(("map", i) for i in map_ids)]
    for _ in range(100):  # the kernel frees them from a work queue, soon after the last put
        alive = [o for o in objects if run("bpftool", o[0], "show", "id", str(o[1]), check=False)
                 .returncode == 0]  # fmt: skip
        if not alive:
            break
        time.sleep(0.05)
    assert alive == []


def test_replacing_the_most_rules_with_as_many_others_fits_the_maps(ns: Pair) -> None:
    """While an update runs the maps hold the old and the new rules at once."""
    first = [f"udp://:{p}" for p in range(1, 65)]
    with ns.call(ns.b, xdp.attach, "vb", drop=first) as f:
        f.update(count=[f"tcp://:{p}" for p in range(1, 65)])
        assert [str(r) for r in f.rules()] == [f"count tcp://:{p}" for p in range(1, 65)]
        f.update(drop=first)
        assert sorted(r.rule.port for r in f.stats().rules) == list(range(1, 65))
        ns.call(ns.b, f.detach)


def _bpf_fds() -> list[str]:
    """This process's descriptors of BPF programs and maps (anon_inode:bpf-prog, -map)."""
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:  # the descriptor listdir itself used
            pass
    return [link for link in links if link.startswith("anon_inode:bpf-")]


def test_an_attach_that_fails_after_loading_leaves_no_program_or_map(ns: Pair) -> None:
    """Nothing attached and no descriptor kept: the kernel has freed the program and maps."""
    before = _bpf_fds()
    with pytest.raises(errors.Unsupported, match="attach xdp to lo: not supported here"):
        ns.call(ns.b, xdp.attach, "lo", drop=["udp://:9"], mode="native")  # loaded, refused
    assert ns.xdp_in(ns.b) == []
    assert _bpf_fds() == before
