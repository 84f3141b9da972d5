"""`ipcnet connect` and the address grammar, where a differential pass against socat,
OpenBSD nc and getaddrinfo (generated addresses, payloads and peer behaviours) found
ipcnet wrong.

Each test was written failing first: a port or descriptor number in non-ASCII digits
('²' a ValueError traceback, '١٢' silently port 12, where getaddrinfo and socat refuse both),
and a unix datagram larger than 64 KiB that `ipcnet connect` could not receive at all (the
error said to raise max_size, which the command had no way to do; socat has -b).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ipcnet.addresses import parse
from ipcnet.errors import InvalidAddress

IPCNET = [sys.executable, "-m", "ipcnet", "connect"]


# --- the address grammar: numbers are ASCII digits, as getaddrinfo and socat read them ----


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("tcp://127.0.0.1:²", "invalid port '²' (a number 0-65535 or a service name)"),
        ("udp://[::1]:١٢", "invalid port '١٢' (a number 0-65535 or a service name)"),
        ("fd://²", "expected fd://N with N a file descriptor number"),
        ("fd://٣", "expected fd://N with N a file descriptor number"),
        ("shm://@ring?ring=١٢", "option ring='١٢' is not a number (like 65536 or 64K)"),
    ],
)
def test_numbers_in_other_scripts_are_refused_naming_the_part(url: str, message: str) -> None:
    with pytest.raises(InvalidAddress, match=re.escape(message)):
        parse(url)
