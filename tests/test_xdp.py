"""XDP filters on a veth pair between two network namespaces this module creates and removes.

Namespace "a" sends, namespace "b" receives through the veth end where the filter sits.
Library calls run in a thread that has entered the namespace (setns(2) changes only the
calling thread, and a socket stays in the namespace it was made in); the CLI runs under
``ip netns exec``. bpftool is the independent witness of what the kernel holds. Skipped,
with the reason, where BPF, namespaces or the build tools are unavailable.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

import ipcnet
from ipcnet import errors, xdp
from ipcnet.testing import netns
from ipcnet.xdp import build

T = TypeVar("T")
SRC = str(Path(ipcnet.__file__).resolve().parent.parent)
CLONE_NEWNET = 0x40000000
A4, B4 = "10.77.0.1", "10.77.0.2"
A6, B6 = "fd00:77::1", "fd00:77::2"
MAC_A, MAC_B = "02:00:00:77:00:01", "02:00:00:77:00:02"
PAYLOAD = b"x" * 18  # a small datagram: 60-byte frames over IPv4, 80 over IPv6
N = 300

pytestmark = [pytest.mark.xdist_group("xdp")]


def _why_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "xdp tests need root (bpf(2), network namespaces)"
    try:
        xdp.require_privileges()
    except errors.PermissionDenied as exc:
        return f"xdp tests need root with its capabilities: {exc}"
    for tool in ("ip", "bpftool", "clang"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make system-deps installs clang, libbpf-dev, bpftool)"
    try:
        build.compiled()
    except errors.IPCError as exc:
        return f"the xdp program cannot be built here: {exc}"
    try:
        fd = xdp.bpf.map_create(xdp.bpf.MAP_TYPE_HASH, 4, 4, 1, 0, "ipcnet_probe")
    except OSError as exc:
        return f"bpf(2) is not available here: {exc.strerror}"
    os.close(fd)
    return None


REASON = _why_unavailable()
if REASON:
    pytestmark.append(pytest.mark.skip(reason=REASON))

_libc = ctypes.CDLL(None, use_errno=True)


def run(*cmd: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30, **kw)


@dataclass
class Pair:
    a: str  # namespace names
    b: str

    def call(self, ns: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """``fn(*args)`` in a fresh thread that has entered namespace ``ns``."""
        out: dict[str, Any] = {}

        def target() -> None:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            try:
                out["value"] = fn(*args, **kw)
            except BaseException as exc:
                out["error"] = exc

        t = threading.Thread(target=target)
        t.start()
        t.join()
        if "error" in out:
            raise out["error"]
        value: T = out["value"]
        return value

    def udp(self, ns: str, family: int = socket.AF_INET, port: int = 0) -> socket.socket:
        def make() -> socket.socket:
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE: room for all
            s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
            return s

        return self.call(ns, make)

    def tcp_listener(self, ns: str) -> socket.socket:
        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET6)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", 0))
            s.listen(8)
            return s

        return self.call(ns, make)

    def cli(self, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
        e = dict(os.environ, PYTHONPATH=SRC)
        return run(
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-m",
            "ipcnet",
            "xdp",
            *args,
            check=False,
            env=e,
        )

    def xdp_in(self, ns: str) -> list[tuple[str, int, str]]:
        """(dev, prog id, mode) of every XDP program in ``ns``, as bpftool sees them."""
        shown = json.loads(run("ip", "netns", "exec", ns, "bpftool", "-j", "net", "show").stdout)
        return [(x["devname"], x["id"], x["mode"]) for d in shown for x in d.get("xdp", [])]


def _veth_pair() -> Iterator[Pair]:
    with netns.namespaces("ipcnet-xa", "ipcnet-xb") as (a, b):
        a_end = netns.End(a, "va", (f"{A4}/24", f"{A6}/64"), MAC_A)
        netns.veth(a_end, netns.End(b, "vb", (f"{B4}/24", f"{B6}/64"), MAC_B))
        yield Pair(a, b)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    yield from _veth_pair()


@pytest.fixture
def ns(pair: Pair) -> Iterator[Pair]:
    """The pair, and afterwards no XDP program left on it whatever the test did."""
    yield pair
    for dev in ("vb", "lo"):
        run(
            "ip",
            "netns",
            "exec",
            pair.b,
            "ip",
            "link",
            "set",
            "dev",
            dev,
            "xdp",
            "off",
            check=False,
        )


def send(pair: Pair, dests: list[tuple[str, int]], count: int = N) -> None:
    """``count`` datagrams to each destination from namespace a, interleaved, paced a little:
    the counters must equal what was sent, so veth's receive queue must not overflow."""
    socks = {}
    for host, _ in dests:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        if fam not in socks:
            socks[fam] = pair.udp(pair.a, fam)
    for i in range(count):
        for host, port in dests:
            socks[socket.AF_INET6 if ":" in host else socket.AF_INET].sendto(PAYLOAD, (host, port))
        if i % 25 == 24:  # 50 frames, far below the 256 veth queues before its napi runs
            time.sleep(0.001)
    for s in socks.values():
        s.close()


