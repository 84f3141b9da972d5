"""exec:, stdio: and fd:// against socat's EXEC:/FD:, execvp(3), a POSIX shell and the
kernel (/proc/PID/status, /proc/PID/fd): what a sixth audit found wrong.

Each test was written failing first: a child killed by a signal ended `ipcnet connect`
with 0 and no word (socat: "E waitpid(): child N exited on signal 9", 1); a script whose
#! interpreter is missing was "not found" (bash: "bad interpreter"); a command line's
backslashes inside double quotes were not read as a POSIX shell reads them (`"\\$x"` kept
its backslash); an fd:// descriptor open one way only (a pipe end, a file opened for
writing) failed the other way with "closed", exit 1; the exec: children of a prefork relay
ignored SIGINT, SIGHUP and SIGUSR2 (the worker's own SIG_IGN, kept across execve).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ipcnet
from ipcnet.addresses import parse
from ipcnet.errors import InvalidAddress

CONNECT = [sys.executable, "-m", "ipcnet", "connect"]


def _connect(url: str, data: bytes = b"", **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*CONNECT, url],
        input=data,
        capture_output=True,
        timeout=30,
        **kw,  # type: ignore[call-overload]
    )


# --- a child's end: a signal is a failure too, unless we sent it -------------------------


def test_a_child_killed_by_a_signal_is_reported_as_socat_does() -> None:
    """socat -d: 'E waitpid(): child N exited on signal 9', exit 1; ipcnet said nothing, 0."""
    url = "exec:sh -c 'printf answer; kill -KILL $$'"
    out = _connect(url)
    assert (out.stdout, out.returncode) == (b"answer", 1)
    assert out.stderr.decode() == f"ipcnet connect: {url} was killed by signal 9 (SIGKILL)\n"


def test_a_child_that_outstays_both_ends_is_stopped_by_us_quietly() -> None:
    """Its stdout closed and our stdin ended, it lives on: after exit_timeout we send it
    SIGTERM (socat sends it at once); a death by our own signal is no failure."""
    out = _connect("exec:sh -c 'printf done; exec >&-; exec sleep 30'")
    assert (out.stdout, out.stderr, out.returncode) == (b"done", b"", 0)


def test_a_child_dead_of_sigpipe_after_our_stdout_left_is_quiet() -> None:
    """`exec:yes | head -1`: we stop reading, the child dies of SIGPIPE (its default is
    restored, as subprocess's restore_signals does), and nobody says a word."""
    shell = f"{' '.join(map(repr, CONNECT))} exec:yes </dev/null | head -c 2"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, timeout=30)
    assert (out.stdout, out.stderr, out.returncode) == (b"y\n", b"", 0)


# --- a command that cannot start says why, as execvp(3) and bash do ----------------------


def test_a_script_whose_interpreter_is_missing_names_the_interpreter(tmp_path: Path) -> None:
    """bash: './s: /no/such/sh: bad interpreter: No such file or directory'; ipcnet said
    the script itself was not found, though it is right there."""
    script = tmp_path / "s"
    script.write_text("#!/no/such/sh\necho hi\n")
    script.chmod(0o755)
    out = _connect(f"exec:{script}")
    assert out.returncode == 1
    assert out.stderr.decode() == (
        f"ipcnet connect: cannot run exec:{script}: its interpreter '/no/such/sh' "
        "(#! line) not found\n"
    )


def test_a_program_whose_loader_is_missing_is_not_called_missing(tmp_path: Path) -> None:
    """An ELF whose PT_INTERP names no file: execve's ENOENT, of a file that is there
    (bash: 'cannot execute: required file not found')."""
    loader = b"/lib64/ld-linux-x86-64.so.2"
    binary = Path("/bin/true").read_bytes()
    if loader not in binary:
        pytest.skip("no x86-64 glibc loader named in /bin/true")
    program = tmp_path / "p"
    program.write_bytes(binary.replace(loader, b"/no/such/ld-linux-x86-64.so", 1))
    program.chmod(0o755)
    out = _connect(f"exec:{program}")
    assert out.returncode == 1
    assert out.stderr.decode() == (
        f"ipcnet connect: cannot run exec:{program}: '{program}' is there, but a file it "
        "needs to start (its loader) is not found\n"
    )


