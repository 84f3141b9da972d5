"""`ipcnet connect`, ninth audit: what it is told that cannot apply, beside socat and nc.

- socat refuses an address option that its address type has no use for ("option "cafile"
  not supported with this address type", status 1) instead of dropping it; connect took
  --max-datagram on a stream address, --insecure or --sni (a client's) with --listen,
  and --tls-tickets (a server's) without it, and silently did without them;
- a stdin opened for writing only, or a stdout opened for reading only (``0>>file``,
  ``1<file``): socat says "read(0, ...): Bad file descriptor" and exits 1; connect said
  "closed: read from stdio:", which is the error of a channel its own code had closed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator

import pytest

from ipcnet.testing import free_port

IPCNET = [sys.executable, "-m", "ipcnet", "connect"]


@pytest.fixture(scope="module")
def pem() -> Iterator[tuple[str, str]]:
    from tlskit import certs

    pair = certs().server
    yield pair.cert, pair.key


def test_an_option_that_does_not_apply_is_refused_naming_it(pem: tuple[str, str]) -> None:
    cert, key = pem
    port = free_port()  # nothing listens: an option taken in silence ends in "refused"
    tls = ["--cert", cert, "--key", key, "--connect-timeout", "0.3"]
    cases = [  # (the flag, the words that say why, the arguments)
        ("--max-datagram", "datagram", ["--max-datagram", "100", f"tcp://127.0.0.1:{port}"]),
        ("--max-datagram", "datagram", ["--max-datagram", "9", f"unix://@ipcnet-{uuid.uuid4()}"]),
        ("--insecure", "--listen", ["--listen", "--insecure", *tls, "tls://127.0.0.1:0"]),
        ("--sni", "--listen", ["--listen", "--sni", "example.org", *tls, "tls://127.0.0.1:0"]),
        ("--tls-tickets", "--listen", ["--tls-tickets", "2", f"tls://127.0.0.1:{port}"]),
    ]
    procs = [
        subprocess.Popen(
            [*IPCNET, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _, _, args in cases
    ]
    for (flag, why, _), proc in zip(cases, procs, strict=True):
        out, raw = proc.communicate(timeout=30)
        err = raw.decode()
        assert (proc.returncode, out) == (2, b""), (flag, err)
        assert err.startswith(f"ipcnet connect: {flag} ") and err.count("\n") == 1, (flag, err)
        assert why in err, (flag, err)


def test_a_standard_descriptor_open_the_wrong_way_is_named() -> None:
    """``0>>file``: descriptor 0 is open, but only for writing; ``1<file`` the reverse.
    The relay would have failed on its first read or write; it is now refused before any
    byte moves, in words that say which descriptor and why (as socat's EBADF does)."""
    with tempfile.TemporaryDirectory(prefix="ipcnet-t-", dir="/tmp") as tmp:
        path = os.path.join(tmp, "s")
        side = os.path.join(tmp, "file")
        with open(side, "wb"):
            pass
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(path)
            listener.listen(8)
            listener.settimeout(30)
            url = f"unix://{path}"

            def serve() -> None:  # each says hello and waits for the client's end
                for _ in range(2):
                    with listener.accept()[0] as conn, contextlib.suppress(OSError):
                        conn.sendall(b"hello\n")  # (a client refused at once resets it)
                        while conn.recv(65536):
                            pass

            server = threading.Thread(target=serve, daemon=True)
            server.start()
            with open(side, "ab") as wronly, open(side, "rb") as rdonly:
                procs = [
                    subprocess.Popen(
                        [*IPCNET, url], stdin=wronly, stdout=subprocess.PIPE, stderr=subprocess.PIPE
                    ),
                    subprocess.Popen(
                        [*IPCNET, url],
                        stdin=subprocess.DEVNULL,
                        stdout=rdonly,
                        stderr=subprocess.PIPE,
                    ),
                ]
                stdin_err = procs[0].communicate(timeout=30)[1].decode()
                stdout_err = procs[1].communicate(timeout=30)[1].decode()
                server.join(30)
    assert (procs[0].returncode, stdin_err) == (
        1,
        "ipcnet connect: cannot read stdin: descriptor 0 is open for writing only\n",
    )
    assert (procs[1].returncode, stdout_err) == (
        1,
        "ipcnet connect: cannot write stdout: descriptor 1 is open for reading only\n",
    )


def test_a_one_way_peer_leaves_the_unused_descriptor_alone() -> None:
    """--listen fifo:// only reads: a stdin open for writing only is never read, so it is
    no error (a fifo writer, the other way round, never writes stdout)."""
    with tempfile.TemporaryDirectory(prefix="ipcnet-t-", dir="/tmp") as tmp:
        fifo = os.path.join(tmp, "f")
        side = os.path.join(tmp, "file")
        with open(side, "wb"):
            pass
        with open(side, "ab") as wronly:
            proc = subprocess.Popen(
                [*IPCNET, "--listen", f"fifo://{fifo}"],
                stdin=wronly,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                for _ in range(1000):  # the fifo exists once it listens
                    if os.path.exists(fifo) or proc.poll() is not None:
                        break
                    try:
                        proc.wait(0.01)
                    except subprocess.TimeoutExpired:
                        pass
                fd = os.open(fifo, os.O_WRONLY)
                os.write(fd, b"one way\n")
                os.close(fd)
                out, err = proc.communicate(timeout=30)
            finally:
                proc.kill()
                proc.wait()
    assert (proc.returncode, out, err) == (0, b"one way\n", b"")


def test_an_inherited_descriptor_of_the_wrong_kind_is_told_in_the_commands_words() -> None:
    """``ipcnet connect fd://3`` on a listening socket was told to "use listen() to accept
    on it", and ``--listen fd://3`` on a file to "connect() to use it": Python calls the
    command line has not; the option that does it is --listen (nc -l, socat's ACCEPT-FD)."""
    with socket.socket() as listening, open(os.devnull, "rb") as null:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        cases = [([], listening.fileno(), "use --listen to accept on it")]
        cases.append((["--listen"], null.fileno(), "not a socket: connect to it without --listen"))
        procs = [
            subprocess.Popen(
                [*IPCNET, *extra, f"fd://{fd}"],
                pass_fds=[fd],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for extra, fd, _ in cases
        ]
        for (_, fd, words), proc in zip(cases, procs, strict=True):
            err = proc.communicate(timeout=30)[1].decode()
            assert proc.returncode == 1 and f"fd://{fd}" in err and words in err, err
            assert "()" not in err and err.count("\n") == 1, err