def receive(sock: socket.socket, want: int, timeout: float = 10.0) -> int:
    """Datagrams read until ``want`` arrived, or until nothing came for ``timeout`` seconds."""
    sock.settimeout(timeout)
    got = 0
    try:
        while got < want:
            sock.recv(2048)
            got += 1
    except TimeoutError:
        pass
    return got


def pending(sock: socket.socket) -> int:
    """How many datagrams wait in the socket now (without blocking)."""
    sock.setblocking(False)
    n = 0
    try:
        while True:
            sock.recv(2048)
            n += 1
    except BlockingIOError:
        return n


def counts(stats: xdp.Stats) -> dict[str, tuple[int, int]]:
    return {str(r.rule): (r.packets, r.bytes) for r in stats.rules}


def test_udp_flood_dropped_and_counted_while_another_port_gets_everything(ns: Pair) -> None:
    dropped_sock, open_sock = ns.udp(ns.b), ns.udp(ns.b)
    dport, oport = dropped_sock.getsockname()[1], open_sock.getsockname()[1]
    f = ns.call(ns.b, xdp.attach, "vb", drop=[f"udp://:{dport}"], count=[f"udp://:{oport}"])
    try:
        assert f.mode == "native"  # veth has a native XDP driver; auto picked it
        # only the named interface got a program: not lo, not the peer, not the host's
        assert ns.xdp_in(ns.b) == [("vb", f.prog_id, "driver")]
        assert ns.xdp_in(ns.a) == []
        assert f.prog_id not in {p.prog_id for p in xdp.programs()}
        send(ns, [(B4, dport), (B4, oport)])
        assert receive(open_sock, N) == N
        assert pending(dropped_sock) == 0
        frame = 14 + 20 + 8 + len(PAYLOAD)
        assert counts(f.stats()) == {
            f"drop udp://:{dport}": (N, N * frame),
            f"count udp://:{oport}": (N, N * frame),
        }
    finally:
        ns.call(ns.b, f.detach)
        dropped_sock.close()
        open_sock.close()
    assert ns.xdp_in(ns.b) == []


def test_ipv6_rule_for_one_address_in_generic_mode(ns: Pair) -> None:
    s6 = ns.udp(ns.b, socket.AF_INET6)  # dual-stack: gets IPv4 and IPv6
    port = s6.getsockname()[1]
    with ns.call(ns.b, xdp.attach, "vb", drop=[f"udp://[{B6}]:{port}"], mode="generic") as f:
        assert f.mode == "generic"
        assert ns.xdp_in(ns.b) == [("vb", f.prog_id, "generic")]
        send(ns, [(B6, port), (B4, port)], count=100)
        assert receive(s6, 100) == 100  # the IPv4 ones: the rule names an IPv6 address
        assert pending(s6) == 0
        (rule,) = f.stats().rules
        assert (rule.packets, rule.bytes) == (100, 100 * (14 + 40 + 8 + len(PAYLOAD)))
        ns.call(ns.b, f.detach)
    assert ns.xdp_in(ns.b) == []
    s6.close()


def test_tcp_syns_to_a_dropped_port_time_out_while_another_port_connects(ns: Pair) -> None:
    dropped, served = ns.tcp_listener(ns.b), ns.tcp_listener(ns.b)
    dport, sport = dropped.getsockname()[1], served.getsockname()[1]
    with ns.call(ns.b, xdp.attach, "vb", drop=[f"tcp://:{dport}"]) as f:
        for host in (B4, B6):
            c = ns.call(ns.a, socket.create_connection, (host, sport), 5)
            c.close()
            with pytest.raises(TimeoutError):
                ns.call(ns.a, socket.create_connection, (host, dport), 0.5)
        (rule,) = f.stats().rules
        assert rule.packets >= 2  # at least one SYN per family, none answered
        dropped.settimeout(0)
        with pytest.raises(BlockingIOError):
            dropped.accept()
        ns.call(ns.b, f.detach)
    c = ns.call(ns.a, socket.create_connection, (B4, dport), 5)  # delivery restored
    c.close()
    dropped.close()
    served.close()


