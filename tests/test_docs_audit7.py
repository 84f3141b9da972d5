"""Audit 7, the documentation as a user meets it: README.md and docs/haproxy.md, run as written.

Every example a user copies is executed here as the text has it (in a temporary directory,
ports moved to free loopback ports, the ``ipcnet`` command on PATH as a user has it), and
its output is compared with what the text says, so the documents cannot drift from the code.

Defects found (rule / peer / evidence, then the test):

- The library's relay snippet (README "ipcnet relay") does ``import ipcnet`` and calls
  ``ipcnet.relay(...)``: AttributeError "module 'ipcnet' has no attribute 'relay'", since
  only ``import ipcnet.relay`` made the name (``ipcnet.relay``'s own docstring promises
  ``ipcnet.relay(...)``; the suite's tests all imported the submodule, which hid it). Fixed
  in ``ipcnet/__init__.py`` (a lazy export of the callable module, as ``errors`` is):
  ``test_readme_relay_snippet_runs_after_import_ipcnet``.
- ``ipcnet serve http --help`` said ``--idle-timeout S ... (300; 0 = never)`` while the web
  server's default is 60 s (README: "60 for http"; argparse's ``%(default)s`` is the rule
  for a help that states a default). Worse, the http parser's ``set_defaults`` changed the
  action it shares with every other service (argparse parents share action objects), so a
  parser built with every service (``ipcnet.cli.main([...])`` in-process) gave echo,
  daytime... 60 s instead of 300. Fixed in ``cli/serve.py`` (each service gets its own
  copy of the shared options; the help shows the default in force):
  ``test_serve_http_help_states_its_idle_timeout``,
  ``test_http_idle_default_does_not_leak_into_other_services``.

Documentation fixed (the text was wrong, the code right), each now executed here:
- the demo's sample output (README "Quick start") showed 8 transports; ``ipcnet demo``
  prints shm, mq, semaphore and signal rows too: ``test_readme_demo_sample_lists_the_demo_rows``;
- the "unknown host" row of ``ipcnet connect``'s error table had getaddrinfo's raw text,
  not ipcnet's message: ``test_readme_connect_error_table``;
- the ``ipcnet sockets --json`` sample lacked the ``v6only`` and ``interface`` keys the schema
  table (and the code) have; the schema table's ``proto`` and ``state`` lists lacked
  ``udplite``/``udplite6`` and ``BOUND_INACTIVE``: ``test_readme_sockets_json_sample_is_the_schema``;
- ``ipcnet bench NAME`` listed 8 benchmarks of 10 (``relay`` and ``tls`` missing):
  ``test_readme_bench_names_are_the_benchmarks``.
"""

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

import pytest

from ipcnet.testing import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
HAPROXY_MD = ROOT / "docs" / "haproxy.md"
SRC = str(ROOT / "src")


# --- reading the documents ------------------------------------------------------------


def fenced(path: Path) -> list[tuple[str, str]]:
    """Every fenced block of a Markdown file: (info string, body)."""
    text = path.read_text()
    return re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)


def block(path: Path, first_line: str) -> str:
    """The one fenced block whose body starts with ``first_line``."""
    found = [body for _, body in fenced(path) if body.startswith(first_line)]
    assert len(found) == 1, f"{path.name}: {len(found)} blocks start with {first_line!r}"
    return found[0]


def section(path: Path, heading: str) -> str:
    """The text of a section, from its heading to the next heading of any level."""
    text = path.read_text()
    start = text.index(heading)
    end = re.compile(r"^#", re.M).search(text, start + len(heading))
    return text[start : end.start() if end else len(text)]


