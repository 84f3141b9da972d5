"""Every OSError a user can meet arrives as one ipcnet error with a clear message."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import textwrap

import pytest

import ipcnet
from ipcnet import errors
from ipcnet.testing import free_port


def test_refused_names_the_address() -> None:
    port = free_port()
    with pytest.raises(errors.Refused) as info:
        ipcnet.connect(f"tcp://127.0.0.1:{port}")
    assert str(info.value) == (
        f"connection refused: nothing listens on tcp://127.0.0.1:{port} (is the server running?)"
    )
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


def test_address_in_use() -> None:
    with ipcnet.listen("tcp://127.0.0.1:0") as first:
        with pytest.raises(errors.AddressInUse, match=r"^address in use: tcp://127\.0\.0\.1:\d+"):
            ipcnet.listen(str(first.address))


def test_no_socket_at_unix_path(short_tmp) -> None:
    path = short_tmp / "x"
    with pytest.raises(errors.NoSuchSocket, match=f"^no socket at unix://{path}$"):
        ipcnet.connect(f"unix://{path}")


def test_epipe_is_peer_closed() -> None:
    reader, writer = ipcnet.pipe()
    reader.close()
    with writer, pytest.raises(errors.PeerClosed, match="^peer closed: write to pipe:"):
        writer.write(b"x")


def test_connection_reset() -> None:
    with ipcnet.listen("tcp://127.0.0.1:0") as listener:
        client = ipcnet.connect(listener.address)
        server = listener.accept()
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN
    server.transport.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # type: ignore[attr-defined]
    server.close()
    with client, pytest.raises(errors.Reset, match="^connection reset by peer"):
        client.timeout = 5
        client.read(1)


def test_read_timeout() -> None:
    a, b = ipcnet.socketpair()
    with a, b:
        a.timeout = 0.05
        with pytest.raises(errors.Timeout, match="^timed out"):
            a.read(1)
        with pytest.raises(TimeoutError):  # also the builtin
            a.read(1)


def test_pipe_read_timeout() -> None:
    reader, writer = ipcnet.pipe()
    with reader, writer:
        reader.timeout = 0.05
        with pytest.raises(errors.Timeout, match="^timed out: read from pipe: after 0.05 s"):
            reader.read(1)


def test_connect_timeout_when_the_accept_queue_is_full() -> None:
    """A full accept queue drops SYNs, so connect() hits its timeout."""
    with ipcnet.listen("tcp://127.0.0.1:0", backlog=0) as listener:
        queued = []
        try:
            for _ in range(8):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", listener.address.port))
                queued.append(s)
            with pytest.raises(errors.Timeout, match=r"^timed out: connect to tcp://127\.0\.0\.1"):
                ipcnet.connect(listener.address, connect_timeout=0.3)
        finally:
            for s in queued:
                s.close()


def test_resolve_error_carries_gai_text() -> None:
    with pytest.raises(
        errors.ResolveError, match=r"^cannot resolve tcp://no-such-host\.invalid:80: \w"
    ):
        ipcnet.connect("tcp://no-such-host.invalid:80", connect_timeout=5)


def test_invalid_address_is_an_address_error_and_value_error() -> None:
    with pytest.raises(errors.AddressError):
        ipcnet.connect("tcp://host")
    with pytest.raises(ValueError):
        ipcnet.connect("tcp://host")


def test_write_only_end_cannot_read() -> None:
    reader, writer = ipcnet.pipe()
    with reader, writer, pytest.raises(errors.Unsupported, match="write-only"):
        writer.read(1)


def test_sigpipe_never_kills(tmp_path) -> None:
    """Even with SIGPIPE at its default action, a write to a dead pipe is an error."""
    code = textwrap.dedent(
        """
        import signal, sys
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        import ipcnet
        r, w = ipcnet.pipe()
        r.close()
        try:
            w.write(b"x")
        except ipcnet.errors.PeerClosed:
            print("peer closed")
        a, b = ipcnet.socketpair()
        b.close()
        try:
            a.write(b"x" * 100000); a.write(b"x" * 100000)
        except ipcnet.errors.Broken:
            print("broken")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["peer", "closed", "broken"]


def test_cli_quiet_when_stdout_closes() -> None:
    """`ipcnet connect exec:yes | head -1` ends quietly, with status 0."""
    script = f"{sys.executable} -m ipcnet connect 'exec:yes' </dev/null | head -1; echo status=${{PIPESTATUS[0]}}"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert out.stdout.splitlines() == ["y", "status=0"]
    assert out.stderr == ""


def test_fd_leak_free_on_failed_connect() -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        with pytest.raises(errors.Refused):
            ipcnet.connect(f"tcp://127.0.0.1:{free_port()}")
    assert len(os.listdir("/proc/self/fd")) <= before


def test_bad_request_is_a_remote_protocol_error() -> None:
    exc = errors.BadRequest(431, "header block too large")
    assert isinstance(exc, errors.RemoteProtocolError) and isinstance(exc, errors.IPCError)
    assert (exc.status, exc.detail, str(exc)) == (431, "header block too large", exc.detail)
    assert str(errors.BadRequest(400)) == "400"


def test_procfs_reads_none_for_what_is_gone_and_translates_the_rest(tmp_path) -> None:
    """transports.procfs: a vanished process is None, an unreadable file an ipcnet error."""
    from ipcnet.transports import procfs

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its /proc entry is gone
    assert procfs.read_bytes(f"/proc/{child.pid}/comm") is None
    assert procfs.fd_links(child.pid) is None
    assert procfs.listdir(f"/proc/{child.pid}/fd") is None
    links = procfs.fd_links(os.getpid())
    assert links is not None and ("0", os.readlink("/proc/self/fd/0"), None) in links
    with pytest.raises(errors.IPCError, match=f"^.*: read {tmp_path}$"):
        procfs.read_bytes(str(tmp_path))  # a directory: EISDIR, translated
