"""`ipcnet connect`, the address grammar and the socket transports, checked where an audit
against socat, OpenBSD nc and the kernel's rules found them wrong.

Each test was written failing first: a reply lost when the peer stopped reading, a crash
or a vague message for a bad host name, an abstract name of the kernel's full length
refused, errors that did not name the part of the address at fault, closed standard
descriptors taken over by the socket, and a descriptor number reused under a reader.
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
from ipcnet.errors import (
    AddressInUse,
    AddressNotAvailable,
    Closed,
    InvalidAddress,
    Reset,
    ResolveError,
    Timeout,
    Unsupported,
)

IPCNET = [sys.executable, "-m", "ipcnet", "connect"]


# --- the close race: a descriptor number must not be reused under a reader ---------------


def test_close_before_a_reader_polls_does_not_let_it_watch_a_reused_descriptor() -> None:
    """close() runs after a reader counted itself blocked but before it polls: the number
    must stay ours until the reader leaves, or poll would watch whatever took it."""
    a, b = ipcnet.socketpair()
    transport = a.transport
    fd = transport.fileno()
    real = transport._poll  # type: ignore[attr-defined]
    taken: list[socket.socket] = []

    class CloseFirst:  # the reader is inside read(), about to poll: close() comes now
        def poll(self, timeout: int) -> list[tuple[int, int]]:
            closer = threading.Thread(target=a.close)
            closer.start()
            closer.join()
            taken.extend(socket.socketpair())  # the lowest free numbers: fd, if it was freed
            return real.poll(timeout)  # type: ignore[no-any-return]

    transport._poll = CloseFirst()  # type: ignore[attr-defined]
    a.timeout = 10  # the old code waited here on the new socket: fail, do not hang
    try:
        with pytest.raises(Closed):
            a.read(10)
        assert fd not in [s.fileno() for s in taken], "the descriptor was reused under a reader"
        with pytest.raises(OSError):  # and closed once the reader left
            os.fstat(fd)
    finally:
        b.close()
        for s in taken:
            s.close()


def test_close_before_a_pipe_reader_reads_does_not_let_it_read_a_reused_descriptor() -> None:
    """The same race on a pipe: close() comes just before the reader's read(2); the number
    must not be free for the next pipe, whose bytes the reader would return as ours."""
    reader, writer = ipcnet.pipe()
    transport = reader.transport
    fd = transport.fileno()
    check = transport._fd_for  # type: ignore[attr-defined]
    taken: list[int] = []

    def close_first(op: str, number: int | None) -> int:  # inside read(), about to read(2)
        closer = threading.Thread(target=reader.close)
        closer.start()
        closer.join()
        taken.extend(os.pipe())  # the lowest free numbers: fd, if it was freed
        os.write(taken[1], b"someone else's bytes")
        return check(op, number)  # type: ignore[no-any-return]

    transport._fd_for = close_first  # type: ignore[attr-defined]
    try:
        with pytest.raises(Closed):
            reader.read(100)
        assert fd not in taken, "the descriptor was reused under a reader"
        with pytest.raises(OSError):  # and closed once the reader left
            os.fstat(fd)
    finally:
        writer.close()
        for number in taken:
            os.close(number)


# --- no reply lost when the peer stops reading (issue 10's rule, the other way round) ----


def _unix_peer_that_stops_reading(path: str) -> threading.Thread:
    """Reads 10 bytes, stops reading (shutdown SHUT_RD: the client's writes get EPIPE),
    then, later, answers and closes."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def serve() -> None:
        with listener, listener.accept()[0] as conn:
            conn.recv(10)
            conn.shutdown(socket.SHUT_RD)
            threading.Event().wait(0.3)  # the client's writes fail meanwhile
            conn.sendall(b"refused: too big\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("kind", ["unix", "exec"])
def test_a_peer_that_stops_reading_still_gets_its_answer_through(kind: str, tmp_path: Path) -> None:
    """The peer stops reading our 4 MiB, then answers: the answer is printed, and the exit
    status says the upload failed (socat prints nothing; nc -N prints it, exits 0)."""
    if kind == "unix":
        url = f"unix://{tmp_path}/s"
        peer = _unix_peer_that_stops_reading(f"{tmp_path}/s")
    else:
        url = "exec:sh -c 'exec 0<&-; sleep 0.3; echo refused: too big'"
    out = subprocess.run([*IPCNET, url], input=os.urandom(4 << 20), capture_output=True, timeout=60)
    if kind == "unix":
        peer.join(10)
    assert out.stdout == b"refused: too big\n"
    assert out.returncode == 1
    assert out.stderr.decode().startswith("ipcnet connect: peer closed: write to ")


# --- the address grammar: what the kernel, getaddrinfo, socat and nc take ----------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("tcp://a..b:80", "empty label in host name 'a..b'"),  # was a UnicodeError traceback
        ("tcp://" + "a" * 64 + ".example:80", "in host name is 64 bytes, over 63"),
        ("tcp://.:80", "invalid host name '.'"),
        ("unix://@" + "n" * 108, "abstract socket name is 108 bytes, over the limit of 107"),
        ("localhost:80", "missing scheme (did you mean tcp://localhost:80 or udp://"),
        ("[::1]:80", "missing scheme (did you mean tcp://[::1]:80 or udp://"),
    ],
)
def test_bad_names_are_refused_naming_the_part(url: str, message: str) -> None:
    with pytest.raises(InvalidAddress, match=re.escape(message)):
        parse(url)


