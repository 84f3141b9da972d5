"""Names for numbers: /etc/services port names and /etc/passwd user names.

Role: the only lookups the inspector does for display. Rules: each source is read once per
process and cached (``getservbyport`` re-reads /etc/services on every call); a number
without a name gives ``None``, never an exception.
"""

from __future__ import annotations

import functools


@functools.cache
def _services() -> dict[tuple[int, str], str]:
    table: dict[tuple[int, str], str] = {}
    try:
        with open("/etc/services", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return table
    for line in text.splitlines():
        line = line.partition("#")[0]
        parts = line.split()
        if len(parts) < 2:
            continue
        port, _, proto = parts[1].partition("/")
        if port.isdigit():
            table.setdefault((int(port), proto), parts[0])
    return table


def service_name(port: int | None, proto: str) -> str | None:
    """The /etc/services name of ``port`` for ``proto`` ("tcp" or "udp"), or None."""
    if port is None:
        return None
    return _services().get((port, proto))


@functools.cache
def user_name(uid: int) -> str | None:
    """The user name of ``uid``, or None when the passwd database has none."""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


__all__ = ["service_name", "user_name"]