def test_rules_change_without_reload_and_detach_restores_delivery(ns: Pair) -> None:
    s1, s2 = ns.udp(ns.b), ns.udp(ns.b)
    p1, p2 = s1.getsockname()[1], s2.getsockname()[1]
    f = ns.call(ns.b, xdp.attach, "vb", drop=[f"udp://:{p1}"])
    try:
        send(ns, [(B4, p1), (B4, p2)], count=50)
        assert receive(s2, 50) == 50 and pending(s1) == 0
        prog_id = f.prog_id
        f.update(drop=[f"udp4://:{p2}"], count=[f"udp://:{p1}"])  # from any namespace: maps
        assert ns.xdp_in(ns.b) == [("vb", prog_id, "driver")]  # the same program, not reloaded
        assert [str(r) for r in f.rules()] == [f"drop udp4://:{p2}", f"count udp://:{p1}"]
        send(ns, [(B4, p1), (B4, p2)], count=50)
        assert receive(s1, 50) == 50 and pending(s2) == 0
        assert counts(f.stats()) == {
            f"drop udp4://:{p2}": (50, 50 * 60),
            f"count udp://:{p1}": (50, 50 * 60),  # a new rule counts from zero
        }
        ns.call(ns.b, f.detach)
        assert ns.xdp_in(ns.b) == []
        send(ns, [(B4, p1), (B4, p2)], count=50)
        assert receive(s1, 50) == 50 and receive(s2, 50) == 50
        f.detach()  # idempotent
    finally:
        ns.call(ns.b, f.detach)
        s1.close()
        s2.close()


def test_cli_attach_stats_show_detach_agree_with_bpftool(ns: Pair) -> None:
    sock = ns.udp(ns.b)
    port = sock.getsockname()[1]
    r = ns.cli(ns.b, "attach", "vb", "--drop", f"udp://:{port}", "--count", "tcp://:80")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("attached xdp program ") and "in native mode" in r.stdout
    assert f"drop udp://:{port}, count tcp://:80" in r.stdout
    ((dev, prog_id, mode),) = ns.xdp_in(ns.b)  # it outlived the command
    assert (dev, mode) == ("vb", "driver")
    send(ns, [(B4, port)], count=120)
    stats = json.loads(ns.cli(ns.b, "stats", "vb", "--json").stdout)
    assert stats["prog_id"] == prog_id and stats["mode"] == "native"
    assert stats["rules"] == [
        {"action": "drop", "rule": f"udp://:{port}", "packets": 120, "bytes": 120 * 60},
        {"action": "count", "rule": "tcp://:80", "packets": 0, "bytes": 0},
    ]
    # bpftool reads the same per-CPU slot: slot 1 holds the drop rule's packets
    prog = json.loads(run("bpftool", "-j", "prog", "show", "id", str(prog_id)).stdout)
    assert prog["name"] == "ipcnet_xdp" and prog["type"] == "xdp"
    (stats_map,) = [
        m
        for m in (
            json.loads(run("bpftool", "-j", "map", "show", "id", str(i)).stdout)
            for i in prog["map_ids"]
        )
        if m["name"] == "ipcnet_stats"
    ]
    dump = json.loads(
        run(
            "bpftool", "-j", "map", "lookup", "id", str(stats_map["id"]), "key", "1", "0", "0", "0"
        ).stdout
    )
    per_cpu = [
        int.from_bytes(bytes(int(b, 16) for b in v["value"][:8]), sys.byteorder)
        for v in dump["values"]
    ]
    assert sum(per_cpu) == 120
    table = ns.cli(ns.b, "stats", "vb").stdout.splitlines()
    assert table[0] == f"vb: xdp program {prog_id} (native)"
    assert table[2].split() == ["drop", f"udp://:{port}", "120", str(120 * 60)]
    shown = json.loads(ns.cli(ns.b, "show", "--json").stdout)["programs"]
    assert [(p["dev"], p["prog_id"], p["name"], p["mode"], p["jited"]) for p in shown] == [
        ("vb", prog_id, "ipcnet_xdp", "native", prog["bytes_jited"] > 0)
    ]
    r = ns.cli(ns.b, "update", "vb", "--count", f"udp://:{port}")
    assert r.returncode == 0 and f"count udp://:{port}" in r.stdout
    assert ns.xdp_in(ns.b) == [("vb", prog_id, "driver")]
    send(ns, [(B4, port)], count=30)
    assert receive(sock, 30) == 30
    r = ns.cli(ns.b, "detach", "vb")
    assert r.returncode == 0 and f"detached xdp program {prog_id}" in r.stdout
    assert ns.xdp_in(ns.b) == []
    r = ns.cli(ns.b, "show")
    assert r.returncode == 0 and r.stdout == "" and "no interface has an xdp program" in r.stderr
    sock.close()


