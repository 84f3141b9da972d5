"""XDP filter audit against ip-link(8), bpftool, iptables/nft and bpf(2); each test was
written failing first.

What was wrong: a handle made in one network namespace and detached from a thread in
another silently did nothing; a program held by a bpf link was offered to --replace and
--force, which cannot move it; a tiny first fragment (RFC 1858) carried a SYN past a tcp
drop rule, and bytes after the IP packet (padding, a trailer) could supply a port;
``stats --json`` had no "version"; a verifier rejection read "permission denied"; an
alternative interface name was refused; /32, /128 and /0 prefixes were refused.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import re
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ipcnet import errors, xdp
from ipcnet.transports import bpf
from ipcnet.xdp import build, elf
from ipcnet.xdp.rules import parse_rule
from test_xdp import (
    A4,
    A6,
    B4,
    B6,
    BAD,
    FOREIGN,
    PAYLOAD,
    REASON,
    SRC,
    Pair,
    pending,
    receive,
    run,
    send,
)
from test_xdp import ns as ns
from test_xdp import pair as pair
from test_xdp_conformance import (
    ETH_IP,
    ETH_IP6,
    IPTABLES,
    UDP,
    _sum16,
    frame,
    iptables_counters,
    ipv4,
    ipv6,
    udp,
)
from test_xdp_differential import TCP, ip4, ip6

pytestmark = [pytest.mark.xdist_group("xdp")]
if REASON:  # test_xdp.py's: root, clang, bpftool, bpf(2)
    pytestmark.append(pytest.mark.skip(reason=REASON))


def host_xdp() -> list[tuple[str, int]]:
    """(dev, prog id) of every XDP program in this process's own namespace (bpftool)."""
    shown = json.loads(run("bpftool", "-j", "net", "show").stdout)
    return [(x["devname"], x["id"]) for d in shown for x in d.get("xdp", [])]


def test_a_handle_detaches_in_the_namespace_it_attached_in_from_any_thread(ns: Pair) -> None:
    """ip-link(8) acts where it runs; a handle is bound to its interface, so its namespace
    goes with it: the ``with`` block's exit in the main thread (the host's namespace) must
    remove the program from vb in namespace b, and touch nothing here."""
    before = host_xdp()
    with ns.call(ns.b, xdp.attach, "vb", drop=["udp://:9"]) as f:
        assert ns.xdp_in(ns.b) == [("vb", f.prog_id, "driver")]
    assert ns.xdp_in(ns.b) == []
    assert host_xdp() == before
    f2 = ns.call(ns.b, xdp.attach, "vb", count=["udp://:9"], mode="generic")
    h = ns.call(ns.b, xdp.find, "vb")  # a handle found there, detached from here
    f2.close()
    h.detach()
    assert ns.xdp_in(ns.b) == [] and host_xdp() == before


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
BPF_LINK_CREATE, BPF_XDP, XDP_FLAGS_SKB_MODE = 28, 37, 2


@pytest.fixture(scope="module")
def foreign_obj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("foreign")
    (d / "foreign.c").write_text(FOREIGN)
    includes = (f"-I{i}" for i in build.include_dirs())
    run("clang", "-O2", "-target", "bpf", *includes, "-c", str(d / "foreign.c"), "-o",
        str(d / "foreign.o"))  # fmt: skip
    return d / "foreign.o"


def xdp_link(pair: Pair, obj: Path, dev: str) -> tuple[int, int]:
    """Attach ``obj``'s program to ``dev`` in namespace b through a bpf link (BPF_LINK_CREATE,
    as libxdp and libbpf's bpf_program__attach_xdp do): (link fd, program fd), this
    process holds both; the link lasts until its descriptor is closed."""
    code = elf.read(obj.read_bytes())
    prog = bpf.prog_load(code.insns, code.license, code.program)

    def create() -> int:
        attr = ctypes.create_string_buffer(64)
        struct.pack_into("=IIII", attr, 0, prog, socket.if_nametoindex(dev), BPF_XDP,
                         XDP_FLAGS_SKB_MODE)  # fmt: skip
        nr = {"x86_64": 321, "aarch64": 280}[platform.machine()]
        fd = int(_libc.syscall(ctypes.c_long(nr), ctypes.c_int(BPF_LINK_CREATE), attr, 64))
        if fd < 0:
            raise OSError(ctypes.get_errno(), "BPF_LINK_CREATE")
        return fd

    return pair.call(pair.b, create), prog


