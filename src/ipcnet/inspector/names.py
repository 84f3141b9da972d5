"""Names for numbers: /etc/services port names and /etc/passwd user names.

Role: the only lookups the inspector does for display (and the port names its filters
take). Rules: each source is read once per process and cached (``getservbyport``
re-reads /etc/services on every call); a number without a name gives ``None``, never an
exception.
"""

from __future__ import annotations

import functools

from ipcnet.errors import IPCError
from ipcnet.transports.procfs import read_text


@functools.cache
def _services() -> tuple[dict[tuple[int, str], str], dict[tuple[str, str], int]]:
    """(port, proto) -> name, and (name or alias, proto) -> port, from /etc/services."""
    names: dict[tuple[int, str], str] = {}
    ports: dict[tuple[str, str], int] = {}
    try:
        text = read_text("/etc/services", errors="replace") or ""
    except IPCError:
        text = ""  # unreadable: no names, as if the file were empty
    for line in text.splitlines():
        parts = line.partition("#")[0].split()
        if len(parts) < 2:
            continue
        port, _, proto = parts[1].partition("/")
        if port.isdigit():
            names.setdefault((int(port), proto), parts[0])
            for name in (parts[0], *parts[2:]):
                ports.setdefault((name, proto), int(port))
    return names, ports


def service_name(port: int | None, proto: str) -> str | None:
    """The /etc/services name of ``port`` for ``proto`` ("tcp" or "udp"), or None."""
    if port is None:
        return None
    return _services()[0].get((port, proto))


def service_port(name: str, proto: str) -> int | None:
    """The port /etc/services gives ``name`` (or an alias) for ``proto``, or None."""
    return _services()[1].get((name, proto))


@functools.cache
def user_name(uid: int) -> str | None:
    """The user name of ``uid``, or None when the passwd database has none."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


__all__ = ["service_name", "service_port", "user_name"]