def table_rows(text: str) -> list[list[str]]:
    """The cells of a Markdown table's body rows (header and rule dropped)."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    return [c for c in cells[2:] if c]


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# --- running them as a user does ------------------------------------------------------


@pytest.fixture
def user(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A user's environment: an ``ipcnet`` command on PATH (this checkout's), run from a
    fresh temporary directory."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "ipcnet"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m ipcnet "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    yield env


def sh(
    command: str, env: dict[str, str], cwd: Path, timeout: float = 15, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def python(
    code: str, env: dict[str, str], cwd: Path, timeout: float = 15
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == 0, f"the snippet failed:\n{code}\n{r.stderr}"
    return r


@contextmanager
def background(
    argv: list[str], env: dict[str, str], cwd: Path, ready: str = "listening on", count: int = 1
) -> Iterator[subprocess.Popen[str]]:
    """A server started as a user starts it with ``&``; stopped with SIGTERM at the end."""
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    seen, lines = 0, []
    deadline = time.monotonic() + 15
    while seen < count:
        line = proc.stderr.readline()
        assert line, f"{argv} exited before it was ready: {''.join(lines)}"
        lines.append(line)
        seen += ready in line
        assert time.monotonic() < deadline, f"{argv} not ready"
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def console(text: str) -> list[tuple[str, list[str]]]:
    """A transcript's ``$ command`` lines, each with the output lines shown under it."""
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps and line:
            steps[-1][1].append(line)
    return steps


def ipcnet_argv(command: str) -> list[str]:
    """A transcript's ``ipcnet ...`` command (its comment and a trailing ``&`` dropped)."""
    import shlex

    words = shlex.split(command, comments=True)
    assert words[0] == "ipcnet", command
    return (
        [sys.executable, "-m", "ipcnet", *words[1:]]
        if words[-1] != "&"
        else [sys.executable, "-m", "ipcnet", *words[1:-1]]
    )


# --- README: the library --------------------------------------------------------------


def test_readme_pipe_snippet_runs(user: dict[str, str], tmp_path: Path) -> None:
    r = python(block(README, "import os, ipcnet\n\nreader, writer"), user, tmp_path)
    assert r.stdout == "child got b'Message in a pipe.\\n'\n"


def test_readme_tcp_echo_client_snippet(user: dict[str, str], tmp_path: Path) -> None:
    code = block(README, 'import ipcnet\n\nwith ipcnet.connect("tcp://127.0.0.1:9734"')
    port = free_port()
    echo = ["ipcnet", "serve", "echo", f"tcp://127.0.0.1:{port}"]
    with background([sys.executable, "-m", *echo], user, tmp_path):
        r = python(code.replace("9734", str(port)), user, tmp_path)
    assert r.stdout == "b'hello\\n'\n"  # everything it sent back, then EOF


def test_readme_relay_snippet_runs_after_import_ipcnet(
    user: dict[str, str], tmp_path: Path
) -> None:
    """Run as written: ``import ipcnet``, then ``ipcnet.relay(...)`` (its targets are never
    connected to: no client comes)."""
    code = block(README, 'import ipcnet\n\nwith ipcnet.relay("tcp://127.0.0.1:0"')
    r = python(code, user, tmp_path)
    address, counters = r.stdout.splitlines()
    assert re.fullmatch(r"tcp://127\.0\.0\.1:\d+", address) and not address.endswith(":0")
    assert "'balance': 'roundrobin'" in counters and "'connect_failures': {}" in counters


def test_ipcnet_relay_is_still_the_module_after_import_ipcnet_relay() -> None:
    """The fix keeps both spellings: ``ipcnet.relay(...)`` and ``ipcnet.relay.RelayConfig``."""
    code = (
        "import ipcnet; f = ipcnet.relay; import ipcnet.relay; "
        "assert ipcnet.relay is f and callable(f) and f.RelayConfig and f.Relay"
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=15)


def test_readme_framing_snippet(user: dict[str, str], tmp_path: Path) -> None:
    code = block(README, "import ipcnet\nfrom ipcnet.framing import MessageChannel")
    last = code.strip().splitlines()[-1]
    expected = last.split("# ", 1)[1]
    assert python(code, user, tmp_path).stdout.strip() == expected


def test_readme_serve_http_library_snippet(user: dict[str, str], tmp_path: Path) -> None:
    code = block(README, "from ipcnet.drivers import ServeConfig, serve")
    port = free_port()
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.html").write_text("hello from the snippet\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", code.replace("8000", str(port))],
        env=user,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = _get_when_up(port, "/")
        assert body == b"hello from the snippet\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "GET /" not in err  # HttpOptions(quiet=True): no access log


