"""The small services (echo, discard, daytime, increment) against inetd's built-in ones.

A differential pass against openbsd-inetd 0.20221205 and xinetd 2.3.15 (their internal
echo, discard, daytime, chargen and time over tcp and udp, run in a private network
namespace; the harness lived outside the repository) compared the answers to the same
inputs, datagram sizes, half-close, clients that never read or reset, many clients, 64 MiB
through echo under every model (by hash, with a slow reader) and datagrams from sources a
reply could loop with. What differed and was ipcnet's defect is checked here:
- a datagram service answered every sender, so one spoofed datagram between two echo
  servers (or echo and daytime) started an exchange that never ends, each server answering
  the other at full speed (CERT CA-1996-01, "UDP port denial-of-service"; CVE-1999-0103).
  xinetd 2.3.14 and BusyBox's inetd answer no datagram from a port below 1024, where the
  services that answer datagrams live (echo 7, daytime 13, chargen 19, time 37, DNS 53,
  NTP 123), and FreeBSD's inetd none from a port its own datagram services use (another
  copy of itself): ipcnet now does both, the datagram counted as an error, and goes on
  serving;
- daytime's names of days and months came from strftime's %A and %B, so a program that
  set its locale (setlocale(LC_ALL, "") in a process serving ipcnet in a thread, a German
  one here) sent "Mittwoch, Dezember 02, 2026", and "März" in UTF-8: RFC 867 asks for ASCII
  printing characters, and the syntax it shows ("Tuesday, February 22, 1982 17:37:43-PST")
  is the English one;
- over unixpacket:// (SOCK_SEQPACKET, read as a byte stream: a packet longer than a read
  is kept for the next one, never cut), the readiness models read each packet with one
  recv of 64 KiB, and the kernel drops the rest of a longer packet: echo sent back 262,245
  of 431,174 bytes, silently. A write the kernel could not take whole (over its send
  buffer) failed with EMSGSIZE there too. The asyncio model accepted each connection and
  reset it (asyncio takes SOCK_STREAM sockets only), logging it at debug level: it now
  refuses the address at start, saying so. A packet of no bytes (SOCK_SEQPACKET allows
  them; recv returns 0 for it as at EOF) was taken for the client's EOF under every model:
  echo closed with the client's next packets unread, and the reset lost what it had
  echoed. It carries no bytes: it is skipped, and EOF is the peer's shutdown;
- a prefork worker that the master's SIGTERM reached in its first instants, before it
  had put its own handler in place, lost it (CPython runs no handler for a signal whose
  handler is SIG_DFL by the time it looks), served on, and the master waited for it for
  ever; a worker the master forked just as the stop came was never told. Stop signals
  are blocked across the fork until the worker's handlers (and the master's list of
  workers) are in place. And the master itself waited for its workers in waitpid(2): a
  SIGTERM taken by its --stats thread, or one that came just before the call, left it
  blocked there (CPython runs the handler once the main thread runs again). It now waits
  on its waker, which every signal writes (SIGCHLD caught for a worker's end)
  (``ServerCore.fork``, ``Waker.wait``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from serverkit import _start, children, serving

QUIET = 0.5  # seconds a reply that must not come is waited for
MODELS = ["iterative", "epoll", "asyncio"]  # the blocking, readiness and asyncio loops


def _port(url: str) -> int:
    return int(url.rpartition(":")[2])


@contextmanager
def _client(host: str = "127.0.0.1", port: int = 0) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(QUIET)
        sock.bind((host, port))
        yield sock


def _answered(sock: socket.socket, data: bytes, to: tuple[str, int]) -> bytes | None:
    sock.sendto(data, to)
    try:
        return sock.recv(65536)
    except TimeoutError:
        return None


def _reserved_client() -> socket.socket:
    """A UDP socket on a port below 1024 (root, or a low ip_unprivileged_port_start)."""
    for port in range(1023, 899, -1):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("127.0.0.1", port))
        except PermissionError:
            sock.close()
            pytest.skip("binding a port below 1024 needs privileges")
        except OSError:
            sock.close()
            continue
        sock.settimeout(QUIET)
        return sock
    pytest.skip("no free port below 1024")


@pytest.mark.parametrize("service", ["echo", "daytime"])
@pytest.mark.parametrize("model", MODELS)
def test_no_answer_to_a_datagram_from_a_reserved_port(model: str, service: str) -> None:
    """A reply to port 7, 13, 19 or 37 of another host would start a loop with its echo,
    daytime, chargen or time service (xinetd's and BusyBox's bad_port_check)."""
    with serving(service, "udp4://127.0.0.1:0", model=model) as server:
        to = ("127.0.0.1", _port(server.addresses[0]))
        with _reserved_client() as low:
            assert _answered(low, b"loop?", to) is None
        with _client() as usual:  # and the server goes on answering
            assert _answered(usual, b"still there?", to)


@pytest.mark.parametrize("model", MODELS)
def test_no_answer_to_a_datagram_from_the_servers_own_port(model: str) -> None:
    """From the port the server answers on, at another address: another copy of the same
    server, the loop FreeBSD's inetd refuses (check_loop)."""
    with serving("echo", "udp4://127.0.0.1:0", model=model) as server:
        port = _port(server.addresses[0])
        with _client("127.0.0.2", port) as twin:
            assert _answered(twin, b"loop?", ("127.0.0.1", port)) is None
        with _client() as usual:
            assert _answered(usual, b"still there?", ("127.0.0.1", port)) == b"still there?"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _spoof(source: tuple[str, int], target: tuple[str, int], payload: bytes) -> None:
    """One UDP datagram to ``target`` that claims to come from ``source`` (a raw socket)."""
    src, dst = socket.inet_aton(source[0]), socket.inet_aton(target[0])
    length = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_UDP, length)
    head = struct.pack("!HHHH", source[1], target[1], length, 0)
    udp = struct.pack("!HHHH", source[1], target[1], length, _checksum(pseudo + head + payload))
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + length, 1, 0, 64, socket.IPPROTO_UDP, 0, src, dst
    )
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    except PermissionError:
        pytest.skip("a raw socket needs CAP_NET_RAW")
    with raw:
        raw.sendto(ip + udp + payload, (target[0], 0))


