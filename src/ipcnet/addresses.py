"""One URL grammar for every IPC mechanism: text in, frozen ``Address`` out.

Role: parsing and formatting only. Rules: no I/O here (no resolving, no stat), so parsing is
instant and deterministic; ``str(parse(s))`` is the canonical spelling and parsing it again
gives an equal Address; every rejection is an ``InvalidAddress`` whose message quotes the
input and names the wrong part.

    tcp://host:port  tcp://:port (all interfaces)  tcp://[::1]:port  tcp://localhost:http
    tcp4://  tcp6://  udp://  udp4://  udp6://          (same host:port grammar)
    unix:///abs/path  unix:rel/path  unix://@abstract   (also unixgram://, unixpacket://)
    fifo:///abs/path  fifo:rel/path
    pipe:  socketpair:  stdio:  exec:command args  fd://N  systemd://  systemd://N|NAME
    shm://@name  shm:///abs/path  shm:rel/path  [?ring=BYTES]   (rendezvous: a unix socket)
    mq:///name  [?depth=N&msgsize=BYTES&priority=N]             (a POSIX message queue)
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import shlex
from dataclasses import dataclass
from typing import Literal

from ipcnet.errors import InvalidAddress

Kind = Literal["stream", "datagram", "seqpacket"]

INET_SCHEMES = ("tcp", "tcp4", "tcp6", "udp", "udp4", "udp6")
UNIX_SCHEMES = ("unix", "unixgram", "unixpacket")
PATH_SCHEMES = (*UNIX_SCHEMES, "fifo")
BARE_SCHEMES = ("pipe", "socketpair", "stdio")
# --- ipc schemes (issue 13) ---
IPC_SCHEMES = ("shm", "mq")
IPC_OPTIONS = {"shm": ("ring",), "mq": ("depth", "msgsize", "priority")}
MQ_NAME_MAX = 255  # NAME_MAX: a queue name is one file in the mqueue filesystem
# --- end ipc schemes ---
SCHEMES = (*INET_SCHEMES, *PATH_SCHEMES, *BARE_SCHEMES, "exec", "fd", "systemd", *IPC_SCHEMES)

UNIX_PATH_MAX = 107  # sizeof(sun_path) - 1 for the terminating NUL
_SERVICE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]*\Z")
_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\Z")


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed IPC address. Build one with ``parse()``; fields unused by a scheme are None."""

    scheme: str
    host: str | None = None  # inet: '' means every interface; IPv6 literals without brackets
    port: int | str | None = None  # inet: a number, or a service name from /etc/services
    path: str | None = None  # unix/fifo: filesystem path, or the abstract name
    abstract: bool = False  # unix: path is a name in the abstract namespace
    fd: int | None = None  # fd://N
    command: str | None = None  # exec:
    name: str | None = None  # systemd: index or LISTEN_FDNAMES entry; '' = the first
    options: tuple[tuple[str, int], ...] = ()  # shm, mq: ?key=value pairs, in given order

    def __str__(self) -> str:
        s = self.scheme
        if s in INET_SCHEMES:
            host = self.host or ""
            if ":" in host:
                host = f"[{host}]"
            return f"{s}://{host}:{self.port}"
        if s in PATH_SCHEMES:
            assert self.path is not None
            if self.abstract:
                return f"{s}://@{self.path}"
            if self.path.startswith("/"):
                return f"{s}://{self.path}"
            return f"{s}:{self.path}"
        if s == "exec":
            return f"exec:{self.command}"
        if s == "fd":
            return f"fd://{self.fd}"
        if s == "systemd":
            return f"systemd://{self.name or ''}"
        if s in IPC_SCHEMES:  # ipc schemes (issue 13)
            return _format_ipc(self)
        return f"{s}:"

    # --- what kind of endpoint this is -------------------------------------------------

    @property
    def kind(self) -> Kind:
        """stream, datagram or seqpacket (fd:// and systemd:// report stream until opened)."""
        if self.scheme in ("udp", "udp4", "udp6", "unixgram", "mq"):
            return "datagram"
        if self.scheme == "unixpacket":
            return "seqpacket"
        return "stream"

    @property
    def is_inet(self) -> bool:
        return self.scheme in INET_SCHEMES

    @property
    def is_unix(self) -> bool:
        return self.scheme in UNIX_SCHEMES

    @property
    def family_hint(self) -> Literal[4, 6] | None:
        """4 or 6 when the scheme (tcp4, udp6, ...) pins the IP version, else None."""
        if self.scheme.endswith("4"):
            return 4
        if self.scheme.endswith("6"):
            return 6
        return None

    @property
    def unix_sockaddr(self) -> str | bytes:
        """The sun_path to bind or connect: a str path, or bytes with a leading NUL."""
        assert self.path is not None
        if self.abstract:
            return b"\0" + self.path.encode()
        return self.path

    @property
    def argv(self) -> list[str]:
        """exec: the command split the way a POSIX shell would split it."""
        assert self.command is not None
        return shlex.split(self.command)

    def option(self, key: str, default: int | None = None) -> int | None:
        """The value of ``?key=`` (shm, mq), or ``default``."""
        return dict(self.options).get(key, default)

    def with_port(self, port: int) -> Address:
        """The same inet address with another port (what a listener on port 0 got)."""
        return Address(self.scheme, host=self.host, port=port)


