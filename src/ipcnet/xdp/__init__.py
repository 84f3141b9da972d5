"""XDP packet filters: drop or count packets in the driver's receive path, before the stack.

    with ipcnet.xdp.attach("eth1", drop=["udp://:9"], count=["tcp://:80"]) as f:
        ...; print(f.stats().to_dict()); f.update(drop=["udp://:9", "udp://:53"])

Role: seed 003's last section made real. The program is C (``filter.bpf.c``, shipped in
the package), compiled with ``clang -target bpf`` on first use into a per-user cache;
its rules live in a BPF hash map and its counters in a per-CPU array, so rules change
while it runs and counting needs no atomics.

How it is loaded, and why: straight through the bpf(2) system call (ctypes ``syscall``)
and rtnetlink (a stdlib AF_NETLINK socket), with a 100-line ELF reader for the object.
That is the smallest dependable path: the syscall ABI and the netlink attributes are
stable kernel interfaces, where libbpf through ctypes would tie us to one libbpf's
struct layouts and iproute2/bpftool to parsing their output and pinning to bpffs. It
also gives us the verifier's log directly, and needs no bpffs: the attached program holds
its maps, and a later process finds them from the interface's program id
(``ipcnet xdp stats`` reads the counters of what ``ipcnet xdp attach`` left behind).
bpftool is still what the tests use as an independent witness.

Modules: ``rules`` (addresses <-> map entries, no I/O), ``elf`` (the object reader),
``build`` (clang and the cache), ``filter`` (attach/find/detach/programs and the
``XdpFilter`` handle), ``scene`` (the tour's stop). The kernel calls live in the transports
layer, like every descriptor: ``transports.bpf`` (bpf(2)), ``transports.rtnetlink``, and
``transports.xdperrors``, their one OSError translation; this package sees ipcnet errors
only (``bpf`` is re-exported for probes: may this process call bpf(2)?).
"""

from __future__ import annotations

from ipcnet.transports import bpf
from ipcnet.xdp.filter import (
    Program,
    RuleStats,
    Stats,
    XdpFilter,
    attach,
    detach,
    find,
    programs,
    require_privileges,
)
from ipcnet.xdp.rules import Rule, parse_rule, parse_rules

__all__ = [
    "Program",
    "Rule",
    "RuleStats",
    "Stats",
    "XdpFilter",
    "attach",
    "bpf",
    "detach",
    "find",
    "parse_rule",
    "parse_rules",
    "programs",
    "require_privileges",
]
