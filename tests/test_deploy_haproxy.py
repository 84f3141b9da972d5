"""A tested deployment (issue 14): three ipcnet web servers behind HAProxy.

Each server runs in a network namespace of its own, reached over a veth pair this test
creates (and removes); HAProxy, in the test's namespace, checks them with ``GET /_health``
and sends them PROXY v2 headers (``--accept-proxy``). Under a bounded load (a request
count cap and a time cap) the test stops one server (HAProxy routes around it), brings it
back, then upgrades all three one after the other with SIGUSR2; no request may fail, the
access logs must name the real client (127.0.0.2, not HAProxy's veth address), and every
namespace and veth is gone afterwards. The recipe is docs/haproxy.md.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ipcnet.testing import free_port, netns

pytestmark = [pytest.mark.xdist_group("netns-haproxy")]
SRC = str(Path(__file__).resolve().parent.parent / "src")
CLIENT = "127.0.0.2"  # the load's source address: what the access logs must show
PORT = 8080
MAX_REQUESTS = 20_000  # the load's bounds: a count and a time
MAX_SECONDS = 60.0


def _why_unavailable() -> str | None:
    if shutil.which("haproxy") is None:
        return "haproxy is not installed (make system-deps installs it)"
    return netns.unavailable()


@dataclass
class Instance:
    ns: str
    host_dev: str
    address: str  # the server's, in its namespace
    gateway: str  # HAProxy's side of the veth
    log: Path
    stderr: Path
    proc: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)  # every master it had (upgrades)

    def start(self, root: Path) -> None:
        argv = netns.in_ns(self.ns, sys.executable, "-m", "ipcnet", "serve")
        argv += ["http", str(root), f"tcp://{self.address}:{PORT}", "--accept-proxy"]
        argv += ["--access-log", str(self.log), "--grace", "5"]
        env = dict(os.environ, PYTHONPATH=SRC)
        with self.stderr.open("a") as err:  # a file: an upgraded master inherits it
            self.proc = subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL, env=env)
        self.pids.append(self.proc.pid)
        wait_for(lambda: "listening on" in self.stderr.read_text(), f"{self.ns} listening")

    @property
    def pid(self) -> int:
        return self.pids[-1]

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGTERM)
        if self.proc is not None and self.proc.pid == self.pid:
            assert self.proc.wait(15) == 0
        else:
            wait_for(lambda: not alive(self.pid), f"{self.ns} stopped", 15)

    def upgrade(self) -> None:
        """SIGUSR2; done once the new master serves and the old one exited."""
        before = len(re.findall(r"new master pid \d+", self.stderr.read_text()))
        old = self.pid
        os.kill(old, signal.SIGUSR2)

        def new_master() -> int | None:
            found = re.findall(r"new master pid (\d+) is serving", self.stderr.read_text())
            return int(found[-1]) if len(found) > before else None

        wait_for(new_master, f"{self.ns}: a new master")
        new = new_master()
        assert new is not None
        wait_for(lambda: not alive(old), f"{self.ns}: the old master drained", 15)
        if self.proc is not None and self.proc.pid == old:
            assert self.proc.wait(5) == 0
        self.pids.append(new)


def served(x: Instance) -> list[str]:
    """The access log's lines for the load's requests (health checks are HAProxy's own)."""
    return [line for line in x.log.read_text().splitlines() if "/hello.txt" in line]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(pred: Callable[[], object], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Load:
    """Keep-alive GETs through HAProxy from 4 threads, bounded in count and time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ok = 0
        self.failures: list[str] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.deadline = self.started + MAX_SECONDS
        self.threads = [threading.Thread(target=self._client) for _ in range(4)]
        for t in self.threads:
            t.start()

    def _client(self) -> None:
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=10, source_address=(CLIENT, 0)
        )
        while not self.stopping.is_set() and time.monotonic() < self.deadline:
            with self.lock:
                if self.ok + len(self.failures) >= MAX_REQUESTS:
                    return
            try:
                conn.request("GET", "/hello.txt")
                response = conn.getresponse()
                body = response.read()
                good = response.status == 200 and body == b"hello\n"
                outcome = None if good else f"{response.status} {body[:60]!r}"
            except (OSError, http.client.HTTPException) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
                conn.close()
            with self.lock:
                if outcome is None:
                    self.ok += 1
                else:
                    self.failures.append(outcome)

    def wait_more(self, count: int) -> None:
        target = self.ok + count
        wait_for(lambda: self.ok >= target or self.failures, f"{count} more requests")

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(15)


def haproxy_config(instances: list[Instance], port: int, sock: Path) -> str:
    servers = "".join(
        f"    server web{i} {x.address}:{PORT} send-proxy-v2 check check-send-proxy "
        "inter 100 fall 1 rise 2\n"
        for i, x in enumerate(instances, 1)
    )
    return f"""global
    maxconn 200
    stats socket {sock} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 15s
    timeout server 15s
    timeout check 2s
    retries 3
    option redispatch 1
    retry-on all-retryable-errors
    option http-server-close
    http-reuse never
frontend web
    bind 127.0.0.1:{port}
    default_backend ipcnet
backend ipcnet
    balance roundrobin
    option httpchk GET /_health
    http-check expect status 200
{servers}"""


def server_states(sock: Path) -> dict[str, str]:
    """HAProxy's view of each server (UP, DOWN...), from its stats socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(sock))
        s.sendall(b"show stat\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    states = {}
    for line in out.decode().splitlines():
        cols = line.split(",")
        if len(cols) > 17 and cols[0] == "ipcnet" and cols[1].startswith("web"):
            states[cols[1]] = cols[17]
    return states


@pytest.fixture
def namespaces(tmp_path: Path) -> Iterator[list[Instance]]:
    reason = _why_unavailable()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    net = 100 + int(tag, 16) % 150  # 10.NET.i.0/30: unlikely to meet another run's
    with netns.namespaces("ipcnet-web1", "ipcnet-web2", "ipcnet-web3") as names:
        instances = [
            Instance(
                ns=name,
                host_dev=f"ipcw{i}{tag}",
                address=f"10.{net}.{i}.2",
                gateway=f"10.{net}.{i}.1",
                log=tmp_path / f"access{i}.log",
                stderr=tmp_path / f"stderr{i}.log",
            )
            for i, name in enumerate(names, 1)
        ]
        try:
            for x in instances:  # deleting the namespace deletes its veth pair
                host = netns.End(None, x.host_dev, (f"{x.gateway}/30",))
                netns.veth(host, netns.End(x.ns, "eth0", (f"{x.address}/30",)))
            yield instances
        finally:
            for x in instances:
                for pid in x.pids:
                    if alive(pid):
                        os.kill(pid, signal.SIGKILL)
                if x.proc is not None and x.proc.poll() is None:
                    x.proc.kill()
                    x.proc.wait()
    left = netns.ip("netns", "list")
    assert not [x.ns for x in instances if x.ns in left], left
    links = netns.ip("-o", "link", "show")
    assert not [x.host_dev for x in instances if x.host_dev in links], links


def test_three_servers_behind_haproxy_stop_return_and_rolling_upgrade(
    namespaces: list[Instance], tmp_path: Path
) -> None:
    root = tmp_path / "www"
    root.mkdir()
    (root / "hello.txt").write_text("hello\n")
    for x in namespaces:
        x.start(root)
    port, sock = free_port(), tmp_path / "haproxy.sock"
    (tmp_path / "haproxy.cfg").write_text(haproxy_config(namespaces, port, sock))
    haproxy = subprocess.Popen(
        ["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "haproxy.log").open("w"),
    )
    load: Load | None = None
    try:
        everyone = {"web1": "UP", "web2": "UP", "web3": "UP"}
        wait_for(lambda: sock.exists() and server_states(sock) == everyone, "all servers UP")
        load = Load(port)
        load.wait_more(200)

        # one instance stops: HAProxy's health check marks it DOWN and routes around it
        namespaces[0].stop()
        wait_for(lambda: server_states(sock)["web1"] == "DOWN", "web1 DOWN")
        before = len(served(namespaces[0]))
        load.wait_more(300)
        assert len(served(namespaces[0])) == before  # none reached it
        # it comes back, and gets traffic again
        namespaces[0].start(root)
        wait_for(lambda: server_states(sock) == everyone, "web1 UP again")
        load.wait_more(300)
        wait_for(lambda: len(served(namespaces[0])) > before, "web1 serving")

        # a rolling binary upgrade: one instance after the other, under load
        for x in namespaces:
            x.upgrade()
            load.wait_more(200)
            assert server_states(sock) == everyone
        load.stop()
        seconds = time.monotonic() - load.started
        print(f"deploy: {load.ok} requests in {seconds:.1f} s, {len(load.failures)} failed")
        assert load.failures == [], load.failures[:5]
        assert load.ok >= 1000

        # the access logs name the real client, never HAProxy's address; HAProxy's own
        # health checks (PROXY v2 LOCAL) keep the connection's address, HAProxy's
        for x in namespaces:
            lines = served(x)
            assert lines, f"{x.ns} served nothing"
            assert all(line.startswith(CLIENT + " - - [") for line in lines), lines[:3]
            checks = [line for line in x.log.read_text().splitlines() if "/_health" in line]
            assert checks and all(line.startswith(x.gateway + " ") for line in checks)
    finally:
        if load is not None:
            load.stop()
        haproxy.terminate()
        haproxy.wait(10)
        for x in namespaces:
            if alive(x.pid):
                x.stop()