def parse(url: str | Address) -> Address:
    """Parse an address URL; an Address passes through unchanged."""
    if isinstance(url, Address):
        return url
    if not isinstance(url, str):
        raise InvalidAddress(f"invalid address {url!r}: expected a URL string")
    scheme, sep, rest = url.partition(":")
    if not sep or not scheme:
        raise _bad(url, "missing scheme (for example tcp://host:port or unix:///path)")
    scheme_l = scheme.lower()
    if scheme_l not in SCHEMES:
        raise _bad(url, _unknown_scheme(scheme))
    if scheme_l in INET_SCHEMES:
        return _parse_inet(url, scheme_l, rest)
    if scheme_l in PATH_SCHEMES:
        return _parse_path(url, scheme_l, rest)
    if scheme_l == "exec":
        return _parse_exec(url, rest)
    if scheme_l == "fd":
        return _parse_fd(url, rest)
    if scheme_l == "systemd":
        return _parse_systemd(url, rest)
    if scheme_l in IPC_SCHEMES:
        return _parse_ipc(url, scheme_l, rest)
    if rest not in ("", "//"):
        raise _bad(url, f"{scheme_l}: takes no arguments")
    return Address(scheme_l)


def _bad(url: str, why: str) -> InvalidAddress:
    return InvalidAddress(f"invalid address {url!r}: {why}")


def _unknown_scheme(scheme: str) -> str:
    close = difflib.get_close_matches(scheme.lower(), SCHEMES, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]}://?)" if close else f" (known: {', '.join(SCHEMES)})"
    return f"unknown scheme {scheme!r}{hint}"


def _parse_inet(url: str, scheme: str, rest: str) -> Address:
    if not rest.startswith("//"):
        raise _bad(url, f"expected {scheme}://host:port")
    hostport = rest[2:]
    if "/" in hostport or "?" in hostport or "#" in hostport:
        raise _bad(url, "unexpected path after host:port")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise _bad(url, "unclosed '[' in IPv6 address")
        host, after = hostport[1:end], hostport[end + 1 :]
        if not after.startswith(":"):
            raise _bad(url, "missing port" if not after else f"unexpected {after!r} after ']'")
        port_text = after[1:]
        _check_ipv6(url, host)
    else:
        host, sep, port_text = hostport.rpartition(":")
        if not sep:
            raise _bad(url, "missing port")
        if ":" in host:
            raise _bad(url, "IPv6 addresses must be in brackets, as in tcp://[::1]:port")
        if host:
            _check_host(url, host)
    if not port_text:
        raise _bad(url, "missing port")
    port = _parse_port(url, port_text)
    family = scheme[-1] if scheme[-1] in "46" else None
    if family == "4" and ":" in host:
        raise _bad(url, f"{scheme} cannot take an IPv6 address")
    if family == "6" and host and _is_ipv4(host):
        raise _bad(url, f"{scheme} cannot take an IPv4 address")
    return Address(scheme, host=host, port=port)


def _parse_port(url: str, text: str) -> int | str:
    if text.isdigit():
        port = int(text)
        if port > 65535:
            raise _bad(url, f"port {port} out of range 0-65535")
        return port
    if _SERVICE_NAME.match(text):
        return text
    raise _bad(url, f"invalid port {text!r} (a number 0-65535 or a service name)")


def _check_host(url: str, host: str) -> None:
    if _is_ipv4(host):
        return
    if not _HOST_NAME.match(host) or len(host) > 253:
        raise _bad(url, f"invalid host name {host!r}")


