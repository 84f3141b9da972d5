"""Filter rules: ``udp://[HOST]:PORT`` / ``tcp://...`` addresses <-> BPF map keys and values.

Role: parse what the user wrote into ``Rule`` objects, encode them as filter.bpf.c's
``struct rule_key`` / ``struct rule_value`` and decode them back (the rules live only in
the kernel's map, so ``ipcnet xdp show`` reads them from there). Rules: no I/O but the
/etc/services lookup of a port name (``inspector.names``, read once); bad input is an
``InvalidAddress`` saying what is wrong; the layouts here mirror filter.bpf.c.

A rule matches packets by protocol, destination port and (optionally) destination
address. ``udp://:53`` matches IPv4 and IPv6, ``udp4://:53`` / ``udp6://:53`` one family,
``udp://10.0.0.1:53`` or ``udp://[fd00::1]:53`` one address (``0.0.0.0`` / ``[::]``: any
address of that family, ``[::ffff:10.0.0.1]`` that IPv4 address, as ``bind()`` reads
them; a prefix is read as nft reads it: /32 and /128 are the address, /0 any address of
the family, any other is refused, and so is a port range). ``tcp://`` rules match every
segment to the port, SYNs included, so a dropped port never completes a handshake. An
IPv6 packet whose chain of extension headers is longer than the program walks (16; RFC
8200 allows about six) hides its ports, though the stack still delivers it: it is dropped
if a drop rule covers its family and address (counted by the first such rule), so padding
headers dodge no drop rule.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ipcnet.addresses import parse
from ipcnet.errors import InvalidAddress

MAX_RULES = 64  # filter.bpf.c: MAX_RULES (its maps have room for two sets while updating)
ACTIONS = {"count": 1, "drop": 2}
PROTOS = {"udp": socket.IPPROTO_UDP, "tcp": socket.IPPROTO_TCP}
PROTO_UNSEEN = 0  # filter.bpf.c: the key.proto of an IPv6 packet whose ports it cannot reach

KEY = struct.Struct("=BBH16s")  # family, proto, port (network order), address
VALUE = struct.Struct("=II")  # action, slot
COUNTERS = struct.Struct("=QQ")  # packets, bytes (one per CPU)


@dataclass(frozen=True, order=True)
class Rule:
    """Drop or count packets to ``proto`` port ``port`` at ``host`` ('' = any address)."""

    proto: str  # udp or tcp
    port: int
    host: str = ""
    families: tuple[int, ...] = (4, 6)
    action: str = "drop"

    @property
    def target(self) -> str:
        """The rule as an address, in canonical form (``udp://:53``, ``tcp6://:80``)."""
        scheme = self.proto + (
            "" if len(self.families) == 2 or self.host else str(self.families[0])
        )
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.action} {self.target}"

    def map_keys(self) -> list[bytes]:
        port = socket.htons(self.port)
        packed = ipaddress.ip_address(self.host).packed if self.host else b""
        return [
            KEY.pack(f, PROTOS[self.proto], port, packed.ljust(16, b"\0")) for f in self.families
        ]


_PREFIX = re.compile(r"://\[?([0-9A-Fa-f:.]*)\]?/(\d+)")  # 10.0.0.0/8, [fd00::/8], [fd00::]/8
_RANGE = re.compile(r":(\d+-\d+)$")  # :1000-2000, as nft writes a port range


def _without_prefix(text: str, prefix: re.Match[str]) -> str:
    """The rule with its prefix read as nft reads it (host bits cleared, as nft lists
    ``10.0.0.1/24`` as ``10.0.0.0/24``): a full-length one is its address, /0 every address
    of its family (``0.0.0.0`` or ``[::]``, as for bind); any other is refused."""
    try:
        net = ipaddress.ip_network(f"{prefix[1]}/{prefix[2]}", strict=False)
    except ValueError:
        raise InvalidAddress(
            f"invalid xdp rule {text!r}: {prefix[1] + '/' + prefix[2]!r} is not an address prefix"
        ) from None
    if 0 < net.prefixlen < net.max_prefixlen:
        raise InvalidAddress(
            f"invalid xdp rule {text!r}: prefixes ({net}) are not supported; "
            "give one address, or none for any"
        )
    host = str(net.network_address)
    return (
        text[: prefix.start()]
        + (f"://[{host}]" if net.version == 6 else f"://{host}")
        + (text[prefix.end() :].lstrip("]"))
    )


