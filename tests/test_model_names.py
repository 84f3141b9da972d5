"""Nothing outside drivers/ tests a model's name: it asks the registry for traits."""

from __future__ import annotations

import ast
from pathlib import Path

from ipcnet.drivers import MODELS

SRC = Path(__file__).resolve().parent.parent / "src" / "ipcnet"


def _named(node: ast.expr) -> set[str]:
    """Model names among the string constants of an expression (a tuple, a list...)."""
    return {
        n.value
        for n in ast.walk(node)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in MODELS
    }


def test_no_comparison_with_a_model_name_outside_drivers() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith("drivers/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            if isinstance(node, ast.Compare):
                names = set().union(*(_named(c) for c in [node.left, *node.comparators]))
                if names:
                    found.append(f"{relative}:{node.lineno} compares with {sorted(names)}")
    assert not found, "\n".join(found)


def test_every_model_has_a_class_and_help() -> None:
    from ipcnet.drivers import model_class

    for name, row in MODELS.items():
        assert row.help and model_class(name).serve
