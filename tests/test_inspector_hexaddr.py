"""Decoding /proc/net's hex addresses: byte orders, IPv6 words, IPv4-mapped addresses."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inspector_helpers import tcp_conn
from ipcnet.inspector.hexaddr import decode_endpoint, decode_host, encode_endpoint
from ipcnet.inspector.procnet import parse_inet, read_text


@pytest.mark.parametrize(
    ("text", "order", "expected"),
    [
        ("0100007F:1F90", "little", ("127.0.0.1", 8080)),
        ("7F000001:1F90", "big", ("127.0.0.1", 8080)),
        ("00000000:0000", "little", ("0.0.0.0", 0)),
        ("020011AC:C8D0", "little", ("172.17.0.2", 51408)),  # seed 004's table
        ("9D3A78CA:0050", "little", ("202.120.58.157", 80)),
        ("00000000000000000000000001000000:0016", "little", ("::1", 22)),
        ("00000000000000000000000000000001:0016", "big", ("::1", 22)),
        ("0000000000000000FFFF00000100007F:1F90", "little", ("127.0.0.1", 8080)),  # mapped
        ("00000000000000000000FFFF7F000001:1F90", "big", ("127.0.0.1", 8080)),
        ("B80D0120000000000000000001000000:01BB", "little", ("2001:db8::1", 443)),
    ],
)
def test_decode_endpoint(text: str, order: str, expected: tuple[str, int]) -> None:
    assert decode_endpoint(text, order) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "0100007F", "0100007F:1F9", "01007F:1F90", "zz00007F:1F90"])
def test_decode_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_endpoint(bad)


@given(st.integers(0, 2**32 - 1), st.integers(0, 65535), st.sampled_from(["little", "big"]))
def test_ipv4_roundtrip(n: int, port: int, order: str) -> None:
    host = str(ipaddress.IPv4Address(n))
    assert decode_endpoint(encode_endpoint(host, port, order), order) == (host, port)  # type: ignore[arg-type]


@given(st.integers(0, 2**128 - 1), st.sampled_from(["little", "big"]))
def test_ipv6_roundtrip_and_mapped(n: int, order: str) -> None:
    addr = ipaddress.IPv6Address(n)
    text = encode_endpoint(str(addr), 1, order)  # type: ignore[arg-type]
    host, _ = decode_endpoint(text, order)  # type: ignore[arg-type]
    expected = addr.ipv4_mapped or addr
    assert ipaddress.ip_address(host) == expected  # inet_ntop may spell ::1:0 as ::0.1.0.0


def test_decode_host_direct() -> None:
    assert decode_host("0100007F", "little") == "127.0.0.1"


def test_live_proc_net_tcp_matches_getsockname() -> None:
    with tcp_conn() as c:
        text = read_text("/proc/net/tcp")
        assert encode_endpoint("127.0.0.1", c.port) in text  # our encoder = the kernel's form
        rows = [r for r in parse_inet(text, "tcp") if r.local_port == c.port]
        assert {r.state for r in rows} == {"LISTEN", "ESTABLISHED"}
        assert c.client.getsockname() in {(r.remote_host, r.remote_port) for r in rows}


def test_live_proc_net_tcp6_mapped() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with tcp_conn(host="::", family=socket.AF_INET6) as c:
        text = read_text("/proc/net/tcp6")
        rows = [r for r in parse_inet(text, "tcp6") if r.local_port == c.port]
        est = [r for r in rows if r.state == "ESTABLISHED"]
        assert est and est[0].local_host == "127.0.0.1" and est[0].remote_port == c.client_port


def test_a_row_printed_twice_by_a_resumed_walk_is_kept_once() -> None:
    """/proc/net/tcp is written a page per read; a socket that moves between two reads can
    be printed again. The same addresses, state and inode are one socket."""
    with tcp_conn() as c:
        text = read_text("/proc/net/tcp")
        header, *lines = text.splitlines()
        mine = [line for line in lines if f":{c.port:04X} " in line]
        assert len(mine) >= 3  # the listener and both ends of the connection
        doubled = "\n".join([header, *lines, *mine]) + "\n"
        rows = [r for r in parse_inet(doubled, "tcp") if c.port in (r.local_port, r.remote_port)]
        assert sorted((r.state, r.local_port, r.remote_port) for r in rows) == sorted(
            (r.state, r.local_port, r.remote_port)
            for r in parse_inet(text, "tcp")
            if c.port in (r.local_port, r.remote_port)
        )
        assert len(rows) == len(mine)
