"""Content types by file name, from Python's own table plus the web's usual fixes.

Role: one function, ``content_type(name)``. Rules: the table is Python's built-in one
(``MimeTypes()`` reads no /etc/mime.types, so an answer does not depend on the host, as
nginx ships its own), with what a web server needs added; text types say ``charset=utf-8``;
unknown names are ``application/octet-stream``; a compressed file (``.gz``, ``.tgz``,
``.bz2``, ``.xz``...) is labelled as what it is, the compressed format: it goes out
without Content-Encoding, so ``style.css.gz`` labelled text/css would reach a browser as
gzip bytes posing as CSS (only ``.svgz`` keeps image/svg+xml, as nginx, Apache and
http.server have it); the table is read once per process.
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
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".ogg": "audio/ogg",
    ".map": "application/json",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".zst": "application/zstd",
    ".svgz": "image/svg+xml",
    ".xhtml": "application/xhtml+xml",  # a browser shows it (nginx); octet-stream: a download
    ".m4a": "audio/mp4",
    ".flac": "audio/flac",
}
# what mimetypes reports as a content-coding of the name (.gz, .bz2 ...) -> the format's type
_COMPRESSED = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
}
_TEXTUAL = ("text/", "application/json", "image/svg+xml", "application/xml")

_table = mimetypes.MimeTypes()
del _table.suffix_map[".svgz"]  # not ".svg.gz": an image type of its own (see _EXTRA)
for _ext, _type in _EXTRA.items():
    _table.add_type(_type, _ext)


@lru_cache(maxsize=1024)
def content_type(name: str) -> str:
    guessed, encoding = _table.guess_type(name, strict=False)
    if encoding is not None:
        return _COMPRESSED.get(encoding, "application/octet-stream")
    ctype = guessed or "application/octet-stream"
    if ctype.startswith(_TEXTUAL):
        ctype += "; charset=utf-8"
    return ctype