def test_a_program_held_by_a_bpf_link_is_named_and_no_option_claims_to_remove_it(
    ns: Pair, foreign_obj: Path
) -> None:
    """ip-link(8) answers "Can't replace active BPF XDP link" to ``xdp off``: netlink cannot
    remove or replace a program a bpf link holds, whatever the flags. ipcnet said
    "(--replace replaces it)" to attach, attach --replace and detach --force alike."""
    link_fd, prog_fd = xdp_link(ns, foreign_obj, "vb")
    try:
        ((_, prog_id, mode),) = ns.xdp_in(ns.b)
        (link,) = [
            x for x in json.loads(run("bpftool", "-j", "link", "show").stdout)
            if x.get("prog_id") == prog_id
        ]  # fmt: skip
        r = run("ip", "netns", "exec", ns.b, "ip", "link", "set", "dev", "vb", "xdpgeneric",
                "off", check=False)  # fmt: skip
        assert r.returncode != 0 and "Can't replace active BPF XDP link" in r.stderr
        held = f"program {prog_id} 'foreign' is held by bpf link {link['id']}"
        how = f"(bpftool link detach id {link['id']} removes it)"
        r = ns.cli(ns.b, "attach", "vb", "--drop", "udp://:9")
        assert (r.returncode, r.stdout) == (1, ""), r
        assert r.stderr.startswith(f"ipcnet xdp: attach xdp to vb: {held}"), r.stderr
        messages = []
        for call, kw in ((xdp.attach, {"replace": True}), (xdp.detach, {"force": True})):
            with pytest.raises(errors.AddressInUse) as caught:
                ns.call(ns.b, call, "vb", **kw)
            messages.append(str(caught.value))
        assert [m.split(": ", 1)[1] for m in messages] == [r.stderr.split(": ", 2)[2].strip()] * 2
        assert how in r.stderr and "--replace replaces" not in r.stderr
        shown = [p.to_dict() for p in ns.call(ns.b, xdp.programs, "vb")]  # show --json's rows
        assert [(p["prog_id"], p["link"]) for p in shown] == [(prog_id, link["id"])]
        assert ns.xdp_in(ns.b) == [("vb", prog_id, mode)]  # still there, untouched
    finally:
        os.close(link_fd)
        os.close(prog_fd)
    assert ns.xdp_in(ns.b) == []  # the link's last descriptor closed: detached


def _padded(f: bytes) -> bytes:
    """The frame as an Ethernet NIC receives it: padded with zeros to the 60-byte minimum
    (IEEE 802.3; the padding is no part of the IP packet, whose length field says where
    it ends, and the stack trims it: ip_rcv's pskb_trim_rcsum)."""
    return f.ljust(60, b"\0")


def _tcp_head(port: int) -> bytes:  # a SYN's header
    return struct.pack("!HHIIBBHHH", 40000, port, 1, 0, 5 << 4, 0x02, 65535, 0, 0)


def _trailer(p: int) -> bytes:
    """What follows the IP packet in the frame: bytes that would read as port ``p``."""
    return struct.pack("!H", p) + bytes(8)


