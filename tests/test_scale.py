"""Issue 14 on one machine: --accept-proxy under every model, sd_notify, health, the
--metrics listener, SIGHUP worker replacement and the SIGUSR2 binary upgrade."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ipcnet.protocols.proxy import encode_v1, encode_v2
from ipcnet.testing import free_port
from serverkit import SERVICE_SCRIPT, _start, children, serving

MODELS = ["iterative", "thread", "pool", "epoll", "asyncio", "prefork"]


def _roundtrip(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(4096):
            out += chunk
        return out


def _stats(path: Path, timeout: float = 10) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    result: dict[str, object] = json.loads(out)
    return result


@pytest.mark.parametrize("model", MODELS)
def test_accept_proxy_reads_the_header_first_under_every_model(model: str, tmp_path: Path) -> None:
    port = free_port()
    stats = tmp_path / "stats.sock"
    extra = ("--accept-proxy", "--stats", f"unix://{stats}")
    with serving("echo", f"tcp://127.0.0.1:{port}", model=model, extra=extra):
        v1 = encode_v1(("203.0.113.7", 4242), ("127.0.0.1", port))
        assert _roundtrip(port, v1 + b"hello\n") == b"hello\n"
        v2 = encode_v2(("2001:db8::1", 555), ("::1", port))
        assert _roundtrip(port, v2 + b"two\n") == b"two\n"
        # the header may arrive in pieces; what follows it is the session's first bytes
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            for i in range(0, len(v1), 5):
                s.sendall(v1[i : i + 5])
                time.sleep(0.01)
            s.sendall(b"split\n")
            assert s.recv(100) == b"split\n"
        # never auto-detected: a connection without a header is closed, nothing echoed
        assert _roundtrip(port, b"hello without a header\n") == b""
        assert _roundtrip(port, b"PROXY TCP4 1.2.3.4\r\n") == b""  # malformed
        assert _roundtrip(port, b"PROXY " + b"x" * 200) == b""  # too long for v1
        assert _stats(stats)["refused"] == 3


def test_accept_proxy_shows_the_real_client_to_the_service(tmp_path: Path) -> None:
    """A service that answers with its peer: the PROXY header's source, not 127.0.0.1."""
    script = tmp_path / "whoami.py"
    script.write_text(
        "import sys\n"
        "from ipcnet.drivers import ServeConfig, serve\n"
        "from ipcnet.protocols.base import BaseService, BaseSession, CLOSE\n"
        "class S(BaseService):\n"
        "    name = 'whoami'\n"
        "    def start(self, peer):\n"
        "        return BaseSession(), [str(peer.address).encode() + b'\\n', CLOSE]\n"
        "def ready(core):\n"
        "    print('whoami listening on', core.bound[0], file=sys.stderr, flush=True)\n"
        "serve(S(), sys.argv[1:], ServeConfig(accept_proxy=True), ready)\n"
    )
    port = free_port()
    server = _start([sys.executable, str(script), f"tcp://127.0.0.1:{port}"], 1)
    try:
        header = encode_v2(("198.51.100.9", 61000), ("10.0.0.1", 80))
        assert _roundtrip(port, header) == b"tcp://198.51.100.9:61000\n"
        header = encode_v1(("2001:db8::5", 7), ("2001:db8::6", 80))
        assert _roundtrip(port, header) == b"tcp://[2001:db8::5]:7\n"
        # LOCAL (a balancer's health check) keeps the connection's own peer
        local = encode_v2(None, None)
        assert _roundtrip(port, local).startswith(b"tcp://127.0.0.1:")
        # nothing is sent before the header: the greeting waits for it
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.settimeout(0.3)
            with pytest.raises(TimeoutError):
                s.recv(100)
    finally:
        assert server.stop() == 0


