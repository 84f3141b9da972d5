"""argparse types for the values the subcommands take: counts, sizes, seconds, names.

Role: one place that turns an option's text into a value, or says why not through
argparse (which names the option and exits 2). Rules: ASCII decimal only (``int`` and
``float`` would also take '٣' and '²'); counts are whole numbers of at least ``least``,
and a size that is allocated (``most``) has a ceiling too; seconds are finite (no nan, no
inf) and at most ``MAX_SECONDS``, the longest wait poll(2) and epoll_wait(2) take (an int
of milliseconds: OpenBSD nc -w refuses more the same way), beyond which a wait deep in a
model raised OverflowError and dropped the connection; ``seconds`` may be 0 ("at once",
"never wait"), ``timeout`` may not (a socket timeout of 0 means non-blocking, not "give up
at once"); a text value given explicitly is not empty (``--ca ''`` was taken for "no
--ca" and trusted the system's store instead).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

MAX_SECONDS = 2**31 // 1000  # 2147483 s, about 24 days: INT_MAX milliseconds
MAX_BUFFER = 1 << 30  # a buffer allocated per connection or datagram: 1 GiB (1e11 was a
# MemoryError per relayed connection, 1e23 an OverflowError)
MAX_WORKERS = 4096  # pool threads, prefork processes (1e11 was a traceback: the shared
# counters' mapping, two rows a prefork worker, could not be allocated)


def whole(least: int, most: int | None = None) -> Callable[[str], int]:
    """A count or size: a whole number of ``least`` or more (and ``most`` at most)."""

    def parse(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or int(text) < least:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of {least} or more")
        if most is not None and int(text) > most:
            raise argparse.ArgumentTypeError(f"{text!r} is too large (at most {most})")
        return int(text)

    return parse


def seconds(text: str) -> float:
    """Seconds, 0 or more."""
    value = _finite(text)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return _at_most(text, value)


def timeout(text: str) -> float:
    """Seconds to wait, more than 0."""
    value = _finite(text)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (more than 0)")
    return _at_most(text, value)


def nonempty(what: str) -> Callable[[str], str]:
    """A value that must not be empty: a file name, a host name, a URL (``what``)."""

    def parse(value: str) -> str:
        if not value:
            raise argparse.ArgumentTypeError(f"'' is not {what}")
        return value

    return parse


def address(text: str) -> str:
    """An address URL that parses (``--stats``, ``--metrics``): a bad one, or an empty one
    (taken for "no --stats"), is refused before anything is bound."""
    from ipcnet.addresses import parse
    from ipcnet.errors import InvalidAddress

    try:
        parse(text)
    except InvalidAddress as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _at_most(text: str, value: float) -> float:
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is too many seconds (at most {MAX_SECONDS}, about 24 days)"
        )
    return value


def _finite(text: str) -> float | None:
    if not text.isascii():
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