# (name, the frame to port p, iptables' protocol, ipcnet's count, xt's count, delivered)
SHORT: list[tuple[str, Callable[[int], bytes], str, int, int, int]] = [
    ("ipv4 udp, whole", lambda p: _padded(frame(ETH_IP, ipv4(udp(A4, B4, p, b"")))), "udp",
     1, 1, 1),
    (  # the IP length ends the packet 2 bytes into the UDP header: the trailer is not its
        "ipv4 udp, the ip length ending it inside the ports",
        lambda p: frame(ETH_IP, ipv4(udp(A4, B4, p, b"")[:2])) + _trailer(p),
        "udp", 0, 0, 0,
    ),
    ("ipv6 udp, whole", lambda p: _padded(frame(ETH_IP6, ipv6(udp(A6, B6, p, b""), UDP))),
     "udp", 1, 1, 1),
    (
        "ipv6 udp, the payload length ending it inside the ports",
        lambda p: frame(ETH_IP6, ipv6(udp(A6, B6, p, b"")[:2], UDP)) + _trailer(p),
        "udp", 0, 0, 0,
    ),
    (  # the ports are there, the rest is not: read as nft reads it (xt_tcp drops it, and so
        # does the stack, the packet being whole: no rule's action changes its fate)
        "ipv4 tcp, the ip length ending it after 8 bytes",
        lambda p: _padded(frame(ETH_IP, ip4(_tcp_head(p)[:8], B4, TCP))),
        "tcp", 1, 0, 0,
    ),
    (
        "ipv6 tcp, the payload length ending it inside the ports",
        lambda p: frame(ETH_IP6, ip6(_tcp_head(p)[:3], TCP)) + _trailer(p)[1:],
        "tcp", 0, 0, 0,
    ),
]  # fmt: skip


@pytest.mark.parametrize("mode", ["native", "generic"])
def test_ports_past_the_ip_length_are_not_read_from_padding_or_a_trailer(
    ns: Pair, mode: str
) -> None:
    """The IP length says where the packet ends; the Ethernet padding a NIC adds to a short
    frame, or any trailer, is not part of it (the stack trims it, and so xt_udp/xt_tcp
    never see it). ipcnet read the header up to the frame's end, so bytes after the
    packet could supply the destination port and match a rule."""
    socks = [ns.udp(ns.b, socket.AF_INET6) for _ in SHORT]
    ports = [s.getsockname()[1] for s in socks]
    for case, p in zip(SHORT, ports, strict=True):
        for tool in IPTABLES:
            run("ip", "netns", "exec", ns.b, tool, "-t", "raw", "-A", "PREROUTING", "-p", case[2],
                "--dport", str(p))  # fmt: skip
    raw = ns.call(ns.a, socket.socket, socket.AF_PACKET, socket.SOCK_RAW)
    rules = [f"{case[2]}://:{p}" for case, p in zip(SHORT, ports, strict=True)]
    try:
        raw.bind(("va", 0))
        with ns.call(ns.b, xdp.attach, "vb", count=rules, mode=mode) as f:
            for case, p in zip(SHORT, ports, strict=True):
                raw.send(case[1](p))
            delivered = [receive(s, 1, 0.3) if case[5] else pending(s)
                         for case, s in zip(SHORT, socks, strict=True)]  # fmt: skip
            ours = {r.rule.port: r.packets for r in f.stats().rules}
            ns.call(ns.b, f.detach)
        xt = iptables_counters(ns)
    finally:
        raw.close()
        for tool in IPTABLES:
            run("ip", "netns", "exec", ns.b, tool, "-t", "raw", "-F", "PREROUTING", check=False)
        for s in socks:
            s.close()
    got = {c[0]: (ours[p], xt[p], d) for c, p, d in zip(SHORT, ports, delivered, strict=True)}
    assert got == {c[0]: c[3:] for c in SHORT}


def _map_dump(map_id: int) -> dict[int, tuple[int, int]]:
    """bpftool's dump of a stats map: {slot: (packets, bytes)} summed over CPUs."""
    totals = {}
    for entry in json.loads(run("bpftool", "-j", "map", "dump", "id", str(map_id)).stdout):
        slot = int.from_bytes(bytes(int(b, 16) for b in entry["key"]), sys.byteorder)
        raw = [bytes(int(b, 16) for b in v["value"]) for v in entry["values"]]
        totals[slot] = tuple(sum(struct.unpack("=QQ", r)[i] for r in raw) for i in (0, 1))
    return {slot: t for slot, t in totals.items() if t != (0, 0)}


