"""udp:// and unixgram:// services and `ipcnet connect`, checked where a differential pass
against a plain socket-module server, socat (UDP-LISTEN, UDP-RECVFROM, UNIX-SENDTO) and
OpenBSD nc (-u, -uU, -lu) found them wrong.

Each test was written failing first: a wildcard server that answered a broadcast from the
broadcast address (the kernel refuses that source: no reply at all), a blocking model that
hung on a reply to a unixgram client whose queue was full, a datagram another worker took
first counted as an error, and `connect --listen udp://` that printed every sender's
datagrams instead of locking onto its first peer and did not wait for that peer at all
when stdin was empty. Agreeing cases (sizes 0 to 65527, bursts, v4-mapped peers, many
clients on one socket) are in the module's table too, so one server answers them all.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serverkit import Server, serving

IPCNET = [sys.executable, "-m", "ipcnet", "connect"]
WAIT = 5.0  # seconds a reply may take (reached only when it never comes: a failure)
ONE_SERVER = pytest.mark.xdist_group("datagram-differential-server")  # started once


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One echo server under a blocking model, on the v4 and dual-stack wildcards, a
    unicast address and a unixgram path."""
    import tempfile

    where = Path(tempfile.mkdtemp(prefix="ipcnet-dg-", dir="/tmp"))  # short: a unix path
    addresses = ("udp://0.0.0.0:0", "udp://:0", "udp://127.0.0.1:0", f"unixgram://{where}/e")
    with serving("echo", *addresses, model="thread") as running:
        yield running
    os.rmdir(where)


def _port(url: str) -> int:
    return int(url.rpartition(":")[2])


# (server address index, client family, destination, reply's source if not the destination)
ECHO_CASES = [
    (0, socket.AF_INET, "127.0.0.1", None),
    (0, socket.AF_INET, "127.0.0.3", None),  # answered from the address it was sent to
    (0, socket.AF_INET, "127.255.255.255", "127.0.0.1"),  # a broadcast: from a unicast one
    (1, socket.AF_INET, "127.0.0.3", None),
    (1, socket.AF_INET, "127.255.255.255", "127.0.0.1"),
    (1, socket.AF_INET6, "::1", None),
    (1, socket.AF_INET6, "::ffff:127.0.0.3", None),
    (2, socket.AF_INET, "127.0.0.1", None),
]


@ONE_SERVER
@pytest.mark.parametrize(("index", "family", "host", "source"), ECHO_CASES)
def test_udp_echo_answers_every_datagram_from_a_usable_address(
    server: Server, index: int, family: int, host: str, source: str | None
) -> None:
    """A plain recvfrom/sendto server answers a broadcast from the route's address; ours
    sent from the datagram's destination, which for a broadcast is refused (ENETUNREACH,
    EINVAL): the reply was lost. RFC 862 asks for every datagram to be sent back."""
    port = _port(server.addresses[index])
    sizes = [0, 1, 1472, 1473, 8192, 65507] if host != "127.255.255.255" else [0, 5]
    with socket.socket(family, socket.SOCK_DGRAM) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        client.settimeout(WAIT)
        for size in sizes:  # one at a time: a burst of 64 KiB ones may overflow a buffer
            data = os.urandom(size)
            client.sendto(data, (host, port))
            got, sender = client.recvfrom(1 << 17)
            assert (got, sender[:2]) == (data, (source or host, port))


