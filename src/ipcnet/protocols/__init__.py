"""Protocols: sans-IO services (bytes in, actions out) that every driver can run.

``SERVICES`` is the one table of the services ``ipcnet serve`` offers: name -> how to
construct it, one line of help, and its options (the CLI builds its arguments from them).
A new service is one module here and one row in that table; a service with many options
of its own names a CLI module (``cli``) that adds them and builds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ipcnet.protocols.base import Service
from ipcnet.protocols.simple import Daytime, Discard, Echo, Increment


@dataclass(frozen=True)
class Option:
    """One constructor argument of a service, as a command-line option."""

    flag: str  # "--once": the keyword argument is the flag's name ("once")
    help: str
    kind: type = bool  # bool: a flag that is off unless given
    default: Any = False

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class ServiceInfo:
    """One service: constructor (or the CLI module that builds it), help, options."""

    name: str
    help: str
    make: Callable[..., Service] | None = None  # called with the options as keywords
    options: tuple[Option, ...] = ()
    cli: str = ""  # else: a module with add_arguments(parser) and make_service(args)


_ROWS = (
    ServiceInfo("echo", "RFC 862: send back every byte (stream and datagram)", Echo),
    ServiceInfo(
        "increment",
        "seed 002: answer each byte with byte+1; --once answers one and closes",
        Increment,
        (Option("--once", "answer one byte, then close (as the seed does)"),),
    ),
    ServiceInfo("discard", "RFC 863: read and drop everything", Discard),
    ServiceInfo(
        "daytime", "RFC 867: send the date and time, then close (stream and datagram)", Daytime
    ),
    ServiceInfo("http", "HTTP/1.1 static files from ROOT", cli="ipcnet.cli.serve_http"),
)
SERVICES: dict[str, ServiceInfo] = {row.name: row for row in _ROWS}

__all__ = ["SERVICES", "Option", "Service", "ServiceInfo"]