def _get_when_up(port: int, path: str, deadline: float = 10.0) -> bytes:
    import http.client

    end = time.monotonic() + deadline
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            body = conn.getresponse().read()
            conn.close()
            return body
        except ConnectionRefusedError:
            assert time.monotonic() < end, "the server did not start"
            time.sleep(0.05)


def test_readme_shm_mq_and_semaphore_snippets(user: dict[str, str], tmp_path: Path) -> None:
    shm = block(README, 'import ipcnet, os\nwith ipcnet.listen("shm://@ring")')
    tag = f"a7docs{os.getpid()}"
    shm = shm.replace("shm://@ring", f"shm://@{tag}")
    assert python(shm, user, tmp_path).stdout == "b'from the child\\n'\n"

    mq = block(README, 'jobs = ipcnet.open_datagram("mq:///jobs')
    mq = "import ipcnet\n" + mq.replace("mq:///jobs", f"mq:///{tag}")
    mq += f"\nimport ipcnet.transports.mq\nipcnet.transports.mq.remove('mq:///{tag}')\n"
    expected = mq.splitlines()[3].split("# ", 1)[1].strip()
    assert python(mq, user, tmp_path).stdout.strip() == expected  # (b'urgent', 9)

    sem = block(README, 'lock = ipcnet.UndoSemaphore("counter-lock")')
    sem = "import ipcnet\n" + sem.replace("counter-lock", tag).replace("...", "pass")
    sem += "\nlock.unlink()\n"
    python(sem, user, tmp_path)


def test_readme_library_names_exist() -> None:
    """The names the library section promises: Channel's calls and the error tree."""
    import ipcnet
    import ipcnet.errors as errors

    text = section(README, "## The library")
    first = text.split("A parent and a child")[0]
    for name in re.findall(r"`(\w+)(?:\([^`]*\))?`", first):
        if name in ("b", "with", "recv", "Channel", "Closed", "ValueError", "LimitExceeded"):
            continue
        assert hasattr(ipcnet.Channel, "__next__" if name == "next" else name), name
    tree = text.split("Errors are one tree")[1].split("OSError")[0]
    for parent, children in re.findall(r"`(\w+)` \(([^)]*)\)", tree):
        for child in code_spans(children):
            assert issubclass(getattr(errors, child), getattr(errors, parent)), child
    for name in code_spans(tree)[1:]:  # after `ipcnet.errors`
        assert hasattr(errors, name), name
    assert issubclass(errors.Closed, ValueError)


# --- help texts against the README ----------------------------------------------------


def test_serve_http_help_states_its_idle_timeout(user: dict[str, str], tmp_path: Path) -> None:
    """README (the web server): "A keep-alive connection closes after ``--idle-timeout``
    idle seconds (60 for http)"; the help must state the default in force."""
    assert "(60 for http)" in section(README, "## The web server")
    r = sh("ipcnet serve http --help", user, tmp_path)
    help_text = " ".join(r.stdout.split())
    assert "--idle-timeout S close silent connections (60; 0 = never)" in help_text
    r = sh("ipcnet serve echo --help", user, tmp_path)
    assert "--idle-timeout S close silent connections (300; 0 = never)" in " ".join(
        r.stdout.split()
    )


def test_http_idle_default_does_not_leak_into_other_services(tmp_path: Path) -> None:
    """A parser built with every service (``ipcnet.cli.main`` called in-process, where
    sys.argv names no service) gave echo and daytime the web server's 60 s."""
    code = textwrap.dedent(
        """
        import sys
        sys.argv = ["embedding-program"]
        from ipcnet.cli import build_parser
        parser = build_parser("serve")
        for argv in (["echo"], ["daytime"], ["http", "."], ["echo"]):
            args = parser.parse_args(["serve", *argv, "tcp://127.0.0.1:1"])
            print(argv[0], args.idle_timeout)
        """
    )
    env = dict(os.environ, PYTHONPATH=SRC)
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=15
    )
    assert r.stdout.split("\n") == ["echo 300.0", "daytime 300.0", "http 60.0", "echo 300.0", ""]
