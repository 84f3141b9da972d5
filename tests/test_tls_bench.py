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
    out = json.loads(done.stdout)  # the harness's one schema
    assert [(r["peer"], r["unit"]) for r in out["results"]] == [
        ("ipcnet tls://", "GiB/s"),
        ("ssl.SSLSocket", "GiB/s"),
    ]
    assert all(r["median"] > 0 for r in out["results"])
    assert len(out["cipher"]) == 1 and out["cipher"][0].startswith("TLSv1.3 ")  # same for both
