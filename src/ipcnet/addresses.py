"""One URL grammar for every IPC mechanism: text in, frozen ``Address`` out.

Role: parsing and formatting only, and ``SCHEMES``, the one table of what each scheme is.
Rules: no I/O here (no resolving, no stat), so parsing is instant and deterministic;
``str(parse(s))`` is the canonical spelling and parsing it again gives an equal Address;
every rejection is an ``InvalidAddress`` whose message quotes the input and names the wrong
part.

    tcp://host:port  tcp://:port (all interfaces)  tcp://[::1]:port  tcp://localhost:http
    tls://host:port  tls+unix:///path  tls+unix://@name  (TLS over tcp or unix)
    tcp4://  tcp6://  udp://  udp4://  udp6://          (same host:port grammar)
    unix:///abs/path  unix:rel/path  unix://@abstract   (also unixgram://, unixpacket://)
    fifo:///abs/path  fifo:rel/path
    pipe:  socketpair:  stdio:  exec:command args  fd://N  systemd://  systemd://N|NAME
    shm://@name  shm:///abs/path  shm:rel/path  [?ring=BYTES]   (rendezvous: a unix socket)
    mq:///name  [?depth=N&msgsize=BYTES&priority=N]             (a POSIX message queue)

A scheme is one ``Scheme`` row in ``SCHEMES``: its grammar (one of the few below), its
kind, and the module of ``ipcnet.transports`` that opens it (see that package's docstring).
"""

from __future__ import annotations

import ipaddress
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from ipcnet.errors import InvalidAddress

Kind = Literal["stream", "datagram", "seqpacket"]

FD_MAX = 2**31 - 1  # a descriptor is a C int
UNIX_PATH_MAX = 107  # sizeof(sun_path) - 1: a path's terminating NUL, an abstract name's first
_SERVICE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]*\Z")
_NUMBER = re.compile(r"[0-9]+\Z")  # ASCII only: str.isdigit() takes '²' and '١٢' too
_NUMERIC_LABEL = re.compile(r"[0-9]+\Z|0[xX][0-9A-Fa-f]*\Z")
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
        row = SCHEMES.get(self.scheme)
        return row.grammar.format(self) if row is not None else f"{self.scheme}:"

    @property
    def spec(self) -> Scheme:
        """This address's row in ``SCHEMES``."""
        return SCHEMES[self.scheme]

    # --- what kind of endpoint this is -------------------------------------------------

    @property
    def kind(self) -> Kind:
        """stream, datagram or seqpacket (fd:// and systemd:// report stream until opened)."""
        return SCHEMES[self.scheme].kind

    @property
    def is_inet(self) -> bool:
        return SCHEMES[self.scheme].grammar is HOST_PORT

    @property
    def is_unix(self) -> bool:
        return SCHEMES[self.scheme].grammar is UNIX_PATH

    @property
    def family_hint(self) -> Literal[4, 6] | None:
        """4 or 6 when the scheme (tcp4, udp6, ...) pins the IP version, else None."""
        return SCHEMES[self.scheme].ip

    @property
    def unix_sockaddr(self) -> str | bytes:
        """The sun_path to bind or connect: a str path, or bytes with a leading NUL."""
        assert self.path is not None
        if self.abstract:
            return b"\0" + os.fsencode(self.path)  # surrogates: bytes (PEP 383)
        return self.path

    @property
    def argv(self) -> list[str]:
        """exec: the command split into words the way a POSIX shell would (``split_words``)."""
        assert self.command is not None
        return split_words(self.command)

    def option(self, key: str, default: int | None = None) -> int | None:
        """The value of ``?key=`` (shm, mq), or ``default``."""
        return dict(self.options).get(key, default)

    def with_port(self, port: int) -> Address:
        """The same inet address with another port (what a listener on port 0 got)."""
        return Address(self.scheme, host=self.host, port=port)


# --- grammars: how the text after "scheme:" parses and prints ---------------------------


class Grammar(ABC):
    """Parses what follows ``scheme:`` into an Address and prints it back, canonically."""

    @abstractmethod
    def parse(self, url: str, scheme: str, rest: str) -> Address: ...

    @abstractmethod
    def format(self, address: Address) -> str: ...


class _HostPort(Grammar):
    """``scheme://host:port``, ``scheme://[v6]:port``, ``scheme://:port`` (every interface)."""

    def parse(self, url: str, scheme: str, rest: str) -> Address:
        return _parse_inet(url, scheme, rest)

    def format(self, address: Address) -> str:
        host = address.host or ""
        if ":" in host:
            addr, sep, zone = host.partition("%")
            if zone.startswith("25"):  # so that it parses back: RFC 6874 reads %25 as '%'
                zone = f"25{zone}"
            host = f"[{addr}{sep}{zone}]"
        return f"{address.scheme}://{host}:{address.port}"


