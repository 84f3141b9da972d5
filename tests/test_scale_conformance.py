"""Issue 14 against its peers: a broken binary upgrade as nginx's master handles it (the
old master reaps the new one, says so, and serves on), the access log byte for byte as
nginx writes it (the same raw requests sent to a real nginx), /_metrics through
prometheus_client's parser and `promtool check metrics` (and against the status page),
and --drain-delay behind a real HAProxy with no retries: health fails before anything
is refused, so a bounded load loses no request."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ipcnet.testing import free_port
from test_deploy_haproxy import Load, server_states, wait_for
from test_scale import _alive, _log_says, _stop_both

ENTRY = "import sys\nfrom ipcnet.cli import main\nsys.exit(main())\n"


def _get(port: int, path: str = "/") -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        answer.read()
        return int(answer.status)


def test_an_upgrade_whose_new_master_dies_leaves_the_old_one_serving(tmp_path: Path) -> None:
    """nginx's master reaps a new binary that exits and keeps serving; so must ours, at
    once (not after the 30 s ready timeout), with no zombie, and a later SIGUSR2 works."""
    entry, port, logfile = tmp_path / "serve.py", free_port(), tmp_path / "log"
    entry.write_text(ENTRY)
    argv = [sys.executable, str(entry), "serve", "http", str(tmp_path), f"tcp://127.0.0.1:{port}"]
    argv += ["--model", "prefork", "--workers", "1", "-q"]  # its master reaps any child
    with logfile.open("w") as err:
        old = subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL)
    new_pid = 0
    try:
        _log_says(logfile, "listening on")
        entry.write_text("raise SystemExit('the new binary is broken')\n")
        os.kill(old.pid, signal.SIGUSR2)
        dead = int(_log_says(logfile, r"new master pid (\d+) exited before it was ready").group(1))
        assert not Path(f"/proc/{dead}").exists()  # reaped, not a zombie
        assert old.poll() is None and _get(port) == 200
        entry.write_text(ENTRY)  # fixed: the next SIGUSR2 is not refused as "already"
        os.kill(old.pid, signal.SIGUSR2)
        new_pid = int(_log_says(logfile, r"new master pid (\d+) is serving").group(1))
        assert old.wait(20) == 0 and _alive(new_pid) and _get(port) == 200
    finally:
        _stop_both(old, new_pid)


def test_a_worker_forked_during_an_upgrade_holds_no_copy_of_its_ready_socket(
    tmp_path: Path,
) -> None:
    """A worker the master forks while an upgrade waits (a respawn) must not inherit the
    private ready socket: its copy kept the name bound after the upgrade failed, and the
    next SIGUSR2 failed with 'address in use' (seen in CI when the first fork was late)."""
    entry, port, logfile = tmp_path / "serve.py", free_port(), tmp_path / "log"
    entry.write_text(ENTRY)
    argv = [sys.executable, str(entry), "serve", "http", str(tmp_path), f"tcp://127.0.0.1:{port}"]
    argv += ["--model", "prefork", "--workers", "1", "-q"]
    with logfile.open("w") as err:
        old = subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL)
    new_pid = 0
    try:
        _log_says(logfile, "listening on")
        assert _get(port) == 200
        (worker,) = _children(old.pid)
        entry.write_text("import time\ntime.sleep(1.5)\nraise SystemExit('broken, slowly')\n")
        os.kill(old.pid, signal.SIGUSR2)
        _log_says(logfile, r"upgrade: started a new master")
        os.kill(worker, signal.SIGKILL)  # respawned while the upgrade waits for READY=1
        _log_says(logfile, r"exited before it was ready")
        (respawned,) = [p for p in _children(old.pid) if p != worker]
        names = _unix_names(respawned)
        assert not [n for n in names if "ipcnet-upgrade" in n], names
        entry.write_text(ENTRY)
        os.kill(old.pid, signal.SIGUSR2)  # the name is free: this upgrade goes through
        new_pid = int(_log_says(logfile, r"new master pid (\d+) is serving").group(1))
        assert old.wait(20) == 0 and _alive(new_pid) and _get(port) == 200
    finally:
        _stop_both(old, new_pid)


def _children(pid: int) -> list[int]:
    """The live children of ``pid`` (from /proc), once there is at least one."""
    deadline = time.monotonic() + 10
    while True:
        found = []
        for name in os.listdir("/proc"):
            try:
                stat = Path(f"/proc/{name}/stat").read_text() if name.isdigit() else ""
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if fields and int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(name))
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _unix_names(pid: int) -> list[str]:
    """The names of the unix sockets ``pid`` holds (/proc/net/unix by inode)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    return [f[7] for f in (line.split() for line in lines) if len(f) > 7 and f[6] in inodes]


