"""A development CA and the certificates it signs, for ``ipcnet cert``.

Role: make (or reuse) a local certificate authority in a directory and issue a server
certificate for the given names (default: localhost, 127.0.0.1 and ::1), and optionally a
client certificate for mutual TLS, with the ``cryptography`` package. Rules: ECDSA P-256
keys; the CA is reused when ``ca.pem`` and ``ca-key.pem`` are both there (so whoever
trusts it keeps trusting it), otherwise made; every file is written to a temporary name and
renamed into place (a server reloading on SIGHUP never reads half a file); key files are
mode 0600; a name is an IP address if it parses as one, else a DNS name.
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
_DNS = re.compile(r"(\*\.)?([A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?\.)*[A-Za-z0-9_-]+\Z")


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

    names = names or DEFAULT_NAMES
    sans = [_san(name) for name in names]
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise TLSConfigError(f"cannot create {out}: {(exc.strerror or str(exc)).lower()}") from exc
    ca_path, ca_key_path = os.path.join(out, "ca.pem"), os.path.join(out, "ca-key.pem")
    ca_cert, ca_key, reused = _load_or_make_ca(ca_path, ca_key_path)
    key = _new_key()
    cert = _build(
        subject=names[0],
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
    issued = Issued(ca_path, ca_key_path, reused, cert_path, key_path, names)
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

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not _DNS.match(name) or len(name) > 253:
        raise TLSConfigError(f"invalid certificate name {name!r}: not a host name or ip address")
    return x509.DNSName(name.lower())


def _new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _load_or_make_ca(cert_path: str, key_path: str) -> tuple[Any, Any, bool]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    have = os.path.exists(cert_path), os.path.exists(key_path)
    if all(have):
        try:
            with open(cert_path, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            with open(key_path, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise TLSConfigError(f"cannot reuse the ca in {cert_path}: {exc}") from exc
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


def _build(
    subject: str, key: Any, issuer: Any, issuer_key: Any, days: int, sans: list[Any], usage: Any
) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    is_ca = issuer is None
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name if is_ca else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
    return builder.sign(issuer_key, hashes.SHA256())


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
