"""Private networks for tests and benchmarks: network namespaces and veth pairs (root).

Role: the one place ipcnet's tests and ``ipcnet bench xdp`` build a network of their own
with iproute2, so that no traffic leaves the namespaces they make. Rules: every namespace
name is unique per call; whatever happens in the body, everything made is removed, and
removing never raises; ``unavailable()`` says why this cannot work here (callers skip or
refuse with that reason); an ``ip`` command that fails raises NetnsError with its stderr.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message has the command and its stderr."""


def ip(*args: str, check: bool = True) -> str:
    """Run ``ip ARGS`` (30 s at most) and return its output."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def in_ns(ns: str, *argv: str) -> list[str]:
    """``argv`` as a command that runs inside namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *argv]


@functools.cache
def unavailable() -> str | None:
    """None if namespaces can be made here, else why not (tried once per process)."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    try:
        with namespaces("ipcnet-probe"):
            pass
    except NetnsError as exc:  # e.g. a container without CAP_SYS_ADMIN
        return str(exc)
    return None


@contextmanager
def namespaces(*prefixes: str) -> Iterator[list[str]]:
    """One new namespace per prefix, named PREFIX-<random>, each with lo up; all removed
    afterwards, and the veth pairs with an end in them gone before this returns."""
    made: list[str] = []
    try:
        for prefix in prefixes:
            name = f"{prefix}-{uuid.uuid4().hex[:8]}"
            ip("netns", "add", name)
            made.append(name)
            ip("-n", name, "link", "set", "lo", "up")
        yield made
    finally:
        for name in made:  # veth pairs first: a namespace is freed later, in the background
            for dev in _veths(name):
                ip("-n", name, "link", "del", dev, check=False)
            ip("netns", "del", name, check=False)


def _veths(ns: str) -> list[str]:
    """The veth devices in ``ns`` (``ip -o link`` lines read "7: va@if6: <UP,...> ...")."""
    out = ip("-n", ns, "-o", "link", "show", "type", "veth", check=False)
    return [line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line]


@dataclass(frozen=True)
class End:
    """One end of a veth pair: its namespace (None: the caller's), device name, addresses
    (``"10.0.0.1/24"``, ``"fd00::1/64"``) and, for static neighbours, its MAC address."""

    ns: str | None
    dev: str
    addresses: tuple[str, ...] = ()
    mac: str | None = None

    def ip(self, *args: str) -> str:
        return ip(*args) if self.ns is None else ip("-n", self.ns, *args)


def veth(a: End, b: End) -> None:
    """Join ``a`` and ``b`` with a veth pair, addressed and up. When both ends have a MAC,
    each gets permanent neighbour entries for the other's addresses: no ARP or neighbour
    discovery, so nothing is queued or dropped before the first packet arrives."""
    mac_a = ("address", a.mac) if a.mac else ()
    mac_b = ("address", b.mac) if b.mac else ()
    where_b = ("netns", b.ns) if b.ns else ()
    a.ip("link", "add", a.dev, *mac_a, "type", "veth", "peer", "name", b.dev, *mac_b, *where_b)
    for me, peer in ((a, b), (b, a)):
        for address in me.addresses:
            nodad = ("nodad",) if ":" in address else ()  # IPv6 usable at once
            me.ip("addr", "add", address, "dev", me.dev, *nodad)
        me.ip("link", "set", me.dev, "up")
        if me.mac and peer.mac:
            for address in peer.addresses:
                host = address.split("/")[0]
                me.ip(
                    "neigh", "replace", host, "lladdr", peer.mac, "dev", me.dev, "nud", "permanent"
                )
