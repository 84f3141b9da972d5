"""The `ipcnet` command line against "every bad input gets a clear error, nothing is lost".

Each case below was a traceback, a silent wrong answer or a hang, found by walking every
parser's options with bad values and running each command with its standard streams
closed, in a locale that cannot show its output, and under Ctrl-C:

- seconds beyond poll(2)'s int of milliseconds (OpenBSD nc -w refuses them too; curl says
  "too large number"): OverflowError in connect, a dead timer thread that never stopped
  `serve --drain-delay`, and relayed connections dropped (`relay -m thread
  --idle-timeout 3e6`); sizes allocated per datagram or connection (MemoryError);
- an empty value taken for "not given" (`--ca ''` trusted the system's store, `--stats ''`
  served no stats), or a bad --stats/--metrics address reported at exit 1 without the
  option's name; an --sni ssl cannot encode (UnicodeError from the handshake);
- `>&-` (print() on None: AttributeError, even at a server's last flush), `2>&-`
  (print(file=None) wrote diagnostics into stdout), a non-UTF-8 locale (`--help` and demo
  raised UnicodeEncodeError), a strict UTF-8 stdout and a file name's raw bytes;
- `serve http --access-log DIR` (IsADirectoryError), `cert --client` with argv bytes
  that are not UTF-8, `cert --out FILE` ("file exists");
- `ipcs --kind bogus` at exit 1 where `sockets --state bogus` is a usage error (2);
- SIGINT to the demo's process alone while a child waited for it (a hang, forever).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ipcnet.cli import build_parser
from ipcnet.cli.argtypes import MAX_SECONDS
from ipcnet.errors import TLSConfigError
from ipcnet.testing import free_port

IPCNET = [sys.executable, "-m", "ipcnet"]
U = "tcp://127.0.0.1:9"
L = "tcp://127.0.0.1:0"

USAGE = [
    # seconds: at most MAX_SECONDS
    (["connect", U], "--connect-timeout", "1e10", "is too many seconds"),
    (["connect", U], "--linger", "3e6", "is too many seconds"),
    (["connect", U], "--tls-handshake-timeout", "99999999999999999999999", "too many"),
    (["relay", L, U], "--idle-timeout", "3e6", "is too many seconds"),
    (["relay", L, U], "--linger", "3e6", "is too many seconds"),
    (["relay", L, U], "--udp-idle", "1e23", "is too many seconds"),
    (["serve", "echo", L], "--drain-delay", "1e10", "is too many seconds"),
    (["serve", "echo", L], "--idle-timeout", "2147484", "is too many seconds"),
    (["serve", "http", "/tmp", L], "--header-timeout", "1e10", "is too many seconds"),
    (["serve", "http", "/tmp", L], "--cache-ttl", "1e23", "is too many seconds"),
    (["rpc", "call", U, "f"], "--timeout", "1e10", "is too many seconds"),
    (["sockets"], "--watch", "1e23", "is too many seconds"),
    (["xdp", "stats", "lo"], "--watch", "3e6", "is too many seconds"),
    # sizes that are allocated
    (["connect", U], "--max-datagram", "99999999999999999999999", "is too large"),
    (["relay", L, U], "--buffer", "99999999999", "is too large"),
    (["relay", L, U], "--max-datagram", "2000000000", "is too large"),
    (["serve", "echo", L], "--workers", "100000000000", "is too large"),  # no mapping for it
    (["relay", L, U], "--workers", "100000000000", "is too large"),
    # empty values, once taken for "not given"
    (["connect", "tls://127.0.0.1:9"], "--ca", "", "'' is not a file name"),
    (["connect", "tls://127.0.0.1:9"], "--cert", "", "'' is not a file name"),
    (["connect", "tls://127.0.0.1:9"], "--key", "", "'' is not a file name"),
    (["rpc", "call", U, "f"], "--ca", "", "'' is not a file name"),
    (["relay", L, U], "--target-ca", "", "'' is not a file name"),
    (["serve", "http", "/tmp", L], "--access-log", "", "'' is not a file name"),
    (["cert"], "--out", "", "'' is not a directory name"),
    (["connect", "tls://127.0.0.1:9"], "--sni", "", "'' is not a server name: empty"),
    (["connect", "tls://127.0.0.1:9"], "--alpn", "", "'' is not a list of protocols"),
    (["sockets"], "--process", "", "'' is not a process name"),  # matched nothing, exit 0
    (["connect", "tls://127.0.0.1:9"], "--alpn", ",,", "',,' is not a list of protocols"),
    (["relay", L, U], "--stats", "", "invalid address ''"),
    (["serve", "echo", L], "--stats", "", "invalid address ''"),
    (["serve", "echo", L], "--metrics", "", "invalid address ''"),
    # values that can never work
    (["connect", "tls://127.0.0.1:9"], "--sni", "a..b", "'a..b' is not a server name"),
    (["connect", "tls://127.0.0.1:9"], "--sni", "\udcff", "is not a server name: not UTF-8"),
    (["serve", "echo", L], "--stats", "http://127.0.0.1:1/", "unknown scheme 'http'"),
    (["rpc", "serve", "json:dumps", L], "--metrics", "-1", "invalid address '-1'"),
]


@pytest.mark.parametrize(("argv", "option", "value", "said"), USAGE)
def test_a_bad_value_is_a_usage_error_naming_the_option(
    argv: list[str], option: str, value: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser(argv[0]).parse_args([*argv, f"{option}={value}"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: " in err and said in err, err


def test_the_ceiling_itself_is_taken_and_works_in_every_wait() -> None:
    """MAX_SECONDS in a relay's thread-model pump (3e6 killed it: OverflowError in a poll)
    and in connect's socket timeout."""
    echo = socket.create_server(("127.0.0.1", 0))
    port = free_port()
    relay = subprocess.Popen(
        [*IPCNET, "relay", f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{echo.getsockname()[1]}",
         "-m", "thread", "--idle-timeout", str(MAX_SECONDS), "--linger", str(MAX_SECONDS)],
        stderr=subprocess.PIPE,
    )  # fmt: skip

    def serve_one() -> None:
        conn, _ = echo.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve_one, daemon=True).start()
    try:
        assert relay.stderr is not None
        relay.stderr.readline()  # "ipcnet relay: ... -> ...": listening
        out = subprocess.run(
            [*IPCNET, "connect", "--connect-timeout", str(MAX_SECONDS), f"tcp://127.0.0.1:{port}"],
            input=b"through\n",
            capture_output=True,
            timeout=20,
        )
        assert (out.returncode, out.stdout, out.stderr) == (0, b"through\n", b"")
    finally:
        relay.send_signal(signal.SIGTERM)
        _, err = relay.communicate(timeout=20)
        echo.close()
    assert b"Traceback" not in err