def test_an_executable_that_is_no_program_says_so(tmp_path: Path) -> None:
    """ENOEXEC (a text file without #!): 'exec format error: start exec:...' said what the
    kernel did, not what to do."""
    script = tmp_path / "t"
    script.write_text("echo hi\n")
    script.chmod(0o755)
    out = _connect(f"exec:{script}")
    assert out.returncode == 1
    assert out.stderr.decode() == (
        f"ipcnet connect: cannot run exec:{script}: '{script}' is not a program this system "
        "can start (a script needs a #! line)\n"
    )


# --- the command line: split as a POSIX shell splits words, and no shell runs -------------


@pytest.mark.parametrize(
    "command",
    [
        r"""printf '<%s>' "a\$b" "c\`d" "e\"f" "g\\h" "i\jk" 'l\m' n\ o "" p""",
        "printf '<%s>' \"x\\\ny\" z\\\nw",  # backslash-newline: removed, in quotes or not
        "printf '<%s>' a'b'\"c\"d '' \"\" 'it'\\''s'",
        "printf '<%s>' $HOME '*' ~ a;b 'x|y'",  # no shell: no expansion, no operators
    ],
)
def test_words_are_split_as_a_posix_shell_splits_them(command: str) -> None:
    """The argv the child gets is the one sh -c 'printf ...' would build from the same
    text (dash and bash agree), but for expansions: ipcnet runs no shell."""
    out = _connect(f"exec:{command}")
    sh_text = command.replace("$HOME", "'$HOME'").replace(" ~ ", " '~' ").replace("a;b", "'a;b'")
    expected = subprocess.run(["sh", "-c", sh_text], capture_output=True, timeout=10).stdout
    assert (out.stdout, out.returncode) == (expected, 0), out.stderr


def test_the_split_errors_keep_their_words() -> None:
    for url, message in [
        ('exec:echo "unclosed', "cannot split command: no closing quotation"),
        ("exec:echo 'unclosed", "cannot split command: no closing quotation"),
        ("exec:echo \\", "cannot split command: no escaped character"),
        ("exec:echo a\0b", "NUL byte in command"),  # was Popen's ValueError, from connect
    ]:
        with pytest.raises(InvalidAddress, match=re.escape(message)):
            parse(url)


def test_spawn_of_an_argument_with_a_nul_is_an_invalid_address() -> None:
    with pytest.raises(InvalidAddress, match="NUL byte in command"):
        ipcnet.spawn(["echo", "a\0b"])


def test_spawn_of_a_list_passes_every_argument_unchanged() -> None:
    args = ["a b", "", "$x", "it's", 'q"', "back\\slash", "new\nline", "*"]
    with ipcnet.spawn(["printf", "<%s>", *args]) as ch:
        ch.send_eof()
        got = ch.read()
    assert got == "".join(f"<{a}>" for a in args).encode()


def test_split_words_agrees_with_sh_on_generated_lines() -> None:
    """300 lines of quotes, backslashes, blanks and line continuations (no character a
    shell would expand or treat as an operator): the words are sh's, and a line sh
    refuses (an open quote) is refused."""
    import random

    from ipcnet.addresses import split_words

    rng = random.Random(6)
    pieces = ["a", "b", " ", "\t", "'", '"', "\\", "\\\n", "$", "`"]
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 14)))
        if text.endswith("\\"):
            continue  # sh takes a trailing backslash as itself; ipcnet refuses it
        try:
            words: list[str] | None = split_words(text)
        except ValueError:
            words = None
        # $ and ` only inside single quotes or escaped keep sh from expanding: compare
        # only the lines where sh would not expand (ours never does)
        if words is not None and any(c in w for w in words for c in "$`"):
            continue
        sh = subprocess.run(["sh", "-c", f"printf '<%s>' {text}"], capture_output=True, timeout=10)
        if b"not found" in sh.stderr:
            continue  # an escaped backslash, then a newline: sh began a second command
        expected = None if sh.returncode else sh.stdout.decode()
        got = None if words is None else "".join(f"<{w}>" for w in words) or "<>"
        assert got == expected, repr(text)


# --- fd://N open one way only is a one-way stream, as a pipe end is ----------------------