FOREIGN = """
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp") int foreign(struct xdp_md *ctx) { return XDP_PASS; }
char _license[] SEC("license") = "GPL";
"""


def test_a_program_already_there_is_left_alone_unless_replace(ns: Pair, tmp_path: Path) -> None:
    (tmp_path / "foreign.c").write_text(FOREIGN)
    obj = tmp_path / "foreign.o"
    run(
        "clang",
        "-O2",
        "-target",
        "bpf",
        *(f"-I{d}" for d in build.include_dirs()),
        "-c",
        str(tmp_path / "foreign.c"),
        "-o",
        str(obj),
    )
    run(
        "ip",
        "netns",
        "exec",
        ns.b,
        "ip",
        "link",
        "set",
        "dev",
        "vb",
        "xdpgeneric",
        "obj",
        str(obj),
        "sec",
        "xdp",
    )
    ((_, foreign_id, _),) = ns.xdp_in(ns.b)
    r = ns.cli(ns.b, "attach", "vb", "--drop", "udp://:9")
    assert r.returncode == 1
    assert r.stderr == (
        f"ipcnet xdp: attach xdp to vb: it already has xdp program {foreign_id} 'foreign' in "
        "generic mode; left alone (--replace replaces it)\n"
    )
    assert ns.xdp_in(ns.b) == [("vb", foreign_id, "generic")]
    r = ns.cli(ns.b, "stats", "vb")
    assert (
        r.returncode == 1 and f"{foreign_id} 'foreign' on vb was not loaded by ipcnet" in r.stderr
    )
    r = ns.cli(ns.b, "detach", "vb")
    assert r.returncode == 1 and "not loaded by ipcnet; left alone (--force" in r.stderr
    assert ns.xdp_in(ns.b) == [("vb", foreign_id, "generic")]
    # --replace: the generic one goes, ours comes in native mode (the kernel runs one mode)
    r = ns.cli(ns.b, "attach", "vb", "--drop", "udp://:9", "--replace")
    assert r.returncode == 0, r.stderr
    ((_, ours, mode),) = ns.xdp_in(ns.b)
    assert ours != foreign_id and mode == "driver"
    r = ns.cli(ns.b, "attach", "vb", "--count", "udp://:9", "--replace", "--mode", "native")
    assert r.returncode == 0, r.stderr
    ((_, newest, _),) = ns.xdp_in(ns.b)
    assert newest != ours
    run("ip", "netns", "exec", ns.b, "ip", "link", "set", "dev", "vb", "xdp", "off")
    run(
        "ip",
        "netns",
        "exec",
        ns.b,
        "ip",
        "link",
        "set",
        "dev",
        "vb",
        "xdpgeneric",
        "obj",
        str(obj),
        "sec",
        "xdp",
    )
    r = ns.cli(ns.b, "detach", "vb", "--force")
    assert r.returncode == 0 and "'foreign' (generic)" in r.stdout
    assert ns.xdp_in(ns.b) == []


BAD = """
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct ipcnet_map { __u32 type, key_size, value_size, max_entries, map_flags; };
struct ipcnet_map ipcnet_rules SEC("maps") = { BPF_MAP_TYPE_HASH, 20, 8, 3 };
struct ipcnet_map ipcnet_stats SEC("maps") = { BPF_MAP_TYPE_PERCPU_ARRAY, 4, 16, 2 };
SEC("xdp") int bad(struct xdp_md *ctx)
{
    unsigned char *data = (void *)(long)ctx->data;
    return data[20] == 1 ? XDP_DROP : XDP_PASS; /* no bounds check against data_end */
}
char _license[] SEC("license") = "GPL";
"""


