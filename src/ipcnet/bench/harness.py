"""The one harness every ``ipcnet bench`` benchmark runs on.

A benchmark is a module with ``main(argv) -> int``: ``parser(NAME)`` (``--json``,
``--markdown``, ``--plot``), ``Server``/``Child`` processes, ``pin``, interleaved ``rounds``
under ``progress``, one ``Result`` per measured cell, ``emit`` at the end. Rules: medians
with ranges, never means; ratios >1 mean ipcnet wins; progress on stderr, results on stdout.
It is installed (not a top-level ``benchmarks/``): users run ``ipcnet bench`` and servers
re-run ``python -m ipcnet.bench.*``; rich and matplotlib are optional and imported lazily.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from ipcnet.testing.pairs import free_port as free_port  # re-exported

T = TypeVar("T")
N = TypeVar("N", int, float)

# benchmark name -> one sentence (``ipcnet bench --help`` and each benchmark's description)
BENCHMARKS = {
    "transports": "1 GiB through pipe, fifo, socketpair, unix, tcp and shm beside a plain loop.",
    "echo": "Closed-loop echo load against one server URL: msgs/s, MB/s, latency percentiles.",
    "models": "Every concurrency model and its peers under the same echo load, as one table.",
    "http": "Static files under wrk: the web server beside nginx, http.server and uvicorn.",
    "rpc": "JSON-RPC calls/s and framing beside multiprocessing, pyzmq, xmlrpc, Pyro5, rpyc.",
    "inspector": "The socket inspector beside ss, netstat and psutil at 1k and 10k sockets.",
    "xdp": "A UDP flood over veth dropped by XDP or nftables hooks, or read by C/Python (root).",
    "ipc": "100 B and 4 KiB messages over shm, mq, pipe, unix, multiprocessing, iceoryx2.",
    "relay": "1 GiB and short connections through ipcnet relay, socat, HAProxy, nginx stream.",
    "tls": "1 GiB through a tls:// channel beside a plain ssl.SSLSocket loop.",
}

CPUS = sorted(os.sched_getaffinity(0))  # read once: a pinned process's own mask is one CPU


# --- results ------------------------------------------------------------------------------


@dataclass
class Result:
    """One measured cell: ``samples`` (one per round) of ``unit`` for ``peer`` on ``case``."""

    case: str
    peer: str
    unit: str
    samples: list[float] = field(default_factory=list)
    per_cpu_s: list[float] = field(default_factory=list)  # units per CPU-second, if measured
    lower_is_better: bool = False
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # benchmark-specific fields

    @property
    def ours(self) -> bool:
        return self.peer.startswith("ipcnet")

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def row(self) -> dict[str, Any]:
        med, cpu = self.median, self.per_cpu_s
        return {
            **{k: v for k, v in self.__dict__.items() if k != "extra"},
            **self.extra,
            "median": med,
            "range": [min(self.samples), max(self.samples)] if self.samples else None,
            "per_cpu_s_median": statistics.median(cpu) if cpu else None,
        }


def ratios(results: Sequence[Result]) -> list[float | None]:
    """Each result's case's first ipcnet median over its own (>1: ipcnet better); None on
    ipcnet's rows or where a median is missing."""
    ours: dict[str, float | None] = {}
    for r in results:
        if r.ours:
            ours.setdefault(r.case, r.median)
    out: list[float | None] = []
    for r in results:
        a, b = ours.get(r.case), r.median
        out.append(None if r.ours or not a or not b else b / a if r.lower_is_better else a / b)
    return out


def fmt(values: Sequence[float], digits: int = 0) -> str:
    """``median (min-max)`` with thousands separators, or ``-`` for no values."""
    f = f"{{:,.{digits}f}}".format
    if len(values) < 2:
        return f(values[0]) if values else "-"
    return f"{f(statistics.median(values))} ({f(min(values))}-{f(max(values))})"


def _digits(results: Sequence[Result]) -> int:
    top = max((abs(r.median or 0) for r in results), default=0)
    return 0 if top >= 100 else 2 if top >= 1 else 4


def _cells(results: Sequence[Result]) -> tuple[list[str], list[list[str]]]:
    """The table's cells; a benchmark's per-round ``extra`` lists of numbers get a column."""
    digits = {u: _digits([r for r in results if r.unit == u]) for u in {r.unit for r in results}}
    more = list(dict.fromkeys(k for r in results for k, v in r.extra.items() if _numbers(v)))
    head = ["case", "peer", "median (range)", "unit", "ipcnet / peer", "per CPU-s", *more]
    rows = []
    for r, q in zip(results, ratios(results), strict=True):
        rows.append(
            [
                r.case,
                r.peer + (f" [{r.note}]" if r.note else ""),
                fmt(r.samples, digits[r.unit]),
                r.unit,
                "" if q is None else f"{q:.2f}x",
                fmt(r.per_cpu_s) if r.per_cpu_s else "",
                *(fmt(r.extra[k], 3) if _numbers(r.extra.get(k)) else "" for k in more),
            ]
        )
    return head, rows


