"""The web server's bounds: every size, count and deadline a client can push against.

Role: one frozen record shared by the session and the CLI. Rules: each limit has a default
that is safe for a public static server, and crossing it gives an explicit status (414, 431,
413, 408) rather than a silent close.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    request_line: int = 8 * 1024  # longer -> 414 URI Too Long
    header_bytes: int = 16 * 1024  # the header section; longer -> 431
    header_count: int = 100  # more fields -> 431
    header_timeout: float = 10.0  # a request head must arrive within this (slowloris -> 408)
    max_body: int = 0  # a static server takes no request bodies: any body -> 413
    max_ranges: int = 16  # more ranges in one Range header -> the whole file (200)
    linger_bytes: int = 1024 * 1024  # discarded after an error before closing anyway
    linger_timeout: float = 2.0  # how long we keep reading to let the client see our answer
    pipeline: int = 100  # requests answered from one read before we stop and wait
