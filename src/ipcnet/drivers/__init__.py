"""Drivers: the concurrency models, the only code that schedules.

``MODEL_HELP`` names each model with one line of help (the CLI's list); ``model_class``
loads a model's class on first use; ``serve`` runs a service on addresses under a model
until SIGTERM/SIGINT (or ``core.request_stop()``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

from ipcnet.addresses import Address
from ipcnet.drivers.core import Model, ServeConfig, ServerCore
from ipcnet.protocols.base import Service

# name -> (module, class, one line of help); the order is the order of the seeds
_MODELS = {
    "iterative": ("blocking", "Iterative", "server v1 (seed 000 §6.6): one connection at a time"),
    "fork": (
        "blocking",
        "Fork",
        "a child process per connection, parent waits (§6.7 'with protection')",
    ),
    "forkconc": (
        "blocking",
        "ForkConcurrent",
        "a child per connection, parent does not wait, SIGCHLD reaps (§6.8)",
    ),
    "thread": (
        "blocking",
        "ThreadPerConnection",
        "a thread per connection, at most --max-conns (§7.3)",
    ),
    "pool": ("blocking", "Pool", "--workers threads and a bounded queue; full = refused (§7.4)"),
    "select": ("selector", "Select", "one thread, select(2) readiness loop (seed 002 §7.4)"),
    "poll": ("selector", "Poll", "one thread, poll(2) readiness loop"),
    "epoll": ("selector", "Epoll", "one thread, epoll(7) readiness loop (default)"),
    "asyncio": ("aio", "AsyncioModel", "asyncio Protocols, on uvloop when installed"),
    "prefork": ("prefork", "Prefork", "--workers processes, each running the --inner model"),
}
MODEL_HELP = {name: text for name, (_, _, text) in _MODELS.items()}


def model_class(name: str) -> type[Model]:
    """The class of a model, imported on first use (KeyError for an unknown name)."""
    module, cls, _ = _MODELS[name]
    found: type[Model] = getattr(importlib.import_module(f"ipcnet.drivers.{module}"), cls)
    return found


def serve(
    service: Service,
    addresses: Sequence[str | Address],
    config: ServeConfig | None = None,
    ready: Callable[[ServerCore], None] | None = None,
) -> ServerCore:
    """Bind, call ``ready(core)``, serve until stopped; returns the core (for its counters)."""
    config = config or ServeConfig()
    cls = model_class(config.model)
    core = ServerCore(service, list(addresses), config)
    try:
        core.bind()
        core.install_signals()
        if ready is not None:
            ready(core)
        cls(core).serve()
    finally:
        core.close()
    return core


__all__ = ["MODEL_HELP", "ServeConfig", "ServerCore", "model_class", "serve"]
