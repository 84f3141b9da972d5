"""Protocols: sans-IO services (bytes in, actions out) that every driver can run.

``SERVICES`` maps the CLI name of each service to its class and one line of help.
"""

from __future__ import annotations

from ipcnet.protocols.base import Service
from ipcnet.protocols.simple import Daytime, Discard, Echo, Increment

SERVICES: dict[str, tuple[type[Service], str]] = {
    "echo": (Echo, "RFC 862: send back every byte (stream and datagram)"),
    "increment": (
        Increment,
        "seed 002: answer each byte with byte+1; --once answers one and closes",
    ),
    "discard": (Discard, "RFC 863: read and drop everything"),
    "daytime": (Daytime, "RFC 867: send the date and time, then close (stream and datagram)"),
}

__all__ = ["SERVICES", "Service"]
