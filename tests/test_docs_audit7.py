"""Audit 7, the documentation as a user meets it: README.md and docs/haproxy.md, run as written.

Every example a user copies is executed here as the text has it (in a temporary directory,
ports moved to free loopback ports, the ``ipcnet`` command on PATH as pip installs it), and
what it prints is compared with what the text shows, so the documents cannot drift from the
code; the claims about named peers (curl, socat, HAProxy) are checked against those peers.
Tests skip when a peer binary (or root, for XDP) is missing.

Defects in the code (the document was right), each with its test:

- README's relay snippet does ``import ipcnet`` then ``ipcnet.relay(...)``: AttributeError
  "module 'ipcnet' has no attribute 'relay'" (only ``import ipcnet.relay`` made the name,
  which every suite test did; ``ipcnet.relay``'s docstring promises ``ipcnet.relay(...)``).
  ``ipcnet/__init__.py`` exports the callable module lazily, as ``errors``:
  ``test_readme_relay_snippet_runs_after_import_ipcnet``.
- ``ipcnet serve http --help`` said ``--idle-timeout ... (300; 0 = never)`` while the web
  server's default is 60 s (README: "60 for http"). And http's ``set_defaults`` changed the
  argparse action every service shares (parents share action objects), so a parser built
  with every service (``ipcnet.cli.main`` in-process) gave echo and daytime 60 s, not 300.
  ``cli/serve.py``: a copy of the shared options per service, the help states
  ``%(default)g``: ``test_serve_http_help_states_its_idle_timeout``,
  ``test_http_idle_default_does_not_leak_into_other_services``.
- ``ipcnet connect``'s "interrupted: gave up before the peer ended its side (1234 bytes
  received)" (README's error table) said "0 bytes received" in about half the runs when
  SIGTERM came right after the peer's bytes reached stdout: the pump thread had written them
  but not yet counted them when the main thread reported. ``relay/streams.py``: the count
  waits (0.5 s at most) for a write that has returned:
  ``test_readme_connect_error_table[SIGTERM with the peer still open]``.
- docs/haproxy.md and README's signal table: with ``--drain-delay`` ``/_health`` answers
  ``503 draining`` for the delay, then the graceful stop (``503 stopping``); it went on
  saying "draining" to the end (the stats' health too). ``drivers/core.py``:
  ``test_health_after_a_drain_delay_says_stopping``.

Documents fixed (the code was right), each now executed or checked here:

- README quick start: the ``ipcnet demo`` sample had 8 rows; the demo prints shm, mq,
  semaphore and signal too (and udp+xdp as root): ``test_readme_demo_sample_lists_the_demo_rows``;
- the "unknown host" row of connect's error table had getaddrinfo's raw text, not ipcnet's
  message: ``test_readme_connect_error_table[unknown host]``;
- the ``sockets --json`` sample lacked the ``v6only`` and ``interface`` keys; the schema table's
  ``proto`` and ``state`` lists lacked ``udplite``/``udplite6`` and ``BOUND_INACTIVE``:
  ``test_readme_sockets_json_sample_is_the_schema``;
- ``ipcnet bench NAME`` listed 8 of the 10 benchmarks: ``test_readme_bench_names_are_the_benchmarks``;
- the XDP library snippet called ``ipcnet.xdp.find("veth0")`` after its ``with`` block, which
  had detached the filter (Unsupported), and its ``to_dict()`` comment lacked keys; the
  transcript lacked detach's line: ``test_readme_xdp_transcript_and_snippet``;
- docs/haproxy.md said that without ``check-send-proxy`` every check is refused; HAProxy's
  manual (``check-send-proxy``, ``send-proxy``) and HAProxy 2.6 itself send the header on a
  send-proxy-v2 server's checks unless they go to another ``port``/``addr``:
  ``test_haproxy_recipe_runs_as_written``;
- the ``ipcnet serve`` synopsis showed ``--model M`` as required: ``test_readme_commands_parse``
  (every ``ipcnet`` command line of the README goes through the CLI's parser).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import threading
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
IPCNET = ["ipcnet"]  # found on the PATH of the ``user`` fixture's environment


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
    """The cells of the first Markdown table's body rows (header and rule dropped)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    rows = lines[start:end]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    return [c for c in cells[2:] if c]


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# --- running them as a user does ------------------------------------------------------


@pytest.fixture
def user(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A user's environment: an ``ipcnet`` command on PATH (this checkout's)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "ipcnet"
    # what pip installs (a script run by this Python): the process is named ipcnet
    shim.write_text(
        f"#!{sys.executable}\nimport sys\nfrom ipcnet.cli import entry\nsys.exit(entry())\n"
    )
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


def help_of(command: str) -> str:
    """``ipcnet COMMAND --help``, built in this process (the same parser, no interpreter to
    start), its whitespace collapsed."""
    import contextlib
    import io

    from ipcnet.cli import build_parser

    words = command.split()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser(words[0]).parse_args([*words, "--help"])
    return " ".join(out.getvalue().split())


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
    return words[:-1] if words[-1] == "&" else words


