"""A server's counters as Prometheus text exposition (format 0.0.4).

Role: turn a stats snapshot (``ServerCore.stats``) into the text a Prometheus scraper
reads, for the --metrics listener and the web server's /_metrics. Rules (Prometheus's
naming conventions): every family has ``# HELP`` and ``# TYPE`` lines; counters end in
``_total``; units are base units in the name (``_bytes``, ``_seconds``); a histogram has
cumulative ``_bucket{le="..."}`` lines ending in ``le="+Inf"``, then ``_sum`` and
``_count``; label values are escaped (backslash, quote, newline), HELP texts too
(backslash, newline: a raw newline would end the line and cut the family in two).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ipcnet.drivers.counters import DURATION_BUCKETS

PREFIX = "ipcnet_"

#: snapshot field -> (metric name, type, help)
SERVER_FAMILIES = (
    ("accepted", "connections_accepted_total", "counter", "Connections accepted."),
    ("handled", "connections_handled_total", "counter", "Connections served to their end."),
    ("active", "connections_active", "gauge", "Connections open now."),
    ("refused", "connections_refused_total", "counter", "Connections refused (over a limit)."),
    ("bytes_in", "received_bytes_total", "counter", "Bytes received from clients."),
    ("bytes_out", "sent_bytes_total", "counter", "Bytes sent to clients."),
    ("errors", "errors_total", "counter", "Failures: service errors, accept errors."),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(value) if isinstance(value, float) else str(value)


def family(
    name: str, kind: str, help: str, samples: Iterable[tuple[Mapping[str, str], float]]
) -> str:
    """One metric family: HELP, TYPE, then one line per (labels, value)."""
    full = PREFIX + name
    lines = [f"# HELP {full} {_help(help)}", f"# TYPE {full} {kind}"]
    lines += [f"{full}{_labels(labels)} {_number(value)}" for labels, value in samples]
    return "\n".join(lines) + "\n"


def histogram(
    name: str,
    help: str,
    bounds: Sequence[float],
    counts: Sequence[int],
    total: float,
    labels: Mapping[str, str] | None = None,
) -> str:
    """A histogram family; ``counts[i]`` observations fell at or below ``bounds[i]``
    (not cumulative; the last count is above every bound); ``labels`` on every line."""
    full = PREFIX + name
    lines = [f"# HELP {full} {_help(help)}", f"# TYPE {full} histogram"]
    running = 0
    for bound, count in zip([*bounds, float("inf")], counts, strict=True):
        running += count
        le = {**(labels or {}), "le": _number(float(bound))}
        lines.append(f"{full}_bucket{_labels(le)} {running}")
    plain = _labels(labels or {})
    lines += [f"{full}_sum{plain} {_number(float(total))}", f"{full}_count{plain} {running}"]
    return "\n".join(lines) + "\n"


def server_text(snapshot: Mapping[str, Any]) -> str:
    """The server core's families (every service under every model)."""
    base = {"service": str(snapshot.get("service", "")), "model": str(snapshot.get("model", ""))}
    out = [
        family(name, kind, help, [(base, int(snapshot.get(field, 0)))])
        for field, name, kind, help in SERVER_FAMILIES
    ]
    out.append(
        family(
            "up",
            "gauge",
            "1 while serving, 0 once draining or stopping (the health answer).",
            [(base, 1 if snapshot.get("health", "ok") == "ok" else 0)],
        )
    )
    durations = snapshot.get("connection_seconds")
    if durations:
        out.append(
            histogram(
                "connection_duration_seconds",
                "Seconds from accept to close, per connection.",
                DURATION_BUCKETS,
                durations["buckets"],
                durations["sum"],
                base,  # the labels of every other server family
            )
        )
    out.append(
        family(
            "uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            [(base, float(snapshot.get("uptime", 0.0)))],
        )
    )
    return "".join(out)


def exposition(snapshot: dict[str, Any]) -> str:
    """The --metrics listener's answer (the web server's /_metrics adds its requests)."""
    return server_text(snapshot)
