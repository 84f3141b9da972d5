"""``ipcnet bench http``: static files with wrk, ipcnet beside nginx, http.server, uvicorn.

Role: wrk -t1 -c50 against each server on the same 1 KiB, 100 KiB and 10 MiB files, with
keep-alive and ``Connection: close`` (``--tls``: HTTPS, one certificate, TLS 1.3). Rules:
server and wrk on different CPUs; a missing peer is reported, not faked.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ipcnet.bench.harness import (
    Result,
    Server,
    emit,
    free_port,
    listof,
    parser,
    positive,
    progress,
    taskset,
)

FILES = {"1k.bin": 1024, "100k.bin": 100 * 1024, "10m.bin": 10 * 1024 * 1024}
SERVERS = ("ipcnet", "nginx", "http.server", "uvicorn")
GOALS = {  # (peer, file): the least ratio ours / peer the issue asks for (a note on its row)
    ("nginx", "1k.bin"): 0.6,
    ("nginx", "10m.bin"): 0.9,
    ("http.server", "*"): 10.0,
    ("uvicorn", "*"): 1.5,
}
# --tls (issue 11): HTTPS, the same certificate, TLS 1.3, no session tickets on either side;
# "close" is one new connection, so one handshake, per request
TLS_GOALS = {("nginx", "1k.bin", "keep-alive"): 0.7, ("nginx", "1k.bin", "close"): 0.8}


def _nginx_conf(tmp: Path, root: Path, port: int, tls: bool = False) -> Path:
    listen = f"127.0.0.1:{port}"
    if tls:  # as ipcnet: TLS 1.3 only here, no tickets, no session cache
        listen += (
            f" ssl; ssl_certificate {tmp}/server.pem; ssl_certificate_key {tmp}/server-key.pem;"
            " ssl_protocols TLSv1.3; ssl_session_tickets off; ssl_session_cache off"
        )
    temp = " ".join(f"{k}_temp_path {tmp}/nginx-{k};" for k in ("client_body", "proxy", "fastcgi"))
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx-error.log;\n"
        "events { worker_connections 1024; }\n"
        "http { access_log off; sendfile on; tcp_nopush on; tcp_nodelay on;\n"
        "  keepalive_requests 1000000; default_type application/octet-stream;\n"
        f"  {temp} uwsgi_temp_path {tmp}/nginx-uwsgi; scgi_temp_path {tmp}/nginx-scgi;\n"
        f"  server {{ listen {listen}; root {root}; }} }}\n"
    )
    return conf


def _command(name: str, tmp: Path, root: Path, port: int, model: str, tls: bool) -> list[str] | str:
    """The argv that starts ``name`` on ``port``, or why it cannot run here."""
    py, cert, key = sys.executable, f"{tmp}/server.pem", f"{tmp}/server-key.pem"
    if name == "ipcnet":
        address = f"{'tls' if tls else 'tcp'}://127.0.0.1:{port}"
        argv = [py, "-m", "ipcnet", "serve", "http", str(root), address, "--model", model, "-q"]
        return argv + (["--cert", cert, "--key", key, "--tls-min", "1.3"] if tls else [])
    if name == "nginx":
        nginx = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
        if nginx is None:
            return "nginx is not installed (scripts/system-deps nginx)"
        return [nginx, "-c", str(_nginx_conf(tmp, root, port, tls)), "-p", str(tmp)]
    if name == "http.server":
        if tls:
            return "http.server has no TLS"
        return [py, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)]
    try:
        import httptools  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
        import uvloop  # noqa: F401
    except ImportError as exc:
        return f"uvicorn peer needs uvicorn, starlette, httptools, uvloop ({exc.name} missing)"
    app = f"from starlette.staticfiles import StaticFiles as S\napp = S(directory={str(root)!r})\n"
    (tmp / "bench_static_app.py").write_text(app)
    argv = [py, "-m", "uvicorn", "bench_static_app:app", "--app-dir", str(tmp), "--port", str(port)]
    argv += ["--host", "127.0.0.1", "--http", "httptools", "--loop", "uvloop", "--no-access-log"]
    argv += ["--log-level", "warning"]
    return argv + (["--ssl-certfile", cert, "--ssl-keyfile", key] if tls else [])


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_XFER = re.compile(r"Transfer/sec:\s+([\d.]+)([KMG]?B)")
_UNIT = {"B": 1e-6, "KB": 1e-3, "MB": 1.0, "GB": 1e3}


def _wrk(url: str, close: bool, seconds: float, cpu: int | None) -> tuple[float, float, str]:
    """(requests/s, MB/s, wrk's error lines); (nan, nan, why) if wrk reported nothing."""
    argv = [*taskset(cpu), "wrk", "-t1", "-c50", f"-d{seconds:g}s", "--timeout", "10s", url]
    if close:
        argv[-1:-1] = ["-H", "Connection: close"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    out, rps, xfer = done.stdout, _RPS.search(done.stdout), _XFER.search(done.stdout)
    notes = [line.strip() for line in out.splitlines() if "errors" in line or "Non-2xx" in line]
    if rps is None or xfer is None:
        return math.nan, math.nan, (done.stderr or out).strip()[-300:] or f"wrk: {done.returncode}"
    return float(rps.group(1)), float(xfer.group(1)) * _UNIT[xfer.group(2)], "; ".join(notes)


def _check(port: int, name: str, size: int, tls: Path | None = None) -> None:
    import ssl

    url = f"{'https://localhost' if tls else 'http://127.0.0.1'}:{port}/{name}"
    context = ssl.create_default_context(cafile=tls) if tls else None
    with urllib.request.urlopen(url, timeout=30, context=context) as r:
        body = r.read()
    if len(body) != size:
        raise RuntimeError(f"/{name}: {len(body)} bytes, expected {size}")


def run_bench(a: argparse.Namespace, servers: list[str]) -> list[Result]:
    """Every server, file and connection mode, ``runs`` wrk runs each: requests/s."""
    if shutil.which("wrk") is None:
        raise SystemExit("ipcnet bench http: wrk is not installed (scripts/system-deps wrk)")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="ipcnet-bench-http-") as tmp_name:
        tmp, root = Path(tmp_name), Path(tmp_name) / "www"
        tmp.chmod(0o755)  # nginx's worker runs as another user: it must read the files
        root.mkdir(mode=0o755)
        for name, size in FILES.items():
            (root / name).write_bytes(os.urandom(size))
            (root / name).chmod(0o644)
        if a.tls:
            from ipcnet.transports.tls.devcert import make

            make(str(tmp))  # one certificate for every server
            (tmp / "server-key.pem").chmod(0o644)  # nginx reads it as its own user
        with progress(len(servers) * len(FILES) * 2 * a.runs, "http") as step:
            for server in servers:
                results += _serve(a, server, tmp, step)
    return results


def _serve(
    a: argparse.Namespace, server: str, tmp: Path, step: Callable[[str], None]
) -> list[Result]:
    """Start ``server``, check its files, run wrk on every cell, stop it."""
    port = free_port()
    argv = _command(server, tmp, tmp / "www", port, a.model, a.tls)
    label = f"ipcnet ({a.model})" if server == "ipcnet" else server
    cells = [Result(f"{f} {m}", label, "req/s") for f in FILES for m in ("keep-alive", "close")]
    if isinstance(argv, str):
        for cell in cells:
            cell.note = f"not run: {argv}"
        return cells
    with Server(argv, str(tmp / f"{server}.log"), port=port, cpu=0):
        for name, size in FILES.items():
            _check(port, name, size, tmp / "ca.pem" if a.tls else None)
        for cell in cells:
            name, mode = cell.case.split()
            goal = TLS_GOALS.get((server, name, mode)) if a.tls else GOALS.get((server, name))
            goal = goal or (None if a.tls else GOALS.get((server, "*")))
            cell.note = f"goal {goal:g}x" if goal else ""
            for i in range(a.runs):
                step(f"{label} {cell.case} run {i + 1}/{a.runs}")
                url = f"{'https' if a.tls else 'http'}://127.0.0.1:{port}/{name}"
                rps, mbps, note = _wrk(url, mode == "close", a.duration, 1)
                cell.extra.setdefault("wrk_errors", []).extend([note] if note else [])
                if math.isnan(rps):  # a failed run is no sample (a 0 would pull the median)
                    continue
                cell.samples.append(rps)
                cell.extra.setdefault("mb_s", []).append(mbps)
    return cells


def main(argv: list[str] | None = None) -> int:
    p = parser("http")
    p.add_argument(
        "--servers", type=listof(str, SERVERS), default=",".join(SERVERS), help="which ones (all)"
    )
    from ipcnet.drivers import MODELS, default_for  # the model registry names the models

    model = default_for("serve")  # what `ipcnet serve http` runs without --model
    p.add_argument("--model", default=model, choices=list(MODELS), help=f"ours ({model})")
    p.add_argument("--runs", type=positive(int), default=3, help="wrk runs per cell (3)")
    p.add_argument("--duration", type=positive(int), default=5, metavar="S", help="wrk -d (5)")
    p.add_argument("--tls", action="store_true", help="HTTPS: the same certificate, TLS 1.3")
    args = p.parse_args(argv)
    results = run_bench(args, args.servers)
    results.sort(key=lambda r: (list(FILES).index(r.case.split()[0]), r.case.endswith("close")))
    emit(args, results, f"http{'s' if args.tls else ''}: requests/s (wrk -t1 -c50)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
