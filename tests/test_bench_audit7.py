"""``ipcnet bench`` as a user runs it (audit round 7): every subcommand, its options, its
peers and Ctrl-C. Function, not speed: no assertion is about how fast anything is.

Defects found, each with the rule that shows it:

1. Numbers that measure nothing were taken as given (issue 15: bad options exit 2 with a
   sentence; argparse's own rule for a value its type refuses). ``transports --chunk 0`` and
   ``--size -5`` and ``tls --chunk 0`` looped forever on one CPU; ``http --duration -1``
   hung for a minute; ``rpc --seconds 0``, ``relay --size 0`` and ``relay --seconds 0``
   ended in a ZeroDivisionError traceback after the servers had run; ``--rounds 0``,
   ``ipc --count 0``, ``ipc --size -4`` and ``inspector --sizes -3`` printed empty or
   meaningless rows with status 0; ``models --conns 0`` ran every server and failed at the
   end; ``http --duration 1.5`` gave wrk a ``-d1.5s`` that wrk refuses (its -d takes whole
   seconds: ``wrk -d1.5s`` prints its usage), and every cell became a fake 0 req/s. Now one
   harness type (``positive``, sizes through ``parse_size``) refuses them at parse time.
2. ``--plot`` was checked after the run (issue 15: a clear error when matplotlib is missing
   or the suffix is wrong, never a traceback): a wrong suffix or a missing matplotlib was
   found only once a benchmark had run for minutes, with status 1, and a folder that does
   not exist ended in a FileNotFoundError traceback from savefig. Now ``--plot``'s type
   checks the suffix, matplotlib and the folder first: exit 2, one sentence, nothing run.
3. ``bench rpc`` without pyzmq (or Pyro5, rpyc) ended in a traceback: the peer's server died
   on its import (issue 15: a missing peer is skipped with a note, not a crash; as ``bench
   ipc`` and ``bench relay`` already do). Now those rows say "not installed" and the rest runs.
4. ``bench ipc`` forked its peer with a bare ``os.fork`` and never stopped it when the run was
   interrupted: SIGINT to the benchmark (``kill -INT``; a supervisor; only a terminal's Ctrl-C
   reaches the whole group) left the child spinning on the shm ring forever, holding the
   benchmark's stdout, so ``ipcnet bench ipc | tee`` never ended. Now the peer is a harness
   ``Child``, stopped (killed if need be) however the run ends.
5. ``bench models`` compiled its C peer into ``$TMPDIR/epoll_echo`` (``/tmp``) to fail early,
   left it there after every run, and reused whatever file had that name (in a
   world-writable folder: another user's binary, or one built from an older source). Now it
   is built in the run's own temporary folder, removed with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipcnet.bench import harness
from ipcnet.bench.peers import find_cc

SRC = os.path.dirname(os.path.dirname(os.path.abspath(harness.__file__)))
# a module named here is not importable in the benchmark's process: a missing peer or extra
BLOCKED = "import sys; [sys.modules.__setitem__(m, None) for m in sys.argv.pop(1).split(',')];"
MAIN = "from ipcnet.cli import main; sys.exit(main(sys.argv[1:]))"


def env(**more: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.path.dirname(SRC), **more}


def bench(
    *args: str, blocked: str = "", timeout: float = 5, **more: str
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", BLOCKED + MAIN, blocked, "bench", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env(**more))


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["transports", "--chunk", "0"], "argument --chunk: size must be at least 1 byte"),
        (["transports", "--size", "-5"], "argument --size: size must be at least 1 byte"),
        (["transports", "--rounds", "0"], "argument --rounds: must be more than 0, not '0'"),
        (["tls", "--chunk", "0"], "argument --chunk: size must be at least 1 byte"),
        (["http", "--duration", "-1"], "argument --duration: must be more than 0, not '-1'"),
        (["http", "--duration", "1.5"], "argument --duration: invalid int value: '1.5'"),
        (["rpc", "--seconds", "0"], "argument --seconds: must be more than 0, not '0'"),
        (["relay", "--size", "0"], "argument --size: must be more than 0, not '0'"),
        (["relay", "--seconds", "nan"], "argument --seconds: must be more than 0, not 'nan'"),
        (["ipc", "--count", "0"], "argument --count: must be more than 0, not '0'"),
        (["ipc", "--size", "-4"], "argument --size: size must be at least 1 byte"),
        (["inspector", "--sizes", "20,-3"], "argument --sizes: must be more than 0, not '-3'"),
        (["models", "--conns", "1,0"], "argument --conns: must be more than 0, not '0'"),
        (["models", "--repeat", "0"], "argument --repeat: must be more than 0, not '0'"),
    ],
)
def test_numbers_that_measure_nothing_exit_2_before_anything_runs(args, error) -> None:
    done = bench(*args)
    assert done.returncode == 2, done.stderr[-800:]
    assert error in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == "" and "[1/" not in done.stderr  # nothing ran


@pytest.mark.parametrize(
    ("plot", "blocked", "error"),
    [
        ("chart.jpg", "", "the file name must end in .png or .svg"),
        ("no/such/folder/chart.png", "", "no such folder, or it is not writable"),
        ("chart.svg", "matplotlib", "argument --plot: matplotlib is missing (pip install"),
    ],
)
def test_plot_is_refused_before_the_run(tmp_path, plot, blocked, error) -> None:
    args = ["transports", "--size", "1000", "--rounds", "1", "--only", "pipe"]
    done = bench(*args, "--plot", str(tmp_path / plot), blocked=blocked)
    assert done.returncode == 2, done.stderr[-800:]
    assert error in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == "" and "[1/" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_rpc_without_pyzmq_pyro5_rpyc_skips_them_with_a_note() -> None:
    args = ["rpc", "--seconds", "0.05", "--repeat", "1", "--transports", "unix", "--skip-framing"]
    done = bench(*args, "--json", blocked="zmq,Pyro5,rpyc", timeout=30)
    assert done.returncode == 0, done.stderr[-800:]
    rows = json.loads(done.stdout)["results"]
    calls = {(r["case"], r["peer"]): r for r in rows if r["unit"] == "calls/s"}
    for peer in ("pyzmq REQ/REP", "pyzmq DEALER/ROUTER", "Pyro5", "rpyc"):
        row = calls["unix c=1 ", peer]
        assert row["samples"] == [] and row["median"] is None, row
        assert row["note"].startswith("not installed ("), row
    assert calls["unix c=1 ", "ipcnet (thread)"]["median"] > 0
    assert calls["unix c=1 ", "multiprocessing.connection"]["median"] > 0


def children(pid: int) -> set[int]:
    out = set()
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.add(int(name))
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended meanwhile
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_ipc_interrupted_stops_its_peer_process(tmp_path) -> None:
    """SIGINT to the benchmark alone (not its group): 130, and the forked peer is gone."""
    args = ["ipc", "--only", "shm", "--mode", "one-way", "--size", "100", "--rounds", "1"]
    argv = [sys.executable, "-m", "ipcnet", "bench", *args, "--count", "1000000000"]
    err = tmp_path / "err"
    with open(err, "w") as e:
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=e, env=env())
    try:
        deadline = time.monotonic() + 4
        while "[1/1]" not in err.read_text() or not (peer := children(p.pid)):
            assert time.monotonic() < deadline and p.poll() is None, err.read_text()
            time.sleep(0.02)
        time.sleep(0.2)  # the peer is streaming into the ring
        p.send_signal(signal.SIGINT)
        assert p.wait(5) == 130
        assert "Traceback" not in err.read_text(), err.read_text()
        deadline = time.monotonic() + 2
        while (left := [c for c in peer if alive(c)]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert left == [], f"peer process left running: {left}"
    finally:
        p.kill()
        p.wait()
        for c in children(p.pid) | (peer if "peer" in locals() else set()):
            if alive(c):
                os.kill(c, signal.SIGKILL)


@pytest.mark.skipif(find_cc() is None, reason="no C compiler")
def test_models_leaves_no_compiled_peer_behind(tmp_path: Path) -> None:
    args = ["models", "--only", "c-epoll", "--sizes", "1k", "--conns", "1", "-d", "0.1"]
    done = bench(*args, "--json", "--unix", "", timeout=30, TMPDIR=str(tmp_path))
    assert done.returncode == 0, done.stderr[-800:]
    assert json.loads(done.stdout)["results"][0]["median"] > 0
    assert list(tmp_path.iterdir()) == []  # no epoll_echo left in $TMPDIR


def test_a_wrk_run_that_fails_is_no_sample_and_says_why(tmp_path: Path) -> None:
    """A wrk that reports nothing (it could not connect, or refused its arguments) used to
    count as a 0 req/s sample, pulling the cell's median down as if the server were slow.
    Now the cell keeps no sample for it and carries wrk's own words."""
    fake = tmp_path / "wrk"
    fake.write_text("#!/bin/sh\necho 'unable to connect to 127.0.0.1: Connection refused' >&2\n")
    fake.chmod(0o755)
    path = f"{tmp_path}:{os.environ['PATH']}"
    done = bench(
        "http",
        "--servers",
        "http.server",
        "--runs",
        "2",
        "--duration",
        "1",
        "--json",
        timeout=60,
        PATH=path,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["results"]
    assert rows and all(r["samples"] == [] and r["median"] is None for r in rows), rows
    assert all(
        r["wrk_errors"] == ["unable to connect to 127.0.0.1: Connection refused"] * 2 for r in rows
    ), rows


@pytest.mark.parametrize("name", ["models", "relay"])
def test_a_compiler_that_cannot_build_the_c_peer_skips_it_with_its_words(
    tmp_path: Path, name: str
) -> None:
    """``CC`` names a compiler that fails: ``bench models`` and ``bench relay`` ended in a
    RuntimeError traceback. Now the C peer is reported with the compiler's message, and the
    rest of the benchmark runs."""
    cc = tmp_path / "badcc"
    cc.write_text("#!/bin/sh\necho 'badcc: internal compiler error' >&2\nexit 1\n")
    cc.chmod(0o755)
    if name == "models":
        args = ["models", "--only", "c-epoll", "--only", "epoll", "--sizes", "1k", "--conns", "1"]
        args += ["-d", "0.1", "--unix", ""]
    else:
        args = ["relay", "--only", "direct", "--size", "1", "--rounds", "1", "--seconds", "0.2"]
    done = bench(*args, "--json", timeout=60, CC=str(cc))
    assert "Traceback" not in done.stderr, done.stderr[-800:]
    assert "badcc: internal compiler error" in done.stdout + done.stderr
    rows = json.loads(done.stdout)["results"]
    assert any(r["samples"] for r in rows), rows  # the others ran