def test_stats_json_is_versioned_and_every_counter_is_what_bpftool_dumps(ns: Pair) -> None:
    """``ipcnet sockets``, ``ipcs`` and ``xdp show`` documents open with "version": 1;
    ``xdp stats --json`` lacked it. Its counters, packets and bytes, per rule and for the
    unmatched, must be bpftool's dump of the per-CPU map and what was sent."""
    dropped, counted = ns.udp(ns.b), ns.udp(ns.b, socket.AF_INET6)
    p1, p2 = dropped.getsockname()[1], counted.getsockname()[1]
    ns.call(ns.b, xdp.attach, "vb", drop=[f"udp://:{p1}"], count=[f"udp://:{p2}"]).close()
    try:
        send(ns, [(B4, p1), (B6, p2)], count=100)
        assert receive(counted, 100) == 100 and pending(dropped) == 0
        doc = json.loads(ns.cli(ns.b, "stats", "vb", "--json").stdout)
        assert list(doc) == ["version", "mode", "time", "dev", "prog_id", "rules", "unmatched"]
        assert doc["version"] == 1
        v4, v6 = 14 + 20 + 8 + len(PAYLOAD), 14 + 40 + 8 + len(PAYLOAD)
        assert [(x["rule"], x["packets"], x["bytes"]) for x in doc["rules"]] == [
            (f"udp://:{p1}", 100, 100 * v4),
            (f"udp://:{p2}", 100, 100 * v6),
        ]
        prog = json.loads(run("bpftool", "-j", "prog", "show", "id", str(doc["prog_id"])).stdout)
        maps = [json.loads(run("bpftool", "-j", "map", "show", "id", str(i)).stdout)
                for i in prog["map_ids"]]  # fmt: skip
        (stats_id,) = [m["id"] for m in maps if m["name"] == "ipcnet_stats"]
        dump = _map_dump(stats_id)
        unmatched = doc["unmatched"]
        chatter = dump.pop(0, (0, 0))  # neighbour or router chatter, if any: slot 0
        assert dump == {1: (100, 100 * v4), 2: (100, 100 * v6)}
        # slot 0 may have grown between the two reads (an IPv6 router solicitation came
        # after `stats` in one run): never shrunk, never less than stats said
        assert chatter[0] >= unmatched["packets"] and chatter[1] >= unmatched["bytes"], chatter
    finally:
        ns.call(ns.b, xdp.detach, "vb")
        dropped.close()
        counted.close()


@pytest.mark.parametrize(
    ("text", "target"),
    [  # nft lists "ip daddr 10.0.0.1/32" as "ip daddr 10.0.0.1", and keeps /0 as every address
        ("udp://10.0.0.1/32:53", "udp://10.0.0.1:53"),
        ("udp://[fd00::1/128]:53", "udp://[fd00::1]:53"),
        ("tcp://[fd00::1]/128:80", "tcp://[fd00::1]:80"),
        ("udp://0.0.0.0/0:53", "udp4://:53"),
        ("udp://[::]/0:53", "udp6://:53"),
    ],
)
def test_a_prefix_naming_one_address_or_all_is_read_as_nft_reads_it(text: str, target: str) -> None:
    assert parse_rule(text, "drop") == parse_rule(target, "drop")


@pytest.mark.parametrize(
    ("text", "why"),
    [  # nft takes these (10.0.0.1/24 becomes 10.0.0.0/24); one exact-match key cannot
        ("udp://10.0.0.1/24:53", "prefixes (10.0.0.0/24) are not supported"),
        ("udp://[fd00::1]/64:53", "prefixes (fd00::/64) are not supported"),
        ("udp://10.0.0.1/33:53", "'10.0.0.1/33' is not an address prefix"),
        ("udp://:1000-2000", "port ranges (1000-2000) are not supported: one rule per port"),
    ],
)
def test_what_one_rule_cannot_match_is_refused_by_name(text: str, why: str) -> None:
    with pytest.raises(errors.InvalidAddress, match=re.escape(why)):
        parse_rule(text, "drop")


