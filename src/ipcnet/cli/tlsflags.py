"""The TLS flags of ``connect``, ``serve`` and ``rpc``: one definition, the TLSOptions names.

Rules: each flag is the ``TLSOptions`` field of the same name (``--tls-min`` = tls_min);
``keywords(args)`` returns only the flags given, so a plain address with no TLS flag
opens as before, and a TLS flag on a plain address is refused by the transports with a
clear message.
"""

from __future__ import annotations

import argparse
from typing import Any

from ipcnet.cli.argtypes import timeout, whole

_CLIENT_ONLY = ("insecure", "sni")
_FIELDS = ("cert", "key", "ca", "insecure", "sni", "alpn", "tls_min", "tls_max", "tls_tickets",
           "handshake_timeout")  # fmt: skip


def add_arguments(
    parser: argparse.ArgumentParser, client: bool = True, server: bool = True
) -> None:
    group = parser.add_argument_group("tls (tls:// and tls+unix:// addresses)")
    add = group.add_argument
    add(
        "--cert",
        metavar="FILE",
        default=None,
        help="certificate (PEM, chain allowed); a server needs one"
        if server
        else "client certificate (PEM), for servers that ask for one",
    )
    add("--key", metavar="FILE", default=None, help="private key of --cert (default: in --cert)")
    add(
        "--ca",
        metavar="FILE",
        default=None,
        help=(
            "client: trust servers signed by it (default: the system's store); " if client else ""
        )
        + ("server: require client certificates signed by it" if server else ""),
    )
    if client:
        add(
            "--insecure",
            action="store_true",
            default=None,
            help="client: do not check the server's certificate at all (warns)",
        )
        add(
            "--sni",
            metavar="NAME",
            default=None,
            help="client: the server name to send and check (default: the URL's host)",
        )
    add(
        "--alpn",
        metavar="P1,P2",
        default=None,
        help="application protocols to offer (client) or accept (server)",
    )
    add("--tls-min", choices=("1.2", "1.3"), default=None, help="oldest TLS version (default 1.2)")
    add(
        "--tls-max",
        choices=("1.2", "1.3"),
        default=None,
        help="newest TLS version (default: the newest, 1.3)",
    )
    if server:
        add(
            "--tls-tickets",
            type=whole(0),
            metavar="N",
            default=None,
            help="server: TLS 1.3 session tickets to send (default 0: a client that closes "
            "without reading loses nothing)",
        )
    add("--tls-handshake-timeout", dest="handshake_timeout", type=timeout, metavar="S",
        default=None, help="give up a TLS handshake after S seconds (default 10)")  # fmt: skip


def keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The TLS flags that were given, as TLSOptions keywords."""
    return {name: getattr(args, name) for name in _FIELDS if getattr(args, name, None) is not None}
