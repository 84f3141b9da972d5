"""Listeners: dual-stack tcp, unix socket files (stale, live, mode, removal), fifos, fd://, systemd://."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import textwrap
import threading

import pytest

import ipcnet
from ipcnet import errors


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback on this machine")
def test_wildcard_listen_is_dual_stack() -> None:
    with ipcnet.listen("tcp://:0") as listener:
        port = listener.address.port
        assert str(listener.address) == f"tcp://:{port}"
        for url in (f"tcp4://127.0.0.1:{port}", f"tcp6://[::1]:{port}"):
            with ipcnet.connect(url) as client, listener.accept() as server:
                client.write(b"hi")
                assert server.read(2) == b"hi"
                assert server.peer_address is not None
                assert server.peer_address.host in ("127.0.0.1", "::1")  # mapped shown as IPv4


def test_connect_tries_every_resolved_address() -> None:
    """localhost may resolve to ::1 first; the listener is only on 127.0.0.1."""
    with ipcnet.listen("tcp4://127.0.0.1:0") as listener:
        with ipcnet.connect(f"tcp://localhost:{listener.address.port}") as client:
            with listener.accept() as server:
                client.write(b"ok")
                assert server.read(2) == b"ok"


def test_service_names_from_etc_services() -> None:
    with pytest.raises(errors.IPCError) as info:
        ipcnet.connect("tcp://127.0.0.1:discard", connect_timeout=2)  # port 9, nothing there
    assert "tcp://127.0.0.1:discard" in str(info.value)


def test_unix_listener_mode_and_cleanup(short_tmp) -> None:
    path = short_tmp / "s"
    with ipcnet.listen(f"unix://{path}") as listener:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert listener.address.path == str(path)
    assert not path.exists()
    with ipcnet.listen(f"unix://{path}", mode=0o660):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660


def test_stale_socket_file_is_replaced(short_tmp) -> None:
    path = short_tmp / "stale"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens: stale
    with ipcnet.listen(f"unix://{path}") as listener, ipcnet.connect(f"unix://{path}") as c:
        with listener.accept() as server:
            c.write(b"x")
            assert server.read(1) == b"x"


def test_live_socket_is_address_in_use(short_tmp) -> None:
    path = short_tmp / "live"
    with ipcnet.listen(f"unix://{path}"):
        with pytest.raises(errors.AddressInUse, match="a server listens on"):
            ipcnet.listen(f"unix://{path}")
        assert path.exists()


def test_regular_file_is_never_removed(short_tmp) -> None:
    path = short_tmp / "data"
    path.write_text("precious")
    with pytest.raises(errors.AddressInUse, match="exists and is not a socket"):
        ipcnet.listen(f"unix://{path}")
    assert path.read_text() == "precious"


def test_replaced_socket_file_is_not_removed_on_close(short_tmp) -> None:
    path = short_tmp / "moved"
    listener = ipcnet.listen(f"unix://{path}")
    os.unlink(path)
    path.write_text("someone else's")
    listener.close()
    assert path.read_text() == "someone else's"


def test_a_forked_child_closing_its_listener_leaves_the_parents(short_tmp) -> None:
    """The notes' fork server: each child closes its copy of the listening socket. That
    must neither remove the socket file nor stop the parent accepting; abandon() says the
    same thing explicitly."""
    path = short_tmp / "forked.sock"
    with ipcnet.listen(f"unix://{path}") as listener:
        for leave in (listener.close, listener.abandon):
            pid = os.fork()
            if pid == 0:  # the child
                leave()
                os._exit(0)
            assert os.waitpid(pid, 0)[1] == 0
            assert stat.S_ISSOCK(os.stat(path).st_mode)
            with ipcnet.connect(f"unix://{path}") as client, listener.accept() as server:
                client.write(b"still here")
                assert server.read(10) == b"still here"
    assert not path.exists()  # the parent's close removes it


def test_a_forked_child_closing_a_fifo_listener_leaves_the_fifo(short_tmp) -> None:
    path = short_tmp / "forked.fifo"
    with ipcnet.listen(f"fifo://{path}") as listener:
        pid = os.fork()
        if pid == 0:
            listener.close()  # the parent made the fifo: not the child's to remove
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        assert stat.S_ISFIFO(os.stat(path).st_mode)
    assert not path.exists()


def test_abstract_names_touch_no_file(short_tmp, monkeypatch) -> None:
    monkeypatch.chdir(short_tmp)
    (short_tmp / "@name").write_text("not a socket")
    with ipcnet.listen("unix://@ipcnet-abstract-test-name") as listener:
        with ipcnet.connect("unix://@ipcnet-abstract-test-name") as c, listener.accept() as s:
            c.write(b"a")
            assert s.read(1) == b"a"
    assert (short_tmp / "@name").read_text() == "not a socket"


def test_accept_timeout_and_close_wakes_accept() -> None:
    with ipcnet.listen("tcp://127.0.0.1:0") as listener:
        listener.timeout = 0.05
        with pytest.raises(errors.Timeout):
            listener.accept()
    listener = ipcnet.listen("tcp://127.0.0.1:0")
    outcome: list[BaseException] = []

    def accept() -> None:
        try:
            listener.accept()
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=accept)
    t.start()
    t.join(0.1)
    listener.close()
    t.join(5)
    assert not t.is_alive()
    assert isinstance(outcome[0], errors.Closed)


def test_fifo_between_unrelated_processes(short_tmp) -> None:
    path = short_tmp / "f"
    with ipcnet.listen(f"fifo://{path}") as listener:
        assert stat.S_ISFIFO(os.stat(path).st_mode)
        writer = subprocess.Popen(
            [sys.executable, "-m", "ipcnet", "connect", f"fifo://{path}"],
            stdin=subprocess.PIPE,
        )
        listener.timeout = 20
        with listener.accept() as reader:  # the open(2) pairs up with the writer's
            assert writer.stdin is not None
            writer.stdin.write(b"through the fifo\n")
            writer.stdin.close()
            assert reader.read() == b"through the fifo\n"
        assert writer.wait(20) == 0
    assert not path.exists()


def test_fifo_no_reader_and_no_writer(short_tmp) -> None:
    path = short_tmp / "f"
    os.mkfifo(path)
    with pytest.raises(errors.Unreachable, match=f"^no reader on fifo://{path} after 0.1 s$"):
        ipcnet.connect(f"fifo://{path}", connect_timeout=0.1)
    with ipcnet.listen(f"fifo://{path}") as listener:
        listener.timeout = 0.1
        with pytest.raises(errors.Unreachable, match=f"^no writer on fifo://{path}"):
            listener.accept()
    assert path.exists()  # it existed before: not ours to remove


def test_fifo_missing(short_tmp) -> None:
    with pytest.raises(errors.NoSuchSocket, match="^no fifo at fifo://"):
        ipcnet.connect(f"fifo://{short_tmp}/none", connect_timeout=0.1)


@pytest.mark.parametrize("scheme", ["unix", "unixgram", "fifo"])
def test_listening_under_a_missing_directory_names_the_directory(short_tmp, scheme) -> None:
    """bind/mkfifo's ENOENT means the directory is missing, not that no socket is there."""
    (short_tmp / "file").write_text("")
    for path, why in [("none/s", "does not exist"), ("file/s", "is not a directory")]:
        with pytest.raises(errors.NoSuchFile, match=f"^cannot .* {scheme}://.*/{path}: .*{why}$"):
            url = f"{scheme}://{short_tmp}/{path}"
            ipcnet.open_datagram(url, listen=True) if scheme == "unixgram" else ipcnet.listen(url)


