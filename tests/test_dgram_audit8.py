"""Audit 8 of the address grammar and the datagram transports, side by side with socat,
OpenBSD nc, the socket module and RFC 3986.

A generated sweep of thousands of addresses (every scheme; ports 0, 65535, 65536, -1,
leading zeros, empty; IPv6 with and without brackets and zones; percent signs, unicode,
relative and absolute paths; abstract names with NUL and %00; unknown, duplicated, empty
and bad query options) either parses to an Address that prints and parses back to itself
or is refused with an InvalidAddress quoting the input; what is accepted is opened to see
that it binds what the socket module (and nc) would.

Defects found, each test written failing first: a query option given twice took the last
one silently (``shm://@x?ring=1&ring=2``); a size of ``64iB`` (no unit) was taken as 64;
an inet address with ``?options`` or ``#fragment`` was refused as an "unexpected path";
a udp listener bound to a multicast group never joined it, so it heard nothing (iperf -s -B
GROUP, socat's ip-add-membership join it); connecting to a broadcast address said only
"permission denied" (EACCES: no SO_BROADCAST); an exec: command ending in an escaped blank
(sh reads ``a\\ `` as the word 'a ') lost the blank and was refused;
`ipcnet connect udp://127.0.0.1:0` ended in a traceback (nc: 'port number too small');
a link-local multicast group (ff02::) without a zone said 'invalid argument', not that it
needs one; `ipcnet connect fd://N` on an inherited UDP socket was refused with the library's
hint 'use open_datagram()' (socat - FD:N relays it), and
sending on an unconnected one was explained as an unbound unix socket's failure;
a unix socket of another type at the path read 'protocol wrong type for socket' (as socat).

Differences kept, with their tests: a port's leading zeros are decimal (RFC 3986 §3.2.3,
getaddrinfo, nc), where socat reads 01234 as octal 668; an empty datagram is one message,
where socat takes it for the end; a datagram larger than --max-datagram ends the command
with an error, where socat -b cuts it silently.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import ipcnet
from ipcnet.addresses import SCHEMES, Address, parse
from ipcnet.errors import InvalidAddress
from ipcnet.testing import free_port

IPCNET = [sys.executable, "-m", "ipcnet", "connect"]
HAVE_SOCAT = shutil.which("socat") is not None

# --- (1) the grammar: a generated sweep ---------------------------------------------------

HOSTS = [
    "", "127.0.0.1", "localhost", "localhost.", "h", "_", "xn--e1a", "é", "a..b", "-a",
    "0177.0.0.1", "0", "1.2.3.4.", "h%20", "[::1]", "::1", "[::]", "[FE80::1]", "[]", "[::1",
    "[::1]x", "[fe80::1%eth0]", "[fe80::1%25eth0]", "[fe80::1%2525]", "[fe80::1%25]",
    "[fe80::1%]", "[fe80::1%25%25]", "[fe80::1%a:b]", "[fe80::1%a]b]", "[::ffff:127.0.0.1]",
    "[v1.x]", "255.255.255.255", "224.0.0.1", "[ff02::1%lo]",
]  # fmt: skip
PORTS = [
    "0", "1", "65535", "65536", "-1", "080", "00000080", "", "http", "http-alt", "a_b",
    "0x50", " 80", "80 ", "1e3", "٨٠", "²", "9" * 30,
]  # fmt: skip
PATHS = [
    "/abs", "rel", "./r", "/", "//x", "///x", "@abs", "@", "@a\0b", "@a%00b", "@ a ",
    "/a%20b", "/é", "/\udcff", "/a?x=1", "/a#f", "//@x", "~/x", "/a b", "", "/a\0b",
    "a" * 107, "/" + "a" * 106, "/" + "a" * 107, "@" + "a" * 107, "@" + "a" * 108,
]  # fmt: skip
QUERIES = [
    "", "?", "?&", "?ring=1", "?ring=1&ring=2", "?ring=", "?ring", "?x=1", "?RING=1",
    "?ring=64K", "?ring=64KiB", "?ring=64B", "?ring=64iB", "?ring=1#f", "?ring=-1",
    "?depth=1&msgsize=2&priority=3", "?depth=0x10", "?depth=1&depth=1",
]  # fmt: skip
OTHERS = [
    "", "//", "3", "//3", "//03", "//-1", "//2147483648", "cat", "sh -c 'a b'", " ", "'",
    "\\", "a\0", "//web", "//a b", "//é", "//N:1",
]  # fmt: skip


def _generated() -> Iterator[str]:
    for scheme in SCHEMES:
        for host, port in itertools.product(HOSTS, PORTS):
            yield f"{scheme}://{host}:{port}"
        for path, query in itertools.product(PATHS, QUERIES):
            yield f"{scheme}:{path}{query}"
            yield f"{scheme}://{path}{query}"
        for rest in OTHERS:
            yield f"{scheme}:{rest}"
        yield f"{scheme.upper()}://127.0.0.1:1"


def test_a_generated_sweep_round_trips_or_is_refused_naming_the_input() -> None:
    """Thousands of valid and near-valid addresses: no other exception than InvalidAddress,
    each refusal quotes the input and says something, and each accepted one is canonical
    once printed: parse(str(parse(x))) == parse(x) and str() of that is the same text."""
    urls = sorted(set(_generated()))
    assert len(urls) > 10_000
    accepted = 0
    for url in urls:
        try:
            address = parse(url)
        except InvalidAddress as exc:
            prefix = f"invalid address {url!r}: "
            message = str(exc)
            assert message.startswith(prefix), url
            assert len(message) > len(prefix) + 5, url
            continue
        accepted += 1
        again = parse(str(address))
        assert again == address, url
        assert str(again) == str(address), url
    assert 1000 < accepted < len(urls)  # both outcomes well represented


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("shm://@x?ring=1&ring=2", "option 'ring' given twice"),
        ("shm://@x?ring=64K&ring=64K", "option 'ring' given twice"),
        ("mq:///q?depth=1&msgsize=8&depth=2", "option 'depth' given twice"),
    ],
)
def test_an_option_given_twice_is_refused_not_the_last_one_taken(url: str, message: str) -> None:
    """Which of two values wins is no rule a user could rely on (the last one won, silently)."""
    with pytest.raises(InvalidAddress, match=message):
        parse(url)


def test_a_size_with_ib_but_no_unit_is_refused() -> None:
    """64KiB, 64K, 64KB and 64B are sizes; '64iB' was taken as 64."""
    assert parse("shm://@x?ring=64KiB").option("ring") == 65536
    assert parse("shm://@x?ring=64KB").option("ring") == 65536
    assert parse("shm://@x?ring=64B").option("ring") == 64
    with pytest.raises(InvalidAddress, match="not a number"):
        parse("shm://@x?ring=64iB")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("udp://127.0.0.1:53?broadcast=1", "udp: takes no options ('?broadcast=1' after"),
        ("tcp://h:80?", "tcp: takes no options ('?' after"),
        ("udp6://[::1]:9#x", "udp6: takes no fragment ('#x' after"),
        ("tcp://h:80/path?x=1", "unexpected path after host:port"),
    ],
)
def test_options_on_an_inet_address_are_named_as_options(url: str, message: str) -> None:
    """RFC 3986 §3.4: what follows '?' is a query, not a path; it said 'unexpected path'."""
    with pytest.raises(InvalidAddress) as info:
        parse(url)
    assert message in str(info.value)


def test_a_port_with_leading_zeros_is_decimal_as_getaddrinfo_and_nc_read_it() -> None:
    """RFC 3986 §3.2.3: port = *DIGIT, decimal; getaddrinfo and nc read '0NNNN' as NNNN.
    (socat reads it as octal: UDP4-RECV:01234 binds 668. A difference kept.)"""
    port = free_port(socket.SOCK_DGRAM)
    text = f"000{port}"
    resolved = socket.getaddrinfo("127.0.0.1", text, socket.AF_INET, socket.SOCK_DGRAM)
    assert resolved[0][4][1] == port
    with ipcnet.open_datagram(f"udp://127.0.0.1:{text}", listen=True, timeout=5) as ours:
        assert ours.sock.getsockname() == ("127.0.0.1", port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"\0zero\0", ("127.0.0.1", port))
            assert ours.recv()[0] == b"\0zero\0"


@pytest.mark.parametrize(
    ("path", "sockaddr"),
    [
        ("@ipcnet-a8-%00-{u}", b"\0ipcnet-a8-%00-{u}"),  # no percent-decoding, as socat
        ("@ipcnet-a8 é {u} ", "\0ipcnet-a8 é {u} ".encode()),  # UTF-8, spaces kept
        ("rel-{u}.sock", b"rel-{u}.sock"),  # relative to the working directory
        ("rel %41?x=1#f-{u}", b"rel %41?x=1#f-{u}"),  # '%', '?' and '#' are the path's
    ],
)
def test_an_accepted_unixgram_address_binds_what_the_socket_module_would(
    path: str, sockaddr: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opened, each accepted unix name is the sun_path a socket module peer sends to."""
    monkeypatch.chdir(tmp_path)
    u = uuid.uuid4().hex[:8]
    url = f"unixgram:{path.replace('{u}', u)}"
    target = sockaddr.replace(b"{u}", u.encode())
    assert parse(str(parse(url))) == parse(url)
    with ipcnet.open_datagram(url, listen=True, timeout=5) as ours:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as peer:
            peer.bind(b"")  # autobind: a name to answer
            peer.sendto(b"a\0b", target)
            data, sender = ours.recv()
            assert data == b"a\0b"
            ours.send(b"c\0d", to=sender)
            peer.settimeout(5)
            assert peer.recv(16) == b"c\0d"


