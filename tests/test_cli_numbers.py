"""Every number an option takes is checked where argparse reads it: a bad one is exit 2
with "argument OPTION: 'VALUE' is not a ...", never a traceback (connect --connect-timeout
-1 was a ValueError from settimeout) and never a server that starts with it (relay --grace
nan, serve http --max-headers 0 or --header-timeout -1 all started). ASCII digits only, as
in addresses: int() and float() also take '٣'."""

from __future__ import annotations

import pytest

from ipcnet.cli import build_parser

U = "tcp://127.0.0.1:9"
BAD = [
    (["connect", U], "--connect-timeout", "-1"),
    (["connect", U], "--connect-timeout", "0"),
    (["connect", U], "--linger", "nan"),
    (["connect", U], "--linger", "-1"),
    (["connect", U], "--max-datagram", "0"),
    (["relay", "tcp://127.0.0.1:0", U], "--grace", "nan"),
    (["relay", "tcp://127.0.0.1:0", U], "--max-conns", "٣"),
    (["relay", "tcp://127.0.0.1:0", U], "--idle-timeout", "inf"),
    (["relay", "tcp://127.0.0.1:0", U], "--udp-replies", "0"),
    (["relay", "tcp://127.0.0.1:0", U], "--workers", "-2"),
    (["serve", "http", "/tmp", U], "--max-headers", "0"),
    (["serve", "http", "/tmp", U], "--header-timeout", "-1"),
    (["serve", "http", "/tmp", U], "--cache-ttl", "nan"),
    (["serve", "http", "/tmp", U], "--max-ranges", "-1"),
    (["serve", "echo", U], "--tls-handshake-timeout", "0"),
    (["rpc", "call", U, "f"], "--timeout", "0"),
    (["rpc", "call", U, "f"], "--max-frame", "1.5"),
    (["sockets"], "--watch", "0"),
    (["sockets"], "--pid", "0"),
    (["ipcs"], "--pid", "x"),
    (["xdp", "stats", "lo"], "--watch", "-1"),
]


@pytest.mark.parametrize(("argv", "option", "value"), BAD)
def test_a_bad_number_is_a_usage_error_naming_the_option(
    argv: list[str], option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser(argv[0]).parse_args([*argv, f"{option}={value}"])
    assert stopped.value.code == 2
    assert f"{option}: {value!r} is not a" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "option", "value"), BAD)
def test_a_good_number_is_taken(argv: list[str], option: str, value: str) -> None:
    good = "0" if option in ("--linger", "--grace", "--cache-ttl", "--max-ranges") else "3"
    args = build_parser(argv[0]).parse_args([*argv, f"{option}={good}"])
    assert getattr(args, option.removeprefix("--").replace("-", "_"), None) in (0, 3, [3], None)
