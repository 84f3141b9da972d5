"""Rows of the kernel's socket and pipe tables, and their stable output schema.

Role: the data model of the inspector; nothing here reads the kernel.
Rules:
- Rows are immutable. ``SocketRow`` is a ``typing.NamedTuple`` (a frozen, slotted record
  built by one C call) because a dump of 10k sockets must cost microseconds per row; a
  frozen dataclass ``__init__`` costs several times more.
- A field the kernel did not tell us (privileges, /proc fallback, a mini socket in
  TIME_WAIT) is ``None`` = unknown. Nothing is guessed or defaulted to 0.
- Derived values (port class, service names, display strings) are computed on demand, so
  they cost nothing for rows that a filter drops.
- ``SCHEMA`` names every key of ``SocketRow.to_dict()`` in output order; adding a key is
  allowed, renaming or removing one is a breaking change.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# TCP states as numbered by the kernel (include/net/tcp_states.h); /proc prints them in hex.
TCP_STATES: dict[int, str] = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
    13: "BOUND_INACTIVE",
}
STATE_NUMBERS: dict[str, int] = {name: num for num, name in TCP_STATES.items()}
# Datagram, raw and unix sockets reuse TCP_CLOSE for "not connected": ss calls it UNCONN.
UNCONN = "UNCONN"

# What /proc's "tr" column and inet_diag's idiag_timer mean.
TIMERS: dict[int, str] = {0: "off", 1: "on", 2: "keepalive", 3: "timewait", 4: "probe"}

PROTOCOLS = (
    "tcp", "tcp6", "udp", "udp6", "udplite", "udplite6", "raw", "raw6", "unix", "packet",
)  # fmt: skip


def state_name(proto: str, num: int) -> str:
    """The state name for a kernel state number; datagram/unix CLOSE is UNCONN."""
    if num == 7 and proto[:3] != "tcp":
        return UNCONN
    if num == 12:  # a request socket: what the peer tools call SYN_RECV
        return "SYN_RECV"
    return TCP_STATES.get(num, f"UNKNOWN({num})")


def port_class(port: int | None) -> str | None:
    """IANA's ranges: well-known 0-1023, registered 1024-49151, dynamic 49152-65535."""
    if port is None:
        return None
    if port < 1024:
        return "well-known"
    if port < 49152:
        return "registered"
    return "dynamic"


class Owner(NamedTuple):
    """One process holding a socket or pipe end: pid, command name, fd numbers."""

    pid: int
    name: str | None  # /proc/<pid>/comm; None if the process went away before we read it
    fds: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "name": self.name, "fds": list(self.fds)}

    def label(self) -> str:
        fds = ",".join(map(str, self.fds))
        return f"{self.name or '?'}/{self.pid}/fd={fds}"


class SocketRow(NamedTuple):
    """One socket as the kernel reports it (see the module docstring for the rules).

    ``local_host``/``remote_host`` are display forms: IPv4 dotted quad (also for
    IPv4-mapped IPv6), IPv6 compressed; ``path`` is a unix socket's name (``@name`` for the
    abstract namespace, ``None`` when unnamed or unknown). A wildcard ``::`` with
    ``v6only`` False also takes IPv4 (ss shows it as ``*``).
    """

    proto: str  # tcp tcp6 udp udp6 udplite udplite6 raw raw6 unix packet
    type: str  # stream dgram seqpacket raw
    state: str  # ESTABLISHED, LISTEN, ... ; UNCONN for unconnected datagram/unix sockets
    local_host: str | None
    local_port: int | None  # raw: the IP protocol number; packet: the EtherType
    remote_host: str | None
    remote_port: int | None
    path: str | None  # unix only
    recv_q: int | None  # LISTEN: current accept-queue length
    send_q: int | None  # LISTEN: the backlog (max accept-queue length)
    uid: int | None
    inode: int | None  # None: no inode (TIME_WAIT, request and orphaned sockets)
    timer: str | None  # off on keepalive timewait probe
    timer_ms: int | None  # time left on the timer, milliseconds
    retransmits: int | None
    peer_inode: int | None  # unix: the inode of the connected peer (sock_diag only)
    source: str  # where the row came from: "netlink" or "proc"
    exact: bool  # False: the /proc text was ambiguous (a forged line?); see ``note``
    note: str | None
    owners: tuple[Owner, ...] | None  # None: not looked up, or unknown for lack of privilege
    peer_path: str | None = None  # unix: the name of the connected peer, if it has one
    # IPv6 listening/unconnected sockets (sock_diag only): IPV6_V6ONLY; False = also IPv4
    v6only: bool | None = None
    # the device the socket is bound to (SO_BINDTODEVICE, or a link-local address's scope):
    # ss's "%dev" (sock_diag only; None = none or unknown); packet: the bound device (also
    # from /proc), None = every device
    interface: str | None = None
    # unix: True = an abstract name (``path`` "@name"), False = a file (whose name may also
    # start with "@"); None = unnamed, not unix, or unknown (/proc prints both as "@name")
    abstract: bool | None = None

    # --- derived values ------------------------------------------------------------

    @property
    def family(self) -> str:
        if self.proto in ("unix", "packet"):
            return self.proto
        return "inet6" if self.proto.endswith("6") else "inet"

    @property
    def local_port_class(self) -> str | None:
        return None if self.proto[:3] not in ("tcp", "udp") else port_class(self.local_port)

    @property
    def remote_port_class(self) -> str | None:
        if self.proto[:3] not in ("tcp", "udp") or not self.remote_port:
            return None
        return port_class(self.remote_port)

    def key(self) -> tuple[object, ...]:
        """Identity across two scans (what --watch compares)."""
        return (
            self.proto,
            self.inode,
            self.local_host,
            self.local_port,
            self.remote_host,
            self.remote_port,
            self.path,
            self.state if self.inode is None else None,
        )

    def with_owners(self, owners: tuple[Owner, ...] | None) -> SocketRow:
        return self._replace(owners=owners)

    def to_dict(self, names: bool = True) -> dict[str, Any]:
        """The documented JSON object (see SCHEMA); ``names`` adds /etc/services names."""
        from ipcnet.inspector.names import service_name, user_name

        inet = self.proto != "unix"  # (packet rows have no path either)
        lport, rport = self.local_port, self.remote_port
        svc = names and self.proto[:3] in ("tcp", "udp")
        return {
            "proto": self.proto,
            "family": self.family,
            "type": self.type,
            "state": self.state,
            "local_host": self.local_host,
            "local_port": lport,
            "local_port_class": self.local_port_class,
            "local_service": service_name(lport, self.proto[:3]) if svc and lport else None,
            "remote_host": self.remote_host,
            "remote_port": rport,
            "remote_port_class": self.remote_port_class,
            "remote_service": service_name(rport, self.proto[:3]) if svc and rport else None,
            "path": None if inet else self.path,
            "peer_inode": self.peer_inode,
            "peer_path": self.peer_path,
            "recv_q": self.recv_q,
            "send_q": self.send_q,
            "uid": self.uid,
            "user": user_name(self.uid) if names and self.uid is not None else None,
            "inode": self.inode,
            "timer": self.timer,
            "timer_ms": self.timer_ms,
            "retransmits": self.retransmits,
            "processes": None if self.owners is None else [o.to_dict() for o in self.owners],
            "source": self.source,
            "exact": self.exact,
            "note": self.note,
            "v6only": self.v6only,
            "interface": self.interface,
            "abstract": self.abstract,
        }


