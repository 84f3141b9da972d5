"""Descriptor passing on unix stream and seqpacket channels (issue 13, item 5)."""

from __future__ import annotations

import os
import uuid

import pytest

import ipcnet
from ipcnet import errors
from ipcnet.testing.pairs import unixpacket_pair


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


@pytest.fixture(params=["socketpair", "unixpacket"])
def pair(request):
    a, b = ipcnet.socketpair() if request.param == "socketpair" else unixpacket_pair()
    yield a, b
    a.close()
    b.close()


def test_a_pipe_end_travels_and_works(pair) -> None:
    a, b = pair
    r, w = os.pipe()
    try:
        a.send_fds(b"take this", [r])
        data, fds = b.recv_fds(100, max_fds=4)
        assert data == b"take this" and len(fds) == 1
        assert fds[0] != r  # a new descriptor for the same pipe
        os.write(w, b"through the passed end")
        assert os.read(fds[0], 100) == b"through the passed end"
        assert not os.get_inheritable(fds[0])  # MSG_CMSG_CLOEXEC
        os.close(fds[0])
    finally:
        os.close(r)
        os.close(w)


def test_too_many_descriptors_are_all_closed(pair) -> None:
    a, b = pair
    r, w = os.pipe()
    try:
        a.send_fds(b"x", [r, w, r])
        before = _open_fds()
        with pytest.raises(errors.LimitExceeded, match="more than 2 descriptors arrived"):
            b.recv_fds(10, max_fds=2)
        assert _open_fds() == before  # none leaked
    finally:
        os.close(r)
        os.close(w)


def test_unasked_descriptors_do_not_leak(pair) -> None:
    a, b = pair
    r, w = os.pipe()
    try:
        before = _open_fds()
        a.send_fds(b"plain read", [r])
        assert b.read(100) == b"plain read"  # a read that asks for none: the kernel drops it
        assert _open_fds() == before
    finally:
        os.close(r)
        os.close(w)


def test_data_without_descriptors_and_eof(pair) -> None:
    a, b = pair
    a.send_fds(b"no fds", [])
    assert b.recv_fds() == (b"no fds", [])
    a.send_eof()
    assert b.recv_fds() == (b"", [])


def test_bad_requests() -> None:
    a, b = ipcnet.socketpair()
    with a, b:
        with pytest.raises(errors.Unsupported, match="at least one byte"):
            a.send_fds(b"", [0])
        with pytest.raises(errors.LimitExceeded, match="cannot send 254 descriptors"):
            a.send_fds(b"x", [0] * 254)
        with pytest.raises(errors.LimitExceeded, match="max_fds must be"):
            b.recv_fds(10, max_fds=-1)
    with pytest.raises(errors.Closed):
        a.send_fds(b"x", [0])
    with ipcnet.listen("tcp://127.0.0.1:0") as listener:
        with ipcnet.connect(listener.address) as tcp, listener.accept():
            with pytest.raises(errors.Unsupported, match="unix stream or seqpacket"):
                tcp.send_fds(b"x", [0])
    r, w = ipcnet.pipe()
    with r, w, pytest.raises(errors.Unsupported, match="needs a unix socket channel"):
        w.send_fds(b"x", [0])


def test_seqpacket_truncation_closes_descriptors() -> None:
    a, b = unixpacket_pair()
    with a, b:
        r, w = os.pipe()
        try:
            a.send_fds(b"y" * 100, [r])
            before = _open_fds()
            with pytest.raises(errors.Truncated, match="larger than 10 bytes"):
                b.recv_fds(10)
            assert _open_fds() == before
        finally:
            os.close(r)
            os.close(w)


def test_abstract_listener_pair_passes_descriptors() -> None:
    name = f"unix://@ipcnet-fd-{uuid.uuid4().hex}"
    with ipcnet.listen(name) as listener:
        with ipcnet.connect(name) as client, listener.accept() as server:
            fd = os.open("/dev/null", os.O_RDONLY)
            try:
                client.send_fds(b"n", [fd])
                _, fds = server.recv_fds(1)
                assert os.path.samestat(os.fstat(fds[0]), os.fstat(fd))
                os.close(fds[0])
            finally:
                os.close(fd)
