"""``ipcnet connect URL``: netcat for every ipcnet address.

stdin goes to the channel and the channel to stdout; stdin's EOF half-closes toward the
peer; the command exits 0 once both directions ended, 1 with a one-line error otherwise.
It never exits 0 while the peer may still be sending: with ``--linger S`` (an idle timer)
or on SIGINT/SIGTERM/SIGHUP it says on stderr that it gave up, and exits 1 (linger) or
128 + the signal. An exec: command that exits non-zero, or is killed by a signal not
ours (nor SIGPIPE), makes it exit 1, naming the status or the signal (as socat does);
stdio: (this command's own stdin and stdout) is refused. With ``--listen`` it accepts one
peer on URL first: over a datagram address, the sender of the first datagram, the only one
heard from then on (nc -u -l, socat UDP-LISTEN). Datagram addresses (and fd:// or
systemd:// naming a datagram socket, as socat's FD:N) send one datagram per read of stdin
and print each datagram received (``--max-datagram`` bounds its size).
An option the address or the mode has no use for is a usage error (status 2), as socat
refuses one "not supported with this address type": --max-datagram on a stream, a
client's TLS flag (--insecure, --sni) with --listen, a server's (--tls-tickets) without.
A stdin the peer's direction needs that is open for writing only (``0>>file``), or such a
stdout open for reading only, is refused once the peer is open, before any byte moves.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from ipcnet.cli import tlsflags
from ipcnet.cli.argtypes import MAX_BUFFER, seconds, timeout, whole
from ipcnet.errors import IPCError, PeerClosed, Timeout, Truncated, Unsupported

if TYPE_CHECKING:
    from ipcnet.addresses import Address
    from ipcnet.channel import Channel
    from ipcnet.transports import DatagramEndpoint

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
        type=timeout,
        default=30.0,
        metavar="S",
        help="give up connecting (or waiting for a peer) after S seconds (default 30)",
    )
    parser.add_argument(
        "--linger",
        type=seconds,
        default=None,
        metavar="S",
        help="once one direction has ended, give the other up after S seconds without "
        "traffic (default: wait until it ends; udp/unixgram: 0.5 s after stdin's EOF)",
    )
    parser.add_argument(
        "--max-datagram",
        type=whole(1, MAX_BUFFER),
        default=None,
        metavar="BYTES",
        help="udp/unixgram: the largest datagram to receive (default 65536: every udp one; "
        "a unix one may be larger); a larger one ends the command with an error",
    )
    tlsflags.add_arguments(parser)  # tls:// -- stdin's EOF sends close_notify (see transports.tls)


def run(args: argparse.Namespace) -> int:
    from ipcnet.addresses import parse
    from ipcnet.channel import open_datagram, stdio
    from ipcnet.relay import relay_datagrams, relay_streams
    from ipcnet.transports import process
    from ipcnet.transports.inherited import is_datagram
    from ipcnet.transports.stdio import directions, open_std_fds

    open_std_fds()  # before any socket: a closed fd 0 or 1 would become the socket
    address = parse(args.url)
    if address.scheme == "stdio" or (address.scheme == "fd" and address.fd in (0, 1)):
        # two pumps would read the one stdin and write the one stdout: chunks reordered
        print(
            f"ipcnet connect: {address} is this command's own stdin and stdout; "
            "connect them to another address",
            file=sys.stderr,
        )
        return 1
    local = stdio()
    caught = _signals_interrupt()
    child = None  # exec:'s process, reaped when its channel closes
    try:  # from the bind or the connect to the first peer: a signal ends the wait
        datagram = is_datagram(address)  # fd://, systemd://: what the socket is, as serve asks
        unused = _unused_option(args, address, datagram)
        if unused is not None:
            print(f"ipcnet connect: {unused}", file=sys.stderr)
            return 2
        if datagram:
            size = args.max_datagram or 65536
            endpoint = open_datagram(address, listen=args.listen, max_size=size)
            wrong = _wrong_way(directions, True, True)
            first = b""
            if wrong is None and args.listen:
                first = _first_peer(endpoint, args.connect_timeout)
        else:
            peer = _open_stream(address, args)
            wrong = _wrong_way(directions, peer.transport.writable, peer.transport.readable)
        if wrong is not None:
            _close(endpoint if datagram else peer)
            print(f"ipcnet connect: {wrong}", file=sys.stderr)
            return 1
    except IPCError as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        waited = "no peer came to" if args.listen else "not connected to"
        print(f"ipcnet connect: interrupted: {waited} {address}", file=sys.stderr)
        return 128 + (caught[-1] if caught else signal.SIGINT)
    if datagram:
        with endpoint:
            if first:
                local.write(first)
            linger = 0.5 if args.linger is None else args.linger
            result = relay_datagrams(local, endpoint, linger=linger)
    else:
        child = peer.process
        try:
            result = relay_streams(local, peer, linger=args.linger)
            if child is not None and (result.interrupted or result.unfinished):
                process.stop(child)  # given up on: now, not after the close's exit_timeout
        finally:
            forced = _close(peer)
        if forced:  # a stop signal while an exec: child was waited for: it was killed
            result.interrupted = True  # (both ways may have ended: then nothing was cut)
    error = result.error
    if error is not None:
        stdout_gone = isinstance(error, PeerClosed) and result.backward.error is error
        if stdout_gone and "stdio" in str(error):
            return 0  # our stdout's reader left (| head): not an error of ours
        return _fail(error)
    cut = result.backward in result.unfinished and not datagram
    if cut:
        why = "interrupted" if result.interrupted else f"no data for {args.linger:g} s"
        print(
            f"ipcnet connect: {why}: gave up before the peer ended its side "
            f"({result.backward.delivered()} bytes received)",
            file=sys.stderr,
        )
    if result.interrupted:
        return 128 + (caught[-1] if caught else signal.SIGINT)
    if cut:
        return 1
    failed = None if child is None else process.failure(child)
    if failed is not None:
        print(f"ipcnet connect: {address} {failed}", file=sys.stderr)
        return 1
    return 0


def _open_stream(address: Address, args: argparse.Namespace) -> Channel:
    """The peer: connected to, or the first accepted (--listen, within --connect-timeout)."""
    from ipcnet.channel import connect, listen

    tls = tlsflags.keywords(args)
    if not args.listen:
        return connect(address, connect_timeout=args.connect_timeout, **tls)
    with listen(address, **tls) as listener:
        listener.timeout = args.connect_timeout
        return listener.accept()


def _unused_option(args: argparse.Namespace, address: Address, datagram: bool) -> str | None:
    """Why an option given makes no sense with this address or mode, or None."""
    if args.max_datagram is not None and not datagram:
        return f"--max-datagram is for datagram addresses (udp://, unixgram://), not {address}"
    if args.listen:
        for flag, given, what in (
            ("--insecure", args.insecure, "the server's certificate left unchecked"),
            ("--sni", args.sni, "the server name it asks for"),
        ):
            if given is not None:
                return f"{flag} is a tls client's option ({what}): not with --listen"
    elif args.tls_tickets is not None:
        return "--tls-tickets is a tls server's option (the tickets it sends): only with --listen"
    return None


def _wrong_way(
    directions: Callable[[int], tuple[bool, bool]], reads: bool, writes: bool
) -> str | None:
    """Why stdin (read when ``reads``) or stdout (written when ``writes``) cannot be, or None:
    a descriptor open the other way only, whose read or write would be EBADF ("closed")."""
    if reads and not directions(0)[0]:
        return "cannot read stdin: descriptor 0 is open for writing only"
    if writes and not directions(1)[1]:
        return "cannot write stdout: descriptor 1 is open for reading only"
    return None


def _close(peer: Channel | DatagramEndpoint) -> bool:
    """Close the peer; True if a stop signal came while it was closed (an exec: child
    waited for, then killed, by its close)."""
    try:
        peer.close()
    except KeyboardInterrupt:
        return True
    return False


def _first_peer(endpoint: DatagramEndpoint, timeout: float) -> bytes:
    """Wait for the first datagram as accept() waits for a connection (even when stdin is
    empty); its sender becomes the only peer. Returns the datagram."""
    endpoint.timeout = timeout
    try:
        data, sender = endpoint.recv()
    except BaseException as exc:  # a timeout, a datagram too large, a signal
        endpoint.close()  # and its unix socket file
        if isinstance(exc, Timeout):
            raise Timeout(f"timed out: wait for a peer on {endpoint.where}") from None
        raise
    endpoint.timeout = None
    endpoint.keep_to(sender)
    return data


# an inherited descriptor of the wrong kind: the library's advice names its calls, this
# command's the option that does the same
_ADVICE = (
    ("; use listen() to accept on it", "; use --listen to accept on it"),
    ("; connect() to use it as a stream", ": connect to it without --listen"),
    ("; connect() to use it", ": connect to it without --listen"),
)


def _fail(error: IPCError) -> int:
    message = str(error)
    if isinstance(error, Truncated):  # the library's max_size is this command's option
        message = message.removesuffix(" (raise max_size)") + " (raise --max-datagram)"
    if isinstance(error, Unsupported):
        for library, command in _ADVICE:
            if message.endswith(library):
                message = message.removesuffix(library) + command
                break
    print(f"ipcnet connect: {message}", file=sys.stderr)
    return 1


def _signals_interrupt() -> list[int]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt, as SIGINT is; returns the numbers seen."""
    caught: list[int] = []

    def interrupt(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    return caught
