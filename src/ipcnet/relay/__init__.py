"""Relays: bytes from one address to another, both ways, exactly.

Role: ``relay(listen, targets, ...)`` (also ``ipcnet.relay(...)``) starts a relay server
and returns it running (``server.Relay``: counters in ``.stats``, ``.status()``, ``.stop()``);
``relay_streams``/``relay_datagrams`` join two channels already open (``ipcnet connect``).
Modules, one concern each:
- ``pump``: one connection's two directions, non-blocking, splice(2) or a reused buffer;
- ``targets``: which target a client goes to (first, roundrobin), connect timeouts;
- ``proxyio``: the PROXY protocol at the relay's edges (parser in ``protocols.proxy``);
- ``sessions`` (sans-IO) and ``udp``: the datagram relay's per-client mappings;
- ``stats``: counters and the one log line per connection;
- ``service``: the relay as a service of the driver engine (``ipcnet relay --model M``):
  the PROXY header phase, then a ``protocols.handover.Handover`` to the pump;
- ``server``: the library's running relay (the same sessions, a thread per connection;
  datagram relays and ``--once`` too); ``streams``: the two-channel relay of
  ``ipcnet connect``.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from typing import Any

from ipcnet.addresses import Address
from ipcnet.relay.server import Relay, RelayConfig
from ipcnet.relay.streams import RelayResult, relay_datagrams, relay_streams


def relay(
    listen: str | Address, targets: str | Address | Sequence[str | Address], **options: Any
) -> Relay:
    """Listen on ``listen`` and relay every client to one of ``targets``; returns it running.

    ``options`` are the fields of ``RelayConfig`` (balance, connect_timeout, linger,
    idle_timeout, max_conns, grace, splice, send_proxy, accept_proxy, udp_idle, ...).
    """
    if isinstance(targets, (str, Address)):
        targets = [targets]
    return Relay(listen, list(targets), RelayConfig(**options)).start()


class _CallableModule(types.ModuleType):
    """``import ipcnet.relay`` makes ``ipcnet.relay`` this module: calling it starts a relay."""

    def __call__(self, *args: Any, **kwargs: Any) -> Relay:
        return relay(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["Relay", "RelayConfig", "RelayResult", "relay", "relay_datagrams", "relay_streams"]
