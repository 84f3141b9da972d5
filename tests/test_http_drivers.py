"""Driver behaviour the web server depends on, shown with minimal services (not http)."""

from __future__ import annotations

import importlib.util
import socket
import sys
import tempfile
import textwrap

import pytest

from serverkit import _start

# A service that answers every connection with one SendFile of the file named in argv[2].
SENDFILE_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from ipcnet.drivers import ServeConfig, serve
    from ipcnet.protocols.base import CLOSE, BaseService, BaseSession, SendFile

    class OneFile(BaseService):
        name = "onefile"
        def start(self, peer):
            fd = os.open(sys.argv[2], os.O_RDONLY)
            return BaseSession(), [SendFile(fd, 1, 10, close=True), CLOSE]

    def ready(core):
        for a in core.bound:
            print(f"onefile listening on {a}", file=sys.stderr, flush=True)
    serve(OneFile(), ["tcp://127.0.0.1:0"], ServeConfig(model=sys.argv[1]), ready)
    """
)


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop not installed")
def test_asyncio_sendfile_on_uvloop() -> None:
    with tempfile.NamedTemporaryFile(prefix="ipcnet-sf-") as f:
        f.write(b"0123456789abcdef")
        f.flush()
        server = _start([sys.executable, "-c", SENDFILE_SCRIPT, "asyncio", f.name], 1)
        try:
            port = int(server.url("tcp").rpartition(":")[2])
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                data = b""
                while chunk := sock.recv(100):
                    data += chunk
        finally:
            server.stop()
    assert data == b"123456789a"


def test_sendfile_to_a_closed_peer_raises_broken() -> None:
    from ipcnet.errors import Broken
    from ipcnet.transports import make_socketpair

    ours, theirs = make_socketpair()
    theirs.close()
    with tempfile.TemporaryFile() as f:
        f.write(b"x" * 100_000)
        f.flush()
        with pytest.raises(Broken):
            ours.sendfile(f.fileno(), 0, 100_000)
    ours.close()