def _numbers(value: object) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], float | int)


def table(results: Sequence[Result]) -> str:
    head, rows = _cells(results)
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in [head, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def markdown(results: Sequence[Result]) -> str:
    head, rows = _cells(results)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


# --- the command line ----------------------------------------------------------------------


def parser(name: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``ipcnet bench NAME`` with the options every benchmark has."""
    p = argparse.ArgumentParser(
        prog=f"ipcnet bench {name}",
        description=BENCHMARKS[name],
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the results as JSON rows")
    out.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument(
        "--plot", metavar="FILE", type=_chart, help="draw the results to FILE (.png or .svg)"
    )
    return p


def _chart(path: str) -> str:
    """``--plot``'s type: refused before the run, not after it (a suffix matplotlib does not
    write here, no matplotlib, or a folder that cannot take the file)."""
    if Path(path).suffix.lower() not in (".png", ".svg"):
        raise argparse.ArgumentTypeError(f"{path}: the file name must end in .png or .svg")
    if missing("matplotlib"):
        raise argparse.ArgumentTypeError("matplotlib is missing (pip install 'ipcnet[bench]')")
    if not os.access(Path(path).absolute().parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"{path}: no such folder, or it is not writable")
    return path


def missing(module: str) -> str:
    """Why ``module`` cannot be imported here ("" if it can): a peer that needs it is
    skipped with this note."""
    try:
        __import__(module)
    except ImportError as exc:
        return f"not installed ({exc}; pip install 'ipcnet[bench]')"
    return ""


def emit(
    args: argparse.Namespace,
    results: Sequence[Result],
    title: str = "",
    meta: dict[str, Any] | None = None,
    text: str | None = None,
) -> None:
    """Print ``{"results": [row, ...], **meta}`` (``--json``), a Markdown table, or ``text``
    (else the plain table); draw ``--plot``."""
    if args.json:
        print(json.dumps({"results": [r.row() for r in results], **(meta or {})}, indent=1))
    elif args.markdown or text is None:
        print(markdown(results) if args.markdown else table(results))
    else:
        print(text)
    if args.plot:
        from ipcnet.bench.plot import plot

        plot(results, args.plot, title)
        print(f"chart: {args.plot}", file=sys.stderr)


# --- progress and rounds -------------------------------------------------------------------


@contextmanager
def progress(total: int, what: str, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """Yield ``step(label)``, called as each step starts: a rich bar on a terminal, else a
    line per step on stderr."""
    if quiet or not sys.stderr.isatty():
        k = itertools.count(1)

        def line(label: str) -> None:
            if not quiet:
                print(f"[{next(k)}/{total}] {what}: {label}", file=sys.stderr, flush=True)

        yield line
        return
    from rich import progress as rp
    from rich.console import Console

    columns = (rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn())
    with rp.Progress(*columns, rp.TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        task, started = bar.add_task(what, total=total), [False]

        def step(label: str) -> None:
            bar.update(task, advance=started[0], description=f"{what}: {label}")
            bar.refresh()  # draw what runs now, not at the next tick: a step may be short
            started[0] = True

        yield step
        bar.update(task, completed=total, description=f"{what}: done")


def rounds(
    cases: Sequence[T],
    n: int,
    run: Callable[[T], None],
    what: str,
    label: Callable[[T], str],
    quiet: bool = False,
) -> None:
    """Every case once per round, ``n`` rounds, every other round reversed (no case always
    runs first or last)."""
    with progress(len(cases) * n, what, quiet) as step:
        for i in range(n):
            for case in cases if i % 2 == 0 else list(reversed(cases)):
                step(f"round {i + 1}/{n} {label(case)}")
                run(case)


# --- processes -----------------------------------------------------------------------------


def pin(cpu: int | None, pid: int = 0) -> None:
    """Pin ``pid`` (0: this process) to the ``cpu``-th usable CPU; no-op on one CPU."""
    if cpu is not None and len(CPUS) >= 2:
        os.sched_setaffinity(pid, {CPUS[cpu % len(CPUS)]})


def taskset(cpu: int | None) -> list[str]:
    """An argv prefix that pins a command to the ``cpu``-th usable CPU (or nothing)."""
    if cpu is None or len(CPUS) < 2 or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", str(CPUS[cpu % len(CPUS)])]


def listof(convert: Callable[[str], T], choices: Sequence[str] = ()) -> Callable[[str], list[T]]:
    """An argparse type: comma-separated values, each one of ``choices`` (if any), converted."""

    def parse(text: str) -> list[T]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        if bad := [x for x in items if choices and x not in choices]:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(bad)} (one of {', '.join(choices)})"
            )
        try:
            return [convert(x) for x in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {convert.__name__} values: {text!r}") from None

    return parse


def positive(convert: Callable[[str], N]) -> Callable[[str], N]:
    """An argparse type: ``convert(text)``, refused unless more than 0 (a count, a duration:
    0 or less would measure nothing, divide by zero or never end)."""

    def parse(text: str) -> N:
        if not (value := convert(text)) > 0:  # NaN too; a ValueError is argparse's to word
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text!r}")
        return value

    parse.__name__ = convert.__name__  # listof's "not int values"
    return parse


def parse_size(text: str) -> int:
    """'1024', '1k', '10KiB', '1M' -> bytes (k and M are binary)."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = {"k": 1024, "m": 1 << 20}.get(t[-1:], 1)
    try:
        value = int(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 1024, 10k, 1M)") from None
    if value < 1:
        raise argparse.ArgumentTypeError("size must be at least 1 byte")
    return value


def process_tree_cpu(pid: int) -> float:
    """CPU-seconds of ``pid`` and its descendants (reaped ones via cutime/cstime)."""
    from ipcnet.errors import IPCError
    from ipcnet.transports import procfs

    children: dict[int, list[int]] = {}
    own: dict[int, int] = {}
    for name in procfs.listdir("/proc") or ():
        try:
            stat = procfs.read_bytes(f"/proc/{name}/stat") if name.isdigit() else None
        except IPCError:
            continue  # unreadable: not ours to count
        if stat is not None:  # fields from 3 (state): ppid is [1], utime..cstime [11:15]
            fields = stat[stat.rindex(b")") + 2 :].split()
            children.setdefault(int(fields[1]), []).append(int(name))
            own[int(name)] = sum(int(x) for x in fields[11:15])
    if pid not in own:
        raise ValueError(f"no process {pid}")
    total, todo = 0, [pid]
    while todo:
        total += own.get(p := todo.pop(), 0)
        todo.extend(children.get(p, ()))
    return total / os.sysconf("SC_CLK_TCK")


class Child:
    """``body(ready)`` in a forked child pinned to the ``cpu``-th CPU; ``result()`` is its
    return value, pickled back (its exception: a RuntimeError here)."""

    head: bytes | None
    answer: Any

    def __init__(self, body: Callable[[Callable[[], None]], object], cpu: int | None) -> None:
        import pickle

        r, w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        self.done, self.head, self.answer = False, None, _Failed("a child process died")
        self.pid = os.fork()
        if self.pid == 0:  # the child
            os.close(r)
            out, code = os.fdopen(w, "wb", buffering=0), 0
            try:
                pin(cpu)
                answer: object = body(lambda: None if out.write(b"R") else None)  # noqa: RUF034
            except BaseException as exc:
                answer, code = _Failed(f"{type(exc).__name__}: {exc}"), 1
            try:
                out.write(b"=" + pickle.dumps(answer))
                out.close()
            finally:
                os._exit(code)
        os.close(w)
        self.reader = os.fdopen(r, "rb")

    def wait_ready(self) -> None:
        if self.head is None:
            head = self.reader.read(1)
            self.head = b"" if head == b"R" else head
        if self.head:  # it ended (or died) without calling ready()
            self.result()

    def result(self) -> Any:
        import pickle

        if self.head is None:
            self.wait_ready()
        if not self.done:
            data = (self.head or b"") + self.reader.read()
            self.stop()
            if data[:1] == b"=":
                self.answer = pickle.loads(data[1:])
        if isinstance(self.answer, _Failed):
            raise RuntimeError(self.answer.why)
        return self.answer

    def stop(self) -> None:
        """Reap it (killed if it is still running)."""
        if not self.done:
            self.done = True
            self.reader.close()
            if os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)


