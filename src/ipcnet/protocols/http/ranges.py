"""The Range header (RFC 9110 §14): byte ranges of one representation.

Role: turn ``Range: bytes=...`` into a list of (first, last) inclusive byte positions for
a representation of ``size`` bytes. Rules:
- a header we cannot use (other unit, bad syntax, first > last, too many ranges) is
  ignored: the client gets the whole file with 200, as RFC 9110 allows and nginx does;
  so is one for an empty file with a suffix-range ``-N`` (N > 0): satisfiable by §14.1.2,
  yet no Content-Range can name zero bytes, so the answer is the (empty) whole, not 416;
- positions of any number of digits are read (a last-pos past the end means "to the end",
  RFC 9110 §14.1.1); ranges past the end are dropped; if none is left the answer is 416;
- overlapping or adjacent ranges are merged (no amplification by repeated ranges); the
  parts keep the order the client asked for them in, a merged one at the place of its
  first member (RFC 9110 §14.6).
"""

from __future__ import annotations

import re

_SPEC = re.compile(rb"^(\d*)-(\d*)$")

IGNORE = None  # parse_range's answer for "serve the whole file"
BEYOND = 10**18  # stands for every position of more digits: past the end of any file


def _position(digits: bytes) -> int:
    """A byte position or length; any size is valid (§14.1.1), huge ones are all BEYOND
    (int() of thousands of digits would be slow, and Python refuses it)."""
    digits = digits.lstrip(b"0")
    return int(digits or b"0") if len(digits) <= 18 else BEYOND


def parse_range(value: bytes, size: int, max_ranges: int) -> list[tuple[int, int]] | None:
    """Satisfiable ranges (maybe []: 416), or None to ignore the header."""
    unit, eq, specs = value.partition(b"=")
    if not eq or unit.lower() != b"bytes":  # §14.1: no whitespace around the "="
        return IGNORE
    parts = [p.strip() for p in specs.split(b",")]
    parts = [p for p in parts if p]
    if not parts or len(parts) > max_ranges:
        return IGNORE
    ranges: list[tuple[int, int]] = []
    for part in parts:
        m = _SPEC.match(part)
        if m is None or (not m.group(1) and not m.group(2)):
            return IGNORE
        if m.group(1):
            first = _position(m.group(1))
            last = _position(m.group(2)) if m.group(2) else size - 1
            if m.group(2) and last < first:
                return IGNORE
            if first >= size:
                continue
            ranges.append((first, min(last, size - 1)))
        else:
            suffix = _position(m.group(2))
            if suffix == 0:
                continue
            if size == 0:
                return IGNORE
            ranges.append((max(0, size - suffix), size - 1))
    merged: list[list[int]] = []  # [first, last, where the client asked for it first]
    for first, last, at in sorted((first, last, at) for at, (first, last) in enumerate(ranges)):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
            merged[-1][2] = min(merged[-1][2], at)
        else:
            merged.append([first, last, at])
    merged.sort(key=lambda r: r[2])
    return [(first, last) for first, last, _ in merged]