# --- README: the library --------------------------------------------------------------


def test_readme_pipe_snippet_runs(user: dict[str, str], tmp_path: Path) -> None:
    r = python(block(README, "import os, ipcnet\n\nreader, writer"), user, tmp_path)
    assert r.stdout == "child got b'Message in a pipe.\\n'\n"


def test_readme_tcp_echo_client_snippet(user: dict[str, str], tmp_path: Path) -> None:
    code = block(README, 'import ipcnet\n\nwith ipcnet.connect("tcp://127.0.0.1:9734"')
    port = free_port()
    echo = ["ipcnet", "serve", "echo", f"tcp://127.0.0.1:{port}"]
    with background(echo, user, tmp_path):
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


# --- README: quick start --------------------------------------------------------------


def _demo_rows(lines: list[str]) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith("transport "))
    end = lines.index("", start)
    return [re.split(r"\s{2,}", line)[0] for line in lines[start + 1 : end]]


def test_readme_demo_sample_lists_the_demo_rows(user: dict[str, str], tmp_path: Path) -> None:
    """The sample has every row ``ipcnet demo`` prints (``udp+xdp`` only as root with
    clang), the same header and the same last line."""
    sample = block(README, "$ ipcnet demo\n").splitlines()[1:]
    r = sh("ipcnet demo", user, tmp_path, timeout=30)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == sample[0]
    assert out[2] == sample[2]  # the header
    rows = [row for row in _demo_rows(out) if row != "udp+xdp"]
    assert _demo_rows(sample) == rows
    n = len(rows)
    assert sample[-1] == f"{n} of {n} transports carried the message."
    assert re.fullmatch(r"(\d+) of \1 transports carried the message\.", out[-1])


# --- README: ipcnet connect -----------------------------------------------------------


def test_readme_connect_transcript(user: dict[str, str], tmp_path: Path) -> None:
    steps = console(block(README, "$ printf 'hello\\n' | ipcnet connect tcp://"))
    port = free_port()
    with background([*IPCNET, "serve", "echo", f"tcp://127.0.0.1:{port}"], user, tmp_path):
        command, shown = steps[0]
        r = sh(command.replace("9734", str(port)), user, tmp_path)
    assert (r.returncode, r.stdout.splitlines()) == (0, shown)
    command = next(c for c, _ in steps if c.startswith("ipcnet connect exec:yes"))
    r = sh(command.split("#")[0] + "; exit ${PIPESTATUS[0]}", user, tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "y\n", "")  # ends quietly, status 0


