"""Read the names on a server's certificate, for the message of a host-name mismatch.

Role: after a handshake failed because the certificate is for other names, connect once
more without any verification, take the certificate and list its DNS names and IP
addresses. Rules: only ever used on that error path; the connection carries no data and is
closed at once; any failure here just means no names are listed (the error stands).
"""

from __future__ import annotations

import socket
import ssl

from ipcnet.addresses import Address
from ipcnet.transports.tls.context import TLSOptions

PROBE_TIMEOUT = 5.0


def certificate_names(
    peer: Address | None, options: TLSOptions, server_name: str | None
) -> tuple[str, ...]:
    if peer is None:
        return ()
    try:
        der = _peer_certificate(peer, options, server_name)
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        return ()
    return der_names(der) if der else ()


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
    """The subjectAltName DNS names and IP addresses of a DER certificate (else its CN)."""
    try:
        from cryptography import x509
    except ImportError:
        return ()
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        common = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return tuple(str(a.value) for a in common)
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return (*dns, *ips)
