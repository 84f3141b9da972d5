"""Filters in the ss/netstat manner: which tables, which states, which ports.

Role: turn user words (``-t -u -x -w``, ``-4/-6``, ``--state time-wait``, ``--port http``,
``--address 10.0.0.0/8``)
into (a) the list of tables to dump, (b) the kernel state bitmask for sock_diag, and (c) a
row predicate for what the kernel cannot filter.
Rules: state names are accepted in the spellings of ss (``ESTAB``, ``time-wait``), netstat
(``TIME_WAIT``) and the kernel, plus ss's groups (``connected``, ``synchronized``,
``bucket``, ``big``, ``all``); an unknown word raises ``ValueError`` naming the choices.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ipcnet.inspector.model import STATE_NUMBERS, UNCONN, SocketRow

# "all" is ss's: the states of tcp_states.h up to CLOSING. NEW_SYN_RECV is asked for with
# SYN_RECV; BOUND_INACTIVE (kernel >= 6.6: TCP sockets bound but neither listening nor
# connecting, which neither /proc/net/tcp nor ss -a nor netstat -a lists) only by name.
if TYPE_CHECKING:
    from ipaddress import IPv4Network, IPv6Network

ALL_STATE_NAMES = frozenset([*STATE_NUMBERS, UNCONN]) - {"NEW_SYN_RECV", "BOUND_INACTIVE"}
BOUND_INACTIVE = "BOUND_INACTIVE"
_ALIASES = {
    "ESTAB": "ESTABLISHED",
    "LISTENING": "LISTEN",
    "UNCONNECTED": UNCONN,
    "CLOSED": "CLOSE",
    "SYN_RECEIVED": "SYN_RECV",
    "SYN_RCV": "SYN_RECV",
    "FIN_WAIT_1": "FIN_WAIT1",
    "FIN_WAIT_2": "FIN_WAIT2",
    "LAST_ACL": "LAST_ACK",
}
# ss's "closed" and "unconnected" are one state (TCP_CLOSE), named CLOSE for TCP rows and
# UNCONN for the others: either word selects both
_CLOSED = frozenset({"CLOSE", UNCONN})
_GROUPS: dict[str, frozenset[str]] = {
    "ALL": ALL_STATE_NAMES,
    "CONNECTED": ALL_STATE_NAMES - {"LISTEN", "CLOSE", UNCONN},
    "SYNCHRONIZED": ALL_STATE_NAMES - {"LISTEN", "CLOSE", UNCONN, "SYN_SENT"},  # as ss(8)
    "BUCKET": frozenset({"SYN_RECV", "TIME_WAIT"}),
    "BIG": ALL_STATE_NAMES - {"SYN_RECV", "TIME_WAIT"},
}
# The state words of ss(8), in its order (with bound-inactive, of ss >= 6.8): what an
# unknown word's error offers
SS_STATE_WORDS = (
    "established", "syn-sent", "syn-recv", "fin-wait-1", "fin-wait-2", "time-wait", "closed",
    "close-wait", "last-ack", "listening", "closing", "bound-inactive",
)  # fmt: skip
# What ss shows without -a or -l: connected sockets, minus the mini ones (bucket).
DEFAULT_STATES = _GROUPS["CONNECTED"] - _GROUPS["BUCKET"]
LISTENING_STATES = frozenset({"LISTEN", UNCONN, "CLOSE"})

# table name -> (protocol, IP version or None)
TABLES = {
    "tcp": ("tcp", 4),
    "tcp6": ("tcp", 6),
    "udp": ("udp", 4),
    "udp6": ("udp", 6),
    "udplite": ("udplite", 4),
    "udplite6": ("udplite", 6),
    "raw": ("raw", 4),
    "raw6": ("raw", 6),
    "unix": ("unix", None),
    "packet": ("packet", None),  # AF_PACKET (ss -0); no IP version, like unix
}
_KIND_ALIASES = {
    "tcp4": "tcp", "udp4": "udp", "raw4": "raw", "x": "unix", "t": "tcp", "0": "packet",
}  # fmt: skip


def parse_states(words: Iterable[str]) -> frozenset[str]:
    """State names and groups -> the set of canonical state names."""
    out: set[str] = set()
    for word in words:
        key = word.strip().upper().replace("-", "_")
        key = _ALIASES.get(key, key)
        if key in _GROUPS:
            out |= _GROUPS[key]
        elif key in _CLOSED:
            out |= _CLOSED
        elif key in ALL_STATE_NAMES or key == BOUND_INACTIVE:
            out.add(key)
        else:
            raise ValueError(
                f"unknown state {word!r} (states: {', '.join(SS_STATE_WORDS)}; groups: "
                f"{', '.join(g.lower() for g in _GROUPS)})"
            )
    return frozenset(out)


def select_tables(protocols: Iterable[str] | None, ip_version: int | None) -> list[str]:
    """Tables to dump for protocols like tcp, udp6, unix (None: all) and -4/-6."""
    names = (
        ["tcp", "udp", "udplite", "raw", "unix", "packet"]
        if protocols is None
        else [_KIND_ALIASES.get(p, p) for p in protocols]
    )
    out: list[str] = []
    for name in names:
        if name in ("tcp", "udp", "udplite", "raw"):
            cands = [name, name + "6"]
        elif name in TABLES:
            cands = [name]
        else:
            raise ValueError(
                f"unknown protocol {name!r} (tcp, udp, udplite, raw, unix, packet, tcp6, ...)"
            )
        for c in cands:
            version = TABLES[c][1]
            if ip_version is not None and version != ip_version:
                continue  # -4/-6 also leave out unix and packet, like ss
            if c not in out:
                out.append(c)
    return out


def state_mask(states: frozenset[str] | None) -> int:
    """The sock_diag bitmask (1 << kernel state number) for these states; None = all."""
    if states is None:
        states = ALL_STATE_NAMES
    mask = 0
    for s in states:
        if s == UNCONN:
            mask |= 1 << 7
        else:
            mask |= 1 << STATE_NUMBERS[s]
    return mask


def resolve_port(text: str | int) -> int:
    """A port number, or a service name from /etc/services (tcp or udp)."""
    if isinstance(text, int) or (text.isascii() and text.isdigit()):  # not "²" or "٨٠"
        # (int() refuses strings of more than 4300 digits with a message about Python)
        port = int(text) if isinstance(text, int) or len(text) <= 12 else 1 << 64
        if not 0 <= port <= 65535:
            shown = text if isinstance(text, int) or len(text) <= 12 else text[:12] + "..."
            raise ValueError(f"port {shown} out of range 0-65535")
        return port
    from ipcnet.inspector.names import service_port

    named = service_port(text, "tcp")
    if named is None:
        named = service_port(text, "udp")
    if named is None:
        raise ValueError(f"unknown port or service name {text!r}")
    return named


def parse_address(text: str) -> IPv4Network | IPv6Network:
    """An address or prefix (``10.1.2.3``, ``fe80::/10``, ss's bracketed ``[::1]``) as a
    network; an IPv4-mapped IPv6 address is its IPv4 address, as rows show it. A zone
    (``fe80::1%lo``) is refused, as ss refuses it: Python would take it and drop it, and
    so select the address on every device."""
    import ipaddress

    if "%" in text:
        raise ValueError(f"bad address {text!r} (an address or prefix without a %zone)")
    try:
        net = ipaddress.ip_network(text.replace("[", "").replace("]", ""), strict=False)
    except ValueError:
        raise ValueError(
            f"bad address {text!r} (an IP address, or a prefix such as 10.0.0.0/8)"
        ) from None
    mapped = getattr(net.network_address, "ipv4_mapped", None)
    if mapped is not None and net.prefixlen >= 96:
        return ipaddress.ip_network(f"{mapped}/{net.prefixlen - 96}", strict=False)
    return net


_UNSPECIFIED = ("0.0.0.0", "::")


class RowFilter:
    """What the kernel cannot filter for us: states of /proc rows, ports, addresses, inodes.

    (A plain slotted class: ``dataclasses`` costs ~10 ms of import time at CLI start.)
    """

    __slots__ = ("inodes", "network", "port", "states")

    def __init__(
        self,
        states: frozenset[str] | None = None,
        port: int | None = None,
        inodes: frozenset[int] | None = None,
        network: IPv4Network | IPv6Network | None = None,
    ) -> None:
        self.states = states
        self.port = port
        self.inodes = inodes
        self.network = network

    def active(self) -> bool:
        parts = (self.states, self.port, self.inodes, self.network)
        return any(p is not None for p in parts)

    def __call__(self, row: SocketRow) -> bool:
        if self.states is not None and row.state not in self.states:
            return False
        if self.port is not None and (
            self.port not in (row.local_port, row.remote_port) or row.proto[:3] == "raw"
        ):
            return False
        if self.network is not None and not self._has_address(row):
            return False
        return self.inodes is None or row.inode in self.inodes

    def _has_address(self, row: SocketRow) -> bool:
        """The local address, or the peer's (when there is a peer), is in the network; an
        IPv6 row's IPv4-mapped address (shown as IPv4) is in IPv6 prefixes too, as in ss."""
        from ipaddress import ip_address

        net = self.network
        assert net is not None
        mapped = net.version == 6 and row.proto.endswith("6")

        def inside(host: str) -> bool:
            if mapped and "." in host:
                host = "::ffff:" + host
            return ip_address(host) in net

        local, peer = row.local_host, row.remote_host
        if local is not None and inside(local):
            return True
        return peer is not None and peer not in _UNSPECIFIED and inside(peer)


__all__ = [
    "ALL_STATE_NAMES",
    "BOUND_INACTIVE",
    "DEFAULT_STATES",
    "LISTENING_STATES",
    "SS_STATE_WORDS",
    "TABLES",
    "RowFilter",
    "parse_address",
    "parse_states",
    "resolve_port",
    "select_tables",
    "state_mask",
]
