"""`ipcnet connect`, the address grammar and the socket transports, where a differential
pass against socat, OpenBSD nc and getaddrinfo (generated addresses, payloads and peer
behaviours, each fed to both sides) found ipcnet wrong.

Each test was written failing first: numbers in non-ASCII digits ('²' a ValueError
traceback, '١٢' silently port 12; getaddrinfo and socat refuse both), a descriptor number
over a C int (an OverflowError), an empty exec: command name, an abstract name from bytes
argv (a UnicodeEncodeError), a unix datagram over 64 KiB that could not be received at all
(socat has -b), an exec: command's failure exit status swallowed (socat reports it),
`ipcnet connect stdio:` reordering its data, and an IPv6 scope reported as "no
host" (a listener under a missing directory: tests/test_listeners.py).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import ipcnet
from ipcnet.addresses import parse
from ipcnet.errors import InvalidAddress, ResolveError

IPCNET = [sys.executable, "-m", "ipcnet", "connect"]


# --- the address grammar: numbers are ASCII digits, as getaddrinfo and socat read them ----


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("tcp://127.0.0.1:²", "invalid port '²' (a number 0-65535 or a service name)"),
        ("udp://[::1]:١٢", "invalid port '١٢' (a number 0-65535 or a service name)"),
        ("fd://²", "expected fd://N with N a file descriptor number"),
        ("fd://٣", "expected fd://N with N a file descriptor number"),
        ("shm://@ring?ring=١٢", "option ring='١٢' is not a number (like 65536 or 64K)"),
    ],
)
def test_numbers_in_other_scripts_are_refused_naming_the_part(url: str, message: str) -> None:
    with pytest.raises(InvalidAddress, match=re.escape(message)):
        parse(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("fd://2147483648", "descriptor number 2147483648 out of range 0-2147483647"),
        ("fd://99999999999999999999", "out of range 0-2147483647"),  # was an OverflowError
        ("exec:''", "empty command name after exec:"),  # was "cannot run exec:'': '' is not..."
        ("exec:echo 'unclosed", "cannot split command: no closing quotation"),  # was "No ..."
    ],
)
def test_descriptors_and_commands_that_cannot_be_are_refused(url: str, message: str) -> None:
    with pytest.raises(InvalidAddress, match=re.escape(message)):
        parse(url)


# --- unix datagrams larger than 64 KiB: --max-datagram, as socat's -b --------------------


def test_a_unix_datagram_over_64_kib_is_received_with_max_datagram(tmp_path: Path) -> None:
    """The kernel carries unix datagrams up to the sender's SO_SNDBUF; 65536 bytes is only
    the default limit. Over the one given, the error names the option that raises it."""
    path = f"{tmp_path}/g.sock"
    big, small, huge = bytes(range(256)) * 400, b"tail", bytes(300_000)  # 102400, 4, 300000
    proc = subprocess.Popen(
        [*IPCNET, "--listen", "--max-datagram", "200000", f"unixgram://{path}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with proc, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        while not Path(path).exists():  # bound: its socket file appears
            assert proc.poll() is None, proc.communicate()
            threading.Event().wait(0.01)
        for datagram in (big, small, huge):
            sender.sendto(datagram, path)
        out, err = proc.communicate(timeout=30)
    assert (out, proc.returncode) == (big + small, 1)
    assert err.decode() == (
        f"ipcnet connect: datagram of {len(huge)} bytes is larger than the 200000-byte buffer "
        f"of unixgram://{path}; it was dropped (raise --max-datagram)\n"
    )


# --- exec: a command that fails fails the connection, as with socat ----------------------


def test_an_exec_command_that_exits_non_zero_is_reported() -> None:
    """socat: 'E waitpid(): child N exited with status 3', exit 1; ipcnet said nothing, 0."""
    url = 'exec:sh -c "printf answer; exit 3"'
    out = subprocess.run([*IPCNET, url], input=b"", capture_output=True, timeout=60)
    assert (out.stdout, out.returncode) == (b"answer", 1)
    assert out.stderr.decode() == f"ipcnet connect: {url} exited with status 3\n"


# --- stdio: as the peer is this command's own stdin and stdout ---------------------------


def test_connecting_stdio_to_itself_is_refused() -> None:
    """Two pumps read the same stdin and write the same stdout: 256 KiB came out reordered
    at 64 KiB boundaries, silently, with exit 0 (socat - - copies it in order). fd://0 and
    fd://1 are refused by the same line."""
    data, url = bytes(range(256)) * 1024, "stdio:"
    out = subprocess.run([*IPCNET, url], input=data, capture_output=True, timeout=60)
    assert (out.stdout, out.returncode) == (b"", 1)
    assert out.stderr.decode() == (
        f"ipcnet connect: {url} is this command's own stdin and stdout; "
        "connect them to another address\n"
    )


