"""XDP rules against nftables, where a differential pass (generated rule sets and frames,
each sent through ipcnet's filter and an nft netdev-ingress chain on the same device)
found ipcnet wrong.

Each test was written failing first: an IPv6 datagram carrying eight or more
destination-options headers slipped past every drop rule (the walk stopped at eight and
matched nothing, yet the stack delivered it: a drop rule dodged with padding headers);
``udp6://[::ffff:10.0.0.1]:53`` became an IPv4 rule (the family the user named, silently
changed; a v6-only bind refuses that address); ``udp://[fd00::]/64:53`` was an "unexpected
path", not the prefix it is; ``ipcnet xdp show DEV`` said no interface had a program.
Where nft differs by design there is no case here: a later IPv4 fragment and AH (see
tests/test_xdp_conformance.py), a UDP or TCP header cut short after its ports inside an
IP packet (ipcnet and nft read the port from its first bytes, as they must for a tiny
first fragment, RFC 1858; xt_udp/xt_tcp drop it; tests/test_xdp_audit9.py), and a VLAN frame too short for its tag (the stack drops it before nft's hook).

The frames of a case go to one port, its rules name that port; the rules first all count
(their counters must equal nft's, rule for rule, except where the table says why not), then
take their real actions with a live update (nft, behind XDP, must see nothing a drop rule
matched; ipcnet's counters stay nft's first figures), and a dual-stack socket on the port
shows what the kernel delivered.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import socket
import struct
from collections.abc import Callable

import pytest

from ipcnet import errors, xdp
from ipcnet.xdp.rules import (
    KEY,
    PROTO_UNSEEN,
    VALUE,
    Rule,
    decode,
    map_entries,
    parse_rule,
    parse_rules,
)
from test_xdp import A4, A6, B4, B6, REASON, Pair, pending, receive, run
from test_xdp import ns as ns
from test_xdp import pair as pair
from test_xdp_conformance import (
    DSTOPTS,
    ETH_IP,
    ETH_IP6,
    ETH_VLAN,
    FRAG,
    HOP,
    UDP,
    _sum16,
    frame,
    opts,
)
from test_xdp_conformance import udp as udp_l4

pytestmark = [pytest.mark.xdist_group("xdp")]
ROOT = pytest.mark.skipif(bool(REASON), reason=REASON or "")
C4, C6 = "10.77.0.3", "fd00:77::3"  # on the link, not vb's: only the filters see them
TCP, ICMP = 6, 1


def ip4(l4: bytes, dst: str = B4, proto: int = UDP, options: bytes = b"", frag: int = 0) -> bytes:
    ihl = 5 + len(options) // 4
    head = struct.pack(
        "!BBHHHBBH4s4s", 4 << 4 | ihl, 0, ihl * 4 + len(l4), 7, frag, 64, proto, 0,
        socket.inet_aton(A4), socket.inet_aton(dst),
    ) + options  # fmt: skip
    return head[:10] + struct.pack("!H", _sum16(head)) + head[12:] + l4


def ip6(chain: bytes, first: int = UDP, dst: str = B6) -> bytes:
    addrs = socket.inet_pton(socket.AF_INET6, A6) + socket.inet_pton(socket.AF_INET6, dst)
    return struct.pack("!IHBB", 6 << 28, len(chain), first, 64) + addrs + chain


def udp4(p: int, dst: str = B4, **kw: object) -> bytes:
    return frame(ETH_IP, ip4(udp_l4(A4, dst, p), dst, **kw))  # type: ignore[arg-type]


def udp6(p: int, dst: str = B6) -> bytes:
    return frame(ETH_IP6, ip6(udp_l4(A6, dst, p), UDP, dst))


def tcp(p: int, dst: str) -> bytes:  # a SYN; no checksum: only the filters see it
    head = struct.pack("!HHIIBBHHH", 40000, p, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    if ":" in dst:
        return frame(ETH_IP6, ip6(head, TCP, dst))
    return frame(ETH_IP, ip4(head, dst, TCP))


def dstopts6(p: int, n: int) -> bytes:
    """A UDP datagram to B6 behind ``n`` destination-options headers."""
    chain = b"".join(opts(DSTOPTS) for _ in range(n - 1)) + opts(UDP) + udp_l4(A6, B6, p)
    return frame(ETH_IP6, ip6(chain, DSTOPTS))


ARP = frame(0x0806, struct.pack("!HHBBH", 1, ETH_IP, 6, 4, 1) + bytes(20))

# (name, rules as (action, address) for port p, the frames to port p, what the kernel
# delivers to the socket on p with every rule counting / with the real actions)
Case = tuple[
    str, Callable[[int], list[tuple[str, str]]], Callable[[int], list[bytes]], tuple[int, int]
]
CASES: list[Case] = [
    (  # first: its drop rule owns the any-address key of hidden ports (rules.map_entries)
        "ipv6 behind 20 destination options: past the walk, dropped by a drop rule",
        lambda p: [("drop", f"udp://:{p}")],
        lambda p: [dstopts6(p, 20)],
        (1, 0),
    ),
    (
        "ipv6 behind 8 destination options",
        lambda p: [("drop", f"udp6://:{p}")],
        lambda p: [dstopts6(p, 8)],
        (1, 0),
    ),
    (
        "ipv6 behind 16 headers: hop-by-hop, 14 destination options, an atomic fragment",
        lambda p: [("count", f"udp://:{p}")],
        lambda p: [
            frame(
                ETH_IP6,
                ip6(
                    b"".join(opts(DSTOPTS) for _ in range(14))  # the first is hop-by-hop
                    + opts(FRAG)
                    + struct.pack("!BxHI", UDP, 0, 5)  # offset 0, no more: atomic
                    + udp_l4(A6, B6, p),
                    HOP,
                ),
            )
        ],
        (1, 1),
    ),
    (
        "a rule for one address wins over one for any, whatever their order",
        lambda p: [("drop", f"udp://:{p}"), ("count", f"udp://{C4}:{p}")],
        lambda p: [udp4(p, C4), udp4(p, C4), udp4(p, B4), udp6(p, C6)],
        (1, 0),
    ),
    (
        "an ipv6 address rule beside an ipv4-only rule",
        lambda p: [("count", f"udp://[{B6}]:{p}"), ("drop", f"udp4://:{p}")],
        lambda p: [udp6(p), udp6(p, C6), udp4(p), udp4(p, C4)],
        (2, 1),
    ),
    (
        "tcp rules match tcp only; icmp, udp and arp pass",
        lambda p: [("drop", f"tcp4://:{p}"), ("count", f"tcp://[{C6}]:{p}")],
        lambda p: [
            tcp(p, B4),
            tcp(p, C4),
            tcp(p, C6),
            tcp(p, B6),
            udp4(p),
            frame(ETH_IP, ip4(udp_l4(A4, B4, p), B4, ICMP)),
            ARP,
        ],
        (1, 1),
    ),
    (
        "ipv4 options, a first fragment, DF, a vlan tag, to an address rule",
        lambda p: [("count", f"udp://{C4}:{p}")],
        lambda p: [
            udp4(p, C4, options=b"\x01" * 8),
            udp4(p, C4, frag=0x2000),
            udp4(p, C4, frag=0x4000),
            frame(ETH_IP, ip4(udp_l4(A4, C4, p), C4), (ETH_VLAN, 10)),
        ],
        (0, 0),
    ),
]
# where nft's count differs by design, (case, index among all the cases' rules) -> ipcnet's
# while every rule counts: nft walks any number of extension headers; ipcnet's walk stops
# at 16, and only a drop rule claims what lies beyond (no count rule can know the port)
NFT_DIFFERS = {(CASES[0][0], 0): 0}


def nft_rule(rule: Rule, tag: str) -> str:
    """The nft netdev rule matching what ``rule`` matches."""
    match = []
    if rule.host:
        match.append(("ip6" if ":" in rule.host else "ip") + f" daddr {rule.host}")
    elif len(rule.families) == 1:
        match.append("meta protocol " + ("ip" if rule.families == (4,) else "ip6"))
    return " ".join([*match, f'{rule.proto} dport {rule.port} counter accept comment "{tag}"'])


def nft_packets(pair: Pair) -> dict[str, int]:
    shown = run("ip", "netns", "exec", pair.b, "nft", "-j", "list", "table", "netdev", "diff")
    found = {}
    for item in json.loads(shown.stdout)["nftables"]:
        if "rule" in item:
            expr = item["rule"]["expr"]
            packets = next(e["counter"]["packets"] for e in expr if "counter" in e)
            found[item["rule"]["comment"]] = packets
    return found


@ROOT
@pytest.mark.parametrize("mode", ["native", "generic"])
def test_rules_match_what_nftables_matches_and_drop_what_they_say(ns: Pair, mode: str) -> None:
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (make system-deps installs nftables)")
    socks = [ns.udp(ns.b, socket.AF_INET6) for _ in CASES]  # dual-stack, one port per case
    marker = ns.udp(ns.b)  # the last datagram: once it is read, every frame was handled
    ports = [s.getsockname()[1] for s in socks]
    table = [  # (case, rule)
        (name, parse_rule(address, action))
        for (name, rules, _, _), p in zip(CASES, ports, strict=True)
        for action, address in rules(p)
    ]
    drop = [r.target for _, r in table if r.action == "drop"]
    count = [r.target for _, r in table if r.action == "count"]
    # the documented order: a rule for one address first, then those for any address
    lines = [nft_rule(r, r.target) for _, r in sorted(table, key=lambda t: not t[1].host)]
    hook = 'type filter hook ingress device "vb" priority 0;'
    script = "table netdev diff {\nchain in {\n" + hook + "\n" + "\n".join(lines) + "\n}\n}\n"
    run("ip", "netns", "exec", ns.b, "nft", "-f", "-", input=script)
    raw = ns.call(ns.a, socket.socket, socket.AF_PACKET, socket.SOCK_RAW)
    end = udp4(marker.getsockname()[1])

    def send() -> list[int]:
        """Every case's frames, then the marker: what each case's socket got."""
        for (_, _, frames, _), p in zip(CASES, ports, strict=True):
            for f in frames(p):
                raw.send(f)
        raw.send(end)
        assert receive(marker, 1) == 1  # after the frames before it, in order
        return [pending(s) for s in socks]

    try:
        raw.bind(("va", 0))
        with ns.call(ns.b, xdp.attach, "vb", count=drop + count, mode=mode) as f:
            assert f.mode == mode
            delivered = send()  # every rule counts
            ours = {r.rule.target: r.packets for r in f.stats().rules}
            theirs = nft_packets(ns)
            f.update(drop=drop, count=count)  # the real actions, the same program
            kept = send()
            acted = {r.rule.target: r.packets for r in f.stats().rules}
            after = nft_packets(ns)
            ns.call(ns.b, f.detach)
    finally:
        raw.close()
        run("ip", "netns", "exec", ns.b, "nft", "delete", "table", "netdev", "diff", check=False)
        for s in [*socks, marker]:
            s.close()
    got, want = {}, {}
    for i, (name, rule) in enumerate(table):
        nft, t = theirs[rule.target], rule.target
        again = acted[t] - (ours[t] if rule.action == "count" else 0)  # a kept rule keeps its
        got[name, str(rule)] = (ours[t], again, after[t] - nft)  # counters; a new one starts at 0
        passed = 0 if rule.action == "drop" else nft  # what nft, behind xdp, saw again
        want[name, str(rule)] = (NFT_DIFFERS.get((name, i), nft), nft, passed)
    assert got == want
    assert (delivered, kept) == ([c[3][0] for c in CASES], [c[3][1] for c in CASES])


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("udp6://[::ffff:10.0.0.1]:53", "udp6 cannot take an ipv4-mapped address"),
        ("tcp6://[::ffff:0.0.0.0]:80", "tcp6 cannot take an ipv4-mapped address"),  # was tcp4://
        ("udp6://[::ffff:10.77.0.2%vb]:9", "([::ffff:10.77.0.2%vb] is ipv4 10.77.0.2 on the wire)"),
    ],
)
def test_a_v6_only_rule_refuses_an_ipv4_mapped_address(text: str, why: str) -> None:
    """As bind() on an IPV6_V6ONLY socket does (EINVAL): no IPv6 packet carries it, and the
    IPv4 rule it became matched a family the user had excluded."""
    with pytest.raises(errors.InvalidAddress, match=re.escape(why)):
        parse_rule(text, "drop")
    assert parse_rules(drop=[text.replace("6://", "://", 1)])[0].families == (4,)


def test_a_prefix_after_the_brackets_is_refused_as_a_prefix() -> None:
    """``[fd00::]/64``, as ip(8) and nft write an IPv6 prefix, was 'unexpected path'."""
    why = "prefixes (fd00::/64) are not supported; give one address, or none for any"
    with pytest.raises(errors.InvalidAddress, match=re.escape(why)):
        parse_rule("udp://[fd00::]/64:53", "drop")


@ROOT
def test_show_of_one_interface_without_a_program_names_it(
    ns: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said 'no interface has an xdp program', asked about one (ip link show DEV and
    bpftool net show dev DEV speak of that one)."""
    from ipcnet.cli import main

    assert ns.call(ns.b, main, ["xdp", "show", "vb"]) == 0
    assert capsys.readouterr() == ("", "vb has no xdp program\n")


def test_hidden_ports_go_to_the_first_ipv6_drop_rule_of_the_address_and_are_not_listed() -> None:
    """The PROTO_UNSEEN keys: one per IPv6 destination a drop rule names (any address, or
    one), pointing at the first such rule; count rules and IPv4 rules write none, and
    reading the map back lists the rules alone."""
    rules = parse_rules(
        drop=["udp4://:9", "tcp://:80", "udp://[fd00::1]:53", "udp6://:53", "tcp://[fd00::1]:1"],
        count=["udp://:7", "udp://[fd00::2]:7"],
    )
    entries = map_entries(enumerate(rules, 1))
    unseen = {
        addr: VALUE.unpack(value)
        for key, value in entries.items()
        for family, proto, port, addr in [KEY.unpack(key)]
        if (family, proto, port) == (6, PROTO_UNSEEN, 0)
    }
    assert unseen == {bytes(16): (2, 2), ipaddress.ip_address("fd00::1").packed: (2, 3)}
    assert len(entries) == 1 + 2 + 1 + 1 + 1 + 2 + 1 + len(unseen)  # a key per family
    assert decode(entries.items()) == dict(enumerate(rules, 1))
