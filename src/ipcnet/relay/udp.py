"""The datagram relay: one listening udp/unixgram socket, one upstream socket per client.

Role: the I/O around ``sessions.SessionTable``, in one thread waiting in poll(2). Rules:
- each datagram is relayed whole, as one datagram, boundaries kept;
- a datagram larger than ``max_size`` is never cut: it is dropped, counted (``oversize``)
  and logged, in either direction;
- a new client over the table's limit is refused (dropped and counted), the others served;
- a unixgram client without a name cannot be answered: its datagrams are refused;
- the target is the first in balance order when the mapping is made (udp has no refusal to
  fall back on at connect time; an ICMP refusal later is counted as a connect failure).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ipcnet.addresses import Address
from ipcnet.errors import Busy, IPCError, LimitExceeded, Refused
from ipcnet.relay.sessions import Mapping, SessionTable
from ipcnet.relay.stats import RelayStats
from ipcnet.relay.targets import Targets
from ipcnet.transports import DatagramEndpoint, open_datagram
from ipcnet.transports.splice import READ, Poller

log = logging.getLogger("ipcnet.relay")
BATCH = 64  # datagrams taken from one socket per wake-up


class DatagramRelay:
    def __init__(
        self,
        listener: DatagramEndpoint,
        targets: Targets,
        stats: RelayStats,
        *,
        limit: int,
        idle: float,
        replies: int | None,
        max_size: int,
        waker: int,
        stopping: Callable[[], bool],
    ) -> None:
        self.listener = listener
        self.targets = targets
        self.stats = stats
        self.table: SessionTable[tuple[DatagramEndpoint, Address]] = SessionTable(
            limit, idle, replies
        )
        self.max_size = max_size
        self.waker = waker
        self.stopping = stopping
        self._by_fd: dict[int, Mapping[tuple[DatagramEndpoint, Address]]] = {}
        self._unnamed_logged = False
        listener.timeout = 0.0

    def run(self) -> None:
        poller = Poller()
        try:
            while not self.stopping():
                wanted = {self.listener.fileno(): READ, self.waker: READ}
                wanted.update(dict.fromkeys(self._by_fd, READ))
                poller.set(wanted)
                deadline = self.table.deadline()
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                for fd, _ in poller.wait(timeout):
                    if fd == self.listener.fileno():
                        self._from_clients()
                    elif fd in self._by_fd:
                        self._from_upstream(self._by_fd[fd])
                for mapping in self.table.expired(time.monotonic()):
                    self._end(mapping, "idle")
        finally:
            for mapping in list(self.table):
                self.table.remove(mapping)
                self._end(mapping, "stopped")

    def _from_clients(self) -> None:
        for _ in range(BATCH):
            try:
                data, client = self.listener.recv()
            except Busy:
                return
            except LimitExceeded as exc:
                self.stats.add("oversize")
                log.warning("%s", exc)
                continue
            except IPCError as exc:
                log.debug("receive on %s: %s", self.listener.where, exc)
                return
            if client is None:
                self.stats.add("refused")
                if not self._unnamed_logged:
                    log.warning(
                        "a client of %s has no address to answer to (bind it to a name); "
                        "its datagrams are refused",
                        self.listener.where,
                    )
                    self._unnamed_logged = True
                continue
            now = time.monotonic()
            mapping = self.table.get(client, now)
            if mapping is None:
                mapping = self._open(client, now)
                if mapping is None:
                    continue
            upstream, target = mapping.upstream
            try:
                upstream.send(data)
            except LimitExceeded as exc:
                self.stats.add("oversize")
                log.warning("%s from %s: %s", target, client, exc)
                continue
            except IPCError as exc:
                self._failed(mapping, exc)
                continue
            self.stats.add("datagrams_up")
            self.stats.add("bytes_up", len(data))

    def _open(
        self, client: Address, now: float
    ) -> Mapping[tuple[DatagramEndpoint, Address]] | None:
        if self.table.full:
            self.stats.add("refused")
            log.info("%s: refused, %d sessions already (--max-conns)", client, self.table.limit)
            return None
        target = self.targets.order()[0]
        try:
            upstream = open_datagram(target, max_size=self.max_size)
        except IPCError as exc:
            self.stats.connect_failed(str(target))
            log.info("%s -> %s: %s", client, target, exc)
            return None
        upstream.timeout = 0.0
        mapping = self.table.add(client, (upstream, target), now)
        self._by_fd[upstream.fileno()] = mapping
        self.stats.add("udp_sessions")
        self.stats.add("udp_total")
        return mapping

    def _from_upstream(self, mapping: Mapping[tuple[DatagramEndpoint, Address]]) -> None:
        upstream, target = mapping.upstream
        for _ in range(BATCH):
            try:
                data, _ = upstream.recv()
            except Busy:
                return
            except LimitExceeded as exc:
                self.stats.add("oversize")
                log.warning("%s", exc)
                continue
            except IPCError as exc:
                self._failed(mapping, exc)
                return
            try:
                self.listener.send(data, to=mapping.client)  # type: ignore[arg-type]
            except LimitExceeded as exc:
                self.stats.add("oversize")
                log.warning("%s -> %s: %s", target, mapping.client, exc)
                continue
            except IPCError as exc:
                log.info("%s: reply lost: %s", mapping.client, exc)
                continue
            self.stats.add("datagrams_down")
            self.stats.add("bytes_down", len(data))
            if self.table.replied(mapping, time.monotonic()):
                self._end(mapping, "replies")
                return

    def _failed(self, mapping: Mapping[tuple[DatagramEndpoint, Address]], exc: IPCError) -> None:
        target = mapping.upstream[1]
        if isinstance(exc, Refused):
            self.stats.connect_failed(str(target))
        log.info("%s -> %s: %s", mapping.client, target, exc)

    def _end(self, mapping: Mapping[tuple[DatagramEndpoint, Address]], why: str) -> None:
        upstream, target = mapping.upstream
        self._by_fd.pop(upstream.fileno(), None)
        upstream.close()
        self.stats.add("udp_sessions", -1)
        log.info(
            "%s -> %s: datagram session ended (%s) after %.3f s, %d replies",
            mapping.client,
            target,
            why,
            time.monotonic() - mapping.created,
            mapping.replies,
        )


def start_thread(relay: DatagramRelay) -> threading.Thread:
    thread = threading.Thread(target=relay.run, name="ipcnet-relay-udp", daemon=True)
    thread.start()
    return thread