# --- an IPv6 scope that getaddrinfo does not take is named as the scope -------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("tcp://[fe80::1%no-such-if]:80", "no scope 'no-such-if' for fe80::1: give an"),
        ("udp6://[::1%lo]:80", "no scope 'lo' for ::1"),  # glibc: names for link-local only
    ],
)
def test_a_scope_that_does_not_resolve_is_named(url: str, message: str) -> None:
    """It said "no host 'fe80::1%no-such-if'", of a literal address that needs no host."""
    with pytest.raises(
        ResolveError, match=f"^cannot resolve {re.escape(url)}: {re.escape(message)}"
    ):
        if url.startswith("udp"):
            ipcnet.open_datagram(url)
        else:
            ipcnet.connect(url)


# --- names that are not UTF-8: what a shell passes as bytes, as socat takes them ----------


def test_an_abstract_name_that_is_not_utf8_is_connected_to() -> None:
    """argv's bytes 0xff arrive as the surrogate '\\udcff' (PEP 383), as the kernel's
    names do when they are decoded: encoding them back was a UnicodeEncodeError."""
    raw = f"ipcnet-diff-{os.getpid()}-".encode() + b"\xff"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(b"\0" + raw)
        listener.listen(1)
        with ipcnet.connect(f"unix://@{os.fsdecode(raw)}") as client:
            with listener.accept()[0] as server:
                client.write(b"x")
                assert server.recv(1) == b"x"


def _tcp_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Wait until something listens on 127.0.0.1:``port`` (the kernel's table says so)."""
    needle = f"0100007F:{port:04X} 00000000:0000 0A"
    for _ in range(2000):
        if proc.poll() is not None or needle in Path("/proc/net/tcp").read_text():
            return
        threading.Event().wait(0.01)


@pytest.mark.parametrize("listen", [True, False], ids=["listen", "tls-handshake"])
def test_a_signal_while_waiting_for_the_peer_is_128_plus_it_with_a_word(listen: bool) -> None:
    """The module's contract (128 + the signal, and what it gave up on) held for the
    datagram wait only: SIGTERM in `connect --listen tcp://`'s accept, or in a connect
    still in its TLS handshake, ended with a silent 130 (SIGINT's number)."""
    import signal

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never speaks TLS
        port = silent.getsockname()[1]
        if listen:
            silent.close()  # only its free port is wanted
            url = f"tcp://127.0.0.1:{port}"
            argv = [*IPCNET, "--listen", url]
        else:
            url = f"tls://127.0.0.1:{port}"
            argv = [*IPCNET, url]
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        peer = None
        if listen:
            _tcp_listening(port, proc)
        else:
            silent.settimeout(20)
            peer, _ = silent.accept()  # connected: its handshake waits on our silence
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        if peer is not None:
            peer.close()
    waited = "no peer came to" if listen else "not connected to"
    said = f"ipcnet connect: interrupted: {waited} {url}\n"
    assert (proc.returncode, out, err.decode()) == (128 + signal.SIGTERM, b"", said)
