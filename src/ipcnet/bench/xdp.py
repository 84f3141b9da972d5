"""Benchmark: where is a flood of small UDP datagrams cheapest to drop? XDP vs nftables vs a reader.

Role: two network namespaces joined by a veth pair; a C sender (sendmmsg, 64 per call,
compiled here, pinned to CPU 0) floods namespace b with small datagrams for a bounded time,
and b disposes of them at one point of the receive path per run:
  xdp-native      ipcnet's XDP filter in the veth driver (``--mode native``)
  xdp-generic     the same program after the skb is built (``--mode generic``)
  nft-ingress     nftables ``counter drop`` in the netdev ingress hook of vb
  nft-prerouting  nftables in ip prerouting at raw priority (-300)
  nft-input       nftables in ip input (after routing)
  c-recvmmsg      a C reader (recvmmsg, 64 per call, pinned to CPU 1) that reads every one
  python-recv     a Python reader (recv_into a preallocated buffer, pinned to CPU 1)
Rounds are interleaved (every path once per round, the order rotating) so a change of load
on this shared machine hits every path alike; medians and ranges over the rounds.

Measured per run: packets disposed of at that point per second (the XDP/nft counter or the
reader's count: the rate "through the whole path"), and CPU µs per packet (CPU s per Mpkt):
the sender's and the reader's own CPU time (wait4 rusage) plus the ksoftirqd threads'. On a
veth the receive work runs in softirq on the sending CPU, which the kernel (without
IRQ_TIME_ACCOUNTING) charges to the sender, so that sum is the whole path's CPU. With
``perf`` (software cpu-clock sampling works in a VM without PMU counters), one extra
profiled run per path says where the time goes, in kernel and user symbols, grouped.
Rules: results, not assertions; needs root; every namespace is removed, even on Ctrl-C.

    ipcnet bench xdp [--seconds 2] [--rounds 5] [--no-perf] [--plot docs/xdp-bench.png]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ipcnet.bench.harness import Result, emit, parser, rounds
from ipcnet.testing.netns import End, NetnsError, in_ns, namespaces, veth
from ipcnet.transports import procfs

HERE = Path(__file__).resolve().parent
PATHS = (
    "xdp-native",
    "xdp-generic",
    "nft-ingress",
    "nft-prerouting",
    "nft-input",
    "c-recvmmsg",
    "python-recv",
)
PORT = 9999
A4, B4 = "10.78.0.1", "10.78.0.2"
MAC_A, MAC_B = "02:00:00:78:00:01", "02:00:00:78:00:02"
SEND_CPU, RECV_CPU = 0, 1
TICK = os.sysconf("SC_CLK_TCK")

NFT = {  # path -> (table family, hook)
    "nft-ingress": ("netdev", "ingress device vb priority 0"),
    "nft-prerouting": ("ip", "prerouting priority raw"),
    "nft-input": ("ip", "input priority 0"),
}
NFT_RULES = (
    "table {} ipcnet_bench {{\n chain c {{\n  type filter hook {};\n"
    "  udp dport {} counter drop\n }}\n}}\n"
)

PY_RECEIVER = r"""
import os, signal, socket, sys
open("/proc/self/comm", "w").write("ipcnet-pyrecv")
port, seconds, cpu = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
os.sched_setaffinity(0, {cpu})
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE
s.bind(("0.0.0.0", port))
def stop(signum, frame):
    raise TimeoutError
signal.signal(signal.SIGALRM, stop)
signal.setitimer(signal.ITIMER_REAL, seconds + 10)  # a blocking socket (no poll per read)
print("ready", flush=True)
buf = bytearray(2048)
recv_into = s.recv_into
n = 0
try:
    recv_into(buf)
    n = 1
    signal.setitimer(signal.ITIMER_REAL, seconds)  # from the first datagram on
    while True:
        recv_into(buf)
        n += 1
except TimeoutError:
    pass
