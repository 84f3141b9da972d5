"""The one place where ``ssl.SSLError`` becomes an ipcnet ``TLSError``.

Role: ``translate(exc, where, server_side)`` maps what OpenSSL reported (the verify code of
a certificate check, the reason of an alert or a record error) to the ``TLSError`` branch of
``ipcnet.errors``, with a short lower-case message naming the cause and the peer. Rules:
the SSLError is chained as ``__cause__`` by the caller (``raise ... from exc``); the same
failure reads differently on the two sides (a client "presented" nothing, a server
"requires" a certificate), so the side is an argument; unknown reasons keep OpenSSL's own
words, lower-cased; a failed handshake is first named from what the peer sent first
(``handshake_failure``: our own ClientHello echoed, an EOF before any answer).
"""

from __future__ import annotations

import datetime
import re
import ssl

from ipcnet import errors
from ipcnet.transports.tls import hello

# X509_V_ERR_* codes (openssl/x509_vfy.h) that the messages below single out
_NOT_YET_VALID = 9
_EXPIRED = 10
_SELF_SIGNED = 18  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: the leaf is its own issuer
_INVALID_PURPOSE = 26  # keyUsage / extendedKeyUsage do not allow this use
_HOSTNAME_MISMATCH = 62
_IP_MISMATCH = 64

_DECORATION = re.compile(r"^\[\w+\] | \(_ssl\.c:\d+\)$")
_VERSION_REASONS = {
    "UNSUPPORTED_PROTOCOL",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "NO_PROTOCOLS_AVAILABLE",
    "VERSION_TOO_LOW",
    "WRONG_SSL_VERSION",
}
_NOT_TLS_REASONS = {
    "HTTP_REQUEST",
    "HTTPS_PROXY_REQUEST",
    "WRONG_VERSION_NUMBER",
    "UNKNOWN_PROTOCOL",
    "PACKET_LENGTH_TOO_LONG",
    "RECORD_LAYER_FAILURE",
}
# alerts with which a peer says it does not accept our certificate
_REJECTED_ALERTS = {
    "TLSV1_ALERT_UNKNOWN_CA": "unknown ca",
    "SSLV3_ALERT_BAD_CERTIFICATE": "bad certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "certificate expired",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "certificate unknown",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "unsupported certificate",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "certificate revoked",
    "TLSV1_ALERT_ACCESS_DENIED": "access denied",
}


