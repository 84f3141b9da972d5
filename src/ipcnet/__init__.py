"""ipcnet: communication between processes, near or far, that looks like file I/O.

    >>> import ipcnet
    >>> with ipcnet.connect("tcp://127.0.0.1:9734") as ch:   # doctest: +SKIP
    ...     ch.write(b"hello\\n"); ch.send_eof(); print(ch.read())

Public names are loaded on first use, so ``import ipcnet`` (and the CLI) start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Address": "ipcnet.addresses",
    "parse_address": "ipcnet.addresses",
    "Channel": "ipcnet.channel",
    "Listener": "ipcnet.channel",
    "connect": "ipcnet.channel",
    "listen": "ipcnet.channel",
    "open_datagram": "ipcnet.channel",
    "pipe": "ipcnet.channel",
    "socketpair": "ipcnet.channel",
    "spawn": "ipcnet.channel",
    "stdio": "ipcnet.channel",
    "DatagramEndpoint": "ipcnet.transports.datagram",
    "errors": "ipcnet.errors",
    "relay": "ipcnet.relay",  # the module itself: calling it starts a relay
    # --- ipc (issue 13) ---
    "shm_pair": "ipcnet.channel",
    "Semaphore": "ipcnet.transports.semaphore",
    "SharedSemaphore": "ipcnet.transports.semaphore",
    "UndoSemaphore": "ipcnet.transports.semaphore",
    "signals": "ipcnet.transports.signals",
    "send_signal": "ipcnet.transports.signals",
    # --- end ipc ---
}

__all__ = [
    "Address",
    "Channel",
    "DatagramEndpoint",
    "Listener",
    "Semaphore",
    "SharedSemaphore",
    "UndoSemaphore",
    "connect",
    "errors",
    "listen",
    "open_datagram",
    "parse_address",
    "pipe",
    "relay",
    "send_signal",
    "shm_pair",
    "signals",
    "socketpair",
    "spawn",
    "stdio",
]

if TYPE_CHECKING:
    from ipcnet import errors, relay
    from ipcnet.addresses import Address
    from ipcnet.addresses import parse as parse_address
    from ipcnet.channel import (
        Channel,
        Listener,
        connect,
        listen,
        open_datagram,
        pipe,
        shm_pair,
        socketpair,
        spawn,
        stdio,
    )
    from ipcnet.transports.datagram import DatagramEndpoint
    from ipcnet.transports.semaphore import Semaphore, SharedSemaphore, UndoSemaphore
    from ipcnet.transports.signals import send_signal, signals


def __getattr__(name: str) -> Any:
    import importlib

    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ipcnet' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = (
        module
        if name in ("errors", "relay")
        else getattr(module, "parse" if name == "parse_address" else name)
    )
    globals()[name] = value
    return value
