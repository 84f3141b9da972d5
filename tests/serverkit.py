"""Helpers for server tests: run `ipcnet serve` (or a test service) as a real process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
LISTENING = re.compile(r"listening on (\S+)")


class Server:
    def __init__(self, proc: subprocess.Popen[str], addresses: list[str]) -> None:
        self.proc = proc
        self.addresses = addresses
        self.log: list[str] = []

    def url(self, scheme: str) -> str:
        return next(a for a in self.addresses if a.startswith(scheme + "://"))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the server did not stop") from None
        assert self.proc.stderr is not None
        self.log.extend(self.proc.stderr.read().splitlines())
        return code


def _start(
    argv: list[str], expected: int, env: dict[str, str] | None = None, **popen: object
) -> Server:
    proc = subprocess.Popen(
        argv,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        **popen,  # type: ignore[arg-type]
    )
    assert proc.stderr is not None
    addresses: list[str] = []
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while len(addresses) < expected:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"server exited before listening: {''.join(lines)}")
        lines.append(line)
        if m := LISTENING.search(line):
            addresses.append(m.group(1))
        assert time.monotonic() < deadline, "server did not start"
    server = Server(proc, addresses)
    server.log.extend(lines)
    return server


@contextmanager
def serving(
    service: str,
    *addresses: str,
    model: str = "epoll",
    extra: tuple[str, ...] = (),
    **popen: object,
) -> Iterator[Server]:
    """`ipcnet serve SERVICE ADDRESSES --model MODEL`; stopped with SIGTERM, must exit 0."""
    argv = [
        sys.executable,
        "-m",
        "ipcnet",
        "serve",
        service,
        *addresses,
        "--model",
        model,
        "--workers",
        "2",
        *extra,
    ]
    server = _start(argv, len(addresses), **popen)
    try:
        yield server
    finally:
        code = server.stop()
        assert code == 0, "\n".join(server.log)


# A service written for tests: "sleep N\n" runs a blocking job of N seconds, then answers
# "slept N\n"; "boom\n" raises inside the session; anything else is echoed.
SERVICE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from ipcnet.drivers import ServeConfig, serve
    from ipcnet.protocols.base import BaseService, BaseSession, Run

    class Session(BaseSession):
        def __init__(self):
            self.buf = b""
        def feed(self, data):
            self.buf += data
            out = []
            while b"\\n" in self.buf:
                line, _, self.buf = self.buf.partition(b"\\n")
                if line.startswith(b"sleep "):
                    seconds = float(line.split()[1])
                    out.append(Run(lambda s=seconds: (time.sleep(s), b"slept %g\\n" % s)[1]))
                    return out
                if line == b"boom":
                    raise RuntimeError("the handler crashed on purpose")
                out.append(line + b"\\n")
            return out
        def resume(self, job, outcome):
            return outcome.value

    class Slow(BaseService):
        name = "slow"
        def start(self, peer):
            return Session(), None

    model, grace = sys.argv[1], float(sys.argv[2])
    def ready(core):
        for a in core.bound:
            print(f"slow listening on {a}", file=sys.stderr, flush=True)
    serve(Slow(), sys.argv[3:], ServeConfig(model=model, grace=grace, workers=2), ready)
    """
)


def start_slow(model: str, grace: float, *addresses: str) -> Server:
    return _start(
        [sys.executable, "-c", SERVICE_SCRIPT, model, str(grace), *addresses], len(addresses)
    )


def child_states(pid: int) -> dict[int, str]:
    """The children of `pid` and their states ('R', 'S', 'Z', ...), read in one pass.

    A child that exits between listing /proc and reading its stat file is left out."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out[int(entry)] = fields[0]
    return out


def children(pid: int) -> list[int]:
    return list(child_states(pid))


def count_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def count_threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