print("received", n, flush=True)
"""

# perf symbol -> where in the path it is (first match wins); everything the sender's
# sendmmsg does before the frame reaches vb is "send"; the rest is the receiving side
CATEGORIES = [
    ("xdp program+maps", r"^bpf_prog_|htab_map|lookup_nulls_elem|percpu_array|array_map"),
    ("veth/generic xdp", r"xdp|^veth_poll|^skb_pp_cow_data|^skb_copy_bits|^page_pool|^pskb_expand"),
    ("netfilter", r"^nft_|^nf_|^__nf_|^ipt_"),
    (
        "skb alloc/free",
        r"alloc_skb|build_skb|kfree_skb|skb_release|kmem_cache|slab|^kfree$|"
        r"consume_skb|skb_free|page_frag|skb_attempt|napi_skb_cache|kmalloc|skb_defer|sock_wfree",
    ),
    (
        "softirq/napi",
        r"^net_rx_action|softirq|^__local_bh|^__napi_schedule|^process_backlog|"
        r"^__napi_poll|^_raw_spin_unlock|^__rcu_read",
    ),
    (
        "ip/udp receive",
        r"^ip_rcv|^ip_local_deliver|^ip_route_input|^ip_sublist|^ip_list|^fib|"
        r"^__udp4_lib|^udp_rcv|^udp_unicast|^udp_queue|netif_receive|^__netif_rx|^netif_rx|"
        r"^enqueue_to_backlog|gro|^icmp|^raw_v4|^ip_protocol|^eth_type_trans|^__dev_forward",
    ),
    (
        "socket queue+read",
        r"^__udp_enqueue|^udp_rmem|^sock_def_readable|^__wake_up|^ep_|"
        r"^try_to_wake|^udp_recvmsg|^skb_copy_datagram|^__skb_recv|^__skb_try_recv|recvmmsg|"
        r"recvmsg|^_copy_to_iter|^_copy_to_user|^copy_user|^skb_consume_udp|^__skb_datagram|"
        r"^sock_recv|^__sock_recv|^do_sys_poll|^sock_poll|^udp_poll",
    ),
    (
        "send",
        r"send|^__ip_|^ip_append|^ip_make_skb|^ip_finish|^ip_output|^ip_local_out|"
        r"^ip_skb_dst_mtu|^ipv4_mtu|^ipv4_dst_check|^sk_dst_check|^__dev_queue_xmit|^dev_hard|"
        r"^veth_xmit|^validate_xmit|^neigh|^dst_|^copy_msghdr|^copy_iovec|^_copy_from|"
        r"^__check_object_size|^__virt_addr_valid|^csum|^ip_setup_cork|^ip_generic_getfrag|"
        r"^security_socket|^skb_set_owner|^sch_direct|^__qdisc|^skb_push|^ip_mc|^__ip_select",
    ),
    (
        "syscall entry/exit",
        r"^entry_|^syscall|^do_syscall|^__x64_sys|^__sys_|^exit_to_user|"
        r"^__fget|^fput|^fdget|^__fdget|^audit|^apparmor",
    ),
]
_CATEGORY_RES = [(name, re.compile(p)) for name, p in CATEGORIES]


@dataclass
class Run:
    path: str
    sent: int
    disposed: int  # dropped by the filter, or read by the reader
    seconds: float
    cpu: float  # seconds

    @property
    def pps(self) -> float:
        return self.disposed / self.seconds

    @property
    def cpu_per_mpkt(self) -> float:
        return self.cpu / (self.disposed / 1e6) if self.disposed else float("inf")


@dataclass
class Profile:
    samples: int = 0
    categories: dict[str, float] = field(default_factory=dict)  # share of samples, percent
    top: list[tuple[float, str]] = field(default_factory=list)


def _run(*cmd: str, check: bool = True, text_in: str | None = None) -> str:
    done = subprocess.run(
        cmd, input=text_in, capture_output=True, text=True, check=False, timeout=60
    )
    if check and done.returncode != 0:
        raise SystemExit(f"bench xdp: {' '.join(cmd)} failed: {done.stderr.strip()}")
    return done.stdout


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, XDP, nftables)"
    for tool in ("ip", "nft", "clang", "bpftool"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (./scripts/system-deps {tool})"
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        return "no C compiler (cc/gcc) for the sender"
    if (os.cpu_count() or 1) < 2:
        return "needs two CPUs (sender and reader pinned apart)"
    return None


def _build(tmp: Path) -> dict[str, Path]:
    cc = shutil.which("cc") or "gcc"
    out = {}
    for name, exe in (("xdp_sender", "ipcnet-xsend"), ("xdp_receiver", "ipcnet-xrecv")):
        target = tmp / exe
        _run(cc, "-O2", "-Wall", "-o", str(target), str(HERE / f"{name}.c"))
        out[name] = target
    return out


@contextmanager
def _topology() -> Iterator[tuple[str, str]]:
    try:
        with namespaces("ipcnet-bench-a", "ipcnet-bench-b") as (a, b):
            veth(End(a, "va", (f"{A4}/24",), MAC_A), End(b, "vb", (f"{B4}/24",), MAC_B))
            yield a, b
    except NetnsError as exc:
        raise SystemExit(f"bench xdp: {exc}") from None


def _softirqd_cpu() -> float:
    total = 0
    for pid in procfs.listdir("/proc") or []:
        if not pid.isdigit():
            continue
        stat = procfs.read_text(f"/proc/{pid}/stat")
        if stat is None:  # exited meanwhile
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        if comm.startswith("ksoftirqd/"):
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def _wait(p: subprocess.Popen[str]) -> tuple[str, float]:
    """Output and CPU seconds (user + system) of a finished child."""
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    assert p.stdout is not None
    return p.stdout.read(), usage.ru_utime + usage.ru_stime


class Bench:
    def __init__(self, a: str, b: str, exe: dict[str, Path], seconds: float, payload: int):
        self.a, self.b, self.exe, self.seconds, self.payload = a, b, exe, seconds, payload
        self.ipcnet = [sys.executable, "-m", "ipcnet", "xdp"]

    def _setup(self, path: str) -> subprocess.Popen[str] | None:
        if path.startswith("xdp-"):
            mode = path.removeprefix("xdp-")
            _run(
                *in_ns(
                    self.b, *self.ipcnet, "attach", "vb", "--drop", f"udp://:{PORT}", "--mode", mode
                )
            )
            return None
        if path in NFT:
            _run(*in_ns(self.b, "nft", "-f", "-"), text_in=NFT_RULES.format(*NFT[path], PORT))
            return None
        if path == "c-recvmmsg":
            cmd = [str(self.exe["xdp_receiver"]), str(PORT), str(self.seconds), str(RECV_CPU)]
        else:
            cmd = [sys.executable, "-c", PY_RECEIVER, str(PORT), str(self.seconds), str(RECV_CPU)]
        reader = subprocess.Popen(in_ns(self.b, *cmd), stdout=subprocess.PIPE, text=True)
        assert reader.stdout is not None
        if reader.stdout.readline().strip() != "ready":
            raise SystemExit(f"bench xdp: the {path} reader did not start")
        return reader

    def _disposed(self, path: str) -> int:
        if path.startswith("xdp-"):
            stats = json.loads(_run(*in_ns(self.b, *self.ipcnet, "stats", "vb", "--json")))
            _run(*in_ns(self.b, *self.ipcnet, "detach", "vb"))
            return int(stats["rules"][0]["packets"])
        family = NFT[path][0]
        listing = json.loads(
            _run(*in_ns(self.b, "nft", "-j", "list", "table", family, "ipcnet_bench"))
        )
        _run(*in_ns(self.b, "nft", "delete", "table", family, "ipcnet_bench"))
        for item in listing["nftables"]:
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
        raise SystemExit("bench xdp: no nft counter found")

    def run(self, path: str, perf_out: Path | None = None) -> Run:
        reader = self._setup(path)
        try:
            soft = _softirqd_cpu()
            perf = None
            if perf_out is not None:
                perf = subprocess.Popen(
                    [
                        "perf",
                        "record",
                        "-q",
                        "-e",
                        "cpu-clock",
                        "-F",
                        "2999",
                        "-a",
                        "-o",
                        str(perf_out),
                        "--",
                        "sleep",
                        str(self.seconds + 1),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(0.5)  # perf's start-up, so that it sees the whole flood
            sender = subprocess.Popen(
                in_ns(
                    self.a,
                    str(self.exe["xdp_sender"]),
                    B4,
                    str(PORT),
                    str(self.seconds),
                    str(SEND_CPU),
                    str(self.payload),
                ),
                stdout=subprocess.PIPE,
                text=True,
            )
            out, cpu = _wait(sender)
            sent = int(out.split()[1])
            if reader is not None:
                rout, rcpu = _wait(reader)
                reader = None
                disposed, cpu = int(rout.split()[1]), cpu + rcpu
            else:
                disposed = self._disposed(path)
            cpu += _softirqd_cpu() - soft
            if perf is not None:
                perf.wait(timeout=60)
            return Run(path, sent, disposed, self.seconds, cpu)
        finally:
            if reader is not None:
                reader.kill()
                reader.wait()


def _profile(data: Path) -> Profile:
    """Samples of the benchmark's own threads (sender, reader, ksoftirqd), grouped."""
    report = _run(
        "perf",
        "report",
        "-i",
        str(data),
        "--stdio",
        "--no-children",
        "-F",
        "overhead,sample,comm,sym",
        "--percent-limit",
        "0",
        check=False,
    )
    prof = Profile()
    mine = ("ipcnet-xsend", "ipcnet-xrecv", "ipcnet-pyrecv", "ksoftirqd/")
    rows: list[tuple[int, str, str]] = []
    for line in report.splitlines():
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+(\S+)\s+\[([k.])\]\s+(\S+)", line)
        if m and m.group(2).startswith(mine):
            rows.append((int(m.group(1)), m.group(3), m.group(4)))
    total = sum(r[0] for r in rows)
    if not total:
        return prof
    prof.samples = total
    for share, space, sym in rows:
        cat = next((n for n, rx in _CATEGORY_RES if rx.search(sym)), None)
        if cat is None:
            cat = "other kernel" if space == "k" else "user space"
        prof.categories[cat] = prof.categories.get(cat, 0.0) + 100 * share / total
    merged: dict[str, float] = {}
    for share, _, sym in rows:
        merged[sym] = merged.get(sym, 0.0) + 100 * share / total
    prof.top = sorted(((v, k) for k, v in merged.items()), reverse=True)[:6]
    return prof