@contextmanager
def tcp_peer(behaviour: str) -> Iterator[int]:
    """A peer that sends 1234 bytes and stays open ("open"), or resets at once ("reset")."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    done = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            if behaviour == "reset":
                time.sleep(0.2)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            conn.sendall(b"x" * 1234)
            done.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        done.set()
        server.close()
        thread.join(10)


def _connect_case(case: str, message: str, tmp: Path, env: dict[str, str]) -> tuple[str, str]:
    """The command that meets a row of the error table, and the message it must print (the
    row's own, with this run's paths, ports and timers put in)."""
    url = {
        "nothing listens": "tcp://127.0.0.1:9",
        "no unix socket": "unix:///tmp/nothing-here",
        "missing port": "tcp://host",
        "typo in scheme": "tpc://h:1",
        "unknown host": "tcp://no-such-host.invalid:80",
        "no such command": "exec:/no/such/cmd",
        "no fifo": "fifo:///tmp/nofifo",
        "family mismatch": "udp6://127.0.0.1:5",
    }.get(case)
    if url is not None:
        return f"ipcnet connect '{url}' </dev/null", message
    if "interpreter missing" in case:
        (tmp / "s").write_text("#!/no/such/sh\necho hi\n")
        (tmp / "s").chmod(0o755)
        return "ipcnet connect exec:./s </dev/null", message
    if case == "fifo without reader":
        os.mkfifo(tmp / "f")
        message = message.replace("/tmp/f", f"{tmp}/f").replace("30.0 s", "0.5 s")
        return f"ipcnet connect --connect-timeout 0.5 fifo://{tmp}/f </dev/null", message
    raise AssertionError(f"no recipe for the README's row {case!r}: add one")


def connect_table() -> list[list[str]]:
    text = section(README, "## `ipcnet connect`")
    return table_rows(text.split("Errors are one line on stderr")[1])


@pytest.mark.parametrize("row", connect_table(), ids=lambda row: row[0])
def test_readme_connect_error_table(row: list[str], user: dict[str, str], tmp_path: Path) -> None:
    case, cell, status = row
    message = code_spans(cell)[0]
    if case == "an exec: child that fails":
        (tmp_path / "job").write_text("#!/bin/sh\nexit 3\n")
        (tmp_path / "job").chmod(0o755)
        r = sh("ipcnet connect exec:./job </dev/null", user, tmp_path)
        assert (r.stderr.strip(), r.returncode) == (message, int(status))
        killed = code_spans(cell)[1].replace("...", "ipcnet connect: exec:./job")
        (tmp_path / "job").write_text("#!/bin/sh\nkill -SEGV $$\n")
        r = sh("ipcnet connect exec:./job </dev/null", user, tmp_path)
        assert (r.stderr.strip(), r.returncode) == (killed, int(status))
        return
    if case == "peer reset":
        with tcp_peer("reset") as port:
            r = sh(f"ipcnet connect tcp://127.0.0.1:{port}", user, tmp_path)  # stdin: EOF
        assert r.stderr.strip() == message.replace("...", f"127.0.0.1:{port}")
        assert r.returncode == int(status)
        return
    if "--linger" in case:
        with tcp_peer("open") as port:
            r = sh(f"ipcnet connect --linger 0.5 tcp://127.0.0.1:{port} </dev/null", user, tmp_path)
        assert r.stderr.strip() == message.replace("for 2 s", "for 0.5 s")
        assert (r.returncode, len(r.stdout)) == (int(status), 1234)
        return
    if case.startswith("SIGTERM"):
        # the signal at once after the bytes were read from our stdout: the count once
        # missed the write the pump had made but not yet counted ("0 bytes received"),
        # in about half the runs, hence three
        for _ in range(3):
            with tcp_peer("open") as port:
                proc = subprocess.Popen(
                    [*IPCNET, "connect", f"tcp://127.0.0.1:{port}"],
                    env=user,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                assert proc.stdout is not None
                assert len(proc.stdout.read(1234)) == 1234
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=10)
            assert (err.strip(), proc.returncode) == (message, int(status))
        return
    command, message = _connect_case(case, message, tmp_path, user)
    r = sh(command, user, tmp_path, timeout=30)
    if case == "unknown host" and "temporary failure" in r.stderr:
        pytest.skip("no resolver here: " + r.stderr.strip())
    assert (r.stderr.strip(), r.returncode) == (message, int(status))


# --- README: ipcnet serve -------------------------------------------------------------


def _steps_shape(lines: list[str]) -> list[str]:
    """A trace with its pids, descriptors and ports taken out."""
    out = []
    for line in lines:
        line = re.sub(r"\[pid \d+ ", "[pid N ", line)
        line = re.sub(r"fd \d+", "fd N", line)
        out.append(re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:P", line))
    return out


def test_readme_trace_sample(user: dict[str, str], tmp_path: Path) -> None:
    """The ``--trace`` sample: one client sends ``hello`` and half-closes, then SIGTERM."""
    sample = block(README, "$ ipcnet serve echo tcp://127.0.0.1:9734 --model iterative --trace")
    command, shown = console(sample)[0]
    port = free_port()
    argv = ipcnet_argv(command.replace("9734", str(port)))
    proc = subprocess.Popen(argv, env=user, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = [proc.stderr.readline() for _ in range(4)]
    assert "listening on" in lines[-1]
    sh(f"printf 'hello\\n' | ipcnet connect tcp://127.0.0.1:{port}", user, tmp_path)
    for _ in range(5):
        lines.append(proc.stderr.readline())
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=10)
    lines = [line.rstrip("\n") for line in lines] + rest.splitlines()
    assert proc.returncode == 0
    assert _steps_shape(lines) == _steps_shape(shown)


# --- README: RPC ----------------------------------------------------------------------


def test_readme_rpc_transcript_and_clients(user: dict[str, str], tmp_path: Path) -> None:
    api = block(README, "# api.py\n")
    (tmp_path / "api.py").write_text(api)
    steps = console(block(README, "$ ipcnet rpc serve api:methods tcp://127.0.0.1:9000"))
    port = free_port()
    sock = f"{tmp_path}/api.sock"

    def here(text: str) -> str:
        return text.replace("9000", str(port)).replace("/tmp/api.sock", sock)

    first, _ = steps[0]
    with background(ipcnet_argv(here(first)), user, tmp_path, count=2):
        for command, shown in steps[1:]:
            r = sh(here(command), user, tmp_path)
            assert (r.returncode, r.stdout.splitlines()) == (0, shown), command
        if shutil.which("socat") is not None:  # "printf '{...}' | socat - TCP:host:port"
            prose = " ".join(README.read_text().split())
            assert "`printf '{...}' | socat - TCP:host:port` is answered" in prose
            call = '{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}'  # no newline
            r = sh(f"printf '{call}' | socat - TCP:127.0.0.1:{port}", user, tmp_path)
            assert r.stdout == '{"jsonrpc":"2.0","id":1,"result":3}\n'
        client = block(README, "from ipcnet import rpc\nwith rpc.connect(")
        sync, aio = client.split("# asyncio")
        code = [here(line) for line in sync.splitlines()]
        # each commented expression is checked against its comment's value
        checks = {"client.add(1, 2)": "3", "client.with_timeout(0.5).add(a=1, b=2)": "3"}
        for i, line in enumerate(code):
            expression = line.split("#")[0].strip()
            if expression in checks:
                code[i] = f"    assert {expression} == {checks[expression]}"
            if expression.startswith("client.batch("):
                code[i] = f"    print(repr({expression}))"
        body = textwrap.indent(
            here(aio).replace("await client.batch", "print(await client.batch"), "    "
        )
        body = body.replace("[3, 4])])", "[3, 4])]))")
        program = "\n".join(code) + "\nimport asyncio\nasync def main():\n" + body
        program += "\nasyncio.run(main())\n"
        out = python(program, user, tmp_path).stdout.splitlines()
    assert out[0].startswith("[3, RPCError(")  # one JSON-RPC batch: [3, RPCError(...)]
    assert out[1] == "[3, 7]"


def test_readme_jsonrpc_over_http_transcript(user: dict[str, str], tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (make system-deps installs it)")
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "api.py").write_text(block(README, "# api.py\n"))
    steps = console(block(README, "$ ipcnet rpc serve mypkg.api:methods http://"))
    port = free_port()
    first, _ = steps[0]
    with background(ipcnet_argv(first.replace("8545", str(port))), user, tmp_path):
        for command, shown in steps[1:]:
            r = sh(command.replace("8545", str(port)), user, tmp_path)
            assert (r.returncode, r.stdout.splitlines()) == (0, shown), command
        # "405 with Allow: POST for another method, 415 for a Content-Type other than
        # application/json, ... 404 for another path", "204 when the body held only
        # notifications"
        import http.client

        def answer(method: str, path: str, body: bytes, kind: str) -> tuple[int, str | None]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request(method, path, body=body, headers={"Content-Type": kind})
            r = conn.getresponse()
            r.read()
            conn.close()
            return r.status, r.getheader("Allow")

        note = b'{"jsonrpc":"2.0","method":"add","params":[1,2]}'
        assert answer("GET", "/rpc", b"", "application/json") == (405, "POST")
        assert answer("POST", "/rpc", note, "text/plain")[0] == 415
        assert answer("POST", "/other", note, "application/json")[0] == 404
        assert answer("POST", "/rpc", note, "application/json")[0] == 204


# --- README: ipcnet sockets -----------------------------------------------------------


def test_readme_sockets_json_sample_is_the_schema(user: dict[str, str], tmp_path: Path) -> None:
    """The ``--json`` sample, the schema table and the code name the same keys in the same
    order ("Keys appear in this order"), and the sample is what the command prints for a
    listening echo server (values of this run aside); the other tables' headers too."""
    from ipcnet.inspector.model import PROTOCOLS, SCHEMA, TCP_STATES

    text = block(README, "$ ipcnet sockets -tap --port 9734")
    steps = dict(console(text))
    json_step = next(c for c in steps if c.endswith("--json"))
    sample = json.loads("\n".join(steps[json_step]))
    table = section(README, "### JSON schema (version 1)")
    keys = [key for row in table_rows(table) for key in code_spans(row[0])]
    assert keys == list(SCHEMA) == list(sample["sockets"][0])
    proto_row = next(row for row in table_rows(table) if row[0] == "`proto`")
    assert code_spans(proto_row[1]) == list(PROTOCOLS)
    state_row = next(row for row in table_rows(table) if row[0] == "`state`")
    states = set(TCP_STATES.values()) - {"NEW_SYN_RECV"}  # shown as SYN_RECV, as by ss
    assert set(code_spans(state_row[1])) - {"--state bound-inactive"} == states | {"UNCONN"}

    port = free_port()
    server = [*IPCNET, "serve", "echo", f"tcp://127.0.0.1:{port}"]
    with background(server, user, tmp_path) as proc:
        r = sh(json_step.replace("9734", str(port)), user, tmp_path)
        live = json.loads(r.stdout)
        tap = sh(f"ipcnet sockets -tap --port {port}", user, tmp_path).stdout.splitlines()
        fds = sh(f"ipcnet sockets --pid {proc.pid} --fds", user, tmp_path).stdout
    assert list(live) == list(sample) == ["version", "netns", "sockets"]
    row = live["sockets"][0]
    assert list(row) == list(sample["sockets"][0])
    expected = dict(sample["sockets"][0], local_port=port, inode=row["inode"], uid=row["uid"])
    expected["local_port_class"] = "dynamic" if port >= 49152 else "registered"
    expected.update(user=row["user"], processes=[dict(pid=proc.pid, name="ipcnet", fds=[6])])
    assert dict(row, processes=[dict(row["processes"][0], fds=[6])]) == expected
    assert tap[0].split() == steps[next(c for c in steps if "-tap" in c)][0].split()
    listening = f"{row['processes'][0]['fds'][0]:>4} -> socket:[{row['inode']}]  tcp LISTEN "
    assert listening + f"127.0.0.1:{port} 0.0.0.0:* recv-q=0 send-q=128 others=-" in fds