# --- (2) datagram semantics -----------------------------------------------------------


def test_a_udp_listener_on_a_multicast_group_joins_it() -> None:
    """Bound to 239.x and not a member it heard nothing (iperf -s -B GROUP and socat's
    ip-add-membership join; the kernel delivers only to members)."""
    group = f"239.255.{os.getpid() % 250}.{threading.get_ident() % 250 + 1}"
    port = free_port(socket.SOCK_DGRAM)
    with ipcnet.open_datagram(f"udp://{group}:{port}", listen=True, timeout=3) as ours:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            try:
                sender.sendto(b"\0to the group\0", (group, port))
            except OSError as exc:  # no multicast route on this machine at all
                pytest.skip(f"cannot send to {group}: {exc}")
            data, source = ours.recv()
            assert source is not None and source.port == sender.getsockname()[1]
    assert data == b"\0to the group\0"


def test_connecting_to_a_broadcast_address_says_it_is_one() -> None:
    """connect(2) to a broadcast address without SO_BROADCAST is EACCES (ip(7)); socat
    says 'Permission denied' and needs its broadcast option, nc needs -b. ipcnet said
    only 'permission denied'."""
    out = subprocess.run(
        [*IPCNET, "udp://255.255.255.255:9"], input=b"x", capture_output=True, timeout=30
    )
    assert out.returncode == 1
    err = out.stderr.decode()
    assert err.startswith("ipcnet connect: permission denied: connect to udp://255.255.255.255:9")
    assert "a broadcast address" in err and "SO_BROADCAST" in err
    assert err.count("\n") == 1
    if HAVE_SOCAT:
        theirs = subprocess.run(
            ["socat", "-", "UDP4:255.255.255.255:9"], input=b"x", capture_output=True, timeout=30
        )
        assert theirs.returncode == 1 and b"Permission denied" in theirs.stderr