@pytest.mark.parametrize(
    ("family", "wildcard", "host"),
    [
        (socket.AF_INET, "0.0.0.0", "127.0.0.3"),
        (socket.AF_INET6, "::", "::ffff:127.0.0.3"),
    ],
)
def test_an_inherited_wildcard_socket_answers_from_the_address_asked(
    family: int, wildcard: str, host: str
) -> None:
    """A socket handed over (SIGUSR2's new master adopts fd://N, systemd://) lost the
    answer-from-destination rule of a udp:// one it binds itself: after an upgrade, a
    client connected to 127.0.0.3 (nc -u, socat UDP:) got its reply from 127.0.0.1 and
    dropped it."""
    import ipcnet

    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((wildcard, 0))
        port = sock.getsockname()[1]
        with (
            ipcnet.open_datagram(f"fd://{os.dup(sock.fileno())}", listen=True) as endpoint,
            socket.socket(family, socket.SOCK_DGRAM) as client,
        ):
            client.settimeout(WAIT)
            client.connect((host, port))  # the kernel drops datagrams from other addresses
            client.send(b"asked")
            data, sender = endpoint.recv()
            endpoint.send(data, to=sender)
            assert client.recv(100) == b"asked"


@pytest.mark.parametrize("url", ["udp://[::ffff:127.0.0.1]:0", "udp6://[::ffff:127.0.0.1]:0"])
def test_a_v4_mapped_address_can_be_bound(url: str) -> None:
    """socket.bind(("::ffff:127.0.0.1", 0)) and socat bind=[::ffff:127.0.0.1] serve IPv4
    peers there; ipcnet set IPV6_V6ONLY on every named IPv6 host, and Linux refuses a
    v4-mapped address on such a socket: "invalid argument: bind"."""
    import ipcnet

    with (
        ipcnet.open_datagram(url, listen=True) as endpoint,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        client.settimeout(WAIT)
        client.connect(("127.0.0.1", _port(endpoint.where)))
        client.send(b"mapped")
        data, sender = endpoint.recv()
        assert sender is not None and sender.host == "127.0.0.1"
        endpoint.send(data, to=sender)
        assert client.recv(100) == b"mapped"


@ONE_SERVER
def test_udp_echo_keeps_each_senders_datagrams_and_boundaries(server: Server) -> None:
    """Twenty clients send ten datagrams each before reading: each gets back its own, whole."""
    port = _port(server.addresses[1])
    clients = [socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) for _ in range(20)]
    try:
        for c in clients:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            c.settimeout(WAIT)
        for i in range(10):
            for j, c in enumerate(clients):
                c.sendto(b"%d-%d." % (j, i) * (i + 1), ("::ffff:127.0.0.1", port))
        for j, c in enumerate(clients):
            got = sorted(c.recv(1 << 16) for _ in range(10))
            assert got == sorted(b"%d-%d." % (j, i) * (i + 1) for i in range(10))
    finally:
        for c in clients:
            c.close()


@ONE_SERVER
def test_a_blocking_model_drops_a_reply_to_a_full_unixgram_queue(server: Server) -> None:
    """A unix datagram send blocks while the receiver's queue is full: a client that sends
    and never reads held the thread model's one datagram loop in sendto, and nobody else
    was answered. The epoll/select/asyncio loops drop that reply (and count it), as a UDP
    queue would; every model must."""
    path = server.addresses[3].removeprefix("unixgram://")
    qlen = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as hog,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as other,
    ):
        hog.bind("")  # an autobound name: the server can answer, and it never reads
        other.bind("")
        other.settimeout(WAIT)
        for i in range(qlen + 5):  # its queue fills: then each reply to it would block
            hog.sendto(b"x" * 100, path)
            other.sendto(b"ping %d" % i, path)  # answered after the hog's (one queue)
            assert other.recv(100) == b"ping %d" % i


def test_a_datagram_another_worker_took_is_not_an_error() -> None:
    """prefork's workers wait on one socket: all wake, one gets the datagram, the others'
    recv finds nothing (EAGAIN). That was counted in `errors` and logged as one."""
    from ipcnet.drivers import ServeConfig
    from ipcnet.drivers.core import ServerCore
    from ipcnet.drivers.datagrams import answer
    from ipcnet.protocols.simple import Echo

    core = ServerCore(Echo(), ["udp://127.0.0.1:0"], ServeConfig(model="epoll"))
    core.bind()
    try:
        endpoint = core.datagrams[0]
        endpoint.timeout = 0.0  # as every loop has it
        answer(core, endpoint)  # woken, but nothing there
        assert (core.row.get("errors"), core.row.get("handled")) == (0, 0)
    finally:
        core.close()