# --- README: names and grammar --------------------------------------------------------


def test_readme_bench_names_are_the_benchmarks() -> None:
    from ipcnet.bench.harness import BENCHMARKS

    text = section(README, "## Benchmarks: `ipcnet bench`")
    names = code_spans(text.split("runs one benchmark beside its peers:")[1].split("(`")[0])
    assert names == list(BENCHMARKS)


def test_readme_address_table_parses_and_prints_back() -> None:
    """Every example of the Addresses table parses, and ``str(address)`` parses back to an
    equal address; the error messages the section quotes are the parser's."""
    from ipcnet.addresses import parse
    from ipcnet.errors import InvalidAddress

    text = section(README, "## Addresses")
    examples = [url for row in table_rows(text) for url in code_spans(row[1])]
    assert len(examples) >= 19
    for url in examples:
        address = parse(url)
        assert parse(str(address)) == address, url
    messages = {
        "tcp://host": "invalid address 'tcp://host': missing port",
        "tcp://h:65536": "... port 65536 out of range 0-65535",
        "unix:///" + "a" * 107: "... unix socket path is 108 bytes, over the limit of\n107",
        "tpc://h:1": "... unknown scheme 'tpc' (did you mean tcp://?)",
    }
    quoted = " ".join(text.split("Bad input says what is wrong:")[1].split())
    for url, shown in messages.items():
        shown = " ".join(shown.split())
        assert f"`{shown}`" in quoted, shown
        with pytest.raises(InvalidAddress) as raised:
            parse(url)
        assert str(raised.value).endswith(shown.removeprefix("..."))


