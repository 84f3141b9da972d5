"""The status page: ``/_status`` (self-refreshing HTML), ``/_status.json``, ``/_health``
and ``/_metrics`` (Prometheus text).

Role: the StatusSource of protocols/http/resources.py. It joins the server core's counters
(connections, bytes, uptime, model; through ``attach``), our request counters (by status
class, requests/s over the last 10 s) and this process's own sockets from the inspector
(states and queues). Rules: rendering reads /proc and netlink, so it runs in Run jobs;
an inspector failure degrades to an empty socket list with the reason, never a 500.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable
from typing import Any

from ipcnet.httpd.metrics import Metrics
from ipcnet.protocols.http.resources import Page

MAX_SOCKETS = 100
WORKER_FIELDS = ("pid", "state", "accepted", "active", "handled", "bytes_out", "errors")


def _endpoint(host: str | None, port: int | None, path: str | None) -> str:
    if path is not None:
        return path
    if host is None:
        return "*"
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port is not None else shown


def own_sockets() -> tuple[list[dict[str, Any]], str | None]:
    """This process's sockets as the kernel reports them, or ([], why not)."""
    try:
        from ipcnet.inspector import sockets_of_pid

        rows = sockets_of_pid(os.getpid(), owners=False)
    except Exception as exc:  # the inspector is optional for the page
        return [], f"{type(exc).__name__}: {exc}"
    out = []
    for row in rows[:MAX_SOCKETS]:
        out.append(
            {
                "proto": row.proto,
                "state": row.state,
                "local": _endpoint(row.local_host, row.local_port, row.path),
                "remote": _endpoint(row.remote_host, row.remote_port, row.peer_path),
                "recv_q": row.recv_q,
                "send_q": row.send_q,
            }
        )
    return out, None


class StatusPage:
    def __init__(
        self, metrics: Metrics, *, model: str = "", workers: int = 0, sockets: bool = True
    ) -> None:
        self.metrics = metrics
        self.model = model
        self.workers = workers
        self.sockets = sockets
        self._stats: Callable[[], dict[str, Any]] | None = None

    def attach(self, stats: Callable[[], dict[str, Any]]) -> None:
        self._stats = stats

    def snapshot(self) -> dict[str, Any]:
        core = self._stats() if self._stats is not None else {}
        requests = self.metrics.snapshot()
        rows = core.get("workers") or []
        info: dict[str, Any] = {
            "server": "ipcnet http",
            "pid": os.getpid(),
            "uptime": core.get("uptime", 0.0),
            "model": core.get("model", self.model),
            "workers": self.workers or max(1, len(rows)),
            "addresses": core.get("addresses", []),
            "connections": {
                "now": core.get("active", 0),
                "total": core.get("accepted", 0),
                "refused": core.get("refused", 0),
            },
            "requests": {
                "total": requests["requests"],
                "by_class": requests["by_class"],
                "per_second_10s": requests["requests_per_second_10s"],
            },
            "bytes_out": core.get("bytes_out", 0),
            "bytes_in": core.get("bytes_in", 0),
            "errors": core.get("errors", 0),
            "per_worker": [
                {name: row.get(name, 0) for name in WORKER_FIELDS} for row in rows if row.get("pid")
            ],
        }
        if "tls" in core:  # served over TLS: handshakes, failures, versions, ciphers
            info["tls"] = core["tls"]
        if self.sockets:
            socks, why = own_sockets()
            proxied = core.get("proxied") or {}  # --accept-proxy: who is behind each one
            for sock in socks:
                sock["client"] = proxied.get(sock["remote"], sock["remote"])
            info["sockets"] = socks
            if why:
                info["sockets_error"] = why
        return info

    def json(self) -> bytes:
        return json.dumps(self.snapshot(), indent=1).encode() + b"\n"

    def html(self) -> bytes:
        return render_html(self.snapshot()).encode()

    def health(self) -> Page:
        """/_health, for load balancers' checks: 200 "ok" while serving, 503 "draining"
        during --drain-delay (we still serve: a balancer routes away before we refuse
        anything), 503 "stopping" once a graceful stop began."""
        core = self._stats() if self._stats is not None else {}
        health = str(core.get("health", "ok"))
        status = 200 if health == "ok" else 503
        return Page(f"{health}\n".encode(), "text/plain; charset=utf-8", status)

    def prometheus(self) -> bytes:
        """/_metrics: the server's and the requests' counters as Prometheus text."""
        from ipcnet.drivers.prometheus import server_text

        core = self._stats() if self._stats is not None else {"service": "http"}
        return (server_text(core) + self.metrics.prometheus()).encode()


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _tls_html(tls: dict[str, Any] | None) -> str:
    """The TLS part of the page (empty when the server speaks no TLS)."""
    if not tls:
        return ""
    e = html.escape

    def rows(counts: dict[str, int]) -> str:
        return "".join(f"<tr><th>{e(k)}</th><td class=n>{v}</td></tr>" for k, v in counts.items())

    return (
        f"<h2>TLS handshakes</h2><p>completed <b id=tls-ok>{tls['handshakes']}</b>, failed "
        f"<b id=tls-failed>{tls['failed']}</b>, certificate reloads {tls['reloads']}</p>"
        f"<table id=tls>{rows(tls['versions'])}{rows(tls['ciphers'])}"
        f"{rows({'failed: ' + k: v for k, v in tls['failures'].items()})}</table>\n"
    )