CHILD = textwrap.dedent(
    """
    import sys, ipcnet
    with ipcnet.listen(sys.argv[1]) as listener, listener.accept() as ch:
        ch.write(ch.read_exactly(5).upper())
    """
)


def _serve_inherited(url: str, sock: socket.socket, env: dict[str, str] | None) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, url], pass_fds=[sock.fileno()], env=env)
    with ipcnet.connect(f"tcp://127.0.0.1:{sock.getsockname()[1]}") as c:
        c.write(b"hello")
        assert c.read_exactly(5) == b"HELLO"
    assert proc.wait(20) == 0


def test_fd_url_listens_on_an_inherited_socket() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    with sock:
        _serve_inherited(f"fd://{sock.fileno()}", sock, None)


def test_systemd_socket_activation() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    with sock:
        # systemd's descriptors start at 3: the launcher moves ours there, then execs
        launcher = (
            "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); "
            "os.environ.update(LISTEN_FDS='1', LISTEN_FDNAMES='web', LISTEN_PID=str(os.getpid())); "
            f"os.execv(sys.executable, [sys.executable, '-c', {CHILD!r}, 'systemd://web'])"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", launcher, str(sock.fileno())], pass_fds=[sock.fileno()]
        )
        with ipcnet.connect(f"tcp://127.0.0.1:{sock.getsockname()[1]}") as c:
            c.write(b"hello")
            assert c.read_exactly(5) == b"HELLO"
        assert proc.wait(20) == 0


def test_systemd_without_activation_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("LISTEN_PID", raising=False)
    with pytest.raises(errors.AddressNotAvailable, match="LISTEN_PID is not this process"):
        ipcnet.listen("systemd://")


def test_every_listener_implements_the_one_interface(short_tmp) -> None:
    """ipcnet.transports.Listener is the interface: sockets are servable, a fifo is not."""
    from ipcnet import transports

    with ipcnet.listen("tcp://127.0.0.1:0") as tcp, ipcnet.listen(f"fifo://{short_tmp}/f") as fifo:
        for listener, servable in ((tcp, True), (fifo, False)):
            assert isinstance(listener.transport, transports.Listener)
            assert type(listener.transport).servable is servable
        assert tcp.local_address == tcp.address
        assert fifo.local_address == fifo.address
        tcp.transport.set_blocking(False)
        assert tcp.transport.try_accept() is None  # nothing queued
        with ipcnet.connect(tcp.address) as client:
            client.write(b"x")
            stream = None
            while stream is None:  # the connection is queued once connect() returned
                stream = tcp.transport.try_accept()
            with ipcnet.Channel(stream) as server:
                assert server.read(1) == b"x"
        with pytest.raises(
            errors.Unsupported, match="^cannot accept on fifo://.* without blocking"
        ):
            fifo.transport.try_accept()
        fifo.transport.abandon()  # drops nothing on disk
        assert fifo.closed and os.path.exists(f"{short_tmp}/f")
