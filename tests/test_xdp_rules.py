"""XDP rules without the kernel: parsing, canonical form, and the map layout's round trip
(the layouts mirror filter.bpf.c); and the ELF reader on the object clang builds."""

from __future__ import annotations

import re
import shutil
import socket
import struct

import pytest

from ipcnet import errors
from ipcnet.xdp import elf
from ipcnet.xdp.rules import KEY, VALUE, Rule, decode, parse_rule, parse_rules


@pytest.mark.parametrize(
    ("text", "target", "families"),
    [
        ("udp://:53", "udp://:53", (4, 6)),
        ("udp4://:53", "udp4://:53", (4,)),
        ("tcp6://:80", "tcp6://:80", (6,)),
        ("tcp://10.0.0.1:http", "tcp://10.0.0.1:80", (4,)),
        ("udp://[FD00::0:2]:9", "udp://[fd00::2]:9", (6,)),
    ],
)
def test_rules_parse_to_a_canonical_target(
    text: str, target: str, families: tuple[int, ...]
) -> None:
    rule = parse_rule(text, "drop")
    assert (rule.target, rule.families, str(rule)) == (target, families, f"drop {target}")
    assert parse_rule(rule.target, "drop") == rule


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("unix:///tmp/x", "takes udp://[HOST]:PORT or tcp://[HOST]:PORT"),
        ("udp://example.com:53", "the host must be an IP address, not a name"),
        ("udp://:0", "port 0 matches no packet"),
        ("udp://:nosuchservice", "unknown udp service 'nosuchservice'"),
        ("udp://:70000", "port 70000 out of range"),
    ],
)
def test_bad_rules_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(errors.InvalidAddress, match=re.escape(why)):
        parse_rule(text, "drop")


def test_overlapping_and_too_many_rules_are_refused() -> None:
    with pytest.raises(errors.InvalidAddress, match="drop udp6://:53 overlaps drop udp://:53"):
        parse_rules(drop=["udp://:53", "udp6://:53"])
    parse_rules(drop=["udp://:53", "udp://[fd00::1]:53", "tcp://:53"])  # distinct keys
    with pytest.raises(errors.InvalidAddress, match="65 rules, over the limit of 64"):
        parse_rules(drop=[f"udp://:{p}" for p in range(1, 66)])


def test_map_entries_round_trip() -> None:
    rules = parse_rules(drop=["udp://:53", "tcp://[fd00::1]:80"], count=["udp4://10.1.2.3:9"])
    entries = [
        (key, VALUE.pack({"count": 1, "drop": 2}[r.action], slot))
        for slot, r in enumerate(rules, 1)
        for key in r.map_keys()
    ]
    assert len(entries) == 4  # a rule without a host has a key per family
    family, proto, port, addr = KEY.unpack(entries[3][0])
    assert (family, proto, socket.ntohs(port), addr[:4]) == (4, 17, 9, bytes([10, 1, 2, 3]))
    assert decode(entries) == dict(enumerate(rules, 1))
    assert KEY.size == 20 and VALUE.size == 8  # struct rule_key / rule_value in filter.bpf.c


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed")
def test_elf_reader_finds_the_program_its_maps_and_relocations() -> None:
    from ipcnet.xdp import build

    try:
        obj = elf.read(build.compiled().read_bytes())
    except errors.Unsupported as exc:
        pytest.skip(str(exc))
    assert (obj.program, obj.section, obj.license) == ("ipcnet_xdp", "xdp", "GPL")
    assert {m.name: (m.type, m.key_size, m.value_size) for m in obj.maps.values()} == {
        "ipcnet_rules": (1, KEY.size, VALUE.size),  # BPF_MAP_TYPE_HASH
        "ipcnet_stats": (6, 4, 16),  # BPF_MAP_TYPE_PERCPU_ARRAY
    }
    assert obj.map_relocs and {name for _, name in obj.map_relocs} == set(obj.maps)
    for index, _ in obj.map_relocs:  # each one patches an ld_imm64 (opcode 0x18)
        assert obj.insns[index * 8] == 0x18
    assert len(obj.insns) % 8 == 0
    with pytest.raises(ValueError, match="not a 64-bit ELF file"):
        elf.read(b"not an elf")
    assert struct.calcsize("=BBH16s") == KEY.size
    assert Rule("udp", 9).target == "udp://:9"
