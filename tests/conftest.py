"""Shared fixtures: every test runs with real sockets, pipes and processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IPCNET = [sys.executable, "-m", "ipcnet"]


@pytest.fixture
def short_tmp():
    """A temporary directory with a short path (unix socket paths are limited to 107 bytes)."""
    import tempfile

    path = tempfile.mkdtemp(prefix="ipcnet-t-", dir="/tmp")
    yield Path(path)
    for child in Path(path).iterdir():
        child.unlink()
    os.rmdir(path)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup`` an xdist_group must really keep its tests on one worker
    (a module fixture built once, tests that share one namespace): pytest-xdist marks them
    by renaming each node id to ``...@group``, which pytest 9.2 silently ignored."""
    if not config.getoption("loadgroup", False):
        return
    lost = [i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if lost:
        print(
            f"xdist_group has no effect (pytest, xdist versions?): {lost[0]}", file=sys.__stderr__
        )
        pytest.exit("xdist_group has no effect", 4)
