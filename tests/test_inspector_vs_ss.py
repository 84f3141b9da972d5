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
    host = host.strip("[]").split("%")[0]
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
    with tcp_conn() as a, tcp_conn() as b:
        b.client.shutdown(socket.SHUT_WR)  # FIN_WAIT2 / CLOSE_WAIT in the table too
        for _ in range(3):  # the live table may change between the calls: retry
            before = ss_rows()
            ours = our_rows()
            after = ss_rows()
            stable = before & after
            if stable <= ours and ours <= before | after:
                break
        assert stable - ours == set(), "rows ss sees twice that we miss"
        assert ours - (before | after) == set(), "rows we see that ss never saw"
        ports = {a.port, b.port}
        assert {r[0] for r in ours if r[1][1] in ports} >= {"LISTEN", "ESTABLISHED", "CLOSE_WAIT"}
        assert len(ours) >= 7
