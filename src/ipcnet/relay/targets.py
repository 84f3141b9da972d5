"""Where a relayed connection goes: a list of targets and the rule that picks one.

Role: turn each client into an open upstream stream. Rules (HAProxy's and nginx's):
- ``first`` (the default) tries the targets in order and takes the first that accepts, so
  the next one stands in when one refuses or does not answer within ``connect_timeout``;
- ``roundrobin`` starts each connection at the next target in turn, then goes on in order
  past the ones that fail; the turn is kept in memory shared across fork, so the children
  of the fork models (which choose the target of their one connection) and prefork's
  workers take it for all (two taking it at once may both get one turn: harmless);
- a target is any stream address ipcnet connects to; ``exec:cmd`` starts a child per
  connection on its stdin/stdout, as inetd does;
- a tls:// or tls+unix:// target is connected with ``tls`` (TLSOptions keywords: --ca,
  --sni, --insecure, a client certificate ...), handshake and verification included, so
  an untrusted certificate is a failure to connect like a refusal; the next connection to
  it resumes the last session (``ClientSessions``), as stunnel's client mode does; its
  files (--ca, a client certificate and key) are loaded once up front, so a relay that
  could connect no client does not start (as stunnel, and as its own listen side);
- a PROXY protocol header goes first on the upstream connection, in the clear even to a
  tls:// target (HAProxy's ``server ... ssl send-proxy``);
- every failure is counted per target; when all fail the last error is raised.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Sequence

from ipcnet.addresses import Address, parse
from ipcnet.errors import InvalidAddress, IPCError, Unsupported
from ipcnet.relay.stats import RelayStats
from ipcnet.transports import StreamTransport, open_stream

BALANCES = ("first", "roundrobin")


class Targets:
    """The targets of a relay and the balance rule over them."""

    def __init__(
        self,
        targets: Sequence[str | Address],
        balance: str = "first",
        connect_timeout: float | None = 5.0,
        stats: RelayStats | None = None,
        tls: dict[str, object] | None = None,
    ) -> None:
        if not targets:
            raise InvalidAddress("a relay needs at least one target address")
        if balance not in BALANCES:
            raise InvalidAddress(f"unknown balance {balance!r} (known: {', '.join(BALANCES)})")
        self.addresses = [parse(t) for t in targets]
        for address in self.addresses:
            if address.kind == "datagram":
                continue  # a datagram relay's targets; checked by the caller
            if address.scheme in ("pipe", "socketpair", "stdio"):
                why = "it is this process's own" if address.scheme == "stdio" else "it has no name"
                raise Unsupported(f"{address} cannot be a relay target: {why}")
        self.balance = balance
        self.tls = dict(tls or {})  # TLSOptions keywords for the tls:// targets
        if any(a.spec.transport == "tls" for a in self.addresses):
            from ipcnet.transports.tls.context import ClientSessions, TLSOptions, client_context

            self.tls.setdefault("sessions", ClientSessions())  # shared by every connection
            # a file that cannot load: no start (--insecure warns at each connection)
            client_context(TLSOptions.of(None, **{**self.tls, "insecure": False}))
        self.connect_timeout = connect_timeout
        self.stats = stats or RelayStats([str(a) for a in self.addresses])
        self._turn = memoryview(mmap.mmap(-1, 8, mmap.MAP_SHARED)).cast("Q")
        self._lock = threading.Lock()

    def order(self) -> list[Address]:
        """The targets to try for the next connection, in order."""
        if self.balance == "first" or len(self.addresses) == 1:
            return self.addresses
        with self._lock:
            turn = self._turn[0]
            self._turn[0] = turn + 1
        start = turn % len(self.addresses)
        return self.addresses[start:] + self.addresses[:start]

    def connect(self, preface: bytes = b"") -> tuple[StreamTransport, Address]:
        """An open stream to the first target (in balance order) that accepts, ``preface``
        (a PROXY protocol header) written on it first: before the TLS handshake of a
        tls:// target, as HAProxy sends it and as a server's ``accept-proxy`` reads it."""
        error: IPCError | None = None
        for address in self.order():
            try:
                if address.spec.transport == "tls":
                    tls = {**self.tls, "preface": preface}
                    return open_stream(address, self.connect_timeout, **tls), address
                upstream = open_stream(address, self.connect_timeout)
                if preface:
                    try:
                        upstream.write(preface)
                    except IPCError:
                        upstream.close()
                        raise
                return upstream, address
            except IPCError as exc:
                self.stats.connect_failed(str(address))
                error = exc
        assert error is not None
        raise error