class PathGrammar(Grammar):
    """``scheme:///abs/path``, ``scheme:rel/path`` and, if ``abstract``, ``scheme://@name``;
    ``limit`` caps the encoded length (a unix socket's sun_path)."""

    def __init__(self, abstract: bool, limit: int | None) -> None:
        self.abstract = abstract
        self.limit = limit

    def parse(self, url: str, scheme: str, rest: str) -> Address:
        return _parse_path(url, scheme, rest, self.abstract, self.limit)

    def format(self, address: Address) -> str:
        s, path = address.scheme, address.path
        assert path is not None
        if address.abstract:
            return f"{s}://@{path}"
        if path.startswith("/"):
            return f"{s}://{path}"
        return f"{s}:{path}"


class _Bare(Grammar):
    """``scheme:`` (or ``scheme://``) and nothing more."""

    def parse(self, url: str, scheme: str, rest: str) -> Address:
        if rest not in ("", "//"):
            raise _bad(url, f"{scheme}: takes no arguments")
        return Address(scheme)

    def format(self, address: Address) -> str:
        return f"{address.scheme}:"


def split_words(text: str) -> list[str]:
    """Split a command line into words as a POSIX shell does (XCU 2.2 Quoting, 2.3), and
    do nothing else: no shell runs, so no expansion ($VAR, ~, globs) and no operators
    (; | & < >): each is a character of a word. Blanks (space, tab, newline; and CR)
    separate words; a backslash outside quotes keeps the next character as it is;
    '...' keeps everything up to the next '; inside "..." a backslash quotes only
    $ ` " \\ and newline, and stays a backslash before anything else; backslash-newline
    is removed, in double quotes or not. (shlex.split kept the backslash of "\\$x".)
    ValueError "no closing quotation" or "no escaped character" for what a shell would
    wait for more input on."""
    words: list[str] = []
    word: list[str] | None = None  # None between words; [] is a word begun by '' or ""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\n\r":
            if word is not None:
                words.append("".join(word))
                word = None
            i += 1
            continue
        if text.startswith("\\\n", i):  # a line continuation: removed, begins no word
            i += 2
            continue
        word = [] if word is None else word
        if c == "\\":
            if i + 1 == n:
                raise ValueError("no escaped character")
            word.append(text[i + 1])
            i += 2
        elif c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ValueError("no closing quotation")
            word.append(text[i + 1 : end])
            i = end + 1
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] in '$`"\\\n':
                    if text[i + 1] != "\n":
                        word.append(text[i + 1])
                    i += 2
                else:
                    word.append(text[i])
                    i += 1
            if i == n:
                raise ValueError("no closing quotation")
            i += 1
        else:
            word.append(c)
            i += 1
    if word is not None:
        words.append("".join(word))
    return words


class _Command(Grammar):
    """``scheme:command args``, split into words as a POSIX shell would (``split_words``)."""

    def parse(self, url: str, scheme: str, rest: str) -> Address:
        command = rest.strip()
        escaped = len(command) - len(command.rstrip("\\"))
        if escaped % 2 and command != rest.lstrip():  # 'a\\ ': the blank is the word's
            command = rest.lstrip()[: len(command) + 1]
        if not command:
            raise _bad(url, f"missing command after {scheme}:")
        if "\0" in command:  # execve(2) takes C strings: Popen's ValueError, not ours
            raise _bad(url, "NUL byte in command")
        try:
            argv = split_words(command)
        except ValueError as exc:
            raise _bad(url, f"cannot split command: {exc}") from None
        if not argv[0]:
            raise _bad(url, f"empty command name after {scheme}:")
        return Address(scheme, command=command)

    def format(self, address: Address) -> str:
        return f"{address.scheme}:{address.command}"


class _FdNumber(Grammar):
    """``scheme://N``: a file descriptor number."""

    def parse(self, url: str, scheme: str, rest: str) -> Address:
        text = rest[2:] if rest.startswith("//") else rest
        if not _NUMBER.match(text):
            raise _bad(url, f"expected {scheme}://N with N a file descriptor number")
        if int(text) > FD_MAX:
            raise _bad(url, f"descriptor number {text} out of range 0-{FD_MAX}")
        return Address(scheme, fd=int(text))

    def format(self, address: Address) -> str:
        return f"{address.scheme}://{address.fd}"