def _handled(stats: str) -> int:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(stats)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return int(json.loads(out)["handled"])


def test_one_spoofed_datagram_between_two_echo_servers_starts_no_loop() -> None:
    """The attack itself: a datagram to one echo server, forged to come from another,
    made them answer each other until one stopped (thousands of datagrams a second)."""
    tag = uuid.uuid4().hex[:10]
    stats = f"/tmp/ipcnet-loop-{tag}.sock"
    with serving("echo", "udp4://127.0.0.1:0", extra=("--stats", f"unix://{stats}")) as a:
        port = _port(a.addresses[0])
        with serving("echo", f"udp4://127.0.0.2:{port}"):
            _spoof(("127.0.0.2", port), ("127.0.0.1", port), b"ping-pong")
            time.sleep(QUIET)
            assert _handled(stats) <= 1, "the two servers answer each other"
            with _client() as usual:
                assert _answered(usual, b"x", ("127.0.0.2", port)) == b"x"
    assert not os.path.exists(stats)


DAYTIME = re.compile(
    rb"^(Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, (January|February|March|April|May|June|"
    rb"July|August|September|October|November|December) \d\d, \d{4} \d\d:\d\d:\d\d-UTC\r\n$"
)
IN_LOCALE = (
    "import locale, sys; locale.setlocale(locale.LC_ALL, 'de_DE.UTF-8'); "
    "from ipcnet.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_daytime_is_english_ascii_whatever_the_locale(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    where = tmp_path_factory.mktemp("locale")
    if shutil.which("localedef") is None or not os.path.exists("/usr/share/i18n/locales/de_DE"):
        pytest.skip("no localedef or no de_DE locale source (Debian's locales)")
    made = subprocess.run(
        ["localedef", "-i", "de_DE", "-f", "UTF-8", str(where / "de_DE.UTF-8")],
        capture_output=True,
        timeout=30,
    )
    assert made.returncode in (0, 1), made.stderr  # 1: warnings only
    argv = [sys.executable, "-c", IN_LOCALE, "serve", "daytime", "tcp://127.0.0.1:0"]
    server = _start(argv, 1, env={**os.environ, "LOCPATH": str(where)})
    try:
        host, _, port = server.addresses[0].removeprefix("tcp://").rpartition(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            got = b""
            while chunk := sock.recv(100):
                got += chunk
        assert DAYTIME.match(got), got
    finally:
        assert server.stop() == 0, "\n".join(server.log)


def _seqpacket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
    sock.settimeout(10)
    sock.connect(path)
    return sock


@pytest.mark.parametrize("model", ["iterative", "thread", "select", "epoll", "prefork"])
def test_echo_over_unixpacket_loses_nothing_of_a_long_packet(model: str) -> None:
    path = f"/tmp/ipcnet-sp-{uuid.uuid4().hex[:10]}.sock"
    with serving("echo", f"unixpacket://{path}", model=model) as server:
        assert server.addresses
        sent = b""
        with _seqpacket(path) as sock:
            for size in (1, 100, 65536, 65537, 100_000, 200_000):
                packet = os.urandom(size)
                sock.send(packet)
                sent += packet
            sock.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := sock.recv(1 << 18):
                got += chunk
        assert (len(got), got) == (len(sent), sent)


@pytest.mark.parametrize("model", [["asyncio"], ["prefork", "--inner", "asyncio"]])
def test_the_asyncio_model_refuses_unixpacket_at_start(model: list[str]) -> None:
    path = f"/tmp/ipcnet-sp-{uuid.uuid4().hex[:10]}.sock"
    argv = [sys.executable, "-m", "ipcnet", "serve", "echo", f"unixpacket://{path}"]
    done = subprocess.run([*argv, "--model", *model], capture_output=True, text=True, timeout=10)
    assert "listening" not in done.stderr
    assert done.returncode == 1, done.stderr
    assert "asyncio model cannot serve unixpacket://" in done.stderr
    assert not os.path.exists(path)


@pytest.mark.parametrize("model", ["iterative", "thread", "epoll", "prefork"])
def test_an_empty_unixpacket_packet_is_no_eof(model: str) -> None:
    path = f"/tmp/ipcnet-sp-{uuid.uuid4().hex[:10]}.sock"
    with serving("echo", f"unixpacket://{path}", model=model):
        with _seqpacket(path) as sock:
            for packet in (b"abc", b"", b"def"):
                sock.send(packet)
            time.sleep(0.2)  # each read by itself, the empty one too
            sock.send(b"ghi")
            sock.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := sock.recv(1 << 16):
                got += chunk
        assert got == b"abcdefghi"


def test_a_prefork_stop_while_workers_start_stops_them_all() -> None:
    """SIGTERM as soon as the server says it listens (the master is still forking), or a
    few milliseconds later (as it starts to wait for its workers)."""
    argv = [sys.executable, "-m", "ipcnet", "serve", "echo", "tcp://127.0.0.1:0"]
    for attempt in range(10):
        server = _start([*argv, "--model", "prefork", "--workers", "4"], 1)
        time.sleep(attempt * 0.005)
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(10)
        except subprocess.TimeoutExpired:
            left = children(server.proc.pid)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            server.proc.kill()
            server.proc.wait()
            raise AssertionError(f"the master waits for {len(left)} workers") from None
        assert code == 0
