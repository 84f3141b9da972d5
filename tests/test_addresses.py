"""The URL grammar: every scheme parses, round-trips, and bad input says what is wrong."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipcnet.addresses import Address, parse
from ipcnet.errors import InvalidAddress

GOOD = {
    "tcp://127.0.0.1:9734": Address("tcp", host="127.0.0.1", port=9734),
    "tcp://:9734": Address("tcp", host="", port=9734),
    "tcp://localhost:http": Address("tcp", host="localhost", port="http"),
    "tcp4://0.0.0.0:80": Address("tcp4", host="0.0.0.0", port=80),
    "tcp6://[::1]:8080": Address("tcp6", host="::1", port=8080),
    "tcp://[fe80::1%eth0]:22": Address("tcp", host="fe80::1%eth0", port=22),
    "udp://127.0.0.1:53": Address("udp", host="127.0.0.1", port=53),
    "udp6://[::1]:0": Address("udp6", host="::1", port=0),
    "unix:///run/app.sock": Address("unix", path="/run/app.sock"),
    "unix:rel/app.sock": Address("unix", path="rel/app.sock"),
    "unix://@ipcnet": Address("unix", path="ipcnet", abstract=True),
    "unixgram:///tmp/log.sock": Address("unixgram", path="/tmp/log.sock"),
    "unixpacket://@seq": Address("unixpacket", path="seq", abstract=True),
    "fifo:///tmp/f": Address("fifo", path="/tmp/f"),
    "fifo:here": Address("fifo", path="here"),
    "pipe:": Address("pipe"),
    "socketpair:": Address("socketpair"),
    "stdio:": Address("stdio"),
    "exec:cat -u": Address("exec", command="cat -u"),
    "fd://3": Address("fd", fd=3),
    "systemd://": Address("systemd", name=""),
    "systemd://web": Address("systemd", name="web"),
}


@pytest.mark.parametrize("url", list(GOOD))
def test_parses_and_round_trips(url: str) -> None:
    address = parse(url)
    assert address == GOOD[url]
    assert str(address) == url
    assert parse(str(address)) == address
    with pytest.raises(AttributeError):
        address.port = 1  # type: ignore[misc]  # frozen


def test_aliases_normalise() -> None:
    assert str(parse("unix:@name")) == "unix://@name"
    assert str(parse("pipe://")) == "pipe:"
    assert str(parse("TCP://h:1")) == "tcp://h:1"


BAD = {
    "tcp://host": "missing port",
    "tcp://host:": "missing port",
    "tcp://[::1]": "missing port",
    "tcp://h:65536": "port 65536 out of range 0-65535",
    "tcp://h:-1": "invalid port '-1'",
    "tcp://::1:80": "IPv6 addresses must be in brackets",
    "tcp://[::g]:80": "invalid IPv6 address",
    "tcp://[::1:80": "unclosed '['",
    "tcp4://[::1]:80": "tcp4 cannot take an IPv6 address",
    "tcp6://127.0.0.1:80": "tcp6 cannot take an IPv4 address",
    "tcp://bad host:80": "invalid host name",
    "tcp://h:80/path": "unexpected path",
    "tcpp://h:1": "unknown scheme 'tcpp' (did you mean tcp://?)",
    "uinx:///x": "did you mean unix://?",
    "localhost": "missing scheme",
    "unix://": "missing path",
    "unix://relative": "expected unix:///absolute/path or unix:relative/path",
    "unix://@": "empty abstract socket name",
    "unix:///" + "x" * 107: "unix socket path is 108 bytes, over the limit of 107",
    "fifo://@x": "fifos have no abstract namespace",
    "exec:": "missing command",
    "exec:'unclosed": "cannot split command",
    "fd://x": "expected fd://N",
    "pipe:extra": "takes no arguments",
}


@pytest.mark.parametrize("url", list(BAD))
def test_bad_addresses_say_what_is_wrong(url: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        parse(url)
    message = str(info.value)
    assert message.startswith(f"invalid address {url!r}: ")
    assert BAD[url] in message


def test_exact_message_for_missing_port() -> None:
    with pytest.raises(InvalidAddress, match=r"^invalid address 'tcp://host': missing port$"):
        parse("tcp://host")


def test_unix_path_limit_is_in_bytes() -> None:
    parse("unix:///" + "é" * 53)  # 1 + 106 bytes
    with pytest.raises(InvalidAddress, match="108 bytes"):
        parse("unix:///" + "é" * 53 + "x")


@given(st.text(max_size=60))
def test_garbage_raises_only_invalid_address(text: str) -> None:
    try:
        address = parse(text)
    except InvalidAddress:
        return
    assert parse(str(address)) == address


@given(
    st.sampled_from(["tcp", "udp", "tcp4", "udp4"]),
    st.ip_addresses(v=4).map(str),
    st.integers(0, 65535),
)
def test_inet_round_trip(scheme: str, host: str, port: int) -> None:
    url = f"{scheme}://{host}:{port}"
    assert str(parse(url)) == url


@given(st.ip_addresses(v=6).map(str), st.integers(0, 65535))
def test_ipv6_round_trip(host: str, port: int) -> None:
    address = parse(f"tcp6://[{host}]:{port}")
    assert address.host == host
    assert parse(str(address)) == address


def test_properties() -> None:
    assert parse("udp://h:1").kind == "datagram"
    assert parse("unixgram:x").kind == "datagram"
    assert parse("unixpacket:x").kind == "seqpacket"
    assert parse("tcp://h:1").kind == "stream"
    assert parse("tcp6://[::1]:1").family_hint == 6
    assert parse("unix://@n").unix_sockaddr == b"\0n"
    assert parse("exec:sh -c 'echo hi'").argv == ["sh", "-c", "echo hi"]


def test_every_row_names_a_transport_module_that_opens_its_kind() -> None:
    """The registry is the only table: each row's module opens what its kind promises."""
    import importlib

    from ipcnet.addresses import SCHEMES

    for name, row in SCHEMES.items():
        module = importlib.import_module(f"ipcnet.transports.{row.transport}")
        ops = {op for op in ("connect", "listen", "datagram") if hasattr(module, op)}
        if row.kind == "datagram":
            assert ops == {"datagram"}, name
        elif name in ("fd", "systemd"):
            assert ops == {"connect", "listen", "datagram"}  # whatever was inherited
        elif name in ("pipe", "socketpair"):
            assert ops == set(), name  # no name to connect to: ipcnet.pipe(), .socketpair()
        else:
            assert "connect" in ops, name


def test_a_new_scheme_is_one_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """A row naming an existing transport module is all a scheme needs: parse, print,
    connect and listen all work, with no other change."""
    import ipcnet
    from ipcnet.addresses import HOST_PORT, SCHEMES, Scheme

    row = Scheme("mytcp", HOST_PORT, "stream", "ipcnet.transports.tcp", "TCP by another name")
    monkeypatch.setitem(SCHEMES, "mytcp", row)
    assert str(parse("MYTCP://127.0.0.1:0")) == "mytcp://127.0.0.1:0"
    with ipcnet.listen("mytcp://127.0.0.1:0") as listener:
        assert str(listener.address).startswith("mytcp://127.0.0.1:")
        with ipcnet.connect(listener.address) as client, listener.accept() as server:
            client.write(b"row")
            assert server.read(3) == b"row"
    with pytest.raises(InvalidAddress, match="did you mean mytcp://"):
        parse("mytcpp://h:1")