def test_a_write_only_descriptor_takes_stdin_and_ends_at_its_eof(tmp_path: Path) -> None:
    """`ipcnet connect fd://3 3>file`, or a pipe's write end: every byte was written and
    then it failed the way nobody asked for ("closed: read from fd://3", exit 1)."""
    r, w = os.pipe()
    with open(tmp_path / "out", "wb") as file:
        for fd in (w, file.fileno()):
            out = subprocess.run(
                [*CONNECT, f"fd://{fd}"],
                input=b"data\n",
                capture_output=True,
                timeout=30,
                pass_fds=(fd,),
            )
            assert (out.stdout, out.stderr, out.returncode) == (b"", b"", 0)
    os.close(w)
    with os.fdopen(r, "rb") as reader:
        assert reader.read() == b"data\n"
    assert (tmp_path / "out").read_bytes() == b"data\n"


def test_a_read_only_descriptor_is_printed_to_its_eof_with_stdin_left_alone() -> None:
    """A pipe's read end (`fd://3 3< <(cmd)`): its bytes, then exit 0, however long stdin
    stays open (it was "closed: write to fd://3", exit 1, at stdin's first byte)."""
    r, w = os.pipe()
    os.write(w, b"from the pipe\n")
    os.close(w)
    proc = subprocess.Popen(
        [*CONNECT, f"fd://{r}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(r,),
    )
    os.close(r)
    with proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(b"nobody reads this\n")
        proc.stdin.flush()
        assert proc.stdout.read() == b"from the pipe\n"
        assert proc.wait(timeout=30) == 0
        assert proc.stderr.read() == b""
        proc.stdin.close()


def test_the_wrong_way_of_a_one_way_descriptor_is_unsupported_not_closed() -> None:
    from ipcnet.errors import Unsupported

    r, w = os.pipe()
    try:
        with ipcnet.connect(f"fd://{w}") as writer, ipcnet.connect(f"fd://{r}") as reader:
            writer.write(b"x")
            assert reader.read(1) == b"x"
            with pytest.raises(Unsupported, match=rf"cannot read from fd://{w}: .*write-only"):
                writer.read(1)
            with pytest.raises(Unsupported, match=rf"cannot write to fd://{r}: .*read-only"):
                reader.write(b"y")
    finally:
        os.close(r)
        os.close(w)


# --- an exec: child starts with the signal dispositions we were started with --------------


def _ignored(status: str) -> int:
    line = next(x for x in status.splitlines() if x.startswith("SigIgn:"))
    return int(line.split()[1], 16)


@pytest.mark.parametrize("model", ["prefork", "fork", "thread"])
def test_an_exec_child_of_a_relay_ignores_no_signal_we_did_not_inherit(model: str) -> None:
    """execve(2) keeps SIG_IGN: a prefork worker ignored SIGINT, SIGHUP and SIGUSR2 (only
    its master's count), and so did every child it ran: Ctrl-C, a hang-up or a SIGUSR2
    did nothing to them. Ignored on purpose by whoever started us (nohup) stays ignored;
    SIGPIPE and SIGXFSZ, which CPython ignores, get their default back (subprocess's
    restore_signals)."""
    from relay_helpers import relay_process

    with relay_process(
        "--model", model, "--workers", "1", "tcp://127.0.0.1:0",
        "exec:grep -E ^Sig(Ign|Blk) /proc/self/status",
    ) as relay:  # fmt: skip
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as sock:
            sock.shutdown(socket.SHUT_WR)
            status = b""
            while chunk := sock.recv(4096):
                status += chunk
        ours = Path(f"/proc/{relay.proc.pid}/status").read_text()
    restored = (1 << (signal.SIGPIPE - 1)) | (1 << (signal.SIGXFSZ - 1))  # CPython's own
    assert hex(_ignored(status.decode())) == hex(_ignored(ours) & ~restored)
    assert "SigBlk:\t0000000000000000" in status.decode()


def _started_child(proc: subprocess.Popen[bytes], program: bytes) -> str:
    """The pid of ``proc``'s child once it runs ``program`` and a moment more (so that its
    start, in which a signal is heard as 'not connected', is over)."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 20
    while True:
        pids = children.read_text().split()
        if pids and Path(f"/proc/{pids[0]}/cmdline").read_bytes().startswith(program):
            break
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.02)
    time.sleep(0.3)
    return pids[0]


# --- a signal that stops ipcnet connect stops its child at once, as socat's does ----------


def test_a_stop_signal_is_passed_on_to_the_child_at_once() -> None:
    """socat, stopped by SIGTERM, sends its child SIGTERM as it exits; ipcnet waited the
    close's exit_timeout (2 s) for a child that had no reason to end, and only then sent
    it. Now the stop reaches the child at once, and no child is left."""
    proc = subprocess.Popen(
        [*CONNECT, "exec:sleep 30"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with proc:
        child = _started_child(proc, b"sleep\0")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM
        took = time.monotonic() - started
        assert proc.stderr is not None and proc.stdin is not None
        assert proc.stderr.read().decode() == (
            "ipcnet connect: interrupted: gave up before the peer ended its side "
            "(0 bytes received)\n"
        )
        proc.stdin.close()
    assert not Path(f"/proc/{child}").exists()  # reaped, not a zombie
    assert took < 1.5  # not the 2 s of exit_timeout


# --- stdio: on a socket (inetd, systemd Accept=yes, socat EXEC:) half-closes it -----------


def test_stdio_on_one_socket_half_closes_it_when_the_peer_ends() -> None:
    """Run as inetd runs a service (fd 0 and 1 the one connected socket), the exec: child
    ends its output and reads on: the client must see EOF now (shutdown(SHUT_WR)); /dev/null
    in fd 1's place let nothing go, fd 0 holding the socket open, until we exited."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(
        [*CONNECT, "exec:sh -c 'printf greet; exec >&-; cat >&2'"],
        stdin=theirs,
        stdout=theirs,
        stderr=subprocess.PIPE,
    )
    theirs.close()
    with proc, ours:
        ours.settimeout(10)
        got = b""
        while chunk := ours.recv(100):  # a TimeoutError here: no EOF came
            got += chunk
        assert got == b"greet"
        ours.sendall(b"still heard\n")
        ours.shutdown(socket.SHUT_WR)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and proc.stderr.read() == b"still heard\n"