def _sh(script: str, *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    """``sh -c script`` with IPCNET as "$@" (so that the script can close fds first)."""
    return subprocess.run(
        ["sh", "-c", script, "sh", *IPCNET, *args], capture_output=True, timeout=30, **kw
    )  # type: ignore[call-overload,no-any-return]


@pytest.mark.parametrize(
    "args",
    [["sockets", "-a"], ["sockets", "-a", "--json"], ["ipcs", "--json"], ["demo", "--help"]],
)
def test_output_to_a_stdout_closed_from_the_start_is_one_error_line(args: list[str]) -> None:
    """As cat and ls: the output had nowhere to go, so say so and exit 1 (was an
    AttributeError traceback from print() on sys.stdout None)."""
    done = _sh('exec "$@" >&-', *args)
    err = done.stderr.decode()
    cmd = args[0]  # --help too: its text is output (ls --help >&- fails the same way)
    assert (done.returncode, err) == (
        1,
        f"ipcnet {cmd}: cannot write the output: stdout is closed\n",
    )


def test_a_command_without_output_runs_with_stdout_closed() -> None:
    """A server writes nothing to stdout: it serves, then stops with status 0 (it ended
    with status 1 and an AttributeError from its last flush)."""
    port = free_port()
    proc = subprocess.Popen(
        ["sh", "-c", 'exec "$@" >&-', "sh", *IPCNET, "serve", "echo", f"tcp://127.0.0.1:{port}"],
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        assert b"listening" in proc.stderr.readline()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"hi\n")
            assert c.recv(10) == b"hi\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and b"Traceback" not in err, err


def test_a_closed_stderr_keeps_diagnostics_out_of_stdout() -> None:
    """print(file=sys.stderr) with stderr None writes to stdout: the message landed in
    the data stream. Now it goes where 2>&- sends it: nowhere."""
    done = _sh('exec "$@" 2>&-', "sockets", "--fds")  # "--fds needs exactly one --pid"
    assert (done.returncode, done.stdout) == (2, b"")


def test_a_closed_stdout_is_not_taken_by_a_socket(tmp_path: Path) -> None:
    """rpc call with fd 1 closed: the error is one line (was a traceback at the flush)."""
    done = _sh('exec "$@" >&-', "rpc", "call", f"tcp://127.0.0.1:{free_port()}", "f")
    err = done.stderr.decode()
    assert done.returncode == 1 and err.count("\n") == 1 and "connection refused" in err, err


ASCII = {**os.environ, "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}


@pytest.mark.parametrize("args", [["serve", "echo", "--help"], ["serve", "--help"]])
def test_help_in_a_locale_that_cannot_show_it(args: list[str]) -> None:
    """'§' in the models' help under an ASCII stdout: escaped, not UnicodeEncodeError."""
    done = subprocess.run([*IPCNET, *args], capture_output=True, env=ASCII, timeout=30)
    assert done.returncode == 0, done.stderr
    assert b"(seed 000 \\xa76.6)" in done.stdout


@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])
def test_a_file_names_raw_bytes_go_out_as_they_are(encoding: str) -> None:
    """A /dev/shm name with byte 0xff in CSV, under a strict stdout (PYTHONIOENCODING, as
    a UTF-8 locale has it): the bytes as ls prints them (was a traceback)."""
    name = f"ipcnet-t-\udcff-{os.getpid()}"
    path = os.fsencode(f"/dev/shm/{name}")
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        done = subprocess.run(
            [*IPCNET, "ipcs", "--csv", "-k", "posix-shm"],
            capture_output=True,
            env={**os.environ, "PYTHONIOENCODING": encoding},
            timeout=30,
        )
    finally:
        os.close(fd)
        os.unlink(path)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr
    assert os.fsencode(name) in done.stdout


