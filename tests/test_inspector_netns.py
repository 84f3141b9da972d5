"""SYN_SENT inside a network namespace that drops packets; namespaces are not mixed."""

from __future__ import annotations

import json
import subprocess
import sys

from inspector_helpers import in_netns, netns, tcp_conn
from ipcnet.inspector import list_sockets

SYN_SENT_CODE = r"""
import json, socket, time
from ipcnet.inspector import list_sockets
s = socket.socket(); s.setblocking(False)
try:
    s.connect(("10.66.0.2", 9))  # routed into lo, where nobody answers: the SYN is lost
except BlockingIOError:
    pass
for _ in range(100):
    rows = [r for r in list_sockets(["tcp"], owners=True) if r.remote_port == 9]
    if rows:
        break
    time.sleep(0.01)
print(json.dumps([r.to_dict() for r in rows]))
print(json.dumps(sorted({r.local_port for r in list_sockets(["tcp", "udp"])})))
"""


def test_syn_sent_in_dropping_namespace_and_isolation() -> None:
    with tcp_conn() as host_conn:  # a host socket the namespace must not see
        with netns(drop_route="10.66.0.0/24") as ns:
            r = in_netns(ns, SYN_SENT_CODE)
        assert r.returncode == 0, r.stderr
        rows_text, ports_text = r.stdout.splitlines()
        (row,) = json.loads(rows_text)
        assert row["state"] == "SYN_SENT"
        assert (row["remote_host"], row["remote_port"]) == ("10.66.0.2", 9)
        assert row["send_q"] == 1  # the SYN, unacknowledged
        assert row["timer"] == "on" and row["processes"][0]["fds"]
        assert host_conn.port not in json.loads(ports_text)  # the host's sockets: not there
        # and the namespace's SYN_SENT never shows up in the host's table
        assert not [x for x in list_sockets(["tcp"]) if x.remote_host == "10.66.0.2"]
        assert not [x for x in list_sockets(["tcp"], source="proc") if x.remote_host == "10.66.0.2"]


def test_namespace_listener_not_in_host_table() -> None:
    code = (
        "import os, socket, sys; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
        "print(s.getsockname()[1], os.fstat(s.fileno()).st_ino, flush=True); sys.stdin.read()"
    )
    with netns() as ns:
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert p.stdout is not None
            port, inode = map(int, p.stdout.readline().split())
            for source in ("netlink", "proc"):
                rows = list_sockets(["tcp"], source=source)  # type: ignore[arg-type]
                assert inode not in {x.inode for x in rows}, source
            # its owner is visible (one pid namespace), but its socket is not in our tables
            assert list_sockets(pids=[p.pid]) == []
        finally:
            assert p.stdin is not None
            p.stdin.close()
            p.wait(timeout=10)
        assert port > 0