def parse_rule(text: str, action: str) -> Rule:
    """``udp://:53`` (and friends) -> Rule; InvalidAddress says what is wrong."""
    prefix = _PREFIX.search(text)
    if prefix:
        text = _without_prefix(text, prefix)
    ports = _RANGE.search(text)
    if ports:
        raise InvalidAddress(
            f"invalid xdp rule {text!r}: port ranges ({ports[1]}) are not supported: one rule "
            f"per port (at most {MAX_RULES})"
        )
    address = parse(text)
    proto = address.scheme.rstrip("46")
    if proto not in PROTOS:
        raise InvalidAddress(
            f"invalid xdp rule {text!r}: takes udp://[HOST]:PORT or tcp://[HOST]:PORT"
        )
    host = address.host or ""
    if host:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise InvalidAddress(
                f"invalid xdp rule {text!r}: the host must be an IP address, not a name"
            ) from None
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped and address.scheme.endswith("6"):  # bind() on a v6-only socket
                raise InvalidAddress(  # refuses it too (EINVAL): no IPv6 packet carries it
                    f"invalid xdp rule {text!r}: {address.scheme} cannot take an ipv4-mapped "
                    f"address ([{host}] is ipv4 {ip.ipv4_mapped} on the wire)"
                )
            # an IPv4 destination on the wire, as a dual-stack bind reads it; and no scope
            # (fe80::1%eth0): the filter sits on one interface, and packets carry none
            ip = ip.ipv4_mapped or ipaddress.IPv6Address(ip.packed)
        families: tuple[int, ...] = (ip.version,)
        host = "" if ip.is_unspecified else str(ip)  # 0.0.0.0, ::: any address, as for bind
    else:
        families = {"4": (4,), "6": (6,)}.get(address.scheme[-1], (4, 6))
    port = address.port
    if isinstance(port, str):
        from ipcnet.inspector.names import service_port  # lazy: only names need it

        number = service_port(port, proto)
        if number is None:
            raise InvalidAddress(f"invalid xdp rule {text!r}: unknown {proto} service {port!r}")
        port = number
    if not port:
        raise InvalidAddress(f"invalid xdp rule {text!r}: port 0 matches no packet")
    return Rule(proto, port, host, families, action)


def parse_rules(drop: Iterable[str | Rule] = (), count: Iterable[str | Rule] = ()) -> list[Rule]:
    """The drop and count lists as rules, refusing duplicates and more than MAX_RULES."""
    rules: list[Rule] = []
    seen: dict[bytes, Rule] = {}
    for action, items in (("drop", drop), ("count", count)):
        for item in items:
            # a Rule object takes the action of the list it is in, as a string does
            rule = (
                parse_rule(item, action) if isinstance(item, str) else replace(item, action=action)
            )
            for key in rule.map_keys():
                if key in seen:
                    raise InvalidAddress(
                        f"invalid xdp rules: {rule} overlaps {seen[key]} (one rule per packet)"
                    )
                seen[key] = rule
            rules.append(rule)
    if len(rules) > MAX_RULES:
        raise InvalidAddress(
            f"invalid xdp rules: {len(rules)} rules, over the limit of {MAX_RULES}"
        )
    return rules


def map_entries(rules: Iterable[tuple[int, Rule]]) -> dict[bytes, bytes]:
    """The rules map's (key, value) pairs for ``(slot, rule)``: each rule's keys, and for
    the first drop rule of each IPv6 destination (an address, or any) the PROTO_UNSEEN key
    that drops the packets whose ports lie past the extension headers filter.bpf.c walks."""
    entries: dict[bytes, bytes] = {}
    unseen: dict[bytes, bytes] = {}
    for slot, rule in rules:
        value = VALUE.pack(ACTIONS[rule.action], slot)
        for key in rule.map_keys():
            entries[key] = value
            family, _, _, addr = KEY.unpack(key)
            if rule.action == "drop" and family == 6:
                unseen.setdefault(KEY.pack(6, PROTO_UNSEEN, 0, addr), value)
    return entries | unseen


def decode(entries: Iterable[tuple[bytes, bytes]]) -> dict[int, Rule]:
    """(key, value) pairs of the rules map -> {slot: Rule}, merging a rule's per-family keys."""
    found: dict[int, tuple[str, int, str, list[int], str]] = {}
    names = {v: k for k, v in ACTIONS.items()}
    protos = {v: k for k, v in PROTOS.items()}
    for key, value in entries:
        family, proto, port, raw = KEY.unpack(key)
        if proto == PROTO_UNSEEN:  # another key of a drop rule listed by its own
            continue
        action, slot = VALUE.unpack(value)
        host = ""
        if any(raw):
            host = str(ipaddress.ip_address(raw[:4] if family == 4 else raw))
        entry = found.setdefault(
            slot,
            (protos.get(proto, str(proto)), socket.ntohs(port), host, [], names.get(action, "?")),
        )
        entry[3].append(family)
    return {
        slot: Rule(proto, port, host, tuple(sorted(fams)), action)
        for slot, (proto, port, host, fams, action) in found.items()
    }
