"""The TLS flags of ``connect``, ``serve`` and ``rpc``: one definition, the TLSOptions names.

Rules: each flag is the ``TLSOptions`` field of the same name (``--tls-min`` = tls_min);
``keywords(args)`` returns only the flags given, so a plain address with no TLS flag
opens as before, and a TLS flag on a plain address is refused by the transports with a
clear message. A value that can never work is a usage error here, naming the flag: an
empty file name (``--ca ''`` was read as no --ca at all: the system's store), a server
name ssl cannot encode (a UnicodeError from the handshake), an --alpn naming nothing.
"""

from __future__ import annotations

import argparse
from typing import Any

from ipcnet.cli.argtypes import nonempty, timeout, whole

FILE = nonempty("a file name")

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
        type=FILE,
        metavar="FILE",
        default=None,
        help="certificate (PEM, chain allowed); a server needs one"
        if server
        else "client certificate (PEM), for servers that ask for one",
    )
    add(
        "--key",
        type=FILE,
        metavar="FILE",
        default=None,
        help="private key of --cert (default: in --cert)",
    )
    add(
        "--ca",
        type=FILE,
        metavar="FILE",
        default=None,
        help=(
            "client: trust servers signed by it (default: the system's store); " if client else ""
        )
        + ("server: require client certificates signed by it" if server else "")
        + " (a PEM file, or a directory hashed by openssl rehash)",
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
            type=server_name,
            metavar="NAME",
            default=None,
            help="client: the server name to send and check (default: the URL's host)",
        )
    add(
        "--alpn",
        type=protocols,
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


def server_name(text: str) -> str:
    """--sni: a name ssl can send (the idna rules) or an IP address to check."""
    from ipcnet.transports.tls.context import sni_problem

    why = sni_problem(text)
    if why is not None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a server name: {why}")
    return text


def protocols(text: str) -> str:
    """--alpn: one or more names of 1 to 255 ASCII characters, comma-separated."""
    from ipcnet.transports.tls.context import parse_alpn

    names = parse_alpn(text)
    if not names or any(len(n) > 255 or not n.isascii() for n in names):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of protocols (such as h2,http/1.1: ASCII names of "
            "1 to 255 characters)"
        )
    return text


def keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The TLS flags that were given, as TLSOptions keywords."""
    return {name: getattr(args, name) for name in _FIELDS if getattr(args, name, None) is not None}