def _check_ipv6(url: str, host: str) -> None:
    addr, _, zone = host.partition("%")
    try:
        ipaddress.IPv6Address(addr)
    except ValueError:
        raise _bad(url, f"invalid IPv6 address {addr!r}") from None
    if "%" in host and not zone:
        raise _bad(url, "empty IPv6 zone after '%'")


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _parse_path(url: str, scheme: str, rest: str) -> Address:
    if rest.startswith("//@") or (rest.startswith("@") and scheme != "fifo"):
        if scheme == "fifo":
            raise _bad(url, "fifos have no abstract namespace; use a path")
        name = rest[3:] if rest.startswith("//@") else rest[1:]
        if not name:
            raise _bad(url, "empty abstract socket name")
        _check_unix_length(url, "@" + name)
        if "\0" in name:
            raise _bad(url, "NUL byte in abstract name")
        return Address(scheme, path=name, abstract=True)
    if rest.startswith("//"):
        path = rest[2:]
        if not path:
            raise _bad(url, "missing path")
        if not path.startswith("/"):
            raise _bad(url, f"expected {scheme}:///absolute/path or {scheme}:relative/path")
    else:
        path = rest
    if not path:
        raise _bad(url, "missing path")
    if "\0" in path:
        raise _bad(url, "NUL byte in path")
    if scheme != "fifo":
        _check_unix_length(url, path)
    return Address(scheme, path=path)


def _check_unix_length(url: str, path: str) -> None:
    size = len(os.fsencode(path))
    if size > UNIX_PATH_MAX:
        raise _bad(url, f"unix socket path is {size} bytes, over the limit of {UNIX_PATH_MAX}")


def _parse_exec(url: str, rest: str) -> Address:
    command = rest.strip()
    if not command:
        raise _bad(url, "missing command after exec:")
    try:
        if not shlex.split(command):
            raise _bad(url, "missing command after exec:")
    except ValueError as exc:
        raise _bad(url, f"cannot split command: {exc}") from None
    return Address("exec", command=command)


def _parse_fd(url: str, rest: str) -> Address:
    text = rest[2:] if rest.startswith("//") else rest
    if not text.isdigit():
        raise _bad(url, "expected fd://N with N a file descriptor number")
    return Address("fd", fd=int(text))


def _parse_systemd(url: str, rest: str) -> Address:
    name = rest[2:] if rest.startswith("//") else rest
    if name and not re.match(r"[A-Za-z0-9_.:-]+\Z", name):
        raise _bad(url, f"invalid socket name {name!r}")
    return Address("systemd", name=name)


# --- ipc schemes (issue 13): shm:// and mq:// -------------------------------------------

_SIZE = re.compile(r"(\d+)([kKmMgG]?)(i?[bB])?\Z")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _parse_ipc(url: str, scheme: str, rest: str) -> Address:
    rest, _, query = rest.partition("?")
    options = _parse_options(url, scheme, query)
    if scheme == "shm":
        base = _parse_path(url, "unix", rest)  # the rendezvous is a unix socket name
        return Address("shm", path=base.path, abstract=base.abstract, options=options)
    if not rest.startswith("///"):
        raise _bad(url, "expected mq:///name")
    name = rest[3:]
    if not name:
        raise _bad(url, "missing queue name after mq:///")
    if "/" in name:
        raise _bad(url, "a queue name cannot contain '/' (it is one name, not a path)")
    if "\0" in name:
        raise _bad(url, "NUL byte in queue name")
    size = len(os.fsencode(name))
    if size > MQ_NAME_MAX:
        raise _bad(url, f"queue name is {size} bytes, over NAME_MAX ({MQ_NAME_MAX})")
    if name in (".", ".."):
        raise _bad(url, f"{name!r} is not a queue name")
    return Address("mq", path=name, options=options)


def _parse_options(url: str, scheme: str, query: str) -> tuple[tuple[str, int], ...]:
    if not query:
        return ()
    known = IPC_OPTIONS[scheme]
    out: dict[str, int] = {}
    for item in query.split("&"):
        key, sep, value = item.partition("=")
        if key not in known:
            raise _bad(url, f"unknown option {key!r} for {scheme}: (known: {', '.join(known)})")
        if not sep or not value:
            raise _bad(url, f"option {key!r} needs a value")
        match = _SIZE.match(value)
        if match is None:
            raise _bad(url, f"option {key}={value!r} is not a number (like 65536 or 64K)")
        out[key] = int(match.group(1)) * _UNITS[match.group(2).lower()]
    return tuple(out.items())


def _format_ipc(address: Address) -> str:
    query = "&".join(f"{k}={v}" for k, v in address.options)
    tail = f"?{query}" if query else ""
    if address.scheme == "mq":
        return f"mq:///{address.path}{tail}"
    assert address.path is not None
    if address.abstract:
        return f"shm://@{address.path}{tail}"
    if address.path.startswith("/"):
        return f"shm://{address.path}{tail}"
    return f"shm:{address.path}{tail}"


# --- end ipc schemes ----------------------------------------------------------------------

__all__ = ["SCHEMES", "UNIX_PATH_MAX", "Address", "Kind", "parse"]