class _SocketName(Grammar):
    """``scheme://`` (the first) or ``scheme://N|NAME``: a passed socket by index or name."""

    def parse(self, url: str, scheme: str, rest: str) -> Address:
        name = rest[2:] if rest.startswith("//") else rest
        if name and not re.match(r"[A-Za-z0-9_.:-]+\Z", name):
            raise _bad(url, f"invalid socket name {name!r}")
        return Address(scheme, name=name)

    def format(self, address: Address) -> str:
        return f"{address.scheme}://{address.name or ''}"


HOST_PORT: Grammar = _HostPort()
UNIX_PATH: Grammar = PathGrammar(abstract=True, limit=UNIX_PATH_MAX)
FILE_PATH: Grammar = PathGrammar(abstract=False, limit=None)
BARE: Grammar = _Bare()
COMMAND: Grammar = _Command()
FD_NUMBER: Grammar = _FdNumber()
SOCKET_NAME: Grammar = _SocketName()


# --- ipc grammars (issue 13): shm:// and mq:// take ?key=number options ------------------

_SIZE = re.compile(r"([0-9]+)(?:([kKmMgG])(?:i?[bB])?|[bB])?\Z")  # 64, 64K, 64KiB, 64B
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MQ_NAME_MAX = 255  # NAME_MAX: a queue name is one file in the mqueue filesystem


def _parse_options(
    url: str, scheme: str, query: str, known: tuple[str, ...]
) -> tuple[tuple[str, int], ...]:
    if not query:
        return ()
    out: dict[str, int] = {}
    for item in query.split("&"):
        key, sep, value = item.partition("=")
        if key in out:  # which one would win is no rule anyone could rely on
            raise _bad(url, f"option {key!r} given twice")
        if key not in known:
            raise _bad(url, f"unknown option {key!r} for {scheme}: (known: {', '.join(known)})")
        if not sep or not value:
            raise _bad(url, f"option {key!r} needs a value")
        match = _SIZE.match(value)
        if match is None:
            raise _bad(url, f"option {key}={value!r} is not a number (like 65536 or 64K)")
        out[key] = int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
    return tuple(out.items())


def _format_options(address: Address) -> str:
    query = "&".join(f"{k}={v}" for k, v in address.options)
    return f"?{query}" if query else ""


class _ShmRendezvous(Grammar):
    """``shm://@name``, ``shm:///path``, ``shm:rel`` (a unix socket's name) + ``?ring=``."""

    def parse(self, url: str, scheme: str, rest: str) -> Address:
        rest, _, query = rest.partition("?")
        base = UNIX_PATH.parse(url, scheme, rest)
        options = _parse_options(url, scheme, query, ("ring",))
        return Address(scheme, path=base.path, abstract=base.abstract, options=options)

    def format(self, address: Address) -> str:
        return UNIX_PATH.format(address) + _format_options(address)


class _QueueName(Grammar):
    """``mq:///name``: one name (no '/', at most NAME_MAX bytes), ``?depth=&msgsize=&priority=``."""

    def parse(self, url: str, scheme: str, rest: str) -> Address:
        rest, _, query = rest.partition("?")
        options = _parse_options(url, scheme, query, ("depth", "msgsize", "priority"))
        if not rest.startswith("///"):
            raise _bad(url, f"expected {scheme}:///name")
        name = rest[3:]
        if not name:
            raise _bad(url, f"missing queue name after {scheme}:///")
        if "/" in name:
            raise _bad(url, "a queue name cannot contain '/' (it is one name, not a path)")
        if "\0" in name:
            raise _bad(url, "NUL byte in queue name")
        size = len(os.fsencode(name))
        if size > MQ_NAME_MAX:
            raise _bad(url, f"queue name is {size} bytes, over NAME_MAX ({MQ_NAME_MAX})")
        if name in (".", ".."):
            raise _bad(url, f"{name!r} is not a queue name")
        return Address(scheme, path=name, options=options)

    def format(self, address: Address) -> str:
        return f"{address.scheme}:///{address.path}{_format_options(address)}"


SHM_RENDEZVOUS: Grammar = _ShmRendezvous()
QUEUE_NAME: Grammar = _QueueName()

# --- end ipc grammars ---


# --- the registry ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scheme:
    """One scheme: how it is spelled, what it is, and which transport module opens it.

    ``transport`` names a module of ``ipcnet.transports`` (or any dotted module path)
    defining any of ``connect``, ``listen`` and ``datagram`` (see there); ``grammar`` is one
    of the instances above (``PathGrammar(abstract=..., limit=...)`` for a new kind of
    path); ``framing`` is the message framing used on it
    unless told otherwise (Content-Length where editors and language servers talk over a
    child's pipes); ``noun`` names a missing one ("no fifo at ...").
    """

    name: str
    grammar: Grammar
    kind: Kind
    transport: str
    help: str
    ip: Literal[4, 6] | None = None
    framing: str = "newline"
    noun: str = "socket"