# --- README: TLS ----------------------------------------------------------------------


def test_readme_https_in_two_commands(user: dict[str, str], tmp_path: Path) -> None:
    """``ipcnet cert``, ``ipcnet serve http . tls://localhost:8443 ...``, then curl and
    ``ipcnet connect`` trust the CA and get the page (port moved)."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (make system-deps installs it)")
    steps = console(block(README, "$ ipcnet cert"))
    port = free_port()
    (tmp_path / "index.html").write_text("over tls\n")
    r = sh(steps[0][0], user, tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("ca.pem", "ca-key.pem", "server.pem", "server-key.pem"):
        assert (tmp_path / name).exists()
    for name in ("ca-key.pem", "server-key.pem"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600  # "key files are mode 0600"
    assert steps[1][0].split("#")[0].strip() in r.stdout  # cert's own hint is the README's
    with background(ipcnet_argv(steps[1][0].replace("8443", str(port))), user, tmp_path):
        curl, other = steps[2][0].replace("8443", str(port)).split("# or:")
        r = sh(curl, user, tmp_path)
        assert (r.returncode, r.stdout) == (0, "over tls\n"), r.stderr
        request = "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"
        r = sh(other, user, tmp_path, stdin=request)
        assert r.returncode == 0 and r.stdout.startswith("HTTP/1.1 200 OK"), r.stderr
        assert r.stdout.endswith("\n\nover tls\n")  # (text mode: CRLF read as LF)


def test_readme_tls_options_are_flags_and_keywords() -> None:
    import dataclasses

    from ipcnet.transports.tls.context import TLSOptions

    text = section(README, "## TLS: `tls://`, HTTPS, mutual TLS")
    table = text.split("The options have the same names")[1]
    fields = {f.name for f in dataclasses.fields(TLSOptions)}
    connect_help, serve_help = help_of("connect"), help_of("serve echo")
    rows = table_rows(table)
    assert len(rows) >= 10
    for flags, keywords, _ in rows:
        for keyword in code_spans(keywords):
            assert keyword.split("=")[0] in fields, keyword
        for flag in re.findall(r"--[\w-]+", flags):
            assert flag in connect_help or flag in serve_help, flag


# --- docs/haproxy.md ------------------------------------------------------------------


def _recipe_server_argv(root: Path, port: int, log: Path) -> list[str]:
    """Section 2's server command for ``web1``, on a loopback port instead of its veth."""
    import shlex

    loop = block(HAPROXY_MD, "for i in 1 2 3; do\n  ip netns exec web$i ipcnet serve http")
    command = loop.split("ip netns exec web$i ", 1)[1].split(" 2>>")[0].replace("\\\n", " ")
    command = command.replace("$i", "1").replace("/srv/www", str(root))
    command = command.replace("tcp://10.200.1.2:8080", f"tcp://127.0.0.1:{port}")
    return shlex.split(command.replace("/var/log/ipcnet/web1.log", str(log)))