def test_a_second_stop_signal_kills_a_child_that_ignores_the_first() -> None:
    """A child deaf to SIGTERM is waited for (2 s), then SIGKILLed; a second SIGTERM in
    that wait left it running as an orphan, and ipcnet said nothing and exited 130. Now
    the second stop kills it at once: no orphan, no zombie, 128 + SIGTERM."""
    proc = subprocess.Popen(
        [*CONNECT, "exec:sh -c 'trap \"\" TERM INT; exec sleep 8'"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with proc:
        child = _started_child(proc, b"sleep\0")  # exec'd by sh after its trap
        status = Path(f"/proc/{child}/status").read_text()
        ignored = int(re.search(r"SigIgn:\t([0-9a-f]+)", status).group(1), 16)  # type: ignore[union-attr]
        assert ignored & 1 << (signal.SIGTERM - 1)  # deaf to SIGTERM (whatever else we inherit)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the first is heard: the child is sent SIGTERM, then waited for
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM
        assert not Path(f"/proc/{child}").exists()  # killed and reaped, not an orphan
        assert proc.stderr is not None and proc.stdin is not None
        assert proc.stderr.read().decode() == (
            "ipcnet connect: interrupted: gave up before the peer ended its side "
            "(0 bytes received)\n"
        )
        proc.stdin.close()


def test_an_exec_child_gets_our_environment_less_the_service_managers() -> None:
    """sd_notify(3) unsets NOTIFY_SOCKET and the watchdog's variables for a reason: a child
    that speaks sd_notify (a daemon run by exec:) would speak for our unit, and under
    NotifyAccess=all its STOPPING=1 would stop it. The rest of the environment is passed."""
    env = dict(os.environ, NOTIFY_SOCKET="/run/nowhere", WATCHDOG_USEC="1000000",
               WATCHDOG_PID="1", IPCNET_AUDIT_MARK="kept")  # fmt: skip
    script = "import os; print(sorted(k for k in os.environ if k in {'NOTIFY_SOCKET', "
    script += "'WATCHDOG_USEC', 'WATCHDOG_PID', 'IPCNET_AUDIT_MARK'}))"
    argv = [sys.executable, "-m", "ipcnet", "connect", f'exec:{sys.executable} -c "{script}"']
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == b"['IPCNET_AUDIT_MARK']"