class _Peer:
    """A socket-module UDP peer: when a datagram comes, answers ``replies`` to its sender,
    ``gap`` seconds apart."""

    def __init__(self, replies: list[bytes], gap: float = 0.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(20)
        self.port = self.sock.getsockname()[1]
        self.replies, self.gap = replies, gap
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            while True:
                data, sender = self.sock.recvfrom(65536)
                if data == b"\0stop":
                    return
                for reply in self.replies:
                    time.sleep(self.gap)
                    self.sock.sendto(reply, sender)
        except OSError:
            return

    def close(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as waker:
            waker.sendto(b"\0stop", ("127.0.0.1", self.port))  # close(2) wakes no recvfrom
        self.thread.join(5)
        self.sock.close()


def _run(command: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(command, input=data, capture_output=True, timeout=30)


def test_an_empty_datagram_is_a_message_not_the_end_and_nuls_stay() -> None:
    """After a 0-byte reply, the next replies still arrive, NULs intact, and a 65507-byte
    one (UDP's largest over IPv4) in one piece; socat takes the empty datagram for its
    peer's end and stops there (what it printed is a prefix of ours)."""
    replies = [b"\0first\0", b"", b"\0\0", b"x\0" * 32753 + b"y"]
    assert len(replies[-1]) == 65507
    peer = _Peer(replies)
    try:
        ours = _run([*IPCNET, f"udp://127.0.0.1:{peer.port}"], b"go\0")
        assert (ours.returncode, ours.stderr) == (0, b"")
        assert ours.stdout == b"".join(replies)
        if HAVE_SOCAT:
            theirs = _run(["socat", "-b", "70000", "-", f"UDP4:127.0.0.1:{peer.port}"], b"go")
            assert ours.stdout.startswith(theirs.stdout)
    finally:
        peer.close()


def test_a_datagram_over_max_datagram_is_an_error_where_socat_cuts_it() -> None:
    """A 200-byte reply to a 100-byte buffer: ipcnet exits 1 naming both sizes and the
    option; socat -b 100 prints the first 100 bytes and exits 0 (MSG_TRUNC unasked)."""
    peer = _Peer([b"\0" * 150 + b"z" * 50])
    try:
        ours = _run([*IPCNET, "--max-datagram", "100", f"udp://127.0.0.1:{peer.port}"], b"go")
        assert ours.returncode == 1
        assert ours.stdout == b""
        err = ours.stderr.decode()
        assert "datagram of 200 bytes is larger than the 100-byte buffer" in err
        assert err.endswith("(raise --max-datagram)\n")
        if HAVE_SOCAT:
            theirs = _run(["socat", "-b", "100", "-", f"UDP4:127.0.0.1:{peer.port}"], b"go")
            assert (theirs.returncode, theirs.stdout) == (0, b"\0" * 100)
    finally:
        peer.close()


def test_after_stdin_eof_replies_keep_coming_while_they_come_within_the_linger() -> None:
    """A datagram client has no half-close: after stdin's EOF ipcnet connect waits 0.5 s
    after each reply (an idle timer, as socat's -t 0.5 in its closing phase), so replies
    0.3 s apart all arrive, and it ends 0 once they stop."""
    replies = [b"%d\0" % i for i in range(3)]
    peer = _Peer(replies, gap=0.3)
    try:
        ours = _run([*IPCNET, f"udp://127.0.0.1:{peer.port}"], b"go")
        assert (ours.returncode, ours.stdout, ours.stderr) == (0, b"".join(replies), b"")
        if HAVE_SOCAT:
            theirs = _run(["socat", "-", f"UDP4:127.0.0.1:{peer.port}"], b"go")
            assert theirs.stdout == ours.stdout
    finally:
        peer.close()


def test_icmp_port_unreachable_is_refused_after_stdin_eof_as_socat_says() -> None:
    """Nothing on the port: the kernel's ICMP makes the connected socket's next recv
    ECONNREFUSED; ipcnet connect and socat both exit 1 saying so (nc -u exits 0)."""
    port = free_port(socket.SOCK_DGRAM)
    ours = _run([*IPCNET, f"udp://127.0.0.1:{port}"], b"anyone?")
    assert ours.returncode == 1
    assert ours.stderr.decode() == (
        f"ipcnet connect: connection refused: nothing listens on udp://127.0.0.1:{port} "
        "(is the server running?)\n"
    )
    if HAVE_SOCAT:
        theirs = _run(["socat", "-", f"UDP4:127.0.0.1:{port}"], b"anyone?")
        assert theirs.returncode == 1 and b"Connection refused" in theirs.stderr


def test_an_address_parsed_from_a_sender_is_one_that_parses_back() -> None:
    """The sender Address a recv gives (an autobound abstract name: 5 hex digits) prints
    as a URL that parses back to it, so it can be given as ``to=`` text."""
    name = f"ipcnet-a8-{uuid.uuid4().hex[:8]}"
    with ipcnet.open_datagram(f"unixgram://@{name}", listen=True, timeout=5) as ours:
        with ipcnet.open_datagram(f"unixgram://@{name}", timeout=5) as client:
            client.send(b"")
            data, sender = ours.recv()
            assert data == b"" and isinstance(sender, Address)
            assert parse(str(sender)) == sender
            ours.send(b"\0back", to=str(sender))
            assert client.recv()[0] == b"\0back"


@pytest.mark.parametrize("command", ["printf [%s] a\\ ", "printf [%s] a\\\t", "printf [%s] a\\\\ "])
def test_an_escaped_trailing_blank_of_exec_is_the_last_words(command: str) -> None:
    """sh -c 'printf [%s] a\\ ' prints '[a ]': the escaped blank is the word's. The grammar
    stripped it and then refused the command ('no escaped character')."""
    shell = subprocess.run(["sh", "-c", command], capture_output=True, timeout=30)
    assert parse(f"exec:{command}").argv[-1] == shell.stdout.decode()[1:-1]
    ours = _run([*IPCNET, f"exec:{command}"], b"")
    assert (ours.returncode, ours.stdout, ours.stderr) == (0, shell.stdout, b"")


def test_connecting_to_port_0_is_refused_in_one_line_not_a_traceback() -> None:
    """Port 0 is no destination (a listener's 'any free port'): nc says 'port number too
    small: 0'; Linux lets a UDP socket connect to it and then getpeername fails
    (ENOTCONN), which came out of ipcnet connect as a traceback."""
    ours = _run([*IPCNET, "udp://127.0.0.1:0"], b"x")
    assert ours.returncode == 1
    assert ours.stderr.decode() == (
        "ipcnet connect: invalid address 'udp://127.0.0.1:0': port 0 is no destination "
        "(to a listener it means any free port)\n"
    )
    if shutil.which("nc"):
        theirs = _run(["nc", "-u", "-w1", "127.0.0.1", "0"], b"x")
        assert theirs.returncode == 1 and b"port number too small" in theirs.stderr


def test_sending_to_port_0_says_so_not_invalid_argument() -> None:
    """sendto(2) to port 0 is EINVAL, which read 'invalid argument: send to ...'."""
    with ipcnet.open_datagram("udp://127.0.0.1:0", listen=True, timeout=5) as ours:
        with pytest.raises(InvalidAddress, match="port 0 is no destination"):
            ours.send(b"x", to="udp://127.0.0.1:0")
        with pytest.raises(InvalidAddress, match="port 0 is no destination"):
            ipcnet.open_datagram("udp6://[::1]:0")


@pytest.mark.parametrize("listen", [False, True])
@pytest.mark.parametrize("group", ["ff02::1:2345", "ff12::1:2345", "ff01::1:2345"])
def test_a_link_local_multicast_group_without_a_zone_says_it_needs_one(
    group: str, listen: bool
) -> None:
    """ff02::/16 (and ff01::, ff12::) name a group on one link, so the kernel wants a
    scope id as for fe80:: (EINVAL without one), which read 'invalid argument'."""
    from ipcnet.errors import AddressNotAvailable

    url = f"udp6://[{group}]:{free_port(socket.SOCK_DGRAM, '::1')}"
    with pytest.raises(AddressNotAvailable, match="needs a zone") as info:
        ipcnet.open_datagram(url, listen=listen)
    assert f"udp6://[{group}%25<interface>]:" in str(info.value)


@pytest.mark.parametrize("tool", ["ipcnet", "socat"])
def test_connect_over_an_inherited_udp_socket_exchanges_datagrams(tool: str) -> None:
    """`socat - FD:N` relays an inherited UDP socket's datagrams; `ipcnet connect fd://N`
    refused it with the library's hint ('use open_datagram()'), which no command user can
    follow: the command now asks the socket, as `ipcnet serve fd://N` does."""
    if tool == "socat" and not HAVE_SOCAT:
        pytest.skip("socat is not installed")
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as inherited,
    ):
        server.bind(("127.0.0.1", 0))
        server.settimeout(10)
        inherited.connect(server.getsockname())
        fd = inherited.fileno()
        command = [*IPCNET, f"fd://{fd}"] if tool == "ipcnet" else ["socat", "-", f"FD:{fd}"]
        proc = subprocess.Popen(
            command,
            pass_fds=[fd],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert proc.stdin is not None
            proc.stdin.write(b"a\0b")
            proc.stdin.flush()
            data, sender = server.recvfrom(100)
            assert data == b"a\0b"
            server.sendto(b"\0reply\0", sender)
            out, err = proc.communicate(b"", timeout=20)
        finally:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out, err) == (0, b"\0reply\0", b"")


def test_sending_on_an_unconnected_udp_socket_says_what_it_lacks() -> None:
    """An inherited bound, unconnected UDP socket has no peer to send stdin to (socat:
    'Destination address required'); ipcnet explained it as an unbound unix socket's."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bound:
        bound.bind(("127.0.0.1", 0))
        fd = bound.fileno()
        out = subprocess.run(
            [*IPCNET, f"fd://{fd}"], pass_fds=[fd], input=b"x", capture_output=True, timeout=30
        )
    assert out.returncode == 1
    assert out.stderr.decode() == (
        f"ipcnet connect: cannot send on fd://{fd}: it is connected to no peer and was "
        "given no destination\n"
    )


@pytest.mark.parametrize(
    ("there", "url_scheme", "kind"),
    [
        (socket.SOCK_STREAM, "unixgram", "datagram"),
        (socket.SOCK_DGRAM, "unix", "stream"),
        (socket.SOCK_STREAM, "unixpacket", "seqpacket"),
        (socket.SOCK_SEQPACKET, "unixgram", "datagram"),
    ],
)
def test_a_unix_socket_of_another_type_is_named_as_such(
    there: int, url_scheme: str, kind: str, short_tmp: Path
) -> None:
    """connect(2) to a unix socket of another type is EPROTOTYPE; socat prints the
    kernel's 'Protocol wrong type for socket', as ipcnet did. Now: not a datagram socket,
    and which schemes there are."""
    from ipcnet.errors import NoSuchSocket

    path = f"{short_tmp}/s"
    with socket.socket(socket.AF_UNIX, there) as other:
        other.bind(path)
        if there != socket.SOCK_DGRAM:
            other.listen()
        url = f"{url_scheme}://{path}"
        with pytest.raises(NoSuchSocket) as info:
            if kind == "datagram":
                ipcnet.open_datagram(url)
            else:
                ipcnet.connect(url, connect_timeout=5)
    assert str(info.value).startswith(f"not a {kind} socket: {url} (")
    assert "unix://, unixgram:// or unixpacket://" in str(info.value)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1.2.3",
        "0.0.0.0",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::]",
        "[::FFFF:127.0.0.1]",
    ],
)
def test_an_accepted_udp_host_binds_where_getaddrinfo_puts_it(host: str) -> None:
    """Each literal binds the address getaddrinfo(AI_PASSIVE) gives for it, and a socket
    module client that sends there is heard: no form means another address."""
    port = free_port(socket.SOCK_DGRAM)
    literal = host.strip("[]")
    family, _, _, _, sockaddr = socket.getaddrinfo(
        literal, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
    )[0]
    with ipcnet.open_datagram(f"udp://{host}:0{port}", listen=True, timeout=5) as ours:
        bound = ours.sock.getsockname()
        assert (ours.sock.family, bound[:2]) == (family, sockaddr[:2])
        target = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(literal, literal)
        with socket.socket(family, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"\0here", (target, port))
            assert ours.recv()[0] == b"\0here"


def test_a_107_byte_abstract_name_binds_all_of_it() -> None:
    """sun_path is 108 bytes: a NUL and 107 of name, as socat ABSTRACT-RECVFROM takes."""
    name = ("ipcnet-a8-" + uuid.uuid4().hex).ljust(107, "x")
    with ipcnet.open_datagram(f"unixgram://@{name}", listen=True, timeout=5) as ours:
        assert ours.sock.getsockname() == b"\0" + name.encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"full", b"\0" + name.encode())
            assert ours.recv()[0] == b"full"
    with pytest.raises(InvalidAddress, match="108 bytes, over the limit of 107"):
        parse(f"unixgram://@{name}x")