def _notify_socket(name: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(name)
    sock.settimeout(15)
    return sock


def _messages(sock: socket.socket, until: str) -> list[str]:
    seen: list[str] = []
    while until not in seen:
        seen += sock.recv(4096).decode().split("\n")
    return seen


@pytest.mark.parametrize("where", ["abstract", "path"])
def test_sd_notify_ready_watchdog_stopping(where: str, tmp_path: Path) -> None:
    name = f"@ipcnet-test-notify-{os.getpid()}" if where == "abstract" else str(tmp_path / "n")
    sock = _notify_socket("\0" + name[1:] if name.startswith("@") else name)
    env = dict(os.environ, NOTIFY_SOCKET=name, WATCHDOG_USEC="100000")
    port = free_port()
    try:
        with serving("echo", f"tcp://127.0.0.1:{port}", env=env) as server:
            ready = _messages(sock, "READY=1")
            assert f"MAINPID={server.proc.pid}" in ready
            assert _roundtrip(port, b"up\n") == b"up\n"  # READY=1 came once it listens
            _messages(sock, "WATCHDOG=1")
            _messages(sock, "WATCHDOG=1")  # every half WATCHDOG_USEC, not once
        assert "STOPPING=1" in _messages(sock, "STOPPING=1")
    finally:
        sock.close()


@pytest.mark.parametrize("model", ["epoll", "prefork"])
def test_sighup_is_systemds_reload_reloading_then_ready(model: str, tmp_path: Path) -> None:
    """Type=notify-reload (sd_notify(3)): SIGHUP says RELOADING=1 with MONOTONIC_USEC (the
    manager's CLOCK_MONOTONIC, not older than the signal), then READY=1 once reloaded
    (prefork: its new workers listen), even with nothing to reload (epoll)."""
    name = str(tmp_path / "n")
    sock = _notify_socket(name)
    env = dict(os.environ, NOTIFY_SOCKET=name)
    try:
        with serving("echo", f"tcp://127.0.0.1:{free_port()}", model=model, env=env) as server:
            _messages(sock, "READY=1")
            deadline = time.monotonic() + 10
            while model == "prefork" and len(children(server.proc.pid)) < 2:
                assert time.monotonic() < deadline, "no workers"
                time.sleep(0.01)
            old, before = set(children(server.proc.pid)), time.monotonic_ns() // 1000
            server.proc.send_signal(signal.SIGHUP)
            reloading = sock.recv(4096).decode().split("\n")
            assert "RELOADING=1" in reloading
            usec = [int(x.split("=")[1]) for x in reloading if x.startswith("MONOTONIC_USEC=")]
            assert len(usec) == 1 and before <= usec[0] <= time.monotonic_ns() // 1000
            assert "READY=1" in _messages(sock, "READY=1")
            if model == "prefork":  # ready means reloaded: its new workers are there
                assert len(set(children(server.proc.pid)) - old) == 2
    finally:
        sock.close()


def test_watchdog_for_another_pid_is_not_ours(tmp_path: Path) -> None:
    name = str(tmp_path / "n")
    sock = _notify_socket(name)
    env = dict(os.environ, NOTIFY_SOCKET=name, WATCHDOG_USEC="50000", WATCHDOG_PID="1")
    try:
        with serving("echo", f"tcp://127.0.0.1:{free_port()}", env=env):
            _messages(sock, "READY=1")
        assert "WATCHDOG=1" not in _messages(sock, "STOPPING=1")
    finally:
        sock.close()


def test_stats_socket_answers_health(tmp_path: Path) -> None:
    stats = tmp_path / "s.sock"
    with serving("echo", f"tcp://127.0.0.1:{free_port()}", extra=("--stats", f"unix://{stats}")):
        assert _stats(stats)["health"] == "ok"


@pytest.mark.parametrize("model", ["epoll", "prefork"])
def test_metrics_listener_is_prometheus_text(model: str) -> None:
    port, mport = free_port(), free_port()
    extra = ("--metrics", f"tcp://127.0.0.1:{mport}")
    with serving("echo", f"tcp://127.0.0.1:{port}", model=model, extra=extra):
        for _ in range(3):
            assert _roundtrip(port, b"x" * 10) == b"x" * 10

        def scrape() -> dict[str, Any]:
            with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
                assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                return {f.name: f for f in text_string_to_metric_families(r.read().decode())}

        def handled() -> float:
            return float(scrape()["ipcnet_connections_handled"].samples[0].value)

        # a connection is counted just after its close reached the client: wait for it
        _wait_for(lambda: handled() >= 3, "three connections handled")
        families = scrape()
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
            text = r.read().decode()
        # the parser strips _total from a counter's family name, keeps it on the sample
        assert families["ipcnet_connections_accepted"].type == "counter"
        assert families["ipcnet_received_bytes"].type == "counter"
        assert families["ipcnet_connections_active"].type == "gauge"
        assert families["ipcnet_up"].samples[0].value == 1
        sample = families["ipcnet_connections_accepted"].samples[0]
        assert sample.name == "ipcnet_connections_accepted_total" and sample.value >= 3
        assert sample.labels == {"service": "echo", "model": model}
        assert families["ipcnet_received_bytes"].samples[0].value >= 30
        for kind in ("refused", "errors"):
            assert f"# TYPE ipcnet_{kind if kind == 'errors' else 'connections_refused'}" in text
        durations = families["ipcnet_connection_duration_seconds"]
        assert durations.type == "histogram"
        count = next(s for s in durations.samples if s.name.endswith("_count"))
        assert count.value >= 3  # the three echo connections (ended before we asked)
        inf = next(s for s in durations.samples if s.labels.get("le") == "+Inf")
        assert inf.value == count.value
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{mport}/other", timeout=10)
        assert err.value.code == 404


def _wait_for(predicate: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _stop_both(old: subprocess.Popen[bytes], new_pid: int) -> None:
    """After an upgrade test: kill the old master if it still runs, stop the new one (0:
    none was started)."""
    if old.poll() is None:
        old.kill()
        old.wait()
    if new_pid:
        os.kill(new_pid, signal.SIGTERM)
        _wait_for(lambda: not _alive(new_pid), "the new master stopped")


def _slow_prefork(tmp_path: Path, grace: float, *extra: str) -> object:
    script = tmp_path / "slow.py"
    script.write_text(SERVICE_SCRIPT)
    port = free_port()
    argv = [sys.executable, str(script), "prefork", str(grace), f"tcp://127.0.0.1:{port}"]
    return _start(argv, 1), port


def test_sighup_replaces_workers_gracefully(tmp_path: Path) -> None:
    server, port = _slow_prefork(tmp_path, 10.0)
    try:
        pid = server.proc.pid  # type: ignore[attr-defined]
        _wait_for(lambda: len(children(pid)) == 2, "two workers")
        old = set(children(pid))
        busy = socket.create_connection(("127.0.0.1", port), timeout=15)
        busy.sendall(b"sleep 1\n")  # in flight in an old worker when SIGHUP arrives
        time.sleep(0.2)
        os.kill(pid, signal.SIGHUP)
        assert busy.recv(100) == b"slept 1\n"  # the old worker finished it
        busy.close()
        _wait_for(lambda: not (old & set(children(pid))), "old workers gone")
        new = set(children(pid))
        assert len(new) == 2 and not new & old
        assert _roundtrip(port, b"after\n") == b"after\n"
    finally:
        assert server.stop() == 0  # type: ignore[attr-defined]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _log_says(path: Path, pattern: str, timeout: float = 20) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while not (found := re.search(pattern, path.read_text())):
        assert time.monotonic() < deadline, f"no {pattern!r} in: {path.read_text()}"
        time.sleep(0.02)
    return found


def _listening_inodes(port: int) -> set[str]:
    """The inodes of the sockets listening on ``port`` (ss -e), to tell one from another."""
    out = subprocess.run(
        ["ss", "-Hltne", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return set(re.findall(r"ino:(\d+)", out))


@pytest.mark.parametrize("model", ["epoll", "prefork", "prefork --reuse-port"])
def test_sigusr2_upgrade_inherits_the_sockets_and_loses_nothing(model: str, tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "ipcnet", "serve", "echo", f"tcp://127.0.0.1:{port}"]
    argv += ["--model", *model.split(), "--workers", "2", "--grace", "5"]
    logfile = tmp_path / "log"
    # the new master inherits stderr: a file, not a pipe that would stay open after us
    with logfile.open("w") as err:
        old = subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL)
    new_pid = 0
    try:
        _log_says(logfile, "listening on")
        # --reuse-port: one a worker, the master's all; the master says "listening" once
        # its first is bound and opens the other slots' next, so look until they are
        expected, deadline = (2 if "reuse" in model else 1), time.monotonic() + 10
        while len(sockets := _listening_inodes(port)) < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(sockets) == expected
        # a connection open across the upgrade, and new ones during it: none may fail
        held = socket.create_connection(("127.0.0.1", port), timeout=15)
        held.sendall(b"before\n")
        assert held.recv(100) == b"before\n"
        os.kill(old.pid, signal.SIGUSR2)
        done = 0
        while old.poll() is None and done < 3000:
            assert _roundtrip(port, b"%d\n" % done) == b"%d\n" % done
            done += 1
        assert old.wait(15) == 0
        new_pid = int(_log_says(logfile, r"new master pid (\d+) is serving").group(1))
        assert _alive(new_pid)
        # the new master serves on the very sockets the old one bound (no second bind)
        assert _listening_inodes(port) == sockets
        for i in range(20):
            assert _roundtrip(port, b"n%d\n" % i) == b"n%d\n" % i
        # the held connection was idle: the old master closed it at its stop, politely
        assert held.recv(100) == b""
        held.close()
    finally:
        _stop_both(old, new_pid)


@pytest.mark.parametrize("model", ["epoll", "prefork --reuse-port"])
def test_an_upgrade_keeps_the_port_the_kernel_chose_for_port_0(model: str, tmp_path: Path) -> None:
    """tcp://…:0 and udp://…:0: the new master inherits the sockets the old one was given
    (it names them as its command line does), not fresh ports; twice in a row."""
    argv = [sys.executable, "-m", "ipcnet", "serve", "echo", "tcp://127.0.0.1:0"]
    argv += ["udp://127.0.0.1:0", "--model", *model.split(), "--workers", "2", "--grace", "5"]
    logfile = tmp_path / "log"
    with logfile.open("w") as err:
        old = subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL)
    masters = [old.pid]
    try:
        tcp = int(_log_says(logfile, r"listening on tcp://127.0.0.1:(\d+)").group(1))
        udp = int(_log_says(logfile, r"listening on udp://127.0.0.1:(\d+)").group(1))
        for n in (1, 2):
            os.kill(masters[-1], signal.SIGUSR2)
            _wait_for(lambda n=n: len(_new_masters(logfile)) == n, "upgraded")
            masters.append(_new_masters(logfile)[-1])
            _wait_for(lambda: not _alive(masters[-2]), "the old master stopped")
            assert _roundtrip(tcp, b"tcp %d\n" % n) == b"tcp %d\n" % n
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(10)
                s.sendto(b"udp %d" % n, ("127.0.0.1", udp))
                assert s.recv(100) == b"udp %d" % n
        listening = re.findall(r"listening on (\S+)", logfile.read_text())
        assert set(listening) == {f"tcp://127.0.0.1:{tcp}", f"udp://127.0.0.1:{udp}"}
    finally:
        _stop_both(old, masters[-1] if len(masters) > 1 else 0)


def _new_masters(logfile: Path) -> list[int]:
    return [int(p) for p in re.findall(r"new master pid (\d+) is serving", logfile.read_text())]


def test_accept_proxy_refuses_datagram_addresses() -> None:
    argv = [sys.executable, "-m", "ipcnet", "serve", "echo", f"udp://127.0.0.1:{free_port()}"]
    done = subprocess.run(
        [*argv, "--accept-proxy"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "is a datagram address; the PROXY protocol heads stream connections" in done.stderr


def _stat_is(stats: Path, key: str, want: object) -> bool:
    """Whether the --stats snapshot says so; no answer yet (a prefork master starting
    its workers may not answer in time) is a no."""
    try:
        return _stats(stats, timeout=2)[key] == want
    except OSError:
        return False


STOP_MODELS = ["iterative", "fork", "forkconc", "thread", "pool", "epoll", "asyncio", "prefork"]


@pytest.mark.parametrize("model", STOP_MODELS)
def test_a_connection_accepted_before_a_stop_is_served(model: str, tmp_path: Path) -> None:
    """Accepted, its request not sent yet, then SIGTERM: the request is still answered
    (closing it unread reset the client: the connections a SIGUSR2 upgrade lost)."""
    port = free_port()
    stats = tmp_path / "stats.sock"
    extra = ("--stats", f"unix://{stats}", "--grace", "20")
    with serving("echo", f"tcp://127.0.0.1:{port}", model=model, extra=extra) as server:
        held = socket.create_connection(("127.0.0.1", port), timeout=15)
        _wait_for(lambda: _stat_is(stats, "accepted", 1), "the connection accepted")
        server.proc.send_signal(signal.SIGTERM)
        _wait_for(lambda: _stat_is(stats, "health", "stopping"), "the server stopping")
        time.sleep(0.3)  # what a stop does to idle connections, it has done by now
        held.sendall(b"late request\n")
        held.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := held.recv(4096):
            out += chunk
        held.close()
        assert out == b"late request\n"
        assert server.proc.wait(20) == 0  # and the stop then ends by itself


def _datagram(family: int, address: object, data: bytes) -> bytes:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        if family == socket.AF_UNIX:
            s.bind("")  # autobind: an abstract name to answer to
        s.sendto(data, address)
        return s.recv(4096)


def _unix_roundtrip(path: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(4096):
            out += chunk
        return out


@pytest.mark.parametrize("model", ["epoll", "prefork"])
def test_sigusr2_hands_over_datagrams_and_socket_files(model: str, tmp_path: Path) -> None:
    """udp and unixgram endpoints are inherited like stream listeners; the socket files
    stay while the old master drains (the new one owns them) and go with the last one."""
    udp, stream, gram = free_port(), tmp_path / "s.sock", tmp_path / "g.sock"
    addresses = [f"udp://127.0.0.1:{udp}", f"unix://{stream}", f"unixgram://{gram}"]
    argv = [sys.executable, "-m", "ipcnet", "serve", "echo", *addresses]
    argv += ["--model", model, "--workers", "2", "--grace", "5"]
    logfile = tmp_path / "log"
    with logfile.open("w") as err:
        old = subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL)
    new_pid = 0
    try:
        _log_says(logfile, "listening on")
        assert _datagram(socket.AF_INET, ("127.0.0.1", udp), b"u0") == b"u0"
        os.kill(old.pid, signal.SIGUSR2)
        assert old.wait(20) == 0
        new_pid = int(_log_says(logfile, r"new master pid (\d+) is serving").group(1))
        assert "address in use" not in logfile.read_text()  # inherited, never bound again
        assert stream.is_socket() and gram.is_socket()  # the old master left them
        assert _unix_roundtrip(stream, b"s1\n") == b"s1\n"
        assert _datagram(socket.AF_INET, ("127.0.0.1", udp), b"u1") == b"u1"
        assert _datagram(socket.AF_UNIX, str(gram), b"g1") == b"g1"
        os.kill(new_pid, signal.SIGTERM)
        _wait_for(lambda: not _alive(new_pid), "the new master stopped")
        assert not stream.exists() and not gram.exists()  # the last one out removed them
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()
        if new_pid and _alive(new_pid):
            os.kill(new_pid, signal.SIGKILL)


def test_sighup_replacements_count_in_rows_of_their_own(tmp_path: Path) -> None:
    """A replacement never shares its draining predecessor's counters row (two processes
    adding to one unlocked row lose counts); the totals keep what the old ones counted."""
    port, stats = free_port(), tmp_path / "stats.sock"
    extra = ("--stats", f"unix://{stats}")
    with serving("echo", f"tcp://127.0.0.1:{port}", model="prefork", extra=extra) as server:
        _wait_for(lambda: len(children(server.proc.pid)) == 2, "two workers")
        held = socket.create_connection(("127.0.0.1", port), timeout=15)
        held.sendall(b"held\n")
        assert held.recv(100) == b"held\n"  # in an old worker, busy across the SIGHUP
        for i in range(5):
            assert _roundtrip(port, b"%d\n" % i) == b"%d\n" % i
        old = set(children(server.proc.pid))
        server.proc.send_signal(signal.SIGHUP)

        def rows() -> list[dict[str, Any]]:
            return _stats(stats)["workers"]  # type: ignore[return-value]

        _wait_for(lambda: len({r["pid"] for r in rows()} - old) == 2, "two new rows")
        held.close()
        _wait_for(lambda: not ({r["pid"] for r in rows()} & old), "the old rows gone")
        for i in range(5):  # now only the new workers accept
            assert _roundtrip(port, b"n%d\n" % i) == b"n%d\n" % i
        _wait_for(lambda: _stats(stats)["handled"] == 11, "eleven connections handled")
        snap = _stats(stats)
        assert snap["accepted"] == 11 and snap["active"] == 0
        assert {r["pid"] for r in rows()} == set(children(server.proc.pid))
        assert sum(r["accepted"] for r in rows()) == 5  # the new ones' own
        # a second replacement takes the first rows again: their counts stay in the totals
        old = set(children(server.proc.pid))
        server.proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: len({r["pid"] for r in rows()} - old) == 2, "two newer rows")
        _wait_for(lambda: not ({r["pid"] for r in rows()} & old), "the older rows gone")
        assert _roundtrip(port, b"last\n") == b"last\n"
        _wait_for(lambda: _stats(stats)["handled"] == 12, "twelve connections handled")
        assert _stats(stats)["accepted"] == 12
        assert sum(r["accepted"] for r in rows()) == 1


@pytest.mark.parametrize("model", ["epoll", "prefork"])
def test_status_page_and_access_log_show_the_proxy_client(model: str, tmp_path: Path) -> None:
    """Behind --accept-proxy the status page's socket list names the client the PROXY
    header gave beside the balancer's end, and the access log starts with it."""
    (tmp_path / "index.html").write_text("hi\n")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(tmp_path), address]
    server = _start([*argv, "--accept-proxy", "--model", model, "--inner", "asyncio"], 1)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
            s.sendall(encode_v1(("203.0.113.7", 4242), ("127.0.0.1", port)))
            s.sendall(b"GET /_status.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            ours = f"127.0.0.1:{s.getsockname()[1]}"
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        rows = [r for r in json.loads(body)["sockets"] if r["remote"] == ours]
        assert [r["client"] for r in rows] == ["203.0.113.7:4242"]
    finally:
        assert server.stop() == 0
    assert any(line.startswith("203.0.113.7 - - [") for line in server.log), server.log


def test_health_stays_ok_while_the_old_master_drains_after_sigusr2(tmp_path: Path) -> None:
    """A balancer's check accepted by the old master just before the hand-over is answered
    200 ok: the address goes on serving, so nothing should route away from it."""
    port, stats = free_port(), tmp_path / "stats.sock"
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(tmp_path)]
    argv += [f"tcp://127.0.0.1:{port}", "--stats", f"unix://{stats}", "--grace", "20", "-q"]
    logfile = tmp_path / "log"
    with logfile.open("w") as err:
        old = subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL)
    new_pid = 0
    try:
        _log_says(logfile, "listening on")
        held = socket.create_connection(("127.0.0.1", port), timeout=15)
        _wait_for(lambda: _stat_is(stats, "accepted", 1), "the check's connection accepted")
        os.kill(old.pid, signal.SIGUSR2)
        new_pid = int(_log_says(logfile, r"new master pid (\d+) is serving").group(1))
        held.sendall(b"GET /_health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = held.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok\n"), answer
        held.close()
        assert old.wait(20) == 0
        # the --stats socket was handed over too (binding it again was "address in use")
        assert _stats(stats)["pid"] == new_pid
    finally:
        _stop_both(old, new_pid)


@pytest.mark.parametrize("usec", ["", "0", "abc", "²", "-5", "1e6"])
def test_a_watchdog_usec_that_is_not_a_positive_number_asks_for_no_pings(monkeypatch, usec):
    """sd_watchdog_enabled(3) parses an unsigned decimal; anything else is no watchdog
    ("²" passed str.isdigit and then crashed int())."""
    from ipcnet.transports.notify import watchdog_interval

    monkeypatch.setenv("WATCHDOG_USEC", usec)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    assert watchdog_interval() == 1.5
