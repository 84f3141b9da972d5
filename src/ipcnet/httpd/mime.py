"""Content types by file name, from the system table plus the web's usual fixes.

Role: one function, ``content_type(name)``. Rules: text types say ``charset=utf-8``;
unknown names are ``application/octet-stream``; the table is read once per process.
"""

from __future__ import annotations

import mimetypes
from functools import lru_cache

_EXTRA = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".woff2": "font/woff2",
    ".md": "text/markdown",
    ".gz": "application/gzip",
}
_TEXTUAL = ("text/", "application/json", "image/svg+xml", "application/xml")

_table = mimetypes.MimeTypes()
for _ext, _type in _EXTRA.items():
    _table.add_type(_type, _ext)


@lru_cache(maxsize=1024)
def content_type(name: str) -> str:
    guessed, _ = _table.guess_type(name, strict=False)
    ctype = guessed or "application/octet-stream"
    if ctype.startswith(_TEXTUAL):
        ctype += "; charset=utf-8"
    return ctype
