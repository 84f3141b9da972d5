"""`ipcnet sockets` end to end: formats, filters, --fds, --pipes, --stats, --watch."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys

from inspector_helpers import TcpConn, env, run_cli, tcp_conn
from ipcnet.inspector import SCHEMA


def _ends(c: TcpConn) -> set[tuple[int, int]]:
    """(local port, remote port) of the listener and both ends of ``c``. Other rows may
    share the port number (TIME_WAIT leftovers of an earlier server that had it), and a
    dump taken while other tests churn connections may miss a row."""
    return {(c.port, 0), (c.port, c.client_port), (c.client_port, c.port)}


def test_json_schema_and_table() -> None:
    with tcp_conn() as c:
        for _ in range(5):  # see _ends: read again if a dump under churn missed a row
            r = run_cli("-tanp", "--port", str(c.port), "--json")
            assert r.returncode == 0, r.stderr
            doc = json.loads(r.stdout)
            rows = [x for x in doc["sockets"] if (x["local_port"], x["remote_port"]) in _ends(c)]
            if len(rows) == 3:
                break
        assert doc["version"] == 1 and isinstance(doc["netns"], int)
        assert sorted(x["state"] for x in rows) == ["ESTABLISHED", "ESTABLISHED", "LISTEN"]
        assert all(list(x) == list(SCHEMA) for x in rows)
        mine = [x for x in rows if x["local_port"] == c.client_port]
        assert mine[0]["processes"][0]["pid"] == os.getpid()
        assert mine[0]["processes"][0]["fds"] == [c.client.fileno()]
        assert mine[0]["local_port_class"] in ("registered", "dynamic")

        t = run_cli("-tnp", "--port", str(c.port))
        lines = t.stdout.splitlines()
        assert lines[0].split()[:6] == ["Proto", "State", "Recv-Q", "Send-Q", "Local", "Peer"]
        assert len(lines) == 3  # header + the two ESTABLISHED ends (no -a: no LISTEN)
        assert f"127.0.0.1:{c.client_port}" in t.stdout and f"/{os.getpid()}/fd=" in t.stdout

        lst = run_cli("-tln", "--port", str(c.port), "-H").stdout.splitlines()
        assert len(lst) == 1 and lst[0].split()[:4] == ["tcp", "LISTEN", "0", "7"]


def test_jsonl_csv_and_state_filter() -> None:
    with tcp_conn() as c:
        r = run_cli("-t", "--state", "listen", "--port", str(c.port), "--jsonl")
        (line,) = r.stdout.splitlines()
        assert json.loads(line)["state"] == "LISTEN"
        ends = {(str(local), str(remote)) for local, remote in _ends(c)}  # CSV: all text
        for _ in range(5):  # see _ends: read again if a dump under churn missed a row
            c2 = run_cli("-ta", "--port", str(c.port), "--csv")
            rows = list(csv.DictReader(io.StringIO(c2.stdout)))
            mine = [r for r in rows if (r["local_port"], r["remote_port"]) in ends]
            if len(mine) == 3:
                break
        assert len(mine) == 3 and list(rows[0]) == list(SCHEMA)
        assert sorted(r["state"] for r in mine) == ["ESTABLISHED", "ESTABLISHED", "LISTEN"]
        bad = run_cli("--state", "nosuch")
        assert bad.returncode == 2 and "unknown state" in bad.stderr


def test_service_names_and_numeric() -> None:
    # a name from /etc/services for a port we can bind as root or not: use the remote side
    with tcp_conn() as c:
        r = run_cli("-ta", "--port", str(c.port), "--json")
        assert all(
            x["user"] is not None for x in json.loads(r.stdout)["sockets"] if x["uid"] is not None
        )
        n = run_cli("-tan", "--port", str(c.port), "--json")
        assert all(
            x["user"] is None and x["local_service"] is None
            for x in json.loads(n.stdout)["sockets"]
        )


def test_fds_view_and_pid_filter() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); "
            "r,w=__import__('os').pipe(); print(s.getsockname()[1], flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        r = run_cli("--pid", str(child.pid), "--fds")
        assert r.returncode == 0, r.stderr
        assert "socket:[" in r.stdout and f"LISTEN 127.0.0.1:{port}" in r.stdout
        assert "pipe:[" in r.stdout
        j = json.loads(run_cli("--pid", str(child.pid), "--fds", "--json").stdout)
        kinds = {f["kind"] for f in j["fds"]}
        assert {"socket", "pipe"} <= kinds
        p = json.loads(run_cli("--pid", str(child.pid), "-n", "--json").stdout)
        assert [(x["state"], x["local_port"]) for x in p["sockets"]] == [("LISTEN", port)]
        pn = json.loads(run_cli("--process", "python3-nosuch", "--json").stdout)
        assert pn["sockets"] == []
        gone = run_cli("--pid", "999999999", "--fds")
        assert gone.returncode == 1
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)


def test_pipes_show_both_ends() -> None:
    # a shell-style pipeline: writer | reader, two processes on one pipe
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=writer.stdout
    )
    try:
        r = run_cli("--pipes", "--json")
        pipes = json.loads(r.stdout)["pipes"]
        ours = [p for p in pipes if {e["pid"] for e in p["ends"]} >= {writer.pid, reader.pid}]
        assert ours, "the pipe between writer and reader"
        ends = {(e["pid"], e["mode"]) for e in ours[0]["ends"]}
        assert (writer.pid, "w") in ends and (reader.pid, "r") in ends
        t = run_cli("--pipes")
        assert f"/{writer.pid}/fd=1(w)" in t.stdout
    finally:
        assert writer.stdin is not None
        writer.stdin.close()
        writer.wait(timeout=10)
        reader.wait(timeout=10)


def test_stats() -> None:
    r = run_cli("--stats", "--json")
    stats = json.loads(r.stdout)["stats"]
    assert stats["Tcp"]["ActiveOpens"] >= 0 and "TcpExt" in stats
    t = run_cli("--stats")
    assert "Tcp:" in t.stdout and "ActiveOpens:" in t.stdout


def test_watch_marks_new_and_closed() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    w = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ipcnet",
            "sockets",
            "-tln",
            "--port",
            str(port),
            "--watch",
            "0.1",
            "--jsonl",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        assert w.stdout is not None
        probe.listen()
        events = []
        while len(events) < 2:
            events.append(json.loads(w.stdout.readline()))
            if len(events) == 1:
                probe.close()
        assert events[0]["event"] in ("new", "present") and events[0]["local_port"] == port
        assert events[1]["event"] == "closed"
    finally:
        probe.close()
        w.kill()
        w.wait(timeout=10)


def test_help_is_fast_to_import() -> None:
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ipcnet", "--help"],
        capture_output=True,
        text=True,
        env=env(),
        check=True,
    )
    assert "ipcnet.inspector" not in r.stderr


def test_watch_table_redraws_on_a_terminal_and_marks_changes() -> None:
    """On a tty each refresh clears the screen first (like watch(1)); rows that appeared
    are marked + and rows that went away -."""
    import pty

    clear = b"\x1b[H\x1b[2J"
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "ipcnet", "sockets", "-tln", "--port", str(port)]
    controller, terminal = pty.openpty()
    w = subprocess.Popen(
        [*argv, "--watch", "0.1"], stdout=terminal, stderr=subprocess.DEVNULL, env=env()
    )
    os.close(terminal)
    seen = b""

    def screen_where(text: str) -> str:
        """The first whole screen (one the next has followed) that contains ``text``."""
        nonlocal seen
        while True:
            for screen in seen.split(clear)[1:-1]:
                if text in screen.decode():
                    return screen.decode()
            chunk = os.read(controller, 4096)
            assert chunk, seen
            seen += chunk

    try:
        assert screen_where("--- ").startswith("--- ")  # each screen is drawn from the top
        probe.listen()
        screen_where("+1 new")
        probe.close()
        closed = screen_where("-1 closed")
        assert any(line.startswith("-") and f":{port}" in line for line in closed.splitlines())
    finally:
        probe.close()
        w.kill()
        w.wait(timeout=10)
        os.close(controller)
