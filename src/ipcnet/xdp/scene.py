"""The tour's XDP stop: a datagram dropped before the stack, then let through by a live rule.

Role: ``run(message)`` forks a child that enters a network namespace of its own
(unshare(CLONE_NEWNET), ``transports.netns``), so the one interface it touches, that
namespace's lo, exists for the child alone; there it attaches the filter in generic mode
with a drop rule for a UDP port, sends the message (it never arrives; the counter says 1),
changes the rule to count while the program runs, and sends it again (it arrives). The
parent gets the figures over a pipe. Rules: the datagrams go over ipcnet's own udp
endpoints, and every failure is an ipcnet error, reported by the parent as the row's
error. The tour offers the stop only to root with clang installed.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ipcnet.channel import open_datagram
from ipcnet.errors import IPCError, Timeout, Unsupported
from ipcnet.transports import netns
from ipcnet.transports.xdperrors import translating
from ipcnet.xdp.filter import attach


def _in_child(message: bytes) -> dict[str, Any]:
    with translating("enter a private network namespace for", "lo"):
        netns.enter_private()
    with open_datagram("udp://127.0.0.1:0", listen=True) as rx:
        local = rx.local_address
        assert local is not None
        rule = f"udp://127.0.0.1:{local.port}"
        with open_datagram(rule) as tx, attach("lo", drop=[rule], mode="generic") as f:
            tx.send(message)
            rx.timeout = 0.3
            try:
                rx.recv()
                raise Unsupported("the xdp drop rule let the datagram through")
            except Timeout:
                pass
            dropped = f.stats().dropped
            f.update(count=[rule])  # no reload: the same program, a new map entry
            rx.timeout = 5
            start = time.perf_counter()
            tx.send(message)
            got, _ = rx.recv()
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
