"""``ipcnet connect URL``: netcat for every ipcnet address.

stdin goes to the channel and the channel to stdout; stdin's EOF half-closes toward the
peer; the command exits 0 once both directions ended, 1 with a one-line error otherwise.
With ``--listen`` it accepts one peer on URL first. Datagram addresses send one datagram
per read of stdin and print each datagram received.
"""

from __future__ import annotations

import argparse
import sys

HELP = "connect stdin/stdout to an address, like netcat (--listen to accept one peer)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url", metavar="URL", help="address, e.g. tcp://host:port, unix:///path, udp://host:port"
    )
    parser.add_argument(
        "-l", "--listen", action="store_true", help="listen on URL and serve one peer"
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="give up connecting (or waiting for a peer) after S seconds (default 30)",
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=0.5,
        metavar="S",
        help="after one direction ends, wait S seconds for the other (default 0.5)",
    )


def run(args: argparse.Namespace) -> int:
    from ipcnet.addresses import parse
    from ipcnet.channel import connect, listen, open_datagram, stdio
    from ipcnet.errors import PeerClosed
    from ipcnet.relay import relay_datagrams, relay_streams

    address = parse(args.url)
    local = stdio()
    if address.kind == "datagram":
        endpoint = open_datagram(address, listen=args.listen)
        with endpoint:
            result = relay_datagrams(
                local, endpoint, reply_to_first=args.listen, linger=args.linger
            )
    else:
        if args.listen:
            with listen(address) as listener:
                listener.timeout = args.connect_timeout
                peer = listener.accept()
        else:
            peer = connect(address, connect_timeout=args.connect_timeout)
        with peer:
            result = relay_streams(local, peer, linger=args.linger)
    error = result.error
    if error is None:
        return 0
    if isinstance(error, PeerClosed) and result.backward.error is error and "stdio" in str(error):
        return 0  # our stdout's reader left (| head): not an error of ours
    print(f"ipcnet connect: {error}", file=sys.stderr)
    return 1
