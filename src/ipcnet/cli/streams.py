"""The command's own stdin, stdout and stderr, made safe before a subcommand runs.

Rules (``prepare()``, called first by ``ipcnet.cli.main``):
- a descriptor 0-2 closed when the command started (``<&-``, ``>&-``, ``2>&-``) gets
  /dev/null in its place (``transports.stdfds``), so no socket takes its number;
- a closed stdout then becomes ``ClosedStdout``, whose writes raise one ipcnet error: a
  command that has output says it cannot write it and exits 1, as cat and ls do ("write
  error: Bad file descriptor"), instead of an AttributeError from print() on None; a
  command with no output (serve, relay) runs as usual. A closed stderr discards what
  would go there, as ``2>/dev/null`` does (print(file=None) wrote it to stdout instead);
- stdout writes what its encoding cannot show escaped (``\\xb5`` for 'µ' under LC_ALL=C
  without UTF-8 mode: demo and ``--help`` raised UnicodeEncodeError), and the
  undecodable bytes of a file name as the bytes they were (surrogateescape, as ls and ss
  print them), whatever the locale's own error handler.
"""

from __future__ import annotations

import codecs
import io
import sys

from ipcnet.errors import Broken

ERRORS = "ipcnet-stdout"


class ClosedStdout(io.TextIOBase):
    """sys.stdout when descriptor 1 was closed at the start: nowhere to write."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        raise Broken("cannot write the output: stdout is closed")

    def flush(self) -> None:
        pass


def _escape(exc: UnicodeError) -> tuple[str | bytes, int]:
    """A file name's bytes as they were; any other character backslash-escaped."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    try:
        return codecs.lookup_error("surrogateescape")(exc)
    except UnicodeEncodeError:
        return codecs.lookup_error("backslashreplace")(exc)


codecs.register_error(ERRORS, _escape)


def prepare() -> None:
    from ipcnet.transports.stdfds import open_std_fds

    closed = sys.stdout is None
    open_std_fds()
    if closed:
        sys.stdout = ClosedStdout()
    elif isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors=ERRORS)