@dataclass
class _Failed:
    why: str


def listening(port: int) -> bool:
    """Something listens on 127.0.0.1:``port`` (from /proc: connecting would be a request)."""
    with open("/proc/net/tcp") as f:
        return any(f"0100007F:{port:04X} 00000000:0000 0A" in line for line in f)


class Server:
    """A server in its own session, output in ``log_path``, ready when ``ready`` (group 1 =
    its URL) matches the log or ``port`` listens."""

    def __init__(
        self,
        argv: list[str],
        log_path: str,
        *,
        ready: re.Pattern[str] | None = None,
        port: int | None = None,
        cpu: int | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            taskset(cpu) + argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid, self.url = self.proc.pid, f"tcp://127.0.0.1:{port}"
        try:
            end = time.monotonic() + timeout
            while not (port is not None and listening(port)):
                if ready is not None and (m := ready.search(self.log())):
                    self.url = m.group(1) if m.groups() else m.group(0)
                    break
                if self.proc.poll() is not None:
                    raise RuntimeError(f"exited with {self.proc.returncode}: {self.tail()}")
                if time.monotonic() > end:
                    raise RuntimeError(f"not ready after {timeout:g} s: {self.tail()}")
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def tail(self) -> str:
        return " | ".join(self.log().strip().splitlines()[-3:]) or "(no output)"

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM and wait; then SIGKILL what is left of its process group; its status."""
        from ipcnet.errors import IPCError
        from ipcnet.transports.process import signal_group

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            signal_group(self.proc.pid, signal.SIGKILL)
        except IPCError:
            pass  # the group is gone already
        status = self.proc.wait()
        self._log.close()
        return status

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
