"""The benchmark harness: progress (through a pty), --json/--plot on every subcommand,
statistics, ratios, interleaved rounds and the server runner. Function, not speed: no
assertion is about how fast anything is; runs are a fraction of a second."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from ipcnet.bench import harness
from ipcnet.bench.harness import BENCHMARKS, Result, Server, fmt, ratios, rounds
from ipcnet.cli import sentence

SRC = os.path.dirname(os.path.dirname(os.path.abspath(harness.__file__)))
TINY = ["transports", "--size", "200000", "--rounds", "2", "--only", "pipe"]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.path.dirname(SRC), "COLUMNS": "120", "TERM": "xterm"}


def bench(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "ipcnet", "bench", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env(), **kw)  # type: ignore[call-overload, no-any-return]


def on_a_terminal(*args: str) -> tuple[str, str]:
    """Run ``ipcnet bench ARGS`` with stderr on a pty: (what the terminal showed, stdout)."""
    import pty

    controller, terminal = pty.openpty()
    argv = [sys.executable, "-m", "ipcnet", "bench", *args]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=terminal, env=env())
    os.close(terminal)
    seen = b""
    try:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        out, _ = p.communicate(timeout=60)
    finally:
        p.kill()
        p.wait()
        os.close(controller)
    return re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", seen).decode(errors="replace"), out.decode()


def test_progress_is_a_bar_on_a_terminal() -> None:
    """stderr on a pty: rich draws what runs, k of n and the time left; stdout stays a pipe."""
    screen, out = on_a_terminal(*TINY, "--json")
    assert "transports: round" in screen  # what is running
    assert "4/4" in screen and "━" in screen  # k of n, a bar
    assert re.search(r"\d:\d\d:\d\d", screen)  # time left
    assert "[1/4]" not in screen  # not the plain lines
    assert len(json.loads(out)["results"]) == 2


def test_echo_shows_the_seconds_of_its_one_load_as_a_bar(tmp_path) -> None:
    """``bench echo`` is one timed run, not rounds: its bar counts the seconds."""
    port = harness.free_port()
    argv = [sys.executable, "-m", "ipcnet", "serve", "echo", f"tcp://127.0.0.1:{port}"]
    with Server(argv, str(tmp_path / "echo.log"), port=port):
        screen, out = on_a_terminal("echo", f"tcp://127.0.0.1:{port}", "-d", "2", "--json")
    assert f"echo: tcp://127.0.0.1:{port}, second 2 of 2" in screen and "2/2" in screen
    assert "━" in screen and re.search(r"\d:\d\d:\d\d", screen)
    assert json.loads(out)["results"][0]["ok"] is True


def test_progress_is_plain_lines_when_not_a_terminal() -> None:
    done = bench(*TINY, "--json")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "[1/4] transports: round 1/2 pipe ipcnet"
    # interleaved rounds: the second runs the cases in the reverse order
    assert lines[2:] == [
        "[3/4] transports: round 2/2 pipe plain",
        "[4/4] transports: round 2/2 pipe ipcnet",
    ]


def test_json_is_the_one_schema() -> None:
    done = bench(*TINY, "--json")
    rows = json.loads(done.stdout)["results"]
    assert [(r["case"], r["peer"], r["unit"]) for r in rows] == [
        ("pipe", "ipcnet", "GiB/s"),
        ("pipe", "plain os.read/write", "GiB/s"),
    ]
    for r in rows:
        assert len(r["samples"]) == 2 and r["range"] == [min(r["samples"]), max(r["samples"])]
        assert min(r["samples"]) <= r["median"] <= max(r["samples"]) and r["median"] > 0


def test_markdown_table() -> None:
    out = bench(*TINY, "--markdown").stdout
    assert "| case | peer | median (range) | unit | ipcnet / peer | per CPU-s |" in out
    assert re.search(
        r"\| pipe \| plain os.read/write \| [\d.]+ \([\d.]+-[\d.]+\) \| GiB/s \| [\d.]+x \|", out
    )


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_plot_writes_the_chart(tmp_path, suffix, magic) -> None:
    path = tmp_path / f"chart{suffix}"
    done = bench(*TINY, "--plot", str(path))
    assert done.returncode == 0, done.stderr
    assert path.read_bytes().startswith(magic)
    assert f"chart: {path}" in done.stderr


def test_plot_refuses_other_formats(tmp_path) -> None:
    done = bench(*TINY, "--plot", str(tmp_path / "chart.jpg"))
    assert done.returncode != 0
    assert "must end in .png or .svg" in done.stderr


def test_no_benchmark_named_lists_them_all() -> None:
    done = bench()
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"ipcnet bench: name a benchmark: {', '.join(BENCHMARKS)}\n"
    listed = bench("--help").stdout.split("benchmarks:", 1)[1]
    assert all(f"  {name} " in listed for name in BENCHMARKS), listed


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["rpc", "--transports", "tcp,udp"],
            "argument --transports: unknown udp (one of tcp, unix)",
        ),
        (["http", "--servers", "nginx,apache"], "argument --servers: unknown apache (one of"),
        (["models", "--sizes", "1k,lots"], "argument --sizes: not a size: 'lots'"),
        (["inspector", "--sizes", "10,x"], "argument --sizes: not int values: '10,x'"),
    ],
)
def test_comma_separated_options_say_which_value_is_wrong(args, error) -> None:
    assert (h := harness.listof(int)("1, 2,,3")) == [1, 2, 3], h
    done = bench(*args)
    assert done.returncode == 2 and error in done.stderr, done.stderr


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_every_subcommand_has_json_plot_and_a_sentence_for_help(name) -> None:
    done = bench(name, "--help")
    assert done.returncode == 0, done.stderr
    assert "--json" in done.stdout and "--plot FILE" in done.stdout
    description = done.stdout.split("\n\n")[1].replace("\n", " ")
    assert "``" not in done.stdout
    assert description[0].isupper() or description[0].isdigit(), description
    assert description.endswith("."), description


def test_sentence() -> None:
    assert sentence("``ipcnet bench http``: static files") == "Ipcnet bench http: static files."
    assert sentence("done.") == "Done."


def test_fmt_and_ratios() -> None:
    assert fmt([]) == "-"
    assert fmt([3.0]) == "3"
    assert fmt([1000.0, 3000.0, 2000.0]) == "2,000 (1,000-3,000)"
    rows = [
        Result("a", "ipcnet", "x/s", [10.0]),
        Result("a", "peer", "x/s", [5.0]),
        Result("b", "ipcnet", "s", [2.0], lower_is_better=True),
        Result("b", "peer", "s", [4.0], lower_is_better=True),
        Result("b", "missing", "s", []),
    ]
    assert ratios(rows) == [None, 2.0, None, 2.0, None]  # >1: ipcnet better, either way


def test_rounds_interleave_and_reverse() -> None:
    seen: list[str] = []
    rounds(["a", "b", "c"], 3, seen.append, "t", str)
    assert seen == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]


def test_server_waits_for_its_ready_line_and_stops_its_group(tmp_path) -> None:
    """Ready when the line appears; stopped whole: a child left in its group is killed too."""
    code = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: os._exit(0))\n"
        "child = os.fork()\n"
        "if child == 0:\n    signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)\n"
        "time.sleep(0.2); print('child', child, 'listening on tcp://x:1', flush=True)\n"
        "time.sleep(60)\n"
    )
    log = str(tmp_path / "s.log")
    with Server([sys.executable, "-c", code], log, ready=re.compile(r"listening on (\S+)")) as s:
        assert s.url == "tcp://x:1"
        child = int(s.log().split()[1])
    # the child (now init's) got SIGKILL: it dies (a zombie or gone) once the kernel runs it
    deadline = time.monotonic() + 30
    while (state := proc_state(child)) not in ("Z", "X", "gone") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state in ("Z", "X", "gone"), state


def proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_server_that_dies_is_a_clear_error(tmp_path) -> None:
    argv = [sys.executable, "-c", "import sys; print('no port'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match=r"exited with 3: no port"):
        Server(argv, str(tmp_path / "s.log"), port=harness.free_port())


def test_ipc_and_inspector_give_the_one_schema() -> None:
    done = bench("ipc", "--count", "200", "--rounds", "1", "--size", "100", "--mode", "one-way",
                 "--only", "shm", "--only", "pipe (plain)", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["results"]
    assert [(r["case"], r["peer"]) for r in rows] == [
        ("one-way 100 B", "ipcnet shm"),
        ("one-way 100 B", "pipe (plain)"),
    ]
    assert all(r["median"] > 0 and r["unit"] == "msgs/s" for r in rows)
    done = bench("inspector", "--sizes", "20", "--rounds", "1", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["results"]
    ours = [r for r in rows if r["peer"].startswith("ipcnet")]
    assert ours and all(r["unit"] == "s" and r["lower_is_better"] for r in rows)
    assert all(r["median"] > 0 for r in ours)


def test_child_returns_its_answer_and_reports_its_failure() -> None:
    child = harness.Child(lambda ready: [ready(), os.getpid()][1], 0)
    child.wait_ready()
    assert child.result() not in (None, os.getpid())
    with pytest.raises(RuntimeError, match="ValueError: invalid literal"):
        harness.Child(lambda ready: int("no"), None).result()


def test_rpc_has_the_pyro5_and_rpyc_peers() -> None:
    done = bench("rpc", "--seconds", "0.05", "--repeat", "1", "--transports", "unix",
                 "--skip-framing", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {(r["case"], r["peer"]): r for r in json.loads(done.stdout)["results"]}
    for peer in ("Pyro5", "rpyc"):
        assert rows["unix c=1 ", peer]["median"] > 0
        assert rows["unix c=1 p50", peer]["median"] <= rows["unix c=1 p99", peer]["median"]


def test_relay_is_on_the_harness() -> None:
    done = bench("relay", "--size", "1", "--rounds", "1", "--only", "direct,ipcnet",
                 "--skip", "connections", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["results"]
    assert {(r["case"], r["peer"], r["unit"]) for r in rows} == {
        ("1 MiB through", "ipcnet relay", "GiB/s"),
        ("1 MiB through", "direct (no relay)", "GiB/s"),
        ("1 MiB relay CPU", "ipcnet relay", "cpu-s/GiB"),
        ("1 MiB relay CPU", "direct (no relay)", "cpu-s/GiB"),
    }
    assert all(len(r["samples"]) == 1 for r in rows)
    assert "[1/2] relay: round 1/1 throughput" in done.stderr