def test_an_sni_ssl_cannot_encode_is_a_tls_config_error() -> None:
    """The library's side of --sni: a TLSConfigError naming it, not a UnicodeError from
    the idna codec in the middle of the handshake."""
    from ipcnet.transports.tls.context import TLSOptions

    for bad in ("a..b", "\udcff", "x" * 64 + ".test", ""):
        with pytest.raises(TLSConfigError, match="invalid --sni"):
            TLSOptions(sni=bad)
    assert TLSOptions(sni="127.0.0.1").sni == "127.0.0.1"


def test_a_key_without_its_certificate_is_refused_not_ignored(tmp_path: Path) -> None:
    """connect --key FILE without --cert: the key was dropped silently (a client then
    connected with no certificate at all, and learnt why only from the server)."""
    key = tmp_path / "k.pem"
    key.write_text("")
    done = subprocess.run(
        [*IPCNET, "connect", "--key", str(key), f"tls://127.0.0.1:{free_port()}"],
        capture_output=True,
        timeout=30,
    )
    assert (done.returncode, done.stderr) == (
        1,
        b"ipcnet connect: --key without --cert: give the certificate the key is for\n",
    )


def test_an_access_log_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    for log, said in (
        (tmp_path, f"is a directory: create access log {tmp_path}"),
        (tmp_path / "no" / "x.log", "a directory on its path does not exist"),
    ):
        done = subprocess.run(
            [*IPCNET, "serve", "http", str(tmp_path), L, "--access-log", str(log)],
            capture_output=True,
            timeout=30,
        )
        err = done.stderr.decode()
        assert done.returncode == 1 and err.count("\n") == 1 and said in err, err


def test_cert_refuses_a_client_name_that_is_not_text_and_an_out_that_is_a_file(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [*IPCNET, "cert", "--out", str(tmp_path), "--client", "\udcff"],
        capture_output=True,
        timeout=30,
    )
    assert (done.returncode, done.stderr) == (
        1,
        b"ipcnet cert: invalid client name '\\udcff': not UTF-8 text\n",
    )
    afile = tmp_path / "afile"
    afile.write_text("")
    done = subprocess.run([*IPCNET, "cert", "--out", str(afile)], capture_output=True, timeout=30)
    assert (done.returncode, done.stderr.decode()) == (
        1,
        f"ipcnet cert: cannot write to {afile}: not a directory\n",
    )