#: the registry: scheme name -> its row (in the order an unknown scheme's error lists them)
SCHEMES: dict[str, Scheme] = {
    row.name: row
    for row in (
        Scheme("tcp", HOST_PORT, "stream", "tcp", "TCP, IPv4 or IPv6 (getaddrinfo AF_UNSPEC)"),
        Scheme("tcp4", HOST_PORT, "stream", "tcp", "TCP over IPv4 only", ip=4),
        Scheme("tcp6", HOST_PORT, "stream", "tcp", "TCP over IPv6 only", ip=6),
        Scheme("udp", HOST_PORT, "datagram", "udp", "UDP datagrams, IPv4 or IPv6"),
        Scheme("udp4", HOST_PORT, "datagram", "udp", "UDP datagrams over IPv4 only", ip=4),
        Scheme("udp6", HOST_PORT, "datagram", "udp", "UDP datagrams over IPv6 only", ip=6),
        Scheme("unix", UNIX_PATH, "stream", "unix", "UNIX stream socket: a path or @name"),
        Scheme("unixgram", UNIX_PATH, "datagram", "unixgram", "UNIX datagram socket"),
        Scheme("unixpacket", UNIX_PATH, "seqpacket", "unix", "UNIX SOCK_SEQPACKET socket"),
        Scheme("tls", HOST_PORT, "stream", "tls", "TLS over TCP (--cert/--key, --ca...)"),
        Scheme("tls+unix", UNIX_PATH, "stream", "tls", "TLS over a UNIX stream socket"),
        Scheme("fifo", FILE_PATH, "stream", "fifo", "named pipe: connect writes, listen reads",
               framing="content-length", noun="fifo"),
        Scheme("pipe", BARE, "stream", "pipes", "anonymous pipe (library: ipcnet.pipe())",
               framing="content-length"),
        Scheme("socketpair", BARE, "stream", "socketpair", "connected pair (ipcnet.socketpair())"),
        Scheme("stdio", BARE, "stream", "stdio", "this process's stdin and stdout",
               framing="content-length"),
        Scheme("exec", COMMAND, "stream", "process", "a child process on its stdin and stdout",
               framing="content-length"),
        Scheme("fd", FD_NUMBER, "stream", "inherited", "an inherited socket, pipe or tty",
               framing="content-length"),
        Scheme("systemd", SOCKET_NAME, "stream", "inherited", "socket activation (LISTEN_FDS)"),
        Scheme("shm", SHM_RENDEZVOUS, "stream", "shm", "shared-memory ring, met at a unix socket"),
        Scheme("mq", QUEUE_NAME, "datagram", "mq", "POSIX message queue (connect sends)",
               noun="message queue"),
    )
}  # fmt: skip


def parse(url: str | Address) -> Address:
    """Parse an address URL; an Address passes through unchanged."""
    if isinstance(url, Address):
        return url
    if not isinstance(url, str):
        raise InvalidAddress(f"invalid address {url!r}: expected a URL string")
    scheme, sep, rest = url.partition(":")
    if not sep or not scheme:
        raise _bad(url, "missing scheme (for example tcp://host:port or unix:///path)")
    row = SCHEMES.get(scheme.lower())
    if row is None:
        if _NUMBER.match(rest) or url.startswith("["):  # host:port, nc's and socat's way
            raise _bad(url, f"missing scheme (did you mean tcp://{url} or udp://{url}?)")
        raise _bad(url, _unknown_scheme(scheme))
    return row.grammar.parse(url, row.name, rest)


def _bad(url: str, why: str) -> InvalidAddress:
    return InvalidAddress(f"invalid address {url!r}: {why}")


def _unknown_scheme(scheme: str) -> str:
    import difflib  # only for the error message

    close = difflib.get_close_matches(scheme.lower(), SCHEMES, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]}://?)" if close else f" (known: {', '.join(SCHEMES)})"
    return f"unknown scheme {scheme!r}{hint}"