def test_a_trailing_dot_and_a_107_byte_abstract_name_are_valid() -> None:
    assert parse("tcp://localhost.:80").host == "localhost."  # the root label, as in DNS
    name = f"ipcnet-{os.getpid()}-".ljust(107, "n")  # sun_path: a NUL and 107 bytes
    with ipcnet.listen(f"unix://@{name}") as listener, ipcnet.connect(f"unix://@{name}") as c:
        with listener.accept() as s:
            c.write(b"x")
            assert s.read(1) == b"x"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("tcp://localhost:no-such-service", "unknown tcp service 'no-such-service'"),
        ("udp://127.0.0.1:no-such-service", "unknown udp service 'no-such-service'"),
        ("tcp://no-such-host.invalid:80", "no host 'no-such-host.invalid'"),
    ],
)
def test_resolve_errors_name_the_host_or_the_service(url: str, message: str) -> None:
    with pytest.raises(ResolveError, match=f"^cannot resolve {re.escape(url)}: {message} "):
        if url.startswith("udp"):
            ipcnet.open_datagram(url)
        else:
            ipcnet.connect(url)


def test_a_descriptor_that_is_not_open_is_named() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(AddressNotAvailable, match=f"descriptor {r} is not open in this process"):
        ipcnet.connect(f"fd://{r}")


def test_connect_timeout_says_how_long_it_waited() -> None:
    """A listener whose queue is full drops SYNs: the connect times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        queued = []
        for _ in range(3):  # fill the accept queue; later SYNs are dropped
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            queued.append(s)
        try:
            with pytest.raises(Timeout, match=rf"^timed out: connect to .*:{port} after 0.3 s$"):
                ipcnet.connect(f"tcp://127.0.0.1:{port}", connect_timeout=0.3)
        finally:
            for s in queued:
                s.close()


# --- EOF toward a peer that reset the connection ------------------------------------------


def test_send_eof_after_the_peer_reset_says_so() -> None:
    """The peer answers and closes; our late write makes it reset; shutdown(SHUT_WR) then
    gives ENOTCONN, which is a reset, not "transport endpoint is not connected"."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with ipcnet.connect(f"tcp://127.0.0.1:{listener.getsockname()[1]}") as channel:
            conn, _ = listener.accept()
            conn.sendall(b"bye")
            conn.close()
            assert channel.read() == b"bye"
            channel.write(b"late")  # the kernel takes it; the peer answers with a reset
            raw = channel.transport.sock  # type: ignore[attr-defined]
            for _ in range(1000):  # until the reset arrived (TCP_CLOSE = 7 in tcp_info)
                if raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 7:
                    break
                threading.Event().wait(0.01)
            with pytest.raises(Reset, match=r"^connection reset by peer: shut down tcp://"):
                channel.send_eof()


# --- closed standard descriptors -----------------------------------------------------------


def test_closed_stdin_and_stdout_are_dev_null_not_the_socket(tmp_path: Path) -> None:
    """`ipcnet connect URL <&- >&-`: the socket would take fd 0 and read itself."""
    path = f"{tmp_path}/s"
    got: list[bytes] = []
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(1)

        def serve() -> None:
            with listener.accept()[0] as conn:
                conn.sendall(b"hello\n")
                got.append(b"".join(iter(lambda: conn.recv(65536), b"")))

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        out = subprocess.run(
            ["sh", "-c", 'exec "$@" <&- >&-', "sh", *IPCNET, f"unix://{path}"],
            capture_output=True,
            timeout=30,
        )
        server.join(10)
    assert (out.returncode, out.stderr, got) == (0, b"", [b""])


# --- UDP: stdin larger than one datagram ----------------------------------------------------


def test_udp_stdin_larger_than_a_datagram_is_sent_in_datagrams_that_fit() -> None:
    """A pipe read of 64 KiB is more than a UDP datagram holds (65507 bytes): it was one
    EMSGSIZE and nothing sent; nc -u sends 16 KiB datagrams, socat 8 KiB ones."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(30)
        data = os.urandom(100_000)
        out = subprocess.run(
            [*IPCNET, "--linger", "0.1", f"udp://127.0.0.1:{server.getsockname()[1]}"],
            input=data,
            capture_output=True,
            timeout=60,
        )
        assert (out.returncode, out.stderr) == (0, b"")
        got = b""
        while len(got) < len(data):
            datagram = server.recv(1 << 17)
            assert len(datagram) <= 65507
            got += datagram
        assert got == data


# --- a live unix listener is not disturbed by a second one --------------------------------


def test_a_second_listener_on_a_live_unix_path_does_not_queue_a_connection(
    tmp_path: Path,
) -> None:
    """The in-use check connected to the live listener, which a one-peer listener
    (`ipcnet connect --listen unix://...`) then took as its peer and wrote to."""
    url = f"unix://{tmp_path}/live.sock"
    with ipcnet.listen(url) as live:
        with pytest.raises(AddressInUse, match="a server listens on"):
            ipcnet.listen(url)
        live.transport.set_blocking(False)
        assert live.transport.try_accept() is None  # nothing was queued at it


def test_answering_a_datagram_from_an_unbound_unix_socket_says_why_it_cannot(
    tmp_path: Path,
) -> None:
    """`ipcnet connect --listen unixgram://...` answers the first sender; one that never
    bound a name (socat UNIX-SENDTO) cannot be answered: say so, not ENOTCONN's text."""
    path = f"{tmp_path}/g.sock"
    with ipcnet.open_datagram(f"unixgram://{path}", listen=True) as endpoint:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unbound:
            unbound.sendto(b"hello", path)
        assert endpoint.recv() == (b"hello", None)
        with pytest.raises(Unsupported, match="it has no peer .* unbound unix socket"):
            endpoint.send(b"reply")
