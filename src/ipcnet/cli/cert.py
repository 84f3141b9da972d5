"""``ipcnet cert [--out DIR] [NAME...]``: a local CA and a server certificate, for HTTPS now.

Writes ca.pem and ca-key.pem (reused if already there), server.pem and server-key.pem for
the names (default: localhost, 127.0.0.1, ::1), with ``--client NAME`` also client.pem and
client-key.pem for mutual TLS; key files are mode 0600. Prints how to serve and connect
with them.
"""

from __future__ import annotations

import argparse
import os
import shlex

from ipcnet.cli.argtypes import nonempty

HELP = "make a local CA and a server certificate for localhost (or NAME...), for TLS"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "names",
        metavar="NAME",
        nargs="*",
        help="host names and IP addresses the certificate is for "
        "(default: localhost 127.0.0.1 ::1)",
    )
    parser.add_argument(
        "--out",
        type=nonempty("a directory name"),
        metavar="DIR",
        default=".",
        help="directory to write the files to (default .)",
    )
    parser.add_argument(
        "--client",
        metavar="NAME",
        default=None,
        help="also issue a client certificate with this name (for --ca on a server)",
    )


def run(args: argparse.Namespace) -> int:
    from ipcnet.transports.tls.devcert import make

    issued = make(args.out, tuple(args.names), args.client)
    q = _quote
    how = "reused" if issued.ca_reused else "made"
    print(f"{how} the local ca: {issued.ca} (trust it with --ca), key {issued.ca_key}")
    print(f"server certificate for {', '.join(issued.names)}: {issued.cert}, key {issued.key}")
    if issued.client_cert:
        print(f"client certificate: {issued.client_cert}, key {issued.client_key}")
    host = next((n for n in issued.names if not n.startswith("*.")), "www" + issued.names[0][1:])
    url_host = f"[{host}]" if ":" in host else host
    tls = f"--cert {q(issued.cert)} --key {q(issued.key)}"
    print()
    print(f"  ipcnet serve http . tls://{url_host}:8443 {tls}")
    print(f"  curl --cacert {q(issued.ca)} https://{url_host}:8443/")
    print(f"  ipcnet connect --ca {q(issued.ca)} tls://{url_host}:8443")
    if issued.client_cert:
        print(f"  mutual tls: serve with --ca {q(issued.ca)}; connect with "
              f"--cert {q(issued.client_cert)} --key {q(issued.client_key or '')}")  # fmt: skip
    return 0


def _quote(path: str) -> str:
    return shlex.quote(os.path.relpath(path) if not os.path.isabs(path) else path)
