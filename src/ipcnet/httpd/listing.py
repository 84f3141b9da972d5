"""Directory listings as HTML: names escaped, directories first, sizes and dates.

Role: render what ``Resolver`` read from a directory. Rules: every name is HTML-escaped
and URL-quoted (a file called ``<script>`` is text, ``a b`` links as ``a%20b``); links are
relative, so a listing never points outside the directory it shows; a directory of more
than ``files.MAX_LISTING`` entries is listed up to that bound, and the page says how many
it left out (it cut them silently: a ``wget -r`` mirror missed them and nothing said so).
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True, slots=True)
class Item:
    name: str
    is_dir: bool
    size: int
    mtime: float


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _shown(name: str) -> str:
    """A name as text: bytes that are not UTF-8 (surrogate-escaped) show as U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def render(path: str, items: list[Item], more: int = 0) -> bytes:
    """The page for directory ``path`` (as the client named it, e.g. ``/docs/``); ``more``
    entries were left out of ``items`` (the listing's bound)."""
    title = html.escape(f"Index of {_shown(path)}")
    rows = ['<tr><td><a href="../">../</a></td><td></td><td></td></tr>'] if path != "/" else []
    for item in sorted(items, key=lambda i: (not i.is_dir, i.name)):
        label = item.name + ("/" if item.is_dir else "")
        href = quote(item.name, errors="surrogateescape") + ("/" if item.is_dir else "")
        if href.startswith(("/", ".")) or ":" in href.split("/", 1)[0]:
            href = "./" + href
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(item.mtime))
        size = "-" if item.is_dir else _size(item.size)
        shown = html.escape(_shown(label))
        rows.append(
            f'<tr><td><a href="{html.escape(href)}">{shown}</a></td>'
            f"<td>{when}</td><td class=n>{size}</td></tr>"
        )
    if more:
        rows.append(
            f"<tr><td colspan=3><em>{more} more entries not listed (a listing shows at most"
            f" {len(items)})</em></td></tr>"
        )
    page = (
        "<!doctype html>\n<html lang=en><meta charset=utf-8>\n"
        f"<title>{title}</title>\n"
        "<style>body{font:15px system-ui,sans-serif;margin:2em}td{padding:.2em 1em}"
        ".n{text-align:right}</style>\n"
        f"<h1>{title}</h1>\n<table>\n<tr><th>Name</th><th>Modified (UTC)</th><th>Size</th></tr>\n"
        + "\n".join(rows)
        + "\n</table>\n<hr><address>ipcnet</address>\n"
    )
    return page.encode("utf-8")