def test_haproxy_recipe_runs_as_written(user: dict[str, str], tmp_path: Path) -> None:
    """The HAProxy configuration is valid as written; with web1 on a loopback port (section
    2's command, flags as written) and the checks sped up as the text says the test does,
    web1 is UP and answers through HAProxy; the same line without ``check-send-proxy`` is
    UP too (HAProxy sends the header on a send-proxy-v2 server's checks), and DOWN once its
    checks go to an explicit ``port`` (the header is then not sent: refused); the
    ``show stat | cut -d, -f1,2,18`` line shows each server's status."""
    for tool in ("haproxy", "socat", "curl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make system-deps installs it)")
    config = block(HAPROXY_MD, "global\n")
    (tmp_path / "as-written.cfg").write_text(config)
    r = subprocess.run(
        ["haproxy", "-c", "-f", str(tmp_path / "as-written.cfg")],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert r.returncode == 0, r.stdout + r.stderr

    root, log = tmp_path / "www", tmp_path / "web1.log"
    root.mkdir()
    (root / "index.html").write_text("behind haproxy\n")
    port, front = free_port(), free_port()
    sock = tmp_path / "haproxy.sock"
    lines = []
    for line in config.replace("/run/haproxy.sock", str(sock)).splitlines():
        line = line.replace("bind :80", f"bind 127.0.0.1:{front}")
        line = line.replace("inter 1s fall 2 rise 2", "inter 100 fall 1 rise 2")
        if line.strip().startswith("server web1 "):
            line = line.replace("10.200.1.2:8080", f"127.0.0.1:{port}")
        elif line.strip().startswith("server web2 "):  # checks still send the header
            line = line.replace("10.200.2.2:8080", f"127.0.0.1:{port}")
            line = line.replace(" check-send-proxy", "")
        elif line.strip().startswith("server web3 "):  # a check port: the header is not sent
            line = line.replace("10.200.3.2:8080", f"127.0.0.1:{port}")
            line = line.replace(" check-send-proxy", f" port {port}")
        lines.append(line)
    (tmp_path / "haproxy.cfg").write_text("\n".join(lines) + "\n")
    show = re.search(
        r"`(echo \"show stat\" \| socat - /run/haproxy.sock \| cut [^`]*)`", HAPROXY_MD.read_text()
    )
    assert show, "the 'show stat' line of section 4"
    show_stat = show.group(1).replace("/run/haproxy.sock", str(sock))

    with background(_recipe_server_argv(root, port, log), user, tmp_path, count=1):
        haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 8
            while True:
                stat_lines = sh(show_stat, user, tmp_path).stdout.splitlines()
                status = dict(line.rsplit(",", 1) for line in stat_lines[1:] if line)
                want = {"ipcnet,web1": "UP", "ipcnet,web2": "UP", "ipcnet,web3": "DOWN"}
                if all(status.get(name) == state for name, state in want.items()):
                    break
                assert time.monotonic() < deadline, stat_lines
                time.sleep(0.1)
            assert stat_lines[0] == "# pxname,svname,status"
            r = sh(f"curl -s http://127.0.0.1:{front}/", user, tmp_path)
            assert r.stdout == "behind haproxy\n"
        finally:
            haproxy.terminate()
            haproxy.wait(10)
    requests = [line for line in log.read_text().splitlines() if '"GET / ' in line]
    assert len(requests) == 1 and requests[0].startswith("127.0.0.1 - - [")
    checks = [line for line in log.read_text().splitlines() if "/_health" in line]
    # LOCAL checks, answered ok while serving; a check HAProxy sent as it was stopped may
    # be read once the server's own stop began, and a draining server answers it 503
    statuses = [line.rsplit(" ", 2)[1] for line in checks]
    serving = statuses[: len(statuses) - statuses[::-1].index("200")] if "200" in statuses else []
    assert serving and set(serving) == {"200"}, checks
    assert set(statuses[len(serving) :]) <= {"503"}, checks


def test_health_after_a_drain_delay_says_stopping(user: dict[str, str], tmp_path: Path) -> None:
    """docs/haproxy.md: ``/_health`` answers ``503 draining`` for the ``--drain-delay``
    while the server still serves, and ``503 stopping`` once the graceful stop began (the
    README's signal table: "then the graceful stop above"). After the delay it went on
    saying "draining" until the end."""
    import http.client

    (tmp_path / "www").mkdir()
    port = free_port()
    argv = ["ipcnet", "serve", "http", "www", f"tcp://127.0.0.1:{port}", "-q"]
    argv += ["--grace", "4", "--drain-delay", "0.4"]
    with background(argv, user, tmp_path) as proc:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

        def health() -> tuple[int, bytes, str | None]:
            conn.request("GET", "/_health")
            r = conn.getresponse()
            return r.status, r.read(), r.getheader("Connection")

        assert health() == (200, b"ok\n", "keep-alive")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        assert health() == (503, b"draining\n", "keep-alive")  # still serving
        time.sleep(0.6)  # the stop began; an idle keep-alive connection may ask once more
        assert health() == (503, b"stopping\n", "close")
        conn.close()
        assert proc.wait(10) == 0


def test_readme_signals_snippet(user: dict[str, str], tmp_path: Path) -> None:
    """The signals-as-events loop names each signal and its sender (it never ends: killed)."""
    code = "import ipcnet\n" + block(README, 'with ipcnet.signals("USR1", "TERM") as source:')
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code], env=user, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 10
        blocked = 0
        while blocked & (1 << (signal.SIGUSR1 - 1)) == 0:  # the `with` has blocked them
            assert time.monotonic() < deadline and proc.poll() is None
            status = Path(f"/proc/{proc.pid}/status").read_text()
            blocked = int(re.search(r"SigBlk:\s*([0-9a-f]+)", status).group(1), 16)  # type: ignore[union-attr]
            time.sleep(0.02)
        proc.send_signal(signal.SIGUSR1)
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        second = proc.stdout.readline()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    me = f"from pid {os.getpid()} uid {os.getuid()}\n"
    assert (first, second) == ("SIGUSR1 " + me, "SIGTERM " + me)


