"""TLS options and the ``ssl.SSLContext``s built from them; server contexts reload.

Role: ``TLSOptions`` holds what the CLI flags and library keywords of the same names say
(``--cert --key --ca --insecure --sni --alpn --tls-min --tls-max --tls-tickets``);
``client_context`` and ``server_context`` build contexts with secure defaults;
``ServerContext`` keeps the server's current context and swaps in a new one on
``reload()`` (SIGHUP), which only new handshakes use.

Rules:
- secure defaults: verification on, host name checked (against subjectAltName only, never
  the common name: RFC 9525 §6.3), TLS 1.2 or newer, the system trust store when ``ca`` is
  absent, no TLS 1.2 renegotiation on either side (as Go, BoringSSL and rustls);
  ``insecure`` turns verification off and says so on stderr;
- on a server, ``ca`` requests and verifies client certificates (mutual TLS);
- every certificate in ``ca`` is a trust anchor, an intermediate or a peer's own leaf
  too (OpenSSL's partial chain, CPython 3.13's default): ``--ca server.pem`` pins that
  one server, as stunnel's ``verifyPeer`` with it as CAfile does;
- session tickets (TLS 1.3, server): ``tickets`` = 0 by default. A TLS 1.3 server sends
  its tickets *after* the handshake, unasked; a client that writes, then closes without
  reading leaves them unread in its receive queue, so its kernel answers the close with an
  RST, and the server loses whatever of the client's data it had not read yet. With no
  tickets nothing is ever sent that the client did not ask for. The price is a full
  handshake per connection (no resumption); ``--tls-tickets N`` buys resumption back;
- a ready ``SSLContext`` passed as ``context`` is used as it is;
- ``sessions`` (a ``ClientSessions``, what a relay's targets share): a client that
  reconnects resumes its last session with that server (a TLS 1.2 session id or ticket, a
  TLS 1.3 ticket), as stunnel's client mode does by default (``sessionResume``); its one
  context is built once, since a session resumes only under the context that made it;
- a bad file is a ``TLSConfigError`` naming the file; a bad file on reload keeps the old
  context and logs why.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ipcnet.errors import TLSConfigError

log = logging.getLogger("ipcnet.tls")

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_NAMES = {version: name for name, version in VERSIONS.items()}
HANDSHAKE_TIMEOUT = 10.0  # seconds a peer has to finish the handshake
CLOSE_TIMEOUT = 1.0  # seconds to wait for the peer's close_notify after sending ours


@dataclass(frozen=True)
class TLSOptions:
    """What a TLS endpoint needs; field names are the CLI flags' (``--tls-min`` = tls_min)."""

    cert: str | None = None  # PEM certificate (chain allowed); a server needs one
    key: str | None = None  # PEM private key (default: in ``cert``)
    ca: str | None = None  # client: whom to trust; server: require client certs from it
    # (a PEM file, or a directory made with ``openssl rehash``: stunnel's CApath)
    insecure: bool = False  # client: no verification at all
    sni: str | None = None  # client: server name to send and check (default: the host)
    alpn: tuple[str, ...] = ()  # protocols to offer (client) or accept (server)
    tls_min: str = "1.2"  # "1.2" or "1.3"
    tls_max: str | None = None  # "1.2" or "1.3" (default: the newest there is)
    tls_tickets: int = 0  # TLS 1.3 session tickets a server sends (see the module docs)
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    close_timeout: float = CLOSE_TIMEOUT
    context: ssl.SSLContext | None = field(default=None, compare=False)
    sessions: ClientSessions | None = field(default=None, compare=False)  # client: resume

    @classmethod
    def of(cls, tls: TLSOptions | ssl.SSLContext | None = None, **fields: Any) -> TLSOptions:
        """Options from a TLSOptions, a ready SSLContext, or the fields as keywords."""
        if isinstance(tls, ssl.SSLContext):
            fields["context"] = tls
            tls = None
        unknown = set(fields) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TLSConfigError(
                f"unknown tls option {sorted(unknown)[0]!r} (known: "
                f"{', '.join(f.name for f in dataclasses.fields(cls))})"
            )
        return dataclasses.replace(tls, **fields) if tls is not None else cls(**fields)

    def __post_init__(self) -> None:
        alpn: object = self.alpn  # a "p1,p2" string or any list is accepted too
        if isinstance(alpn, str):
            object.__setattr__(self, "alpn", parse_alpn(alpn))
        elif not isinstance(alpn, tuple):
            object.__setattr__(self, "alpn", tuple(alpn))  # type: ignore[arg-type]
        if self.tls_min not in VERSIONS:
            raise TLSConfigError(f"invalid --tls-min {self.tls_min!r}: expected 1.2 or 1.3")
        if self.tls_max is not None and self.tls_max not in VERSIONS:
            raise TLSConfigError(f"invalid --tls-max {self.tls_max!r}: expected 1.2 or 1.3")
        if self.tls_max is not None and VERSIONS[self.tls_max] < VERSIONS[self.tls_min]:
            raise TLSConfigError(
                f"invalid --tls-max {self.tls_max}: older than --tls-min {self.tls_min}"
            )
        if self.tls_tickets < 0:
            raise TLSConfigError(f"invalid --tls-tickets {self.tls_tickets}: expected 0 or more")
        if self.handshake_timeout <= 0:
            raise TLSConfigError("invalid handshake timeout: expected a positive number of s")
        for name in self.alpn:
            if not name or len(name) > 255 or not name.isascii():
                raise TLSConfigError(f"invalid --alpn protocol {name!r}")
        if self.key and not self.cert and self.context is None:  # else ignored, silently
            raise TLSConfigError("--key without --cert: give the certificate the key is for")
        why = None if self.sni is None else sni_problem(self.sni)
        if why is not None:
            raise TLSConfigError(f"invalid --sni {self.sni!r}: {why}")
        if self.sni is not None and self.sni.startswith("["):  # [::1], as a URL writes it
            object.__setattr__(self, "sni", self.sni[1:-1])


