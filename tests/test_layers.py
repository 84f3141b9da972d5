"""DESIGN.md's layers: imports point downward only, and protocols do no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "ipcnet"

LAYERS = {
    "errors": 0,
    "addresses": 0,
    "transports": 1,
    "channel": 2,
    "framing": 2,
    "protocols": 3,
    "drivers": 4,
    "httpd": 5,
    "rpc": 5,
    "inspector": 5,
    "relay": 5,
    "bench": 5,
    "tour": 5,
    "testing": 5,
    "xdp": 5,
    "cli": 6,
    "__main__": 6,
}
IO_MODULES = {"socket", "select", "selectors", "threading", "asyncio", "os", "subprocess", "mmap"}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "ipcnet":
        return None
    if len(parts) == 1:
        return -1  # the package itself: lazy re-exports only
    return LAYERS.get(parts[1])


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


FILES = sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_downward(path: Path) -> None:
    relative = path.relative_to(SRC).with_suffix("")
    own = LAYERS.get(relative.parts[0])
    assert own is not None, f"{relative} belongs to no layer in DESIGN.md"
    for module, line in _imports(path):
        target = _layer(module)
        if target is None or target == -1:
            continue
        assert target <= own, (
            f"{relative}:{line} imports {module} (layer {target}) from layer {own}"
        )


@pytest.mark.parametrize("path", sorted((SRC / "protocols").rglob("*.py")), ids=lambda p: p.name)
def test_protocols_do_no_io(path: Path) -> None:
    for module, line in _imports(path):
        assert module.split(".")[0] not in IO_MODULES, f"{path.name}:{line} imports {module}"
        assert not module.startswith("ipcnet.transports"), f"{path.name}:{line} imports {module}"