def test_a_verifier_rejection_says_unsafe_not_permission_denied_whatever_the_log_size(
    ns: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bpf(2): EACCES from BPF_PROG_LOAD means the program "was deemed unsafe", and
    ENOSPC only that the log buffer was too small. The message said "(permission
    denied)", as if privileges were missing (they have a message of their own), and a
    log that did not fit replaced the rejection's errno with ENOSPC."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # its object stays out of the cache
    (tmp_path / "bad.bpf.c").write_text(BAD)
    with pytest.raises(errors.Unsupported) as caught:
        ns.call(ns.b, xdp.attach, "vb", drop=["udp://:9"], source=tmp_path / "bad.bpf.c")
    first = str(caught.value).splitlines()[0]
    assert first == (
        "the kernel's verifier rejected the xdp program for vb (deemed unsafe: EACCES, "
        "bpf(2)); its last lines:"
    )
    assert ns.xdp_in(ns.b) == []
    code = elf.read(build.compiled(tmp_path / "bad.bpf.c").read_bytes())  # no maps used
    with pytest.raises(bpf.VerifierError) as small:
        bpf.prog_load(code.insns, code.license, code.program, log_size=200)
    assert small.value.errno == errno.EACCES  # the rejection's, not the short log's ENOSPC
    assert "invalid access to packet" in small.value.log  # the kernel kept the log's tail


def test_an_interface_is_found_by_its_long_alternative_name_as_ip_link_finds_it(
    ns: Pair,
) -> None:
    """ip-link(8): ``ip link property add dev vb altname NAME`` gives vb a second name of up
    to 127 bytes, and every ``dev NAME`` takes it. ipcnet refused any name over 15 bytes
    before asking the kernel ("no interface named ..."); the kernel looks such a name up
    as IFLA_ALT_IFNAME."""
    alt = "ipcnet-audit9-a-long-alternative-name"
    run("ip", "-n", ns.b, "link", "property", "add", "dev", "vb", "altname", alt)
    try:
        shown = run("ip", "-n", ns.b, "-j", "link", "show", "dev", alt).stdout
        assert json.loads(shown)[0]["ifname"] == "vb"
        r = ns.cli(ns.b, "attach", alt, "--drop", "udp://:9", "--mode", "generic")
        assert r.returncode == 0, r.stderr
        ((dev, prog_id, mode),) = ns.xdp_in(ns.b)
        assert (dev, mode) == ("vb", "generic")
        assert f"attached xdp program {prog_id} to {alt} in generic mode" in r.stdout
        found = ns.call(ns.b, xdp.find, alt)
        assert found.prog_id == prog_id
        found.close()
        (gone,) = ns.call(ns.b, xdp.detach, alt)
        assert (gone.prog_id, gone.dev) == (prog_id, "vb")
        assert ns.xdp_in(ns.b) == []
        missing = alt[:-1] + "X"
        with pytest.raises(errors.AddressNotAvailable, match=f"no interface named '{missing}'"):
            ns.call(ns.b, xdp.programs, missing)
    finally:
        run("ip", "-n", ns.b, "link", "property", "del", "dev", "vb", "altname", alt, check=False)


def _snmp() -> dict[str, int]:
    """The calling thread's namespace's /proc/net/snmp as {"Ip:ReasmOKs": n, ...}."""
    with open("/proc/thread-self/net/snmp") as f:
        lines = f.read().splitlines()
    found = {}
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        group = names.split(":")[0]
        for n, v in zip(names.split()[1:], values.split()[1:], strict=True):
            found[f"{group}:{n}"] = int(v)
    return found


def _syn_in_two_fragments(port: int, ident: int) -> list[bytes]:
    """A SYN to B4:port in two IPv4 fragments, the first carrying only 8 bytes of its TCP
    header (the ports, the sequence number): RFC 1858's tiny fragment. Checksums right:
    the stack reassembles it and takes the SYN."""
    head = bytearray(_tcp_head(port))
    pseudo = socket.inet_aton(A4) + socket.inet_aton(B4) + struct.pack("!xBH", TCP, len(head))
    struct.pack_into("!H", head, 16, _sum16(pseudo + bytes(head)))
    frames = []
    for off, part, more in ((0, head[:8], 0x2000), (1, head[8:], 0)):
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(part), ident, more | off, 64, TCP, 0,
                         socket.inet_aton(A4), socket.inet_aton(B4))  # fmt: skip
        ip = ip[:10] + struct.pack("!H", _sum16(ip)) + ip[12:]
        frames.append(frame(ETH_IP, ip + bytes(part)))
    return frames