def test_an_unknown_ipcs_kind_is_a_usage_error_like_an_unknown_socket_state() -> None:
    ipcs = subprocess.run([*IPCNET, "ipcs", "-k", "bogus"], capture_output=True, timeout=30)
    ss = subprocess.run([*IPCNET, "sockets", "--state", "bogus"], capture_output=True, timeout=30)
    assert ipcs.returncode == ss.returncode == 2
    assert ipcs.stderr.startswith(b"ipcnet ipcs: unknown kind 'bogus' (known: posix-shm")


@pytest.mark.parametrize(
    ("args", "stopped"),
    [
        (["sockets", "-a", "--watch", "0.2"], {130}),
        (["ipcs"], {130, 0}),  # 0: it had finished
        (["relay", f"tcp://127.0.0.1:{free_port()}", U], {130, 0}),  # 0: a graceful stop
    ],
)
def test_ctrl_c_while_the_command_starts_is_130_without_a_traceback(
    args: list[str], stopped: set[int]
) -> None:
    """SIGINT while the parser is built or the modules load (before a command's own
    handlers): KeyboardInterrupt's traceback, and death by SIGINT. A signal that comes
    while the interpreter starts or imports the ``ipcnet`` package for runpy, before any
    code of the command runs, is Python's own (a traceback with no frame of ipcnet.cli,
    or a silent death by SIGINT): only a traceback from the command counts here."""
    for delay in (0.05, 0.1, 0.15, 0.25):
        proc = subprocess.Popen(
            [*IPCNET, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        if b"Traceback" in err:  # while Python imported the package: not ours to catch
            assert b"ipcnet/cli" not in err, err.decode()
            continue
        assert proc.returncode in stopped | {-signal.SIGINT}, err


STOP_CHILD = """
import os, signal, sys, threading, time
from ipcnet import tour
names = [n for n in tour.STOPS if n not in ("semaphore", "udp+xdp")]
for step in range(8):
    for name in names:
        timer = threading.Timer(step * 0.0004, os.kill, (os.getpid(), signal.SIGINT))
        try:
            timer.start()
            tour.run_stop(name)
            timer.join()
            time.sleep(0.002)  # a signal after the stop lands here
        except (KeyboardInterrupt, Exception):  # cut short, a stop may fail another way
            pass
        signal.alarm(3)  # every child must be gone within 3 s: killed, or done
        try:
            while True:
                os.waitpid(-1, 0)
        except ChildProcessError:
            pass
        signal.alarm(0)
if len(sys.argv) > 1:  # in an IPC namespace of its own: the queues it left behind
    import subprocess, tempfile
    point = tempfile.mkdtemp()
    subprocess.run(["mount", "-t", "mqueue", "none", point], check=True)
    print(*sorted(os.listdir(point)))
    subprocess.run(["umount", point], check=True)
    os.rmdir(point)
print("ok")
"""


def test_an_interrupted_demo_stop_leaves_no_child_waiting_forever() -> None:
    """SIGINT to the demo's process alone (timeout -s INT, a supervisor) while a stop's
    child waited in accept() or read(): the parent's cleanup waited for that child, which
    waited for the parent: a hang. Each stop is interrupted at several moments; each
    child must be gone at once, and no message queue may outlive its stop (a SIGINT
    between creating the first queue and the ``try`` left it: each one held 80 KiB of
    the user's 800 KiB RLIMIT_MSGQUEUE until the next boot). Where it can, it runs in an
    IPC namespace of its own, whose queues it lists at the end (and which takes with it
    any it left)."""
    alone = ["unshare", "--ipc", "--mount"] if os.getuid() == 0 and shutil.which("unshare") else []
    if alone and subprocess.run([*alone, "true"], capture_output=True).returncode != 0:
        alone = []
    argv = [*alone, sys.executable, "-c", STOP_CHILD, *(["queues"] if alone else [])]
    done = subprocess.run(argv, capture_output=True, timeout=60, text=True)
    want = (0, "\nok\n" if alone else "ok\n")
    assert (done.returncode, done.stdout) == want, done.stderr[-2000:]


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
def test_watch_sends_no_escape_codes_to_a_dumb_terminal() -> None:
    """sockets --watch clears the screen on a terminal (as watch(1)), but not on one that
    says it cannot take escape codes (TERM=dumb)."""
    argv = " ".join([*IPCNET, "sockets", "-tl", "--watch", "0.1"])
    proc = subprocess.Popen(
        ["script", "-qfec", argv, "/dev/null"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TERM": "dumb"},
        start_new_session=True,
    )
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert b"--- " in out and b"\x1b[" not in out
