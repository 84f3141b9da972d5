"""Finding files under ROOT for the web server: open, check containment, stat, cache.

Role: the ``Filesystem`` the HTTP session is given (see protocols/http/resources.py).
``lookup`` is blocking and runs in the drivers' Run jobs; ``cached`` answers from memory.
Rules:
- containment is checked on the *opened* descriptor (``/proc/self/fd/N``), so a symlink,
  or a path component swapped for one after we looked, can never serve a file outside ROOT
  (-> 403); FIFOs, sockets and devices are never served (-> 403); opens are non-blocking
  so a FIFO cannot hang a worker;
- files up to ``small_file`` bytes are read once and kept in memory (sent with the head in
  one write), while the cache holds less than ``memory`` bytes of them; larger ones are sent
  with sendfile(2) from a descriptor the driver closes; ``sendfile=False`` (a loop without
  sendfile: asyncio on uvloop) keeps files up to 16 MiB in memory, 256 MiB of them in all,
  and still hands larger ones over as descriptors, which such a driver copies a chunk at a
  time: a 5 GiB file read whole for every request (``Range: bytes=-10`` too) was 5 GiB of
  memory and 35 s before its first byte;
- the cache keeps answers for ``cache_ttl`` seconds (0 = no cache; files changed within
  that time may be served stale, as with nginx's open_file_cache); an expired answer is
  renewed by one lookup, the first request to find it expired, while the others are still
  answered from it for one more ``cache_ttl`` at most (not one lookup per connection: with
  50 clients of one file, 50 jobs, file reads and thread hand-offs every ``cache_ttl``; a
  renewal that never ran, its connection gone, is taken up by a request after that); a
  renewal that finds nothing to keep (an error, a listing) drops the old answer; cached
  large files are handed out as ``dup()``s of the cached descriptor, under a lock, so
  evicting an entry never closes a descriptor a connection is still sending from;
- every system call runs under the transports' ``translating``, so what ``lookup`` raises
  is an ipcnet error (PermissionDenied -> 403, NoSuchFile -> 404, Busy -> 503 in the
  session) and no OSError leaves this module; ``cached`` says None rather than raise.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from dataclasses import dataclass

from ipcnet.errors import IPCError, NoSuchFile, PermissionDenied
from ipcnet.httpd import listing
from ipcnet.httpd.mime import content_type
from ipcnet.protocols.http.resources import Found, NeedsSlash, Page, Refused
from ipcnet.transports.files import duplicate
from ipcnet.transports.oserrors import translating_file as translating

OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
NOT_FOUND = Refused(404)
FORBIDDEN = Refused(403)
MAX_LISTING = 10_000
NO_SENDFILE_SMALL = 16 * 1024 * 1024  # sendfile=False: files up to this are kept in memory
NO_SENDFILE_MEMORY = 256 * 1024 * 1024  # ... while the cache holds less than this of them


class OpenFile:
    """A file ready to send (the Entity of resources.py); owns its descriptor until taken."""

    __slots__ = (
        "_fd",
        "content_type",
        "data",
        "encoding",
        "etag",
        "mtime",
        "path",
        "size",
        "vary",
    )

    def __init__(
        self,
        fd: int,
        size: int,
        mtime: int,
        etag: str,
        ctype: str,
        encoding: str | None,
        vary: bool,
        path: str,
        data: bytes | None = None,
    ) -> None:
        self._fd = fd
        self.size = size
        self.mtime = mtime
        self.etag = etag
        self.content_type = ctype
        self.encoding = encoding
        self.vary = vary
        self.path = path
        self.data = data

    def take_fd(self) -> int:
        fd, self._fd = self._fd, -1
        if fd < 0:
            raise ValueError(f"{self.path}: no descriptor to take")
        return fd

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:  # a job outcome dropped with its connection
        self.close()

    def with_fd(self, fd: int) -> OpenFile:
        return OpenFile(
            fd,
            self.size,
            self.mtime,
            self.etag,
            self.content_type,
            self.encoding,
            self.vary,
            self.path,
        )


@dataclass(slots=True)
class _Entry:
    expires: float
    found: Found
    fd: int = -1  # the cache's own descriptor for a large file


Key = tuple[tuple[str, ...], bool, bool]


class Resolver:
    def __init__(
        self,
        root: str,
        *,
        index: str = "index.html",
        listings: bool = True,
        gzip: bool = True,
        cache_ttl: float = 1.0,
        cache_entries: int = 1024,
        small_file: int = 128 * 1024,
        memory: int = 32 * 1024 * 1024,
        sendfile: bool = True,
    ) -> None:
        real = os.path.realpath(root)
        if not os.path.isdir(real):
            raise NoSuchFile(f"web root is not a directory: {root}")
        self.root = real
        self._prefix = real if real.endswith("/") else real + "/"
        self.index = index
        self.listings = listings
        self.gzip = gzip
        self.cache_ttl = cache_ttl
        self.cache_entries = cache_entries
        # without sendfile (a loop that cannot do it), more files are kept in memory; the
        # larger ones still go as descriptors (the driver copies them a chunk at a time)
        self.small_file = small_file if sendfile else max(small_file, NO_SENDFILE_SMALL)
        self.memory = memory if sendfile else max(memory, NO_SENDFILE_MEMORY)
        self._held = 0  # bytes of file content the cache keeps in memory
        self._cache: dict[Key, _Entry] = {}
        self._lock = threading.Lock()

    # --- the Filesystem interface ---------------------------------------------------------

    def cached(self, segments: tuple[str, ...], trailing: bool, gzip: bool) -> Found | None:
        entry = self._cache.get((segments, trailing, gzip))
        if entry is None:
            return None
        if entry.expires < (now := time.monotonic()):
            entry.expires = now + self.cache_ttl  # this request renews it (see the rules)
            return None
        found = entry.found
        if entry.fd < 0:
            return found
        try:
            with self._lock:
                if entry.fd < 0:
                    return None
                fd = duplicate(entry.fd, self.root)
        except IPCError:  # out of descriptors: lookup will say so
            return None
        assert isinstance(found, OpenFile)
        return found.with_fd(fd)

    def lookup(self, segments: tuple[str, ...], trailing: bool, gzip: bool) -> Found:
        key = (segments, trailing, gzip)
        try:
            with translating("read", _where(self.root, segments)):
                found = self._lookup(segments, trailing, gzip)
                if self.cache_ttl > 0 and not isinstance(found, Page):
                    entry = _Entry(time.monotonic() + self.cache_ttl, found)
                    if isinstance(found, OpenFile) and found.data is None:
                        entry.fd = os.dup(found._fd)
                        entry.found = found.with_fd(-1)
                    self._store(key, entry)
                    return found
        except BaseException:
            self._discard(key)  # an old answer being renewed must not outlive the error
            raise
        self._discard(key)
        return found

    def clear(self) -> None:
        with self._lock:
            self._clear()

    # --- cache ---------------------------------------------------------------------------

    def _store(self, key: Key, entry: _Entry) -> None:
        with self._lock:
            if len(self._cache) >= self.cache_entries:
                self._clear()
            previous = self._cache.get(key)
            if previous is not None:
                self._drop(previous)
            self._cache[key] = entry
            self._held += _held(entry.found)

    def _discard(self, key: Key) -> None:
        if key in self._cache:
            with self._lock:
                entry = self._cache.pop(key, None)
                if entry is not None:
                    self._drop(entry)

    def _clear(self) -> None:
        for entry in self._cache.values():
            self._drop(entry)
        self._cache.clear()

    def _drop(self, entry: _Entry) -> None:
        self._held -= _held(entry.found)
        if entry.fd >= 0:
            os.close(entry.fd)
            entry.fd = -1

    # --- looking ---------------------------------------------------------------------------

    def _inside(self, fd: int, path: str) -> bool:
        try:
            with translating("readlink", f"/proc/self/fd/{fd}"):
                real = os.readlink(f"/proc/self/fd/{fd}")
        except IPCError:  # no /proc: resolve the name instead
            real = os.path.realpath(path)
        return real == self.root or real.startswith(self._prefix)

    def _open(self, path: str, dir_fd: int | None = None) -> int | Refused:
        try:
            with translating("open", _where(path)):
                return os.open(path, OPEN_FLAGS, dir_fd=dir_fd)
        except PermissionDenied:
            return FORBIDDEN
        except (NoSuchFile, ValueError):  # ENOENT ENOTDIR ELOOP ENAMETOOLONG ENXIO, NUL
            return NOT_FOUND

    def _lookup(self, segments: tuple[str, ...], trailing: bool, gzip: bool) -> Found:
        path = os.path.join(self.root, *segments)
        fd = self._open(path)
        if isinstance(fd, Refused):
            return fd
        try:
            st = os.fstat(fd)
            if not self._inside(fd, path):
                return Refused(403, "outside the web root")
            if stat.S_ISDIR(st.st_mode):
                if not trailing:
                    return NeedsSlash()
                return self._directory(fd, path, segments, gzip)
            if not stat.S_ISREG(st.st_mode) or trailing:
                return NOT_FOUND if trailing else FORBIDDEN
            found = self._file(fd, st, path, gzip)
            fd = -1  # _file owns it now
            return found
        finally:
            if fd >= 0:
                os.close(fd)

    def _directory(self, fd: int, path: str, segments: tuple[str, ...], gzip: bool) -> Found:
        if self.index:
            ifd = self._open(self.index, dir_fd=fd)
            if not isinstance(ifd, Refused):
                index_path = os.path.join(path, self.index)
                try:
                    st = os.fstat(ifd)
                    if stat.S_ISREG(st.st_mode) and self._inside(ifd, index_path):
                        found = self._file(ifd, st, index_path, gzip)
                        ifd = -1
                        return found
                finally:
                    if ifd >= 0:
                        os.close(ifd)
        if not self.listings:
            return FORBIDDEN
        items: list[listing.Item] = []
        more = 0  # entries past MAX_LISTING: counted (no stat), not listed
        with os.scandir(fd) as entries:
            for entry in entries:
                if len(items) >= MAX_LISTING:
                    more += 1
                    continue
                try:
                    with translating("stat", _where(path, (entry.name,))):
                        st = entry.stat()
                    is_dir = stat.S_ISDIR(st.st_mode)
                    items.append(listing.Item(entry.name, is_dir, st.st_size, st.st_mtime))
                except IPCError:  # a dangling symlink
                    items.append(listing.Item(entry.name, False, 0, 0.0))
        shown = "/" + "".join(s + "/" for s in segments)
        return Page(listing.render(shown, items, more))

    def _file(self, fd: int, st: os.stat_result, path: str, gzip: bool) -> OpenFile:
        """An OpenFile for ``fd`` (or for its .gz sibling); owns and closes ``fd``."""
        encoding = None
        vary = False
        suffix = ""
        if self.gzip and not path.endswith(".gz"):
            gz_path = path + ".gz"
            if gzip:
                gfd = self._open(gz_path)
                if not isinstance(gfd, Refused):
                    gst = os.fstat(gfd)
                    if stat.S_ISREG(gst.st_mode) and self._inside(gfd, gz_path):
                        os.close(fd)
                        fd, st, encoding, vary, suffix = gfd, gst, "gzip", True, "-gz"
                    else:
                        os.close(gfd)
            else:
                try:
                    with translating("stat", _where(gz_path)):
                        vary = stat.S_ISREG(os.stat(gz_path).st_mode)
                except (IPCError, ValueError):
                    vary = False
        size = st.st_size
        mtime = int(st.st_mtime)
        etag = f'"{mtime:x}-{size:x}{suffix}"'
        ctype = content_type(os.path.basename(path))
        if size <= self.small_file and self._held + size <= self.memory:
            try:
                data = _read_all(fd, size)
            finally:
                os.close(fd)
            return OpenFile(-1, len(data), mtime, etag, ctype, encoding, vary, path, data)
        return OpenFile(fd, size, mtime, etag, ctype, encoding, vary, path)


def _held(found: Found) -> int:
    """The bytes of file content a cache entry keeps in memory."""
    return len(found.data) if isinstance(found, OpenFile) and found.data is not None else 0


def _where(path: str, names: tuple[str, ...] = ()) -> str:
    """A file's name as errors show it (``file:///srv/www/a.txt``)."""
    return "file://" + os.path.join(path, *names)


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break  # the file shrank while we read it: serve what is there
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)