@pytest.mark.parametrize("mode", ["native", "generic"])
def test_a_tiny_first_fragment_does_not_carry_a_syn_past_a_tcp_drop_rule(
    ns: Pair, mode: str
) -> None:
    """RFC 1858: a first fragment too short for the whole TCP header still holds the
    ports; the stack reassembles it with the rest and takes the SYN. ipcnet wanted all 20
    header bytes before it read the port, so the fragment passed the drop rule (the later
    one has no ports) and the SYN reached the dropped port. iptables-legacy's xt_tcp
    drops such a fragment (hotdrop), whatever the rule says."""
    listener, marker = ns.tcp_listener(ns.b), ns.udp(ns.b)
    port = listener.getsockname()[1]
    end = frame(ETH_IP, ipv4(udp(A4, B4, marker.getsockname()[1])))
    raw = ns.call(ns.a, socket.socket, socket.AF_PACKET, socket.SOCK_RAW)

    def sent(ident: int) -> tuple[int, int]:
        """The fragments sent: (reassembled, TCP segments taken) in namespace b."""
        before = ns.call(ns.b, _snmp)
        for f in [*_syn_in_two_fragments(port, ident), end]:
            raw.send(f)
        assert receive(marker, 1) == 1  # after the fragments before it, in order
        after = ns.call(ns.b, _snmp)
        return after["Ip:ReasmOKs"] - before["Ip:ReasmOKs"], after["Tcp:InSegs"] - before[
            "Tcp:InSegs"
        ]

    try:
        raw.bind(("va", 0))
        with ns.call(ns.b, xdp.attach, "vb", drop=[f"tcp://:{port}"], mode=mode) as f:
            ours = sent(1000)
            (rule,) = f.stats().rules
            ns.call(ns.b, f.detach)
        for tool in IPTABLES[:1]:
            run("ip", "netns", "exec", ns.b, tool, "-t", "raw", "-A", "PREROUTING", "-p", "tcp",
                "--dport", str(port), "-j", "DROP")  # fmt: skip
        xt = sent(1001)
        run("ip", "netns", "exec", ns.b, IPTABLES[0], "-t", "raw", "-F", "PREROUTING")
        unfiltered = sent(1002)  # the fragments are good: without a filter the SYN arrives
    finally:
        run("ip", "netns", "exec", ns.b, IPTABLES[0], "-t", "raw", "-F", "PREROUTING",
            check=False)  # fmt: skip
        raw.close()
        listener.close()
        marker.close()
    assert unfiltered[0] == 1 and unfiltered[1] >= 1
    assert xt == (0, 0)
    assert (ours, rule.packets) == ((0, 0), 1)  # the first fragment, dropped by the rule


def test_stats_watch_stops_when_its_program_is_detached_or_replaced(ns: Pair) -> None:
    """``stats --watch`` read the maps of the program it found first for as long as it ran:
    after ``detach`` (or an attach --replace) it went on printing frozen counters of a
    program no interface runs, where bpftool net show and ip link show none. Each read
    now checks the interface still runs that program, and stops with an error if not."""
    for replace in (False, True):
        ns.call(ns.b, xdp.attach, "vb", drop=["udp://:9"], mode="generic").close()
        e = dict(os.environ, PYTHONPATH=SRC)
        cmd = ["ip", "netns", "exec", ns.b, sys.executable, "-m", "ipcnet", "xdp", "stats",
               "vb", "--json", "--watch", "0.05"]  # fmt: skip
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e,
                              text=True) as watch:  # fmt: skip
            assert watch.stdout is not None and watch.stderr is not None
            first = json.loads(watch.stdout.readline())
            if replace:
                ns.call(ns.b, xdp.attach, "vb", count=["udp://:9"], replace=True).close()
            else:
                ns.call(ns.b, xdp.detach, "vb")
            try:
                code = watch.wait(5)
            except subprocess.TimeoutExpired:
                watch.kill()
                code = watch.wait()
            err = watch.stderr.read()
        assert code == 1, (replace, err)
        assert err == (
            f"ipcnet xdp: vb: xdp program {first['prog_id']} is no longer attached "
            "(detached or replaced)\n"
        )
    ns.call(ns.b, xdp.detach, "vb")
    assert ns.xdp_in(ns.b) == []
