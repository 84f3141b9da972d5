"""Read the names and dates on a server's certificate, for the message of a host-name
mismatch or of an expired certificate.

Role: after a handshake failed because the certificate is for other names, connect once
more without any verification, take the certificate and list its DNS names and IP
addresses (its subject alternative names: the only names checked: RFC 9525), and
its common name, which is not; after one failed on a date, its validity period (whether
the server's own certificate or a ca certificate of its chain is out of date). Rules:
only ever used on those error paths; the connection carries no data and is closed at once;
a failure here gives None: the error stands as it is.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from typing import NamedTuple

from ipcnet.addresses import Address
from ipcnet.transports.tls.context import TLSOptions

PROBE_TIMEOUT = 5.0


class Names(NamedTuple):
    sans: tuple[str, ...]  # subjectAltName DNS names and IP addresses
    common_name: str | None
    not_before: datetime.datetime | None = None  # its validity period (UTC)
    not_after: datetime.datetime | None = None


def certificate_names(
    peer: Address | None, options: TLSOptions, server_name: str | None
) -> Names | None:
    if peer is None:
        return None
    try:
        der = _peer_certificate(peer, options, server_name)
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        return None
    return _names(der) if der else None


def _peer_certificate(peer: Address, options: TLSOptions, server_name: str | None) -> bytes | None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if options.cert:
        ctx.load_cert_chain(options.cert, options.key)
    if peer.path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: object = peer.unix_sockaddr
    else:
        sock = socket.socket(socket.AF_INET6 if ":" in (peer.host or "") else socket.AF_INET)
        target = (peer.host, peer.port)
    with sock:
        sock.settimeout(PROBE_TIMEOUT)
        sock.connect(target)  # type: ignore[arg-type]
        with ctx.wrap_socket(sock, server_hostname=server_name) as tls:
            return tls.getpeercert(binary_form=True)


def der_names(der: bytes) -> tuple[str, ...]:
    """The subjectAltName DNS names and IP addresses of a DER certificate."""
    return _names(der).sans


def _names(der: bytes) -> Names:
    try:
        from cryptography import x509
    except ImportError:
        return Names((), None)
    cert = x509.load_der_x509_certificate(der)
    common = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    common_name = str(common[0].value) if common else None
    dates = cert.not_valid_before_utc, cert.not_valid_after_utc
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return Names((), common_name, *dates)
    dns = [_dns(name) for name in san.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return Names((*dns, *ips), common_name, *dates)


def _dns(name: str) -> str:
    """A DNS name; one that reads as an IP address is marked: it never matches one."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    return f"{name} (a dns name, not an ip address)"