# --- connect --listen udp:// ---------------------------------------------------------------


def _bound(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Wait until a udp socket is bound to ``port`` (the kernel's table says so)."""
    deadline = time.monotonic() + 20
    needle = f":{port:04X} "
    while proc.poll() is None and time.monotonic() < deadline:
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            rows = Path(table).read_text().splitlines()[1:]
            if any(needle in row.split()[1] + " " for row in rows):
                return
        time.sleep(0.01)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listener(*options: str, stdin: int = subprocess.PIPE) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    argv = [*IPCNET, *options, "--listen", f"udp://127.0.0.1:{port}"]
    proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _bound(port, proc)
    return proc, port


def test_connect_listen_udp_locks_onto_its_first_peer() -> None:
    """nc -lu and socat UDP-LISTEN hear only the first sender once it is known; ipcnet
    printed whatever anybody sent (b's datagram between a's two)."""
    proc, port = _listener("--linger", "0")
    assert proc.stdin is not None and proc.stdout is not None
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
    ):
        a.settimeout(WAIT)
        a.sendto(b"a1\n", ("127.0.0.1", port))
        b.sendto(b"b1\n", ("127.0.0.1", port))
        a.sendto(b"", ("127.0.0.1", port))  # an empty datagram is one, not an end
        a.sendto(b"a2\n", ("127.0.0.1", port))
        proc.stdin.write(b"to a\n")
        proc.stdin.flush()
        assert a.recv(100) == b"to a\n"
        got = b""
        while len(got) < 6:  # a1 and the next printed, in the socket queue's order
            got += proc.stdout.read1(100)
        assert got == b"a1\na2\n"
        proc.stdin.close()
        proc.stdin = None  # communicate() would flush it
        out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err) == (0, b"", b"")


@pytest.mark.parametrize(
    ("options", "signum", "status", "message"),
    [
        (("--connect-timeout", "0.1"), None, 1, "timed out: wait for a peer on {url}"),
        ((), signal.SIGTERM, 128 + signal.SIGTERM, "interrupted: no peer came to {url}"),
    ],
)
def test_connect_listen_udp_gives_up_waiting_for_a_peer(
    options: tuple[str, ...], signum: int | None, status: int, message: str
) -> None:
    """With stdin empty, `socat - UDP-LISTEN:p </dev/null` and `nc -lu` wait for the first
    datagram; ipcnet ended 0.5 s (--linger) after stdin's EOF, status 0, with no peer at
    all. It waits now: --connect-timeout bounds that, as it does for --listen tcp://, and
    a signal ends it with 128 + its number and a word on stderr (the module's contract)."""
    proc, port = _listener(*options, stdin=subprocess.DEVNULL)
    if signum is not None:
        proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    said = "ipcnet connect: " + message.format(url=f"udp://127.0.0.1:{port}") + "\n"
    assert (proc.returncode, out, err.decode()) == (status, b"", said)


def test_connect_udp_loses_nothing_to_a_slow_stdout_reader() -> None:
    """Replies larger than the stdout pipe, read late: the linger (0.5 s after stdin's
    EOF) counted the write blocked on the pipe as idle time, and `connect udp://` exited
    0 having written only what the pipe took (the rest was received, then dropped)."""
    reply, count = b"r" * 40_000, 3  # 120 kB: more than a 64 KiB pipe holds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(WAIT)
        url = f"udp://127.0.0.1:{server.getsockname()[1]}"
        proc = subprocess.Popen(
            [*IPCNET, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()  # stdin's EOF: the linger begins
        _, client = server.recvfrom(100)
        for _ in range(count):
            server.sendto(reply, client)
        time.sleep(1.5)  # a slow reader: three times the linger
        out = proc.stdout.read()  # to its EOF: the command ended
    assert proc.stderr is not None
    assert (proc.wait(30), len(out), proc.stderr.read()) == (0, len(reply) * count, b"")
