"""The error contract (DESIGN.md): OSError is caught and translated only in transports/.

An AST scan of src/ipcnet: every ``except`` clause, ``contextlib.suppress(...)`` and
``isinstance(..., ...)`` that names OSError or one of its subclasses (builtin ones such as
ConnectionError, FileNotFoundError, BlockingIOError, TimeoutError; module ones such as
socket.gaierror, ssl.SSLError, asyncio.TimeoutError; and any class of ipcnet deriving from
them) fails the test outside ``transports/``, unless its file or function is on the
allow-list below with the reason it must stay. Everywhere else, I/O goes through a
transport (``transports.procfs`` for /proc files, ``transports.process`` for process
groups...) and the code sees ipcnet errors only.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
from pathlib import Path

from ipcnet import errors

SRC = Path(__file__).resolve().parent.parent / "src" / "ipcnet"

# Where an OSError clause truly must stay: "path" (a whole file) or "path::function" (the
# outermost function or class around the clause), path relative to src/ipcnet.
ALLOWED = {
    # the echo load client drives raw non-blocking sockets, the same client for every
    # server under test (ipcnet's own and the peers), so it must not depend on ipcnet's
    # transports; its errors are the socket module's
    "bench/echo.py::_run_multiplexed": "raw-socket load client (EAGAIN on send/recv)",
    "bench/echo.py::_worker": "raw-socket load client: a failed connection is reported",
    # the yardsticks: peer servers written with the standard library only, never ipcnet
    "bench/peers/socketservers.py": "stdlib peer echo servers",
    "bench/peers/asyncio_echo.py": "stdlib peer echo servers",
    "bench/peers/selectors_echo.py": "stdlib peer echo servers",
    "bench/rpc.py::server_mp": "multiprocessing.connection peer: its own exceptions",
    # asyncio.timeout() ends its scope with the builtin TimeoutError (an OSError subclass by
    # inheritance only): a call's own deadline, told from the stream's Timeout by the scope
    "rpc/aio.py::AsyncClient": "asyncio.timeout's expiry (TimeoutError), not an OS error",
    # print() to a stdout whose reader left (``ipcnet sockets | head``): sys.stdout is
    # Python's text stream, not a channel; the CLI's last resort, like every Python tool
    "cli/__init__.py::main": "BrokenPipeError from sys.stdout",
    # kill(2)/waitpid(2) of the server's own children (fork models, prefork): no transport
    # opens a process that was forked; translated once there (a gone child is an answer)
}

_MODULES = ("socket", "select", "ssl", "asyncio", "os", "subprocess", "shutil", "errno")


def _os_error_names(trees: list[ast.Module]) -> set[str]:
    """Builtin OSError subclasses and the classes of ``trees`` deriving from one, by name."""
    names = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, OSError)}
    classes: dict[str, list[str]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, []).extend(_names(node.bases))
    # ipcnet's own errors are what code should catch, even those that are also builtins'
    # subclasses for interoperability (Timeout is a TimeoutError)
    ours = {
        n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, errors.IPCError)
    }
    grew = True
    while grew:
        grew = False
        for name, bases in classes.items():
            if name not in names and name not in ours and any(b in names for b in bases):
                names.add(name)
                grew = True
    return names


def _names(nodes: list[ast.expr]) -> list[str]:
    out = []
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name):
                out.append(sub.id)
            elif isinstance(sub, ast.Attribute):
                out.append(sub.attr)
    return out


def _module_os_error(node: ast.expr) -> bool:
    """socket.gaierror, ssl.SSLError, asyncio.TimeoutError, select.error...: OSError kinds."""
    for sub in ast.walk(node):
        if (
            isinstance(sub, ast.Attribute)
            and isinstance(sub.value, ast.Name)
            and sub.value.id in _MODULES
        ):
            value = getattr(importlib.import_module(sub.value.id), sub.attr, None)
            if isinstance(value, type) and issubclass(value, OSError):
                return True
    return False


def _caught(tree: ast.AST) -> list[tuple[int, ast.expr]]:
    """(line, the expression naming what is caught or tested) for each site in a module."""
    sites: list[tuple[int, ast.expr]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            sites.append((node.lineno, node.type))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name == "suppress":
                sites += [(node.lineno, arg) for arg in node.args]
            elif name == "isinstance" and len(node.args) == 2:
                sites.append((node.lineno, node.args[1]))
    return sites


def _outermost(tree: ast.Module) -> dict[int, str]:
    """Line -> the top-level function or class that contains it."""
    where: dict[int, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                where[line] = node.name
    return where


@functools.cache
def _offenders() -> list[tuple[str, str, int]]:
    """(path, outermost function, line) of every site that handles an OSError kind."""
    trees = {
        p.relative_to(SRC).as_posix(): ast.parse(p.read_text(), str(p)) for p in SRC.rglob("*.py")
    }
    os_errors = _os_error_names(list(trees.values()))
    found = []
    for relative, tree in sorted(trees.items()):
        if relative.startswith("transports/"):
            continue
        outer = _outermost(tree)
        for line, expr in _caught(tree):
            if set(_names([expr])) & os_errors or _module_os_error(expr):
                found.append((relative, outer.get(line, "<module>"), line))
    return found


def test_os_error_is_handled_only_in_transports() -> None:
    bad = [
        f"{path}:{line} (in {func}) handles an OSError kind outside transports/"
        for path, func, line in _offenders()
        if path not in ALLOWED and f"{path}::{func}" not in ALLOWED
    ]
    assert not bad, "\n".join(bad)


def test_the_allow_list_has_no_stale_entries() -> None:
    used = {path for path, _, _ in _offenders()} | {f"{p}::{f}" for p, f, _ in _offenders()}
    stale = sorted(set(ALLOWED) - used)
    assert not stale, f"allow-list entries with nothing left to allow: {stale}"


def test_the_scan_sees_every_kind_of_site() -> None:
    """The scanner itself: each spelling of an OSError kind is found, others are not."""
    source = """
import contextlib, socket
class Gone(FileNotFoundError): ...
def f():
    try: pass
    except OSError: pass
    try: pass
    except (ValueError, ConnectionResetError): pass
    try: pass
    except socket.gaierror: pass
    try: pass
    except Gone: pass
    with contextlib.suppress(BlockingIOError): pass
    isinstance(e, PermissionError)
    try: pass
    except (ValueError, KeyError): pass
    isinstance(e, int)
"""
    tree = ast.parse(source)
    os_errors = _os_error_names([tree])
    hits = sorted(
        line
        for line, expr in _caught(tree)
        if set(_names([expr])) & os_errors or _module_os_error(expr)
    )
    assert hits == [6, 8, 10, 12, 13, 14]
