"""The models, as one table: name -> where its class is, one line of help, its traits.

Role: the only place that knows the models by name. The CLI builds --model/--inner from
``MODELS``; code outside drivers/ asks a model's traits (``info(name).forks`` ...), never
its name. A new model is one adapter module in drivers/ and one row here.
Rules: classes load on first use (``model_class``), so ``ipcnet --help`` imports no
asyncio; the order is the order of the seeds.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ipcnet.drivers.core import Model


@dataclass(frozen=True)
class ModelInfo:
    """One model: its class (module, name), its help line and its traits."""

    name: str
    module: str
    cls: str
    help: str
    serial: bool = False  # serves one connection at a time
    threaded: bool = False  # connections run on threads of one process
    forks: bool = False  # connections run in forked processes
    awaits: bool = False  # runs an asyncio loop: coroutine jobs are awaited on it
    sized: bool = False  # --workers is its own size (threads or processes that serve)
    nests: bool = False  # each worker runs the --inner model (so it cannot be inner)

    @property
    def worker_rows(self) -> bool:
        """Its workers are processes with a counters row each."""
        return self.forks and self.sized


_ROWS = (
    ModelInfo(
        "iterative",
        "blocking",
        "Iterative",
        "server v1 (seed 000 §6.6): one connection at a time",
        serial=True,
    ),
    ModelInfo(
        "fork",
        "blocking",
        "Fork",
        "a child process per connection, parent waits (§6.7 'with protection')",
        serial=True,
        forks=True,
    ),
    ModelInfo(
        "forkconc",
        "blocking",
        "ForkConcurrent",
        "a child per connection, parent does not wait, SIGCHLD reaps (§6.8)",
        forks=True,
    ),
    ModelInfo(
        "thread",
        "blocking",
        "ThreadPerConnection",
        "a thread per connection, at most --max-conns (§7.3)",
        threaded=True,
    ),
    ModelInfo(
        "pool",
        "blocking",
        "Pool",
        "--workers threads and a bounded queue; full = refused (§7.4)",
        threaded=True,
        sized=True,
    ),
    ModelInfo(
        "select", "selector", "Select", "one thread, select(2) readiness loop (seed 002 §7.4)"
    ),
    ModelInfo("poll", "selector", "Poll", "one thread, poll(2) readiness loop"),
    ModelInfo("epoll", "selector", "Epoll", "one thread, epoll(7) readiness loop (default)"),
    ModelInfo(
        "asyncio", "aio", "AsyncioModel", "asyncio Protocols, on uvloop when installed", awaits=True
    ),
    ModelInfo(
        "prefork",
        "prefork",
        "Prefork",
        "--workers processes, each running the --inner model",
        forks=True,
        sized=True,
        nests=True,
    ),
)
MODELS: dict[str, ModelInfo] = {row.name: row for row in _ROWS}
DEFAULT_MODEL = "epoll"
# --- the default per use (issue 17) ---------------------------------------------------
#: the model a use gets unless told otherwise. "rpc": JSON-RPC handlers are blocking calls
#: (Run jobs); a thread per connection runs each inline (one read, one write a call), where
#: an event loop hands it to a worker thread and back (strace: a second wake-up, a waker
#: write and read, two epoll_ctl and ~6 futex calls more a call), so it is the fastest
#: measured for RPC. "serve" stays epoll (issue 17, web lines, measured interleaved): server
#: CPU per request epoll / asyncio on uvloop / plain asyncio, 1 KiB keep-alive 24.6 / 21.8 /
#: 31.1 us, 1 KiB close 84 / 115 / 162 us, 100 KiB close 153 / 148 / 275 us: uvloop ties
#: epoll on kept-alive connections and costs more per new one (its transport: four more
#: system calls, a task, a future), and without the optional 'fast' extra asyncio is the
#: slowest; epoll needs no extra
DEFAULT_FOR: dict[str, str] = {"serve": DEFAULT_MODEL, "rpc": "thread"}


def default_for(use: str) -> str:
    """The default model for a use (``"serve"``, ``"rpc"``); DEFAULT_MODEL for any other."""
    return DEFAULT_FOR.get(use, DEFAULT_MODEL)


# --- end of the default per use -----------------------------------------------------
MODEL_HELP = {name: row.help for name, row in MODELS.items()}
#: the models a nesting model (prefork) may run in each worker
INNER_MODELS = [name for name, row in MODELS.items() if not row.nests]


def first(**traits: bool) -> str:
    """The first model (in the table's order) with these traits, e.g. ``first(awaits=True)``."""
    for name, row in MODELS.items():
        if all(getattr(row, trait) == value for trait, value in traits.items()):
            return name
    raise KeyError(f"no model has {traits}")


def info(name: str) -> ModelInfo:
    """A model's row (KeyError for an unknown name)."""
    return MODELS[name]


def serving(model: str, inner: str) -> ModelInfo:
    """The model that runs the connections: ``inner`` under a nesting model (whose workers
    fail to start, and say so, if ``inner`` is not a model)."""
    row = MODELS[model]
    return MODELS.get(inner, row) if row.nests else row


def model_class(name: str) -> type[Model]:
    """The class of a model, imported on first use (KeyError for an unknown name)."""
    row = MODELS[name]
    found: type[Model] = getattr(importlib.import_module(f"ipcnet.drivers.{row.module}"), row.cls)
    return found
