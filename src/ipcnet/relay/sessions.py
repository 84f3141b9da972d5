"""The session table of a datagram relay (udp, unixgram), sans-IO.

Role: remember, for each client address, the upstream socket its datagrams go out on, so
that replies find their way back to the right client. Rules (what nmap #1223, haproxy #62
and ingress-nginx #1731 got wrong):
- one mapping per client address, each with its own upstream socket, so replies to
  interleaved clients never mix;
- a mapping expires ``idle`` seconds after its last datagram either way;
- ``replies``: a mapping ends after that many replies (DNS-style: one question, one answer);
- the table is bounded: a new client over ``limit`` is refused (the caller counts it) and
  the mappings already there are kept;
- no I/O and no clock of its own: every call takes ``now``; the upstream is opaque.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

U = TypeVar("U")


@dataclass(eq=False)
class Mapping(Generic[U]):
    """One client and its upstream socket."""

    client: Hashable
    upstream: U
    last: float
    replies: int = 0
    created: float = field(default=0.0)


class SessionTable(Generic[U]):
    """client -> Mapping, oldest activity first (see the module's rules)."""

    def __init__(self, limit: int, idle: float, replies: int | None = None) -> None:
        if limit < 1:
            raise ValueError(f"a session table needs a limit of at least 1, not {limit}")
        self.limit = limit
        self.idle = idle
        self.replies = replies
        self._map: dict[Hashable, Mapping[U]] = {}  # insertion order = activity order

    def __len__(self) -> int:
        return len(self._map)

    def __iter__(self) -> Iterator[Mapping[U]]:
        return iter(list(self._map.values()))

    def get(self, client: Hashable, now: float) -> Mapping[U] | None:
        """The client's mapping (its activity renewed), or None."""
        found = self._map.pop(client, None)
        if found is not None:
            found.last = now
            self._map[client] = found
        return found

    @property
    def full(self) -> bool:
        return len(self._map) >= self.limit

    def add(self, client: Hashable, upstream: U, now: float) -> Mapping[U]:
        """A new mapping; the caller checks ``full`` first (ValueError if it did not)."""
        if client in self._map:
            raise ValueError(f"{client} already has a mapping")
        if self.full:
            raise ValueError(f"session table full ({self.limit} mappings)")
        mapping = Mapping(client, upstream, now, created=now)
        self._map[client] = mapping
        return mapping

    def replied(self, mapping: Mapping[U], now: float) -> bool:
        """A reply went back to the client; True when that ended the mapping (removed)."""
        mapping.replies += 1
        if self.replies is not None and mapping.replies >= self.replies:
            self.remove(mapping)
            return True
        self.get(mapping.client, now)
        return False

    def remove(self, mapping: Mapping[U]) -> None:
        if self._map.get(mapping.client) is mapping:
            del self._map[mapping.client]

    def expired(self, now: float) -> list[Mapping[U]]:
        """Remove and return the mappings idle for ``idle`` seconds or more."""
        gone = []
        for mapping in list(self._map.values()):
            if now - mapping.last < self.idle:
                break  # the rest are younger
            gone.append(mapping)
            del self._map[mapping.client]
        return gone

    def deadline(self) -> float | None:
        """When the oldest mapping expires (None: the table is empty)."""
        for mapping in self._map.values():
            return mapping.last + self.idle
        return None