def test_readme_ipcs_sample(user: dict[str, str], tmp_path: Path) -> None:
    """``ipcnet ipcs -k memfd -k posix -p PID`` for a process holding a ``shm_pair()``."""
    steps = console(block(README, "$ ipcnet ipcs -k memfd -k posix -p "))
    command, shown = steps[0]
    holder = subprocess.Popen(
        [sys.executable, "-c", "import ipcnet, sys; a, b = ipcnet.shm_pair(); sys.stdin.read()"],
        env=user,
        stdin=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            r = sh(command.replace("6246", str(holder.pid)), user, tmp_path)
            if "shm-pair" in r.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        holder.communicate("")
    out = r.stdout.splitlines()
    assert out[0].split() == shown[0].split()  # the header
    words, sample = out[1].split(), shown[1].split()
    sample[3] = words[3]  # the Id: this memfd's inode
    assert words == [word.replace("6246", str(holder.pid)) for word in sample]


def test_readme_serve_http_commands(user: dict[str, str], tmp_path: Path) -> None:
    """The web server's command lines (ports and paths moved) listen where they say and
    serve the page; ``--access-log`` gets the request, ``--quiet`` logs nothing."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (make system-deps installs it)")
    steps = console(block(README, "$ ipcnet serve http ./public "))
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.html").write_text("public\n")
    a, b = free_port(), free_port()
    sock, log = f"{tmp_path}/www.sock", tmp_path / "www.log"
    second = steps[1][0].replace("tcp://:8080", f"tcp://127.0.0.1:{a}")
    second = second.replace("/run/www.sock", sock)
    with background(ipcnet_argv(second), user, tmp_path, count=2) as proc:
        assert sh(f"curl -s http://127.0.0.1:{a}/", user, tmp_path).stdout == "public\n"
        assert sh(f"curl -s --unix-socket {sock} http://x/", user, tmp_path).stdout == "public\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stderr is not None and proc.stderr.read() == ""  # --quiet
    third = steps[2][0].replace("/var/log/www.log", str(log))
    # its default address (tcp://127.0.0.1:8000) moved: given after ROOT (argparse takes
    # no positional after the options once ROOT's have been taken)
    third = third.split("#")[0].replace("./public", f"./public tcp://127.0.0.1:{b}")
    with background(ipcnet_argv(third), user, tmp_path):
        assert sh(f"curl -s http://127.0.0.1:{b}/", user, tmp_path).stdout == "public\n"
    assert '"GET / HTTP/1.1" 200 7' in log.read_text()


# --- README: XDP (root, clang) --------------------------------------------------------


def _xdp_unavailable() -> str | None:
    from ipcnet.testing import netns

    if os.geteuid() != 0:
        return "ipcnet xdp needs root"
    if shutil.which("clang") is None:
        return "clang is not installed (make system-deps installs it)"
    return netns.unavailable()


def _shape(line: str) -> str:
    """A line with its numbers and tag taken out, its columns' widths ignored."""
    return " ".join(re.sub(r"\b[0-9a-f]{16}\b|\b\d+\b", "N", line).split())


def test_readme_xdp_transcript_and_snippet(user: dict[str, str], tmp_path: Path) -> None:
    """The ``ipcnet xdp`` transcript on a veth0 in a namespace of the test's own (no traffic:
    the counters' values aside), then the library snippet there as written."""
    why = _xdp_unavailable()
    if why:
        pytest.skip(why)
    from ipcnet.testing import netns

    steps = console(block(README, "$ sudo ipcnet xdp attach veth0"))
    snippet = block(README, "import ipcnet.xdp\nwith ipcnet.xdp.attach(")
    with netns.namespaces("a7docs") as (ns,):
        netns.ip("-n", ns, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
        for dev in ("veth0", "veth1"):
            netns.ip("-n", ns, "link", "set", dev, "up")
        for command, shown in steps:
            command = command.split("  #")[0].removeprefix("sudo ")
            r = sh(f"ip netns exec {ns} {command}", user, tmp_path, timeout=60)
            assert r.returncode == 0, r.stderr
            assert [_shape(x) for x in r.stdout.splitlines()] == [_shape(x) for x in shown]
        code = snippet + textwrap.dedent(
            """
            from ipcnet.errors import Unsupported
            try:
                ipcnet.xdp.find("veth0")
            except Unsupported as exc:
                print(exc)
            """
        )
        argv = netns.in_ns(ns, sys.executable, "-c", code)
        r = subprocess.run(argv, env=user, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    mode, programs, handle, after = r.stdout.splitlines()
    assert re.fullmatch(r"native \{'dev': 'veth0', 'prog_id': \d+, 'rules': \[.*\], "
                        r"'unmatched': \{'packets': 0, 'bytes': 0\}\}", mode)  # fmt: skip
    assert programs.startswith("[Program(dev='veth0', ifindex=")
    assert re.fullmatch(r"<XdpFilter veth0 prog \d+ native>", handle)
    assert after == "no xdp program on veth0 (ipcnet xdp attach veth0 ... adds one)"


# --- every command line the README shows ----------------------------------------------


def _readme_commands() -> list[str]:
    """Every ``ipcnet ...`` command of the README: transcripts' ``$`` lines and the code
    spans of tables and prose (synopses, with their ``[...]``, and placeholders aside)."""
    text = README.read_text()
    found = []
    for _, body in fenced(README):
        for line in body.splitlines():
            line = line.removeprefix("$ ").removeprefix("sudo ")
            if m := re.match(r"(?:[^|#]*\| )?(ipcnet .*)", line):  # printf ... | ipcnet
                found.append(m.group(1))
    for span in re.findall(
        r"`(ipcnet [^`]+)`", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    ):
        found.append(span)
    commands = []
    for command in found:
        if re.search(r"\[[-A-Z]|<[a-z ]+>|\.\.\.|NAME|^ipcnet [a-z ]+: ", command):
            continue  # a synopsis, a placeholder, or a message ("ipcnet connect: ...")
        command = re.split(r"\s(?:#|\||&|<|>|2>)", command + " ")[0].strip()
        if re.fullmatch(r"ipcnet( [a-z]+)*", command) or command.startswith("ipcnet stats"):
            continue  # a subcommand's name, no arguments; "ipcnet stats": one it has not
        commands.append(command)
    return sorted(set(commands))


def test_readme_commands_parse() -> None:
    """Each command line the README shows is accepted by the CLI's parser as written:
    its options exist, take the values shown, and its addresses parse (nothing is run)."""
    import contextlib
    import io
    import shlex

    from ipcnet.cli import build_parser

    commands = _readme_commands()
    assert len(commands) > 40
    bad = []
    for command in commands:
        words = shlex.split(command)[1:]
        if words[0] in ("bench", "demo", "--help") or words[-1] == "--help":
            continue
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                build_parser(words[0]).parse_args(words)
        except SystemExit:
            bad.append(f"{command}: {err.getvalue().strip().splitlines()[-1]}")
    assert not bad, "\n".join(bad)


# (command, README's words for a default, the help's words for it)
DEFAULTS = [
    ("relay", "within `--connect-timeout` (5 s)", "try the next (5)"),
    ("relay", "`--udp-idle` (60 s) expires it", "without datagrams (60)"),
    ("relay", "splice(2) through a 1 MiB pipe", "splice pipe (1 MiB)"),
    ("relay", "one reused 256 KiB buffer instead", "copy buffer (256 KiB)"),
    ("relay", "any of `ipcnet serve`'s models (default `epoll`", "concurrency model (epoll)"),
    ("serve http", "within `--header-timeout` (10 s", "else 408 (10)"),
    ("serve http", "more than 16 (`--max-ranges`)", "get the whole file (16)"),
    ("serve http", "request line over 8 KiB gives 414", "gets 414 (8 KiB)"),
    ("serve http", "headers over 16 KiB or over 100 fields give 431", "gets 431 (16 KiB)"),
    ("serve http", "headers over 16 KiB or over 100 fields give 431", "more get 431 (100)"),
    ("serve http", "idle seconds (60 for http)", "close silent connections (60;"),
    ("serve echo", "epoll(7) (the default)", "concurrency model (epoll)"),
    ("rpc serve", "today `thread`", "concurrency model (thread)"),
    ("rpc serve", "`--max-frame` (16 MiB by default", "largest frame (16 MiB)"),
    ("connect", "the oldest version accepted (default 1.2)", "oldest TLS version (default 1.2)"),
    ("connect", "the handshake deadline (default 10 s)", "handshake after S seconds (default 10)"),
    ("serve echo", "sends (default 0, see below)", "tickets to send (default 0:"),
]


def test_readme_defaults_are_the_helps() -> None:
    """The defaults the README states are the ones each command's help states."""
    prose = " ".join(README.read_text().split())
    for command, readme_words, help_words in DEFAULTS:
        assert readme_words in prose, readme_words
        assert help_words in help_of(command), (command, help_words)