NGINX_CONF = """daemon off;
master_process off;
error_log {d}/error.log;
pid {d}/nginx.pid;
events {{ worker_connections 16; }}
http {{
  log_format clf '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent';
  access_log {d}/access.log clf;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};
  uwsgi_temp_path {d}; scgi_temp_path {d};
  server {{ listen 127.0.0.1:{port}; listen unix:{d}/nginx.sock; root {d}/www; }}
}}
"""
# quotes and backslashes (a client forging a field, or an escape) in targets both parse
TARGETS = [b'/a"b\\c', b"/%22q", b"/a\\x22b", b'/q?x="1"\\']
# requests that do not parse: nginx logs their first line as it came (TLS bytes included)
UNPARSED = [
    b"garbage line\r\n\r\n",
    b'\x16\x03\x01\x00\xa5\x01\x00 "hello\r\n\r\n',
    b"GET /h HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
]
CLF = rb'^(\S+) - - (\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]) "(.*)" (\d{3}) (\d+|-)$'


def _ask(where: str | tuple[str, int], target: bytes, raw: bytes = b"") -> None:
    family = socket.AF_UNIX if isinstance(where, str) else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(10)
        s.connect(where)
        s.sendall(raw or b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass


def _fields(log: Path, count: int) -> list[tuple[bytes, bytes]]:
    """(client, request) of each of ``count`` CLF lines, the timestamp's shape checked."""
    deadline = time.monotonic() + 20
    while len(lines := log.read_bytes().splitlines()) < count:
        assert time.monotonic() < deadline, lines
        time.sleep(0.02)
    out = []
    for line in lines:
        found = re.match(CLF, line)
        assert found, line
        out.append((found[1], found[3]))
    return out


@pytest.mark.skipif(not shutil.which("nginx"), reason="needs nginx (Debian package nginx)")
def test_access_log_lines_escape_as_nginx_writes_them(tmp_path: Path) -> None:
    """The same raw requests to nginx (its CLF log_format) and to us: the client field
    (unix: for a unix socket) and the escaped request field are byte for byte nginx's,
    for requests that do not parse as well (their first line, as it came)."""
    (tmp_path / "www").mkdir()
    nginx_port, our_port = free_port(), free_port()
    (tmp_path / "nginx.conf").write_text(NGINX_CONF.format(d=tmp_path, port=nginx_port))
    nginx = subprocess.Popen(["nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")])
    ours_log, sock = tmp_path / "ours.log", tmp_path / "ours.sock"
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(tmp_path / "www")]
    argv += [f"tcp://127.0.0.1:{our_port}", f"unix://{sock}", "--access-log", str(ours_log)]
    ours = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        for path in (tmp_path / "nginx.sock", sock):
            deadline = time.monotonic() + 20
            while not path.exists():
                assert time.monotonic() < deadline, f"{path} never appeared"
                time.sleep(0.02)
        for port, unix in ((nginx_port, tmp_path / "nginx.sock"), (our_port, sock)):
            for target in TARGETS:
                _ask(("127.0.0.1", port), target)
            for raw in UNPARSED:
                _ask(("127.0.0.1", port), b"", raw)
            _ask(str(unix), b"/")
        count = len(TARGETS) + len(UNPARSED) + 1
        theirs = _fields(tmp_path / "access.log", count)
        assert theirs[-1][0] == b"unix:" and b"\\x22" in theirs[0][1]  # the peer as known
        assert theirs[len(TARGETS)][1] == b"garbage line"
        assert _fields(ours_log, count) == theirs
    finally:
        for proc in (nginx, ours):
            proc.terminate()
            proc.wait(20)


HAPROXY_STOCK = """global
    maxconn 200
    stats socket {sock} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 15s
    timeout server 15s
    timeout check 2s
    retries 0
frontend web
    bind 127.0.0.1:{port}
    default_backend ipcnet
backend ipcnet
    balance roundrobin
    option httpchk GET /_health
    http-check expect status 200
{servers}"""