def test_verifier_rejection_prints_its_last_lines(
    ns: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # its object stays out of the cache
    (tmp_path / "bad.bpf.c").write_text(BAD)
    with pytest.raises(errors.Unsupported) as caught:
        ns.call(ns.b, xdp.attach, "vb", drop=["udp://:9"], source=tmp_path / "bad.bpf.c")
    message = str(caught.value)
    assert message.startswith("the kernel's verifier rejected the xdp program for vb")
    assert "invalid access to packet" in message  # the verifier's own words
    assert len(message.splitlines()) <= 16
    assert ns.xdp_in(ns.b) == []


def test_bad_interface_and_mode_attach_nothing(ns: Pair) -> None:
    with pytest.raises(errors.AddressNotAvailable, match="no interface named 'nosuch0'"):
        ns.call(ns.b, xdp.attach, "nosuch0", drop=["udp://:9"])
    # lo has no native XDP: asked for, it is refused; auto falls back to generic and says so
    with pytest.raises(errors.Unsupported, match="attach xdp to lo: not supported here"):
        ns.call(ns.b, xdp.attach, "lo", drop=["udp://:9"], mode="native")
    assert ns.xdp_in(ns.b) == []
    with ns.call(ns.b, xdp.attach, "lo") as f:
        assert f.mode == "generic"
        assert ns.xdp_in(ns.b) == [("lo", f.prog_id, "generic")]
        ns.call(ns.b, f.detach)
    assert ns.xdp_in(ns.b) == [] and ns.xdp_in(ns.a) == []
    with pytest.raises(errors.InvalidAddress, match="the host must be an IP address"):
        xdp.attach("vb", drop=["udp://example.com:53"])
    with pytest.raises(errors.InvalidAddress, match="overlaps drop udp://:53"):
        xdp.attach("vb", drop=["udp://:53"], count=["udp4://:53"])


def _cli_without(
    ns: Pair, tmp_path: Path, *args: str, prefix: tuple[str, ...] = (), path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path), PYTHONPATH=SRC)
    if path is not None:
        prefix = ("env", f"PATH={path}", *prefix)
    return run(
        "ip",
        "netns",
        "exec",
        ns.b,
        *prefix,
        sys.executable,
        "-m",
        "ipcnet",
        "xdp",
        "attach",
        "vb",
        "--drop",
        "udp://:9",
        *args,
        check=False,
        env=env,
    )


def test_missing_clang_or_headers_name_the_debian_packages(ns: Pair, tmp_path: Path) -> None:
    r = _cli_without(ns, tmp_path, path=str(tmp_path))  # no clang on PATH
    assert r.returncode == 1
    assert "clang is not installed (apt-get install clang libbpf-dev linux-libc-dev)" in r.stderr
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed to hide the headers")
    hide = ("unshare", "--mount", "sh", "-c", 'mount -t tmpfs none /usr/include && exec "$@"', "-")
    r = _cli_without(ns, tmp_path, prefix=hide)
    assert r.returncode == 1
    assert "header bpf/bpf_helpers.h not found (debian package libbpf-dev:" in r.stderr
    assert ns.xdp_in(ns.b) == []
    assert not list(tmp_path.rglob("*.o"))  # nothing was built either


def test_a_cache_that_cannot_be_written_is_named(ns: Pair, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = dict(os.environ, XDG_CACHE_HOME=str(blocker), PYTHONPATH=SRC)
    r = run("ip", "netns", "exec", ns.b, sys.executable, "-m", "ipcnet", "xdp", "attach", "vb",
            check=False, env=env)  # fmt: skip
    assert r.returncode == 1
    assert r.stderr == f"ipcnet xdp: load vb: {blocker}/ipcnet/xdp: not a directory\n"
    assert ns.xdp_in(ns.b) == []


@pytest.mark.parametrize(
    ("drop", "missing"),
    [("all", "CAP_BPF and CAP_NET_ADMIN"), ("net_admin", "CAP_NET_ADMIN")],
)
def test_without_privileges_a_clear_error(
    ns: Pair, tmp_path: Path, drop: str, missing: str
) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop capabilities")
    caps = f"-{drop}" if drop == "all" else f"-{drop},-sys_admin"
    prefix = ("setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}")
    for action in (("attach", "vb", "--drop", "udp://:9"), ("show",), ("stats", "vb")):
        r = run(
            "ip",
            "netns",
            "exec",
            ns.b,
            *prefix,
            sys.executable,
            "-m",
            "ipcnet",
            "xdp",
            *action,
            check=False,
            env=dict(os.environ, PYTHONPATH=SRC),
        )
        assert r.returncode == 1, r
        assert r.stderr == (
            f"ipcnet xdp: xdp needs root (or CAP_BPF and CAP_NET_ADMIN): this process lacks "
            f"{missing}\n"
        )
    assert ns.xdp_in(ns.b) == []


def test_tour_stop_drops_then_lets_through_in_its_own_namespace() -> None:
    from ipcnet.xdp import scene

    before = {p.prog_id for p in xdp.programs()}
    sent, received, _, objects = scene.run(b"hello through the kernel\n")
    assert (sent, received) == (25, 25)
    assert objects[1:] == (
        "1st datagram dropped (counter 1)",
        "rule changed live to count: 2nd arrived (counter 1)",
    )
    assert {p.prog_id for p in xdp.programs()} <= before  # nothing left in this namespace
