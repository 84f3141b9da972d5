"""XDP filter audit against ip-link(8), bpftool and iptables, each test written failing first.

What was wrong: a handle made in one network namespace and detached from a thread in
another silently did nothing (its netlink request went to the caller's namespace, where
the interface index names another device or none: the kernel's XDP_FLAGS_REPLACE check
refused, and ``detach()`` returned as if done, the program still running).
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import socket
import struct
from pathlib import Path

import pytest

from ipcnet import xdp
from ipcnet.transports import bpf
from ipcnet.xdp import build, elf
from test_xdp import FOREIGN, REASON, Pair, run
from test_xdp import ns as ns
from test_xdp import pair as pair

pytestmark = [pytest.mark.xdist_group("xdp")]
if REASON:  # test_xdp.py's: root, clang, bpftool, bpf(2)
    pytestmark.append(pytest.mark.skip(reason=REASON))


def host_xdp() -> list[tuple[str, int]]:
    """(dev, prog id) of every XDP program in this process's own namespace (bpftool)."""
    shown = json.loads(run("bpftool", "-j", "net", "show").stdout)
    return [(x["devname"], x["id"]) for d in shown for x in d.get("xdp", [])]


def test_a_handle_detaches_in_the_namespace_it_attached_in_from_any_thread(ns: Pair) -> None:
    """ip-link(8) acts where it runs; a handle is bound to its interface, so its namespace
    goes with it: the ``with`` block's exit in the main thread (the host's namespace) must
    remove the program from vb in namespace b, and touch nothing here."""
    before = host_xdp()
    with ns.call(ns.b, xdp.attach, "vb", drop=["udp://:9"]) as f:
        assert ns.xdp_in(ns.b) == [("vb", f.prog_id, "driver")]
    assert ns.xdp_in(ns.b) == []
    assert host_xdp() == before
    f2 = ns.call(ns.b, xdp.attach, "vb", count=["udp://:9"], mode="generic")
    h = ns.call(ns.b, xdp.find, "vb")  # a handle found there, detached from here
    f2.close()
    h.detach()
    assert ns.xdp_in(ns.b) == [] and host_xdp() == before


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
BPF_LINK_CREATE, BPF_XDP, XDP_FLAGS_SKB_MODE = 28, 37, 2


@pytest.fixture(scope="module")
def foreign_obj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("foreign")
    (d / "foreign.c").write_text(FOREIGN)
    includes = (f"-I{i}" for i in build.include_dirs())
    run("clang", "-O2", "-target", "bpf", *includes, "-c", str(d / "foreign.c"), "-o",
        str(d / "foreign.o"))  # fmt: skip
    return d / "foreign.o"


def xdp_link(pair: Pair, obj: Path, dev: str) -> tuple[int, int]:
    """Attach ``obj``'s program to ``dev`` in namespace b through a bpf link (BPF_LINK_CREATE,
    as libxdp and libbpf's bpf_program__attach_xdp do): (link fd, program fd), this
    process holds both; the link lasts until its descriptor is closed."""
    code = elf.read(obj.read_bytes())
    prog = bpf.prog_load(code.insns, code.license, code.program)

    def create() -> int:
        attr = ctypes.create_string_buffer(64)
        struct.pack_into("=IIII", attr, 0, prog, socket.if_nametoindex(dev), BPF_XDP,
                         XDP_FLAGS_SKB_MODE)  # fmt: skip
        nr = {"x86_64": 321, "aarch64": 280}[platform.machine()]
        fd = int(_libc.syscall(ctypes.c_long(nr), ctypes.c_int(BPF_LINK_CREATE), attr, 64))
        if fd < 0:
            raise OSError(ctypes.get_errno(), "BPF_LINK_CREATE")
        return fd

    return pair.call(pair.b, create), prog


def test_a_program_held_by_a_bpf_link_is_named_and_no_option_claims_to_remove_it(
    ns: Pair, foreign_obj: Path
) -> None:
    """ip-link(8) answers "Can't replace active BPF XDP link" to ``xdp off``: netlink cannot
    remove or replace a program a bpf link holds, whatever the flags. ipcnet said
    "(--replace replaces it)" to attach, attach --replace and detach --force alike."""
    link_fd, prog_fd = xdp_link(ns, foreign_obj, "vb")
    try:
        ((_, prog_id, mode),) = ns.xdp_in(ns.b)
        (link,) = [
            x for x in json.loads(run("bpftool", "-j", "link", "show").stdout)
            if x.get("prog_id") == prog_id
        ]  # fmt: skip
        r = run("ip", "netns", "exec", ns.b, "ip", "link", "set", "dev", "vb", "xdpgeneric",
                "off", check=False)  # fmt: skip
        assert r.returncode != 0 and "Can't replace active BPF XDP link" in r.stderr
        held = f"program {prog_id} 'foreign' is held by bpf link {link['id']}"
        how = f"(bpftool link detach id {link['id']} removes it)"
        for args, op in (
            (("attach", "vb", "--drop", "udp://:9"), "attach xdp to"),
            (("attach", "vb", "--drop", "udp://:9", "--replace"), "attach xdp to"),
            (("detach", "vb", "--force"), "detach xdp from"),
        ):
            r = ns.cli(ns.b, *args)
            assert (r.returncode, r.stdout) == (1, ""), r
            assert r.stderr.startswith(f"ipcnet xdp: {op} vb: {held}"), r.stderr
            assert how in r.stderr and "--replace replaces" not in r.stderr
        shown = json.loads(ns.cli(ns.b, "show", "vb", "--json").stdout)["programs"]
        assert [(p["prog_id"], p["link"]) for p in shown] == [(prog_id, link["id"])]
        assert ns.xdp_in(ns.b) == [("vb", prog_id, mode)]  # still there, untouched
    finally:
        os.close(link_fd)
        os.close(prog_fd)
    assert ns.xdp_in(ns.b) == []  # the link's last descriptor closed: detached
