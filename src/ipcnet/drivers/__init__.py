"""Drivers: the engine that interprets the service contract, and the concurrency models.

Where things go:
- a new **action** of the contract: its row and its step in ``engine.py`` (the one
  interpreter; tested without sockets in tests/test_engine.py), then the step in each
  model's ``perform`` (blocking.py, selector.py, aio.py) and in ``rpc.server.serve_channel``;
- a new **model**: one adapter module here whose class performs the engine's steps its own
  way, accepts through ``admission.Gate`` and stops through ``admission.drain_step``,
  plus one row (help line and traits) in ``registry.MODELS``; nothing outside drivers/
  names a model, it asks ``registry.info(name)`` for traits;
- ``core.py`` binds, handles signals and the lifecycle; ``observe.py`` traces and serves
  the counters (``counters.py``); ``datagrams.py`` answers datagrams; ``jobs.py`` is the
  event loops' worker pool for Run jobs; children are signalled and reaped
  through ``transports.process``.

``serve`` runs a service on addresses under a model until SIGTERM/SIGINT (or
``core.request_stop()``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ipcnet.addresses import Address
from ipcnet.drivers.core import Model, ServeConfig, ServerCore
from ipcnet.drivers.registry import (
    DEFAULT_MODEL,
    INNER_MODELS,
    MODEL_HELP,
    MODELS,
    ModelInfo,
    default_for,
    first,
    info,
    model_class,
    serving,
)
from ipcnet.protocols.base import Service


def serve(
    service: Service,
    addresses: Sequence[str | Address],
    config: ServeConfig | None = None,
    ready: Callable[[ServerCore], None] | None = None,
) -> ServerCore:
    """Bind, call ``ready(core)``, serve until stopped; returns the core (for its counters)."""
    from ipcnet.drivers import upgrade

    config = config or ServeConfig()
    cls = model_class(config.model)
    core = ServerCore(service, list(addresses), config)
    try:
        core.bind()
        cls.check(core)
        core.install_signals()
        if ready is not None:
            ready(core)
        upgrade.ready(core)  # sd_notify READY=1 (scale, issue 14)
        cls(core).serve()
    finally:
        upgrade.settle(core)  # a SIGUSR2 under way: its new master may not outlive us
        core.close()
    return core


__all__ = [
    "DEFAULT_MODEL",
    "INNER_MODELS",
    "MODELS",
    "MODEL_HELP",
    "Model",
    "ModelInfo",
    "ServeConfig",
    "ServerCore",
    "default_for",
    "first",
    "info",
    "model_class",
    "serve",
    "serving",
]
