"""The same live table through `ipcnet sockets -tan --json` and `ss -tanH`."""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess

import pytest

from inspector_helpers import run_cli, tcp_conn

SS_STATES = {
    "ESTAB": "ESTABLISHED",
    "SYN-SENT": "SYN_SENT",
    "SYN-RECV": "SYN_RECV",
    "FIN-WAIT-1": "FIN_WAIT1",
    "FIN-WAIT-2": "FIN_WAIT2",
    "TIME-WAIT": "TIME_WAIT",
    "UNCONN": "CLOSE",
    "CLOSE-WAIT": "CLOSE_WAIT",
    "LAST-ACK": "LAST_ACK",
    "LISTEN": "LISTEN",
    "CLOSING": "CLOSING",
}


def _norm_host(host: str) -> str:
    host = host.split("%")[0].strip("[]")  # ss: [fe80::1]%eth0, 127.0.0.1%lo
    if host == "*":
        return "::"  # ss: a dual-stack wildcard
    addr = ipaddress.ip_address(host)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return str(addr.ipv4_mapped)
    return str(addr)


def _split(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return _norm_host(host), 0 if port == "*" else int(port)


Row = tuple[str, tuple[str, int], tuple[str, int]]


def ss_rows() -> set[Row]:
    out = subprocess.run(["ss", "-tanH"], capture_output=True, text=True, check=True).stdout
    rows = set()
    for line in out.splitlines():
        f = line.split()
        rows.add((SS_STATES[f[0]], _split(f[3]), _split(f[4])))
    return rows


def our_rows() -> set[Row]:
    r = run_cli("-tan", "--json")
    assert r.returncode == 0, r.stderr
    rows = set()
    for s in json.loads(r.stdout)["sockets"]:
        local = (_norm_host(s["local_host"]), s["local_port"])
        remote = (_norm_host(s["remote_host"]), s["remote_port"])
        rows.add((s["state"], local, remote))
    return rows


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")
def test_same_table_as_ss() -> None:
    """Each tool runs between two runs of the other: every row that the outer two both see
    lived through the middle run, so the middle one must have it. Rows that come and go
    between runs (other tests open thousands of connections) are not compared. A netlink
    dump is not atomic: while the table changes, any dumper (ss too) may skip a row that
    moves within the kernel's hash chains, so a disagreement is retried a few times."""
    with tcp_conn() as a, tcp_conn() as b:
        b.client.shutdown(socket.SHUT_WR)  # FIN_WAIT2 / CLOSE_WAIT in the table too
        for _ in range(5):
            ss1 = ss_rows()
            ours1 = our_rows()
            ss2 = ss_rows()
            ours2 = our_rows()
            we_miss = (ss1 & ss2) - ours1
            ss_misses = (ours1 & ours2) - ss2
            if not we_miss and not ss_misses:
                break
        assert we_miss == set(), "rows ss saw before and after us that we miss"
        assert ss_misses == set(), "rows we saw before and after ss that it misses"
        # our two connections' rows (the port numbers alone may also match TIME_WAIT
        # leftovers of an earlier server that had them)
        ends = {(c.port, 0) for c in (a, b)} | {
            pair for c in (a, b) for pair in ((c.port, c.client_port), (c.client_port, c.port))
        }
        mine = sorted(r[0] for r in ours1 & ours2 if (r[1][1], r[2][1]) in ends)
        assert mine == sorted(
            ["LISTEN", "ESTABLISHED", "ESTABLISHED", "LISTEN", "CLOSE_WAIT", "FIN_WAIT2"]
        )
        assert len(ss1 & ss2 & ours1 & ours2) >= 7
