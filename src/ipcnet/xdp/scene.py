"""The tour's XDP stop: a datagram dropped before the stack, then let through by a live rule.

Role: ``run(message)`` forks a child that enters a network namespace of its own
(unshare(CLONE_NEWNET)), so the one interface it touches, that namespace's lo, exists for
the child alone; there it attaches the filter in generic mode with a drop rule for a UDP
port, sends the message (it never arrives; the counter says 1), changes the rule to count
while the program runs, and sends it again (it arrives). The parent gets the figures over
a pipe. The tour offers the stop only to root with clang installed.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import time
from typing import Any

from ipcnet.errors import IPCError, Unsupported
from ipcnet.xdp.filter import attach
from ipcnet.xdp.oserrors import translating

CLONE_NEWNET = 0x40000000


def _in_child(message: bytes) -> dict[str, Any]:
    libc = ctypes.CDLL(None, use_errno=True)
    with translating("enter a private network namespace for", "lo"):
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind(("127.0.0.1", 0))
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rule = f"udp://127.0.0.1:{rx.getsockname()[1]}"
        with attach("lo", drop=[rule], mode="generic") as f:
            tx.sendto(message, rx.getsockname())
            rx.settimeout(0.3)
            try:
                rx.recv(65536)
                raise Unsupported("the xdp drop rule let the datagram through")
            except TimeoutError:
                pass
            dropped = f.stats().dropped
            f.update(count=[rule])  # no reload: the same program, a new map entry
            rx.settimeout(5)
            start = time.perf_counter()
            tx.sendto(message, rx.getsockname())
            got = rx.recv(65536)
            seconds = time.perf_counter() - start
            (counted,) = f.stats().rules
            return {
                "received": len(got),
                "seconds": seconds,
                "objects": [
                    f"xdp prog {f.prog_id} on lo of a private netns ({f.mode})",
                    f"1st datagram dropped (counter {dropped})",
                    f"rule changed live to count: 2nd arrived (counter {counted.packets})",
                ],
            }


def run(message: bytes) -> tuple[int, int, float, tuple[str, ...]]:
    """(sent, received, seconds, objects) for the tour's row; IPCError if it failed."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        os.close(r)
        try:
            result: dict[str, Any] = _in_child(message)
        except Exception as exc:  # reported by the parent as the row's error
            result = {"error": str(exc)}
        os.write(w, json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    result = json.loads(data or b'{"error": "the xdp child died"}')
    assert isinstance(result, dict)
    if "error" in result:
        raise IPCError(result["error"])
    return len(message), int(result["received"]), float(result["seconds"]), tuple(result["objects"])