def parse_alpn(text: str | None) -> tuple[str, ...]:
    """``--alpn h2,http/1.1`` -> ("h2", "http/1.1")."""
    return tuple(p.strip() for p in text.split(",") if p.strip()) if text else ()


def sni_problem(name: str) -> str | None:
    """Why ``name`` cannot be a client's server name, or None: ssl encodes it with the idna
    codec (RFC 3490 labels: none empty, none over 63 characters) unless it is an IP
    address, and raised a bare UnicodeError from deep in the handshake for one it could
    not encode (``--sni a..b``, or argv bytes that are not UTF-8). An IPv6 address may be
    written in brackets, as in a URL (``[::1]``: TLSOptions drops them); the idna codec
    took brackets, so ``[::1]`` went out as a host name (RFC 6066 §3: no IP literal)."""
    import ipaddress

    if not name:
        return "empty"
    if name.startswith("[") and name.endswith("]"):
        try:
            if ipaddress.ip_address(name[1:-1]).version == 6:
                return None
        except ValueError:
            pass
        return "brackets are for an ipv6 address (as in a url)"
    if "[" in name or "]" in name:
        return "not a host name ('[' and ']' only enclose an ipv6 address)"
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        pass
    if any("\ud800" <= c <= "\udfff" for c in name):
        return "not UTF-8 text"
    try:
        name.encode("idna")
    except UnicodeError:
        return "not a host name (a label is empty, longer than 63, or not allowed by idna)"
    return None


def client_context(options: TLSOptions) -> ssl.SSLContext:
    """A client context: verify the server against ``ca`` (or the system store)."""
    if options.context is not None:
        return options.context
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, **_ca_keywords(options.ca))
    except (OSError, ssl.SSLError) as exc:
        raise _file_error("ca file", options.ca, exc) from exc
    _versions(ctx, options)
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # see the rules: --ca leaf.pem pins
    ctx.options |= ssl.OP_NO_RENEGOTIATION  # a HelloRequest gets a no_renegotiation alert
    ctx.hostname_checks_common_name = False
    if options.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        log.warning("tls: --insecure: the server's certificate is not checked")
    if options.cert:
        _load_chain(ctx, options.cert, options.key)
    if options.alpn:
        ctx.set_alpn_protocols(list(options.alpn))
    return ctx


def server_context(options: TLSOptions) -> ssl.SSLContext:
    """A server context from ``cert``/``key``; with ``ca``, client certificates are required."""
    if options.context is not None:
        return options.context
    if not options.cert:
        raise TLSConfigError("a tls server needs a certificate: pass --cert FILE --key FILE")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _versions(ctx, options)
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.num_tickets = options.tls_tickets
    _load_chain(ctx, options.cert, options.key)
    if options.ca:
        try:
            ctx.load_verify_locations(**_ca_keywords(options.ca))
        except (OSError, ssl.SSLError) as exc:
            raise _file_error("ca file", options.ca, exc) from exc
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if options.alpn:
        ctx.set_alpn_protocols(list(options.alpn))
    return ctx


_HASHED = re.compile(r"^[0-9a-f]{8}\.\d+$")  # what openssl rehash names a ca certificate


def _ca_keywords(ca: str | None) -> dict[str, str | None]:
    """``--ca``: a PEM file, or a directory of certificates under their subject hashes
    (stunnel's CApath, curl's --capath, openssl's -CApath: made with ``openssl rehash``).
    OpenSSL looks in a directory only for a hashed name, so one with none is refused."""
    if ca is None or not os.path.isdir(ca):
        return {"cafile": ca}
    try:
        hashed = any(_HASHED.match(name) for name in os.listdir(ca))
    except OSError as exc:
        raise _file_error("ca directory", ca, exc) from exc
    if not hashed:
        raise TLSConfigError(
            f"cannot load ca directory {ca}: no certificate in it under its hash "
            f"(run: openssl rehash {ca})"
        )
    return {"capath": ca}