class PipeEnd(NamedTuple):
    """One open end of a pipe or fifo: which process, which fd, read or write."""

    pid: int
    name: str | None
    fd: int
    mode: str | None  # "r", "w", "rw"; None if /proc/<pid>/fdinfo could not be read

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "name": self.name, "fd": self.fd, "mode": self.mode}


class PipeRow(NamedTuple):
    """An anonymous pipe (``pipe:[inode]``) or a fifo, with every process holding an end."""

    kind: str  # "pipe" or "fifo"
    inode: int
    path: str | None  # fifo: its path as /proc/<pid>/fd shows it
    ends: tuple[PipeEnd, ...]

    @property
    def readers(self) -> tuple[PipeEnd, ...]:
        return tuple(e for e in self.ends if e.mode in ("r", "rw"))

    @property
    def writers(self) -> tuple[PipeEnd, ...]:
        return tuple(e for e in self.ends if e.mode in ("w", "rw"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "inode": self.inode,
            "path": self.path,
            "ends": [e.to_dict() for e in self.ends],
        }


class FdRow(NamedTuple):
    """One entry of a process's fd table, joined to the socket or pipe it points at."""

    pid: int
    fd: int
    target: str  # what readlink(/proc/<pid>/fd/<fd>) says: socket:[123], pipe:[9], /path
    kind: str  # socket pipe fifo file anon other
    inode: int | None
    socket: SocketRow | None  # the table row for socket:[inode], if the netns has it
    pipe: PipeRow | None

    def to_dict(self, names: bool = True) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "fd": self.fd,
            "target": self.target,
            "kind": self.kind,
            "inode": self.inode,
            "socket": None if self.socket is None else self.socket.to_dict(names),
            "pipe": None if self.pipe is None else self.pipe.to_dict(),
        }


# Keys of SocketRow.to_dict(), in order: the stable schema of --json/--jsonl/--csv.
SCHEMA: tuple[str, ...] = (
    "proto",
    "family",
    "type",
    "state",
    "local_host",
    "local_port",
    "local_port_class",
    "local_service",
    "remote_host",
    "remote_port",
    "remote_port_class",
    "remote_service",
    "path",
    "peer_inode",
    "peer_path",
    "recv_q",
    "send_q",
    "uid",
    "user",
    "inode",
    "timer",
    "timer_ms",
    "retransmits",
    "processes",
    "source",
    "exact",
    "note",
    "v6only",
    "interface",
    "abstract",
)

__all__ = [
    "PROTOCOLS",
    "SCHEMA",
    "STATE_NUMBERS",
    "TCP_STATES",
    "TIMERS",
    "UNCONN",
    "FdRow",
    "Owner",
    "PipeEnd",
    "PipeRow",
    "SocketRow",
    "port_class",
    "state_name",
]
