"""What a forked connection handler costs: its loop runs specialized bytecode (issue 17).

A fork model's child calls ``blocking.drive`` once and stays in its loop for the whole
connection; CPython 3.11 specializes a function's bytecode only after it warmed up on
calls and on plain backward jumps, so a loop that jumps back another way ran generic
bytecode in every child. Each check runs in a fresh interpreter: in this one, other tests
may have warmed ``drive`` up already.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# one call of drive() over a socketpair, echoing 50 messages, as a forked child serves
ONE_CONNECTION = textwrap.dedent(
    """
    import dis, socket, threading
    from ipcnet.drivers.blocking import LocalRow, drive
    from ipcnet.drivers.core import Conn
    from ipcnet.drivers.engine import Engine
    from ipcnet.protocols.simple import Echo
    from ipcnet.transports import SocketStream

    ours, theirs = socket.socketpair()
    stream = SocketStream(ours, "socketpair")
    session, first = Echo().start(None)
    engine = Engine(session)
    engine.push(first)

    def client():
        for i in range(50):
            theirs.sendall(b"%03d" % i)
            assert theirs.recv(16) == b"%03d" % i
        theirs.shutdown(socket.SHUT_WR)

    peer = threading.Thread(target=client)
    peer.start()
    drive(engine, stream, Conn(stream), LocalRow(), None, lambda: False, 30.0)
    peer.join()
    stream.close()
    generic = list(dis.get_instructions(drive))
    adaptive = list(dis.get_instructions(drive, adaptive=True))
    print(sum(a.opname != g.opname for a, g in zip(adaptive, generic)))
    """
)


def test_one_call_of_drive_specializes_its_loop() -> None:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    done = subprocess.run(
        [sys.executable, "-c", ONE_CONNECTION],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    specialized = int(done.stdout.strip())
    assert specialized > 10, f"drive() ran generic bytecode: {specialized} instructions specialized"
