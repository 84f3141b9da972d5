"""A development CA and the certificates it signs, for ``ipcnet cert``.

Role: make (or reuse) a local certificate authority in a directory and issue a server
certificate for the given names (default: localhost, 127.0.0.1 and ::1), and optionally a
client certificate for mutual TLS, with the ``cryptography`` package. Rules: ECDSA P-256
keys; the CA is reused when ``ca.pem`` and ``ca-key.pem`` are both there (so whoever
trusts it keeps trusting it), otherwise made; every file is written to a temporary name and
renamed into place (a server reloading on SIGHUP never reads half a file); key files are
mode 0600. A key and its certificate are two renames, which no file system makes one: a
crash between them leaves a new key beside the old certificate, and every load of the pair
detects that (OpenSSL's key check: ``key ... does not match certificate ...``; a reload
keeps the pair it had). One file holding both would be atomic, but then either the key
sits in a file others may read or the certificate in one they may not.
A name is an IP address if it parses as one (an IPv6 zone is dropped: an iPAddress is the
16 octets; an IPv6 address may be written in brackets, as in a URL: ``[::1]``; brackets
around anything else are refused), else a DNS name: lower-cased, a unicode name as its
A-labels (RFC 5280 7.2), refused if it is not a host name (RFC 1123: labels of 1-63
letters, digits, ``-`` inside and ``_``; 253 characters; a last label that is a number is
a mistyped IP address), and a wildcard needs two labels after ``*.`` and no ``_``
(OpenSSL's rules for one). The subject's common name is the first name's certificate form
(when it fits 64 characters, else the subject is empty and the subjectAltName critical,
RFC 5280 4.2.1.6); the authority key identifier is the CA's own subject key identifier; a
reused CA must be a CA, unexpired, and its key must be the one in ca-key.pem.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any

from ipcnet.errors import TLSConfigError

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 3650
LEAF_DAYS = 397  # what browsers accept for a server certificate
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_NUMBER = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)\Z")  # WHATWG URL: a host ending in a number is IPv4
_CN_MAX = 64  # ub-common-name, RFC 5280 appendix A


@dataclass(frozen=True)
class Issued:
    """The files written (or reused) by ``make``."""

    ca: str
    ca_key: str
    ca_reused: bool
    cert: str
    key: str
    names: tuple[str, ...]
    client_cert: str | None = None
    client_key: str | None = None


def make(out: str, names: tuple[str, ...] = (), client: str | None = None) -> Issued:
    """Write ca.pem, ca-key.pem, server.pem, server-key.pem (and client.pem, client-key.pem)."""
    from cryptography import x509

    sans = list(dict.fromkeys(_san(name) for name in names or DEFAULT_NAMES))
    if client is not None and not 0 < len(client) <= _CN_MAX:
        raise TLSConfigError(f"invalid client name {client!r}: give 1 to {_CN_MAX} characters")
    if client is not None and any("\ud800" <= c <= "\udfff" for c in client):
        # argv bytes that are not UTF-8 (PEP 383): a certificate's names are UTF-8 text
        raise TLSConfigError(f"invalid client name {client!r}: not UTF-8 text")
    if os.path.exists(out) and not os.path.isdir(out):
        raise TLSConfigError(f"cannot write to {out}: not a directory")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise TLSConfigError(f"cannot create {out}: {(exc.strerror or str(exc)).lower()}") from exc
    ca_path, ca_key_path = os.path.join(out, "ca.pem"), os.path.join(out, "ca-key.pem")
    ca_cert, ca_key, reused = _load_or_make_ca(ca_path, ca_key_path)
    key = _new_key()
    cert = _build(
        subject=None,
        key=key,
        issuer=ca_cert,
        issuer_key=ca_key,
        days=LEAF_DAYS,
        sans=sans,
        usage=x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
    )
    cert_path, key_path = os.path.join(out, "server.pem"), os.path.join(out, "server-key.pem")
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, _cert_pem(cert), 0o644)
    texts = tuple(str(san.value) for san in sans)
    issued = Issued(ca_path, ca_key_path, reused, cert_path, key_path, texts)
    if client is None:
        return issued
    ckey = _new_key()
    ccert = _build(
        subject=client,
        key=ckey,
        issuer=ca_cert,
        issuer_key=ca_key,
        days=LEAF_DAYS,
        sans=[],
        usage=x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    ccert_path, ckey_path = os.path.join(out, "client.pem"), os.path.join(out, "client-key.pem")
    _write(ckey_path, _key_pem(ckey), 0o600)
    _write(ccert_path, _cert_pem(ccert), 0o644)
    return Issued(**{**issued.__dict__, "client_cert": ccert_path, "client_key": ckey_path})


def _san(name: str) -> Any:
    from cryptography import x509

    inside = name[1:-1] if name.startswith("[") and name.endswith("]") else None
    try:
        ip = ipaddress.ip_address(name if inside is None else inside)
    except ValueError:
        if inside is not None:
            raise TLSConfigError(
                f"invalid certificate name {name!r}: brackets are for an ipv6 address "
                "(as in a url); write the name without them"
            ) from None
    else:
        if inside is not None and ip.version != 6:
            raise TLSConfigError(
                f"invalid certificate name {name!r}: brackets are for an ipv6 address "
                f"(as in a url); write {inside}"
            )
        return x509.IPAddress(ipaddress.ip_address(ip.packed))  # without an IPv6 zone
    host, why = name.lower(), "not a host name or ip address"
    star, host = ("*.", host[2:]) if host.startswith("*.") else ("", host)
    if not host.isascii():
        import idna

        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            why = "not a valid internationalized domain name (idna 2008)"
    labels = host.split(".")
    if host.endswith(".") and all(_LABEL.match(label) for label in labels[:-1]):
        why = "write it without the trailing dot"
    elif len(star + host) > 253:
        why = "longer than 253 characters"
    elif any(len(label) > 63 for label in labels):
        why = "a label is longer than 63 characters"
    elif not all(_LABEL.match(label) for label in labels):
        pass
    elif _NUMBER.match(labels[-1]):
        why = "it ends in a number, as an ip address does, but is not one"
    elif star and len(labels) < 2:
        why = "a wildcard needs two labels after '*.' (tls clients match no *.tld)"
    elif star and "_" in host:
        why = "a wildcard's other labels cannot hold '_' (openssl matches no such wildcard)"
    else:
        return x509.DNSName(star + host)
    raise TLSConfigError(f"invalid certificate name {name!r}: {why}")


def _new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _load_or_make_ca(cert_path: str, key_path: str) -> tuple[Any, Any, bool]:
    have = os.path.exists(cert_path), os.path.exists(key_path)
    if all(have):
        cert, key = _load_ca(cert_path, key_path)
        return cert, key, True
    if any(have):
        present = cert_path if have[0] else key_path
        raise TLSConfigError(
            f"found {present} without its pair: remove it, or put both ca files back"
        )
    key = _new_key()
    cert = _build(subject="ipcnet development CA", key=key, issuer=None, issuer_key=key,
                  days=CA_DAYS, sans=[], usage=None)  # fmt: skip
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, _cert_pem(cert), 0o644)
    return cert, key, False


def _load_ca(cert_path: str, key_path: str) -> tuple[Any, Any]:
    """The CA in ``cert_path`` and its key, refused if they cannot sign what clients accept."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    def refuse(why: str) -> TLSConfigError:
        return TLSConfigError(f"cannot reuse the ca in {cert_path}: {why}")

    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(key_path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise refuse((exc.strerror or str(exc)).lower()) from exc
    except ValueError as exc:
        raise refuse("not a pem certificate") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise refuse(f"{key_path} is encrypted: give it without a passphrase") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise refuse(f"{key_path} is not a pem private key") from exc
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise refuse("it is not a ca certificate (basicConstraints has no ca:true)")
    if cert.public_key() != key.public_key():
        raise refuse(f"{key_path} is not its key")
    if cert.not_valid_after_utc <= datetime.datetime.now(datetime.UTC):
        when = cert.not_valid_after_utc.strftime("%Y-%m-%d")
        raise refuse(f"it expired on {when}: remove both ca files to make a new ca")
    return cert, key


def _build(
    subject: str | None,
    key: Any,
    issuer: Any,
    issuer_key: Any,
    days: int,
    sans: list[Any],
    usage: Any,
) -> Any:
    """A certificate for ``key`` signed by ``issuer_key``; a self-signed CA if no ``issuer``.

    A server's subject (``subject`` None) is the common name of its first name that fits
    (CA/Browser baseline requirements 7.1.4.3: the common name is one of the SANs)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
    from cryptography.x509.oid import NameOID

    if subject is None:
        subject = next((t for t in (str(s.value) for s in sans) if len(t) <= _CN_MAX), None)
    cn = [] if subject is None else [x509.NameAttribute(NameOID.COMMON_NAME, subject)]
    name = x509.Name(cn)
    now = datetime.datetime.now(datetime.UTC)
    is_ca = issuer is None
    end = now + datetime.timedelta(days=days)
    if not is_ca:  # a path is valid only while its CA is (RFC 5280 6.1.3): end with it
        end = min(end, issuer.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name if is_ca else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        try:  # the issuer's own identifier, however it was computed (RFC 5280 4.2.1.1)
            ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        except x509.ExtensionNotFound:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
        ).add_extension(aki, False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), not cn)
    pure = isinstance(issuer_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey))
    return builder.sign(issuer_key, None if pure else hashes.SHA256())


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    data: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return data


def _cert_pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    data: bytes = cert.public_bytes(serialization.Encoding.PEM)
    return data


def _write(path: str, data: bytes, mode: int) -> None:
    """Write to a temporary file beside ``path`` with ``mode``, then rename it into place."""
    folder = os.path.dirname(path) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=".ipcnet-", dir=folder)  # mode 0600 from the start
    except OSError as exc:
        raise TLSConfigError(f"cannot write {path}: {(exc.strerror or str(exc)).lower()}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise TLSConfigError(f"cannot write {path}: {(exc.strerror or str(exc)).lower()}") from exc
