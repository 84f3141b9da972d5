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
