"""The ``ipcnet`` command: one module per subcommand, argument parsing and output only.

Rules: each subcommand module in this package defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``, and imports its heavy modules inside
``run`` so that ``ipcnet --help`` starts fast. Errors from the library (``IPCError``) become
one line on stderr and exit status 1; a usage error is argparse's, status 2; Ctrl-C is
130; a stdout whose reader left (``ipcnet ... | head -1``) ends the command quietly, one
closed from the start (``>&-``) is an error if there was output to write (``streams``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import sys
from collections.abc import Sequence

from ipcnet.errors import IPCError

# subcommand -> module (in this package); order is the order of --help
SUBCOMMANDS = (
    "connect",
    "relay",
    "serve",
    "rpc",
    "demo",
    "sockets",
    "ipcs",
    "bench",
    "xdp",
    "cert",
)


def build_parser(wanted: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``wanted`` only that subcommand's module is imported (fast start)."""
    parser = argparse.ArgumentParser(
        prog="ipcnet",
        description="Inter-process communication that looks like file I/O: "
        "pipes, fifos, unix and tcp/udp sockets, servers, inspection.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # no subcommand named: argparse can only print the help or an error, which need each
    # subcommand's one line, not its options (building them loads the drivers: ~80 ms)
    lines_only = wanted not in SUBCOMMANDS
    for name in SUBCOMMANDS:
        if wanted in SUBCOMMANDS and name != wanted:
            continue  # only the asked-for subcommand's parser is built (each costs ms)
        try:
            module = importlib.import_module(f"ipcnet.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ipcnet.cli.{name}":
                raise
            continue
        p = sub.add_parser(name, help=module.HELP, description=sentence(module.HELP))
        if not lines_only:
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def sentence(text: str) -> str:
    """A one-line help as a sentence (``ipcnet X --help``): no ``code`` markup, a capital
    first, a full stop last."""
    text = re.sub(r"``([^`]*)``", r"\1", text.strip())
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "?", "!")) else ".")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse and run one command; its exit status. Ctrl-C at any stage (while the parser
    is built, a server binds, or before a subcommand installs its own handlers) is 130,
    quietly, as for every other command that Ctrl-C ends."""
    try:
        status = _main(argv)
    except KeyboardInterrupt:
        status = 130
    except BrokenPipeError:
        status = _stdout_gone()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        status = _stdout_gone()
    except KeyboardInterrupt:
        status = 130
    return status


def _main(argv: Sequence[str] | None) -> int:
    from ipcnet.cli import streams

    streams.prepare()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    try:
        parser = build_parser(command)
        args = parser.parse_args(argv)  # --help may find stdout closed
        status: int = args._run(args)
    except IPCError as exc:
        print(f"ipcnet{f' {command}' if command else ''}: {exc}", file=sys.stderr)
        status = 1
    return status


def entry() -> None:
    """The ``ipcnet`` command (and ``python -m ipcnet``): ``main``, then exit with its status.
    Stop signals are ignored from then on: CPython puts SIG_DFL back for Python handlers as
    it shuts down, so a SIGTERM arriving then (a second one sent while a server that
    stopped gracefully exits) would make a finished command die by that signal instead of
    exiting with its status."""
    status = main()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(status)


def _stdout_gone() -> int:
    """stdout's reader left (``| head``): point stdout at /dev/null so the final flush is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


if __name__ == "__main__":
    sys.exit(main())
