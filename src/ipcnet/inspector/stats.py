"""Protocol counters, the data behind ``netstat -s``: /proc/net/snmp, netstat, snmp6.

Role: parse the counter files of the caller's network namespace into
``{group: {counter: value}}`` (groups such as Ip, Icmp, Tcp, Udp, TcpExt, IpExt, Ip6...).
Rules: snmp and netstat come as pairs of lines (a header line of names, then a line of
values, both prefixed by ``Group:``); snmp6 is one ``name value`` per line, grouped by its
prefix (Ip6, Icmp6, Udp6, ...). A file that is missing is skipped; a pair whose name and
value counts differ is skipped rather than misaligned.
"""

from __future__ import annotations

from ipcnet.errors import IPCError
from ipcnet.transports.procfs import read_text


def parse_pairs(text: str) -> dict[str, dict[str, int]]:
    """Parse the two-line-per-group format of /proc/net/snmp and /proc/net/netstat."""
    out: dict[str, dict[str, int]] = {}
    lines = [ln for ln in text.split("\n") if ln.strip()]
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        group, _, names = head.partition(":")
        vgroup, _, nums = values.partition(":")
        if group != vgroup:
            continue
        keys, vals = names.split(), nums.split()
        if len(keys) != len(vals):
            continue
        try:
            out.setdefault(group, {}).update(zip(keys, map(int, vals), strict=True))
        except ValueError:
            continue
    return out


_SNMP6_GROUPS = ("Ip6", "Icmp6", "UdpLite6", "Udp6")


def parse_snmp6(text: str) -> dict[str, dict[str, int]]:
    """Parse /proc/net/snmp6 (``Ip6InReceives 12`` per line)."""
    out: dict[str, dict[str, int]] = {}
    for line in text.split("\n"):
        f = line.split()
        if len(f) != 2 or not f[1].lstrip("-").isdigit():
            continue
        group = next((g for g in _SNMP6_GROUPS if f[0].startswith(g)), "Other6")
        out.setdefault(group, {})[f[0][len(group) :] if group != "Other6" else f[0]] = int(f[1])
    return out


def protocol_stats() -> dict[str, dict[str, int]]:
    """All counters of this network namespace, grouped like ``netstat -s``."""
    out: dict[str, dict[str, int]] = {}
    for name, parse in (("snmp", parse_pairs), ("netstat", parse_pairs), ("snmp6", parse_snmp6)):
        try:
            text = read_text(f"/proc/net/{name}", errors="replace")
        except IPCError:
            continue  # unreadable: skipped like a missing file
        if text is None:
            continue
        for group, counters in parse(text).items():
            out.setdefault(group, {}).update(counters)
    return out


__all__ = ["parse_pairs", "parse_snmp6", "protocol_stats"]
