"""Drivers: the concurrency models, the only code that schedules.

``MODELS`` maps each model's CLI name to its class and one line of help; ``serve`` runs a
service on addresses under a model until SIGTERM/SIGINT (or ``core.request_stop()``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ipcnet.addresses import Address
from ipcnet.drivers.core import Model, ServeConfig, ServerCore
from ipcnet.protocols.base import Service


def _models() -> dict[str, tuple[type[Model], str]]:
    from ipcnet.drivers.aio import AsyncioModel
    from ipcnet.drivers.blocking import Fork, ForkConcurrent, Iterative, Pool, ThreadPerConnection
    from ipcnet.drivers.prefork import Prefork
    from ipcnet.drivers.selector import Epoll, Poll, Select

    return {
        "iterative": (Iterative, "server v1 (seed 000 §6.6): one connection at a time"),
        "fork": (Fork, "a child process per connection, parent waits (§6.7 'with protection')"),
        "forkconc": (ForkConcurrent, "a child per connection, parent does not wait (§6.8)"),
        "thread": (ThreadPerConnection, "a thread per connection, at most --max-conns (§7.3)"),
        "pool": (Pool, "--workers threads and a bounded queue (§7.4)"),
        "select": (Select, "one thread, select(2) readiness loop (seed 002 §7.4)"),
        "poll": (Poll, "one thread, poll(2) readiness loop"),
        "epoll": (Epoll, "one thread, epoll(7) readiness loop"),
        "asyncio": (AsyncioModel, "asyncio Protocols, on uvloop when installed"),
        "prefork": (Prefork, "--workers processes, each running the --inner model"),
    }


MODEL_NAMES = (
    "iterative",
    "fork",
    "forkconc",
    "thread",
    "pool",
    "select",
    "poll",
    "epoll",
    "asyncio",
    "prefork",
)


class _Models(dict[str, tuple[type[Model], str]]):
    """Loaded on first use so that importing ipcnet.drivers stays cheap."""

    def __missing__(self, key: str) -> tuple[type[Model], str]:
        if not super().__len__():
            self.update(_models())
            if key in self:
                return self[key]
        raise KeyError(key)


MODELS = _Models()


def serve(
    service: Service,
    addresses: Sequence[str | Address],
    config: ServeConfig | None = None,
    ready: Callable[[ServerCore], None] | None = None,
) -> ServerCore:
    """Bind, call ``ready(core)``, serve until stopped; returns the core (for its counters)."""
    config = config or ServeConfig()
    model_class = MODELS[config.model][0]
    core = ServerCore(service, list(addresses), config)
    try:
        core.bind()
        core.install_signals()
        if ready is not None:
            ready(core)
        model_class(core).serve()
    finally:
        core.close()
    return core


__all__ = ["MODELS", "MODEL_NAMES", "ServeConfig", "ServerCore", "serve"]