def translate(
    exc: BaseException,
    where: str,
    server_side: bool,
    accepted: str = "1.2 and newer",
    established: bool = False,
) -> errors.IPCError:
    """The ipcnet error for an SSLError raised while talking TLS with ``where``
    (``established``: after the handshake)."""
    if isinstance(exc, errors.IPCError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _verify_failed(exc, where, server_side)
    if isinstance(exc, ssl.SSLEOFError):
        return unclean_eof(where)
    if not isinstance(exc, ssl.SSLError):
        return errors.TLSError(f"tls error with {where}: {exc}")
    reason = exc.reason or ""
    if reason == "UNEXPECTED_EOF_WHILE_READING":
        return unclean_eof(where)
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return errors.NoClientCertificate(
            f"no client certificate: {where} offered none (this server requires one)"
        )
    if reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED":
        return errors.NoClientCertificate(
            f"no client certificate offered: {where} requires one (pass --cert and --key)"
        )
    if reason in _REJECTED_ALERTS:
        ours = "client" if not server_side else "server"
        return errors.CertificateRejected(
            f"certificate rejected: {where} refused our {ours} certificate "
            f"(alert: {_REJECTED_ALERTS[reason]})"
        )
    if reason in _VERSION_REASONS:
        return errors.ProtocolTooOld(
            f"protocol too old: {where} and we share no tls version (we accept tls {accepted})"
        )
    if reason in _NOT_TLS_REASONS:
        return not_tls(where, server_side)
    if reason == "SSLV3_ALERT_HANDSHAKE_FAILURE":
        if established:  # a later handshake: a TLS 1.2 renegotiation, which we decline
            return errors.TLSError(
                f"renegotiation declined: {where} ended the connection when we would not "
                "renegotiate (ipcnet never does; alert: handshake failure)"
            )
        return errors.TLSError(
            f"handshake refused by {where} (alert: handshake failure; "
            "a client certificate or a common cipher may be missing)"
        )
    if reason == "TLSV1_UNRECOGNIZED_NAME":  # RFC 6066 §3: the server knows no such name
        return errors.TLSError(
            f"unrecognized server name: {where} serves no site by the name we sent "
            "(alert: unrecognized name; the url's host or --sni)"
        )
    words = reason.lower().replace("_", " ") or _openssl_words(exc)
    if words.endswith("alert no application protocol"):  # RFC 7301 §3.2
        return errors.TLSError(
            f"no common application protocol: {where} accepts none of those offered (--alpn)"
        )
    return errors.TLSError(f"tls error with {where}: {words}")


def _openssl_words(exc: ssl.SSLError) -> str:
    """OpenSSL's text for a reason this Python has no name for, without "[SSL] " in front
    and "(_ssl.c:1006)" behind."""
    text = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else str(exc)
    return _DECORATION.sub("", text).lower()


def _verify_failed(
    exc: ssl.SSLCertVerificationError, where: str, server_side: bool
) -> errors.TLSError:
    code = exc.verify_code
    whose = f"the client certificate of {where}" if server_side else f"the certificate of {where}"
    if code == _EXPIRED:
        return errors.CertificateExpired(f"expired certificate: {whose} has expired")
    if code == _NOT_YET_VALID:
        return errors.CertificateExpired(f"certificate not yet valid: {whose}")
    if code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
        message = (exc.verify_message or "").rstrip(".")
        asked = message.rpartition(" for ")[2] or "the host asked for"
        if code == _IP_MISMATCH:  # openssl: "IP address mismatch"
            return errors.HostnameMismatch(
                f"wrong ip address: {whose} is not valid for {asked.strip(chr(39))}"
            )
        return errors.HostnameMismatch(f"wrong host name: {whose} is not valid for {asked}")
    detail = (exc.verify_message or "verification failed").lower()
    if code == _INVALID_PURPOSE:  # trusting its ca (--ca) would not help: say what would
        use = "a tls client" if server_side else "a tls server"
        return errors.CertificateUntrusted(
            f"unsuitable certificate: {whose} is not for {use} (its key usage or extended "
            f"key usage does not allow it: {detail})"
        )
    if server_side:
        hint = ""
    elif code == _SELF_SIGNED:  # its own issuer: the certificate itself is what to trust
        hint = "; pass --ca FILE holding that certificate to trust it"
    else:
        hint = "; pass --ca FILE to trust its ca"
    return errors.CertificateUntrusted(f"untrusted certificate: {whose} ({detail}{hint})")


def not_tls(where: str, server_side: bool) -> errors.NotTLS:
    if server_side:
        return errors.NotTLS(f"not tls: {where} sent plain text to a tls port")
    return errors.NotTLS(f"not tls: {where} did not answer in tls (is it a tls server?)")


def unclean_eof(where: str) -> errors.UncleanEOF:
    return errors.UncleanEOF(f"unclean eof: {where} closed the connection without close_notify")


def handshake_eof(where: str) -> errors.UncleanEOF:
    return errors.UncleanEOF(f"unclean eof: {where} closed the connection during the handshake")


def with_names(
    error: errors.HostnameMismatch, sans: tuple[str, ...], common_name: str | None
) -> errors.HostnameMismatch:
    """The same error, listing the names the certificate does have: its subject
    alternative names, the only ones checked (RFC 9525: never a common name)."""
    if sans:
        return errors.HostnameMismatch(f"{error} (it names: {', '.join(sans)})", sans)
    unused = f"; its common name {common_name} is not checked" if common_name else ""
    return errors.HostnameMismatch(f"{error} (it has no subject alternative names{unused})")


def with_dates(
    error: errors.CertificateExpired,
    where: str,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> errors.CertificateExpired:
    """The same verdict with the dates of the server's own certificate; when those are
    right, a ca certificate of its chain is the one out of date (openssl s_client shows
    the depth of the certificate that failed; Python's ssl does not tell it)."""
    expired = str(error).startswith("expired")
    now = datetime.datetime.now(datetime.UTC)
    if not_before <= now <= not_after:
        if expired:
            return errors.CertificateExpired(
                f"expired certificate: a ca certificate in the chain of {where} has expired "
                f"(its own is valid until {_stamp(not_after)})"
            )
        return errors.CertificateExpired(
            f"certificate not yet valid: a ca certificate in the chain of {where} "
            "(is this machine's clock right?)"
        )
    if expired:
        return errors.CertificateExpired(f"{error} (valid until {_stamp(not_after)})")
    return errors.CertificateExpired(
        f"{error} (valid from {_stamp(not_before)}; is this machine's clock right?)"
    )


def _stamp(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def no_common_protocol(
    where: str, offered: tuple[str, ...], ours: tuple[str, ...]
) -> errors.TLSError:
    return errors.TLSError(
        f"no common application protocol: {where} offered {', '.join(offered)}; "
        f"this server accepts {', '.join(ours)} (--alpn)"
    )


def timed_out(where: str, seconds: float, answered: bool = True) -> errors.HandshakeTimeout:
    """``answered``: whether the peer sent anything at all (a client asks: a plain server
    that waits for its client to speak first never answers a ClientHello)."""
    hint = "" if answered else " (it answered nothing: is it a tls server?)"
    return errors.HandshakeTimeout(
        f"tls handshake timeout: {where} did not finish the handshake in {seconds:g} s{hint}"
    )


def handshake_failure(
    exc: BaseException,
    where: str,
    server_side: bool,
    first: bytes,
    sent: bytes | bytearray | None = None,
) -> errors.IPCError | None:
    """What a failed handshake says about the peer, from the ``first`` bytes it sent (a
    client keeps all of the server's, up to 64 KiB; a server six) and (a client) what we
    ``sent``, where that is clearer than OpenSSL's reason (None: let ``translate`` say it):

    - a client that got a ClientHello back talks to an echo server (OpenSSL: "unexpected
      message"; a TLS server never sends a ClientHello);
    - the transport ended during the handshake: before any answer (openssl s_client:
      "unexpected eof while reading", curl: SSL_ERROR_SYSCALL), or after some; there was
      no session whose close_notify could be missing;
    - a TLS 1.2 server that asked for a client certificate (its CertificateRequest is in
      the clear) and then sent a handshake_failure alert refused the empty one we sent.
    """
    reason = getattr(exc, "reason", None) or ""
    if reason == "SSLV3_ALERT_HANDSHAKE_FAILURE" and not server_side and sent is not None:
        try:
            asked = hello.CERTIFICATE_REQUEST in hello.clear_messages(first)
            ours = hello.clear_messages(sent).get(hello.CERTIFICATE)
        except ValueError:
            asked, ours = False, None
        if asked and ours == b"\x00\x00\x00":  # an empty certificate_list
            return errors.NoClientCertificate(
                f"no client certificate offered: {where} requires one (pass --cert and --key)"
            )
    if not server_side and first[:1] == b"\x16" and first[5:6] == b"\x01":
        return errors.NotTLS(
            f"not tls: {where} sent our own tls hello back (an echo server? it is not a tls server)"
        )
    if isinstance(exc, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
        if not first and not server_side:
            return errors.UncleanEOF(
                f"unclean eof: {where} closed the connection before answering our tls hello "
                "(is it a tls server?)"
            )
        return handshake_eof(where)
    return None