def _perf_works() -> bool:
    if shutil.which("perf") is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            ["perf", "record", "-q", "-e", "cpu-clock", "-a", "-o", f"{tmp}/p", "--", "true"],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0


def _report(
    results: dict[str, list[Run]], profiles: dict[str, Profile], args: argparse.Namespace
) -> str:
    lines: list[str] = []
    say = lines.append
    say(
        f"\n{args.rounds} interleaved rounds of {args.seconds:g} s, {args.payload}-byte "
        f"payloads; sender on CPU {SEND_CPU}, readers on CPU {RECV_CPU}\n"
    )
    say("| path | Mpkt/s median | range | sent Mpkt/s | disposed/sent | CPU µs/pkt | range |")
    say("|---|---:|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        pps = [r.pps / 1e6 for r in runs]
        sent = statistics.median(r.sent / r.seconds / 1e6 for r in runs)
        ratio = statistics.median(r.disposed / r.sent for r in runs if r.sent)
        cpus = [r.cpu_per_mpkt for r in runs]
        say(
            f"| {name} | {statistics.median(pps):.3f} | {min(pps):.3f}-{max(pps):.3f} "
            f"| {sent:.3f} | {ratio:.2f} | {statistics.median(cpus):.2f} "
            f"| {min(cpus):.2f}-{max(cpus):.2f} |"
        )
    say("")
    best = {n: statistics.median(r.pps for r in runs) for n, runs in results.items()}
    cost = {n: statistics.median(r.cpu_per_mpkt for r in runs) for n, runs in results.items()}
    if "xdp-native" in best:
        nft = max((n for n in best if n.startswith("nft")), key=best.__getitem__, default=None)
        for other in (nft, "c-recvmmsg"):
            if other in best:
                say(
                    f"xdp-native vs {other}: {best['xdp-native'] / best[other]:.2f}x the "
                    f"packets/s at {cost['xdp-native'] / cost[other]:.2f}x the CPU per packet"
                )
    if profiles:
        cats = [c for c, _ in CATEGORIES] + ["other kernel", "user space"]
        say(
            "\nwhere the time goes (perf cpu-clock samples of the sender, reader and "
            "ksoftirqd; % of those samples)\n"
        )
        say("| path | samples | " + " | ".join(cats) + " | receiving side µs/pkt |")
        say("|---|---:|" + "---:|" * (len(cats) + 1))
        for name, prof in profiles.items():
            cells = " | ".join(f"{prof.categories.get(c, 0.0):.0f}" for c in cats)
            sending = sum(prof.categories.get(c, 0.0) for c in ("send", "syscall entry/exit"))
            rx = cost[name] * (100 - sending) / 100 if name in cost else float("nan")
            say(f"| {name} | {prof.samples} | {cells} | {rx:.2f} |")
        say("\ntop symbols per path:")
        for name, prof in profiles.items():
            say(f"  {name}: " + ", ".join(f"{sym} {v:.0f}%" for v, sym in prof.top))
    return "\n".join(lines)


def _results(results: dict[str, list[Run]]) -> list[Result]:
    """Packets/s and CPU per packet of every path; ipcnet's own are the xdp paths."""
    out = []
    for name, runs in results.items():
        peer = f"ipcnet {name}" if name.startswith("xdp") else name
        out.append(Result("Mpkt/s", peer, "Mpkt/s", [r.pps / 1e6 for r in runs]))
    for name, runs in results.items():
        peer = f"ipcnet {name}" if name.startswith("xdp") else name
        cpu = [r.cpu_per_mpkt for r in runs]
        out.append(Result("CPU µs/pkt", peer, "µs", cpu, lower_is_better=True))
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser("xdp")
    p.add_argument("--seconds", type=float, default=2.0, help="flood length per run (2)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    p.add_argument("--payload", type=int, default=18, help="UDP payload bytes (18: 60-byte frames)")
    p.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of paths")
    p.add_argument("--no-perf", action="store_true", help="skip the perf profile runs")
    args = p.parse_args(argv)
    paths = [x for x in args.paths.split(",") if x]
    unknown = set(paths) - set(PATHS)
    if unknown or not paths:
        p.error(f"unknown path(s) {', '.join(sorted(unknown))}; known: {', '.join(PATHS)}")
    if not 0 < args.seconds <= 30 or not 1 <= args.rounds <= 50:
        p.error("--seconds must be in (0, 30] and --rounds in 1..50")
    why = _why_not()
    if why:
        print(f"ipcnet bench xdp: {why}", file=sys.stderr)
        return 1
    use_perf = not args.no_perf and _perf_works()
    results: dict[str, list[Run]] = {n: [] for n in paths}
    profiles: dict[str, Profile] = {}
    with tempfile.TemporaryDirectory(prefix="ipcnet-bench-xdp-") as tmp, _topology() as (a, b):
        bench = Bench(a, b, _build(Path(tmp)), args.seconds, args.payload)
        bench.run(paths[0])  # warm-up: builds the XDP object, faults everything in
        rounds(paths, args.rounds, lambda n: results[n].append(bench.run(n)), "xdp", str)
        if use_perf:
            for name in paths:
                data = Path(tmp) / f"{name}.perf"
                bench.run(name, perf_out=data)
                profiles[name] = _profile(data)
    if not use_perf and not args.no_perf:
        print("(perf is not usable here: no profile)", file=sys.stderr)
    title = f"UDP flood over veth, {args.payload}-byte payloads, {args.rounds} x {args.seconds:g} s"
    emit(args, _results(results), title, text=_report(results, profiles, args))
    return 0
