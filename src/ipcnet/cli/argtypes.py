"""argparse types for the numbers the subcommands take: counts, sizes and seconds.

Role: one place that turns an option's text into a number, or says why not through
argparse (which names the option and exits 2). Rules: ASCII decimal only (``int`` and
``float`` would also take '٣' and '²'); counts are whole numbers of at least ``least``;
seconds are finite (no nan, no inf); ``seconds`` may be 0 ("at once", "never wait"),
``timeout`` may not (a socket timeout of 0 means non-blocking, not "give up at once").
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def whole(least: int) -> Callable[[str], int]:
    """A count or size: a whole number of ``least`` or more."""

    def parse(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or int(text) < least:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of {least} or more")
        return int(text)

    return parse


def seconds(text: str) -> float:
    """Seconds, 0 or more."""
    value = _finite(text)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def timeout(text: str) -> float:
    """Seconds to wait, more than 0."""
    value = _finite(text)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (more than 0)")
    return value


def _finite(text: str) -> float | None:
    if not text.isascii():
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
