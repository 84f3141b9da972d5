"""``ipcnet bench tls`` runs end to end on a small size (its figures are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_tls_small_run():
    done = subprocess.run(
        [sys.executable, "-m", "ipcnet", "bench", "tls", "--size", str(1 << 20), "--rounds", "1",
         "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert row["ipcnet_gib_s"] > 0 and row["sslsocket_gib_s"] > 0
    assert len(row["cipher"]) == 1 and row["cipher"][0].startswith("TLSv1.3 ")  # same for both
