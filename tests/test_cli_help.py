"""Quick commands start fast: `ipcnet --help` prints every subcommand's line without building
any subcommand, and `ipcnet sockets` loads no module it does not use."""

from __future__ import annotations

import subprocess
import sys

import pytest

from inspector_helpers import env
from ipcnet.cli import SUBCOMMANDS

# runs `ipcnet ARGS` in this interpreter and prints, as it exits, every module it loaded
RUN = """
import atexit, runpy, sys
atexit.register(lambda: print("\\nloaded:", *sorted(sys.modules), file=sys.stderr))
sys.argv = ["ipcnet", *sys.argv[1:]]
runpy.run_module("ipcnet", run_name="__main__", alter_sys=True)
"""


def _ipcnet(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    argv = [sys.executable, "-c", RUN, *args]
    r = subprocess.run(argv, capture_output=True, text=True, env=env(), timeout=60)
    err, _, loaded = r.stderr.rpartition("\nloaded: ")
    r.stderr = err
    return r, set(loaded.split())


def test_top_level_help_lists_every_subcommand_and_loads_none_of_their_options() -> None:
    r, loaded = _ipcnet("--help")
    assert r.returncode == 0, r.stderr
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.startswith("    ")}
    assert set(SUBCOMMANDS) <= listed
    assert "ipcnet.cli.serve" in loaded  # each line comes from its module
    assert not loaded & {"ipcnet.drivers", "ipcnet.protocols", "ipcnet.bench.harness"}


def test_a_quick_listing_loads_no_heavy_module() -> None:
    """Not the address grammar (dataclasses, inspect), the drivers, asyncio or ssl, which
    cost tens of milliseconds to import."""
    r, loaded = _ipcnet("sockets", "-tan")
    assert r.returncode == 0, r.stderr
    assert "ipcnet.inspector" in loaded
    heavy = {"ipcnet.addresses", "ipcnet.drivers", "dataclasses", "inspect", "asyncio", "ssl"}
    assert not loaded & heavy


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_still_has_its_options(name: str) -> None:
    r, _ = _ipcnet(name, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: ipcnet {name} ") and "options:" in r.stdout


def test_no_or_an_unknown_subcommand_is_an_error() -> None:
    assert "required: COMMAND" in _ipcnet()[0].stderr
    r, _ = _ipcnet("bogus")
    assert r.returncode == 2 and "invalid choice: 'bogus'" in r.stderr