def _parse_inet(url: str, scheme: str, rest: str) -> Address:
    if not rest.startswith("//"):
        raise _bad(url, f"expected {scheme}://host:port")
    hostport = rest[2:]
    for mark, part in (("?", "options"), ("#", "fragment")):
        if mark in hostport and "/" not in hostport.partition(mark)[0]:
            after = hostport[hostport.index(mark) :]
            raise _bad(url, f"{scheme}: takes no {part} ({after!r} after host:port)")
    if "/" in hostport:
        raise _bad(url, "unexpected path after host:port")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise _bad(url, "unclosed '[' in IPv6 address")
        host, after = hostport[1:end], hostport[end + 1 :]
        if not after.startswith(":"):
            raise _bad(url, "missing port" if not after else f"unexpected {after!r} after ']'")
        port_text = after[1:]
        host = _ipv6_host(url, host)
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
    if _NUMBER.match(text):
        port = int(text)
        if port > 65535:
            raise _bad(url, f"port {port} out of range 0-65535")
        return port
    if _SERVICE_NAME.match(text):
        return text
    raise _bad(url, f"invalid port {text!r} (a number 0-65535 or a service name)")


def _check_host(url: str, host: str) -> None:
    """A dotted IPv4 address or a DNS name (RFC 1123: labels of 1-63 characters, 253 in
    all; one trailing dot, the root, is allowed, as getaddrinfo, socat and nc take it)."""
    if _is_ipv4(host):
        return
    name = host[:-1] if host.endswith(".") else host
    if not host.isascii():  # not encoded for the user: the stdlib's codec is IDNA 2003
        raise _bad(
            url,
            f"invalid host name {host!r}: not ASCII; give its IDNA 2008 form (xn--...), "
            "as idn2(1) prints it",
        )
    if _NUMERIC_LABEL.match(name.rpartition(".")[2]):
        # inet_aton's forms (0177.0.0.1 is 127.0.0.1, 127.1, 0x7f.1, 2130706433), which
        # getaddrinfo takes as numbers: never a host name, whose last label has a letter
        raise _bad(
            url,
            f"{host!r} is not an IPv4 address in dotted decimal, nor a host name "
            "(RFC 3986 §7.4, RFC 1123 §2.1: no octal, hex or short forms)",
        )
    if not _HOST_NAME.match(name) or len(name) > 253:
        raise _bad(url, f"invalid host name {host!r}")
    for label in name.split("."):
        if not label:
            raise _bad(url, f"empty label in host name {host!r}")
        if len(label) > 63:
            raise _bad(url, f"label {label[:8]}... in host name is {len(label)} bytes, over 63")
        if label[0] == "-" or label[-1] == "-":  # RFC 952, 1123 §2.1: a letter or digit
            raise _bad(url, f"invalid host name {host!r}: label {label!r} begins or ends in '-'")


def _ipv6_host(url: str, host: str) -> str:
    """An IPv6 literal and its zone (RFC 4007 §11: ``fe80::1%eth0``), the zone written after
    ``%25`` as RFC 6874 §2 writes it in a URL (a percent-encoded '%') or, as curl also
    takes it, after a bare '%'. Returned as getaddrinfo takes it: ``addr%zone``."""
    addr, sep, zone = host.partition("%")
    try:
        ipaddress.IPv6Address(addr)
    except ValueError:
        raise _bad(url, f"invalid IPv6 address {addr!r}") from None
    if not sep:
        return addr
    if zone == "25":
        raise _bad(url, "empty IPv6 zone after '%25' (RFC 6874; interface number 25 is %2525)")
    if zone.startswith("25"):
        zone = zone[2:]
    if not zone:
        raise _bad(url, "empty IPv6 zone after '%'")
    return f"{addr}%{zone}"


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _parse_path(url: str, scheme: str, rest: str, abstract: bool, limit: int | None) -> Address:
    if rest.startswith("//@") or (rest.startswith("@") and abstract):
        if not abstract:
            raise _bad(url, f"{scheme}s have no abstract namespace; use a path")
        name = rest[3:] if rest.startswith("//@") else rest[1:]
        if not name:
            raise _bad(url, "empty abstract socket name")
        size = len(os.fsencode(name))
        if limit is not None and size > limit:  # sun_path: a NUL, then the name
            raise _bad(url, f"abstract socket name is {size} bytes, over the limit of {limit}")
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
    _check_length(url, path, limit)
    return Address(scheme, path=path)


def _check_length(url: str, path: str, limit: int | None) -> None:
    size = len(os.fsencode(path))
    if limit is not None and size > limit:
        raise _bad(url, f"unix socket path is {size} bytes, over the limit of {limit}")


__all__ = [
    "BARE",
    "COMMAND",
    "FD_NUMBER",
    "FILE_PATH",
    "HOST_PORT",
    "SCHEMES",
    "SOCKET_NAME",
    "UNIX_PATH",
    "UNIX_PATH_MAX",
    "Address",
    "Grammar",
    "Kind",
    "PathGrammar",
    "Scheme",
    "parse",
]
