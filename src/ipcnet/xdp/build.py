"""Compile the shipped XDP program with clang, once, into a per-user cache.

Role: ``compiled()`` returns the path of ``filter.bpf.o`` built from the package's
``filter.bpf.c``; the file name carries a digest of the source, the flags and the
compiler, so an upgrade rebuilds and an unchanged setup reuses the object. Rules: a missing
compiler or missing headers is an ``Unsupported`` error naming the Debian packages; the
cache ($XDG_CACHE_HOME/ipcnet/xdp, else ~/.cache/ipcnet/xdp) is written atomically
(compile to a temporary name, then rename), so two first uses at once do not clash.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

from ipcnet.errors import Unsupported

SOURCE = Path(__file__).with_name("filter.bpf.c")
DEBIAN = "apt-get install clang libbpf-dev linux-libc-dev"


def include_dirs() -> list[str]:
    """Where the kernel's uapi headers live: Debian keeps asm/ under the multiarch dir,
    which clang does not search for ``-target bpf``."""
    machine = platform.machine()
    multiarch = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(machine)
    return [f"/usr/include/{multiarch or machine + '-linux-gnu'}"]


def _check_headers(dirs: list[str]) -> None:
    search = [*dirs, "/usr/include", "/usr/local/include"]
    for header, package in (("bpf/bpf_helpers.h", "libbpf-dev"), ("asm/types.h", "linux-libc-dev")):
        if not any(Path(d, header).exists() for d in search):
            raise Unsupported(
                f"cannot build the xdp program: header {header} not found "
                f"(debian package {package}: {DEBIAN})"
            )


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ipcnet" / "xdp"


def compiled(source: Path = SOURCE) -> Path:
    """The object file for ``source``, compiling it on first use (OSError if the cache
    cannot be written; Unsupported if clang or the headers are missing or it fails)."""
    clang = shutil.which("clang")
    if clang is None:
        raise Unsupported(f"cannot build the xdp program: clang is not installed ({DEBIAN})")
    dirs = include_dirs()
    _check_headers(dirs)
    flags = ["-O2", "-target", "bpf", "-Wall", *(f"-I{d}" for d in dirs)]
    real = os.path.realpath(clang)
    digest = hashlib.sha256(source.read_bytes())
    digest.update(repr((flags, real, os.stat(real).st_mtime_ns)).encode())
    stem = source.name.removesuffix(".c")
    target = cache_dir() / f"{stem}-{digest.hexdigest()[:16]}.o"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    done = subprocess.run(
        [clang, *flags, "-c", str(source), "-o", str(tmp)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        lines = done.stderr.strip().splitlines()[-12:]
        raise Unsupported(f"clang could not compile {source}:\n" + "\n".join(lines))
    os.replace(tmp, target)
    for stale in target.parent.glob(f"{stem}-*.o"):  # built from an older source or compiler
        if stale != target:
            stale.unlink(missing_ok=True)
    return target