def _versions(ctx: ssl.SSLContext, options: TLSOptions) -> None:
    ctx.minimum_version = VERSIONS[options.tls_min]
    if options.tls_max is not None:
        ctx.maximum_version = VERSIONS[options.tls_max]


def accepted(ctx: ssl.SSLContext) -> str:
    """The versions a context accepts, for messages: "1.2 and newer", "1.3 only"."""
    low = _NAMES.get(ctx.minimum_version, "1.2")
    high = _NAMES.get(ctx.maximum_version)
    if high is None:
        return f"{low} and newer"
    return f"{low} only" if high == low else f"{low} to {high}"


class _Encrypted(Exception):
    """Raised by ``_no_passphrase``: the key file is encrypted."""


def _no_passphrase() -> str:
    """The password callback: without it OpenSSL would prompt on the terminal and wait."""
    raise _Encrypted


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str | None) -> None:
    keyfile = key or cert
    files = cert if key is None else f"{cert}, {key}"
    for what, path in (("certificate", cert), ("key", key)):
        if path is not None and not os.path.exists(path):
            raise TLSConfigError(f"cannot load {what}: no such file {path}")
    try:
        ctx.load_cert_chain(cert, key, password=_no_passphrase)
    except _Encrypted:
        raise TLSConfigError(
            f"cannot load key {keyfile}: it is encrypted and ipcnet takes no passphrase "
            f"(decrypt it: openssl pkey -in {keyfile} -out plain-key.pem)"
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TLSConfigError(f"key {keyfile} does not match certificate {cert}") from exc
        if b"-----BEGIN CERTIFICATE-----" not in _head(cert):
            raise TLSConfigError(
                f"cannot load certificate {cert}: not a pem file of the right kind "
                "(no certificate in it)"
            ) from exc
        if b"PRIVATE KEY-----" not in _head(keyfile):
            hint = "" if key else " (pass --key FILE)"
            raise TLSConfigError(f"cannot load key: no private key in {keyfile}{hint}") from exc
        raise _file_error("certificate and key", files, exc) from exc
    except OSError as exc:
        raise _file_error("certificate and key", files, exc) from exc


def _head(path: str) -> bytes:
    """The start of a PEM file, to tell which of cert and key OpenSSL could not read."""
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20)
    except OSError:
        return b""


def _file_error(what: str, path: str | None, exc: BaseException) -> TLSConfigError:
    if isinstance(exc, ssl.SSLError):
        why = (exc.reason or "").lower().replace("_", " ")
        if not why or why in ("pem lib", "no start line", "no certificate or crl found"):
            why = "not a pem file of the right kind"
    elif isinstance(exc, OSError):
        why = (exc.strerror or str(exc)).lower()
    else:
        why = str(exc)
    return TLSConfigError(f"cannot load {what} {path}: {why}")


class ServerContext:
    """The server's current context; ``reload()`` builds a new one from the same files.

    Each handshake takes ``current`` when it starts, so a reload never touches live
    connections. A reload that fails (a missing or half-written file, a key that does not
    match) keeps the old context, logs why and returns False.
    """

    def __init__(self, options: TLSOptions) -> None:
        self.options = options
        self.current = server_context(options)
        self.reloads = 0
        self._lock = threading.Lock()

    def reload(self) -> bool:
        if self.options.context is not None:
            log.warning("tls: reload: the server was given a ready ssl context; nothing to load")
            return False
        if not self._lock.acquire(blocking=False):
            return False  # a reload is under way (a signal during a reload): that one counts
        try:
            try:
                fresh = server_context(self.options)
            except TLSConfigError as exc:
                log.error("tls: reload failed, keeping the current certificate: %s", exc)
                return False
            self.current = fresh
            self.reloads += 1
        finally:
            self._lock.release()
        log.info("tls: reloaded certificate %s", self.options.cert)
        return True


class ClientSessions:
    """A client's contexts and its last resumable session per server (see the rules).

    Keyed by the server's address and the name checked, so a session is offered only to
    the server, and for the name, that it was verified for; at most ``LIMIT`` servers are
    remembered (the oldest is forgotten first). Thread-safe: a relay connects on threads.
    """

    LIMIT = 256

    def __init__(self) -> None:
        self._contexts: dict[object, ssl.SSLContext] = {}
        self._sessions: dict[tuple[str, str | None], ssl.SSLSession] = {}
        self._lock = threading.Lock()

    def context(self, key: object, build: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        """The context for ``key`` (the options it is built from), built once."""
        with self._lock:
            ctx = self._contexts.get(key)
        if ctx is None:
            ctx = build()  # outside the lock: it reads the ca file
            with self._lock:
                ctx = self._contexts.setdefault(key, ctx)
        return ctx

    def get(self, server: tuple[str, str | None]) -> ssl.SSLSession | None:
        with self._lock:
            return self._sessions.get(server)

    def keep(self, server: tuple[str, str | None], session: ssl.SSLSession) -> None:
        with self._lock:
            self._sessions.pop(server, None)
            self._sessions[server] = session
            while len(self._sessions) > self.LIMIT:
                del self._sessions[next(iter(self._sessions))]