@pytest.mark.skipif(not shutil.which("haproxy"), reason="needs haproxy (Debian package haproxy)")
def test_drain_delay_fails_health_checks_before_anything_is_refused(tmp_path: Path) -> None:
    """HAProxy with no retries and keep-alive to the servers: SIGTERM with --drain-delay
    fails the draining server's checks while it still serves, HAProxy marks it DOWN, and
    only then (here: a second SIGTERM ends the delay) its listener closes. Not one
    request of a bounded load fails."""
    (tmp_path / "hello.txt").write_text("hello\n")
    ports, front, sock = [free_port(), free_port()], free_port(), tmp_path / "haproxy.sock"
    servers = []
    for port, delay in zip(ports, ("60", "0"), strict=True):
        argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(tmp_path)]
        argv += [f"tcp://127.0.0.1:{port}", "-q", "--model", "prefork", "--workers", "1"]
        argv += ["--drain-delay", delay, "--grace", "10"]
        servers.append(subprocess.Popen(argv))
    lines = "".join(
        f"    server web{i} 127.0.0.1:{port} check inter 100 fall 1 rise 1\n"
        for i, port in enumerate(ports, 1)
    )
    (tmp_path / "h.cfg").write_text(HAPROXY_STOCK.format(sock=sock, port=front, servers=lines))
    haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(tmp_path / "h.cfg")])
    load = None
    try:
        for port in ports:  # HAProxy starts a server UP: that is no sign that it listens
            wait_for(lambda port=port: _answers(port), f"port {port} listening")
        wait_for(lambda: sock.exists() and set(server_states(sock).values()) == {"UP"}, "UP")
        load = Load(front)
        load.wait_more(100)
        servers[0].send_signal(signal.SIGTERM)  # the master passes it on to its worker:
        wait_for(lambda: _health(ports[0]) == (503, b"draining\n"), "503")  # fails its check
        assert _get(ports[0], "/hello.txt") == 200  # ... and still serves
        wait_for(lambda: server_states(sock)["web1"].startswith("DOWN"), "web1 DOWN")
        load.wait_more(100)  # all on web2 now
        servers[0].send_signal(signal.SIGTERM)  # during the delay: the stop begins at once
        assert servers[0].wait(20) == 0
        load.wait_more(100)
        load.stop()
        assert load.failures == [] and load.ok >= 300
    finally:
        if load is not None:
            load.stop()
        for proc in (haproxy, *servers):  # gracefully: a killed prefork master's worker
            proc.terminate()  # would live on
        for proc in (haproxy, *servers):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _answers(port: int) -> bool:
    try:
        return _health(port)[0] == 200
    except OSError:
        return False


def _health(port: int) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /_health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer.split(b"\r\n\r\n", 1)[1]


@pytest.mark.skipif(
    not shutil.which("promtool"), reason="needs promtool (Debian package prometheus)"
)
def test_metrics_pass_promtool_and_match_the_status_page(tmp_path: Path) -> None:
    """/_metrics through Prometheus's own linter (names, HELP/TYPE, _total, units), and
    the status page's figures are the same counters (each page is counted after its own
    snapshot: the /_metrics that follows /_status.json counts that one more request)."""
    (tmp_path / "a.txt").write_text("a")
    port = free_port()
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(tmp_path)]
    argv += [f"tcp://127.0.0.1:{port}", "-q", "--model", "prefork", "--workers", "2"]
    server = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None and "listening on" in server.stderr.readline()
        for path in ("/a.txt", "/a.txt", "/a.txt"):
            assert _get(port, path) == 200
        with pytest.raises(urllib.error.HTTPError):
            _get(port, "/missing")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_status.json", timeout=10) as r:
            status = json.load(r)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        server.terminate()
        assert server.wait(20) == 0
    lint = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert lint.returncode == 0 and not lint.stdout + lint.stderr, lint
    families = {f.name: f for f in text_string_to_metric_families(text)}
    by_class = {s.labels["code"]: s.value for s in families["ipcnet_http_requests"].samples}
    assert status["requests"]["by_class"] == {"1xx": 0, "2xx": 3, "3xx": 0, "4xx": 1, "5xx": 0}
    assert by_class == {**status["requests"]["by_class"], "2xx": 4}  # and /_status.json
    assert status["requests"]["total"] == 4
    # the server histogram carries the labels of the server's other families
    server = {"service": "http", "model": "prefork"}
    assert families["ipcnet_connections_accepted"].samples[0].labels == server
    for sample in families["ipcnet_connection_duration_seconds"].samples:
        assert {k: v for k, v in sample.labels.items() if k != "le"} == server


@pytest.mark.parametrize("model", ["iterative", "asyncio"])
def test_drain_delay_under_models_with_their_own_signal_handlers(model: str) -> None:
    """iterative and asyncio catch SIGTERM themselves: the delay holds there too, and a
    second SIGTERM ends it with a clean graceful stop."""
    port = free_port()
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", os.path.dirname(__file__)]
    argv += [f"tcp://127.0.0.1:{port}", "-q", "--model", model, "--drain-delay", "60"]
    server = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None and "listening on" in server.stderr.readline()
        server.send_signal(signal.SIGTERM)
        assert "draining" in server.stderr.readline()
        assert _health(port) == (503, b"draining\n")
        assert _get(port, "/_status.json") == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