def render_html(info: dict[str, Any]) -> str:
    e = html.escape
    conns = info["connections"]
    reqs = info["requests"]
    classes = "".join(
        f"<tr><th>{e(k)}</th><td id=c{e(k)}>{v}</td></tr>" for k, v in reqs["by_class"].items()
    )
    sockets = info.get("sockets", [])
    sock_rows = "".join(
        f"<tr><td>{e(s['proto'])}</td><td>{e(s['state'])}</td><td>{e(s['local'])}</td>"
        f"<td>{e(s['remote'])}</td><td>{e(s['client'])}</td>"
        f"<td class=n>{s['recv_q'] if s['recv_q'] is not None else ''}"
        f"</td><td class=n>{s['send_q'] if s['send_q'] is not None else ''}</td></tr>"
        for s in sockets
    )
    note = f"<p class=note>{e(info['sockets_error'])}</p>" if info.get("sockets_error") else ""
    worker_rows = "".join(
        "<tr>"
        + "".join(
            f"<td{'' if k == 'state' else ' class=n'}>"
            f"{_human(w[k]) if k == 'bytes_out' else e(str(w[k]))}</td>"
            for k in WORKER_FIELDS
        )
        + "</tr>"
        for w in info["per_worker"]
    )
    worker_head = "".join(f"<th>{k.replace('_', ' ')}</th>" for k in WORKER_FIELDS)
    return f"""<!doctype html>
<html lang=en><meta charset=utf-8>
<meta http-equiv=refresh content=2>
<meta name=viewport content="width=device-width,initial-scale=1">
<title>ipcnet status</title>
<style>
body{{font:15px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}}
h1{{font-size:1.4em;margin:0 0 .6em}} h2{{font-size:1.1em;margin:1.2em 0 .4em}}
.grid{{display:flex;flex-wrap:wrap;gap:1em}}
.card{{background:#fff;border:1px solid #ddd;border-radius:8px;padding:.8em 1.1em;min-width:11em}}
.card b{{display:block;font-size:1.6em}} table{{border-collapse:collapse;background:#fff}}
td,th{{border:1px solid #e3e3e3;padding:.25em .6em;text-align:left}} .n{{text-align:right}}
.note{{color:#a40}}
</style>
<h1>ipcnet http &mdash; status</h1>
<p>served by pid {info["pid"]}, model <b id=model>{e(str(info["model"]))}</b>,
workers {info["workers"]}, up {info["uptime"]:.0f} s, on {e(", ".join(info["addresses"]))}</p>
<div class=grid>
<div class=card>connections now<b id=now>{conns["now"]}</b></div>
<div class=card>connections total<b id=total>{conns["total"]}</b></div>
<div class=card>refused<b id=refused>{conns["refused"]}</b></div>
<div class=card>requests<b id=requests>{reqs["total"]}</b></div>
<div class=card>requests/s (10 s)<b id=rate>{reqs["per_second_10s"]}</b></div>
<div class=card>bytes out<b id=bytes>{_human(info["bytes_out"])}</b></div>
</div>
<h2>Responses by status class</h2>
<table>{classes}</table>
{_tls_html(info.get("tls"))}<h2>Workers</h2>
<table id=workers><tr>{worker_head}</tr>{worker_rows}</table>
<h2>This server's sockets</h2>
<table><tr><th>proto</th><th>state</th><th>local</th><th>remote</th><th>client</th><th>recv-q</th>
<th>send-q</th></tr>{sock_rows}</table>{note}
<p><a href="/_status.json">/_status.json</a> &middot; refreshes every 2 s</p>
</html>
"""
