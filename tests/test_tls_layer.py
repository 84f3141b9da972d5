"""The sans-IO TLS layer: two TLSLayers talk through memory only, no sockets."""

from __future__ import annotations

import ssl

import pytest

from ipcnet import errors
from ipcnet.transports.tls import TLSLayer, TLSOptions
from ipcnet.transports.tls.context import client_context, server_context
from tlskit import certs, client_options, layers, pump, server_options, shake


def both_errors(c: TLSLayer, s: TLSLayer) -> dict[str, errors.IPCError]:
    """Run both handshakes to the end, keeping each side's error."""
    seen: dict[str, errors.IPCError] = {}
    for _ in range(8):
        for name, layer in (("client", c), ("server", s)):
            if name in seen:
                continue
            try:
                if layer.handshake():
                    layer.read()  # a TLS 1.3 client hears of a refusal after its handshake
            except errors.IPCError as exc:
                seen[name] = exc
        pump(c, s)
    return seen


def ready_context(server: bool, max_version: str | None = None, **kw: str) -> ssl.SSLContext:
    ctx = server_context(server_options(**kw)) if server else client_context(client_options(**kw))
    if max_version:
        ctx.maximum_version = {"1.2": ssl.TLSVersion.TLSv1_2}[max_version]
    return ctx


def test_handshake_then_data_both_ways():
    c, s = layers()
    shake(c, s)
    assert c.established and s.established
    assert c.version == s.version == "TLSv1.3"
    assert c.cipher == s.cipher
    c.write(b"ping")
    pump(c, s)
    assert s.read() == b"ping"
    assert s.read() is None  # nothing more yet: not EOF
    s.write(b"pong" * 10000)
    pump(c, s)
    assert c.read_all() == b"pong" * 10000


def test_half_close_tls13_each_way():
    c, s = layers()
    shake(c, s)
    c.write(b"last words")
    c.close_notify()
    pump(c, s)
    assert s.read_all() == b"last words"
    assert s.read() == b""  # EOF, and it stays
    assert s.read_all() == b""
    s.write(b"reply after eof")  # the server's direction is still open
    s.close_notify()
    pump(c, s)
    assert c.read_all() == b"reply after eof"
    assert c.read() == b""


def test_tls12_close_notify_ends_reading():
    c, s = layers(server=TLSOptions(context=ready_context(True, max_version="1.2")))
    shake(c, s)
    assert c.version == "TLSv1.2"
    s.write(b"bye")
    s.close_notify()
    pump(c, s)
    assert c.read_all() == b"bye"
    assert c.read() == b""


def test_unclean_eof_after_data_is_an_error_once_the_data_is_read():
    c, s = layers()
    shake(c, s)
    s.write(b"partial")
    pump(c, s)
    c.receive_eof()  # the TCP stream ended, no close_notify
    assert c.read_all() == b"partial"
    with pytest.raises(errors.UncleanEOF, match="without close_notify"):
        c.read_all()


def test_close_notify_before_the_handshake_sends_nothing():
    c, _ = layers()
    c.close_notify()
    assert c.close_sent and c.pending == 0


def test_application_protocol_negotiated():
    c, s = layers(
        server=server_options(alpn=("http/1.1",)), client=client_options(alpn=("h2", "http/1.1"))
    )
    shake(c, s)
    assert c.alpn == s.alpn == "http/1.1"


def test_client_certificate_is_seen_by_the_server():
    c, s = layers(
        server=server_options(ca=certs().ca),
        client=client_options(cert=certs().client.cert, key=certs().client.key),
    )
    shake(c, s)
    cert = s.peer_certificate()
    assert cert is not None
    assert ("commonName", "client@ipcnet.test") in [
        kv for rdn in cert["subject"] for kv in rdn
    ] or (
        "email",
        "client@ipcnet.test",
    ) in cert.get("subjectAltName", ())


# --- every failure gets its own error, on both sides ------------------------------------


def test_untrusted_certificate():
    seen = both_errors(*layers(server=server_options(certs().other_server)))
    assert isinstance(seen["client"], errors.CertificateUntrusted)
    assert str(seen["client"]).startswith("untrusted certificate: the certificate of server")
    assert "--ca" in str(seen["client"])
    assert isinstance(seen["server"], errors.CertificateRejected)
    assert "unknown ca" in str(seen["server"])


def test_expired_certificate():
    seen = both_errors(*layers(server=server_options(certs().expired)))
    assert isinstance(seen["client"], errors.CertificateExpired)
    assert str(seen["client"]) == "expired certificate: the certificate of server has expired"
    assert isinstance(seen["server"], errors.CertificateRejected)


def test_wrong_host_name():
    seen = both_errors(*layers(server=server_options(certs().wrong_host)))
    error = seen["client"]
    assert isinstance(error, errors.HostnameMismatch)
    assert str(error) == "wrong host name: the certificate of server is not valid for 'localhost'"


def test_no_client_certificate_offered():
    seen = both_errors(*layers(server=server_options(ca=certs().ca)))
    assert isinstance(seen["server"], errors.NoClientCertificate)
    assert str(seen["server"]).startswith("no client certificate: client offered none")
    assert isinstance(seen["client"], errors.NoClientCertificate)
    assert "pass --cert and --key" in str(seen["client"])


def test_client_certificate_from_an_untrusted_ca():
    seen = both_errors(
        *layers(
            server=server_options(ca=certs().ca),
            client=client_options(cert=certs().other_client.cert, key=certs().other_client.key),
        )
    )
    assert isinstance(seen["server"], errors.CertificateUntrusted)
    assert "client certificate of client" in str(seen["server"])
    assert isinstance(seen["client"], errors.CertificateRejected)
    assert "refused our client certificate" in str(seen["client"])


@pytest.mark.parametrize("who_is_old", ["client", "server"])
def test_protocol_too_old(who_is_old):
    if who_is_old == "client":
        pair = layers(
            server=server_options(tls_min="1.3"),
            client=TLSOptions(context=ready_context(False, max_version="1.2", ca=certs().ca)),
        )
    else:
        pair = layers(
            server=TLSOptions(context=ready_context(True, max_version="1.2")),
            client=client_options(tls_min="1.3"),
        )
    seen = both_errors(*pair)
    assert isinstance(seen["client"], errors.ProtocolTooOld)
    assert isinstance(seen["server"], errors.ProtocolTooOld)
    assert str(seen["server"]).startswith("protocol too old: client and we share no tls version")


@pytest.mark.parametrize("plain", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"hello\n"])
def test_plain_text_to_a_tls_server(plain):
    _, s = layers()
    s.receive(plain)
    with pytest.raises(errors.NotTLS, match="^not tls: client sent plain text to a tls port$"):
        s.handshake()


def test_tls_client_to_a_plain_server():
    c, _ = layers()
    c.handshake()
    c.receive(b"SSH-2.0-OpenSSH_9.2\r\n")
    with pytest.raises(errors.NotTLS, match=r"did not answer in tls \(is it a tls server\?\)"):
        c.handshake()


def test_peer_gone_during_the_handshake():
    c, s = layers()
    c.handshake()
    s.receive(c.outgoing())
    s.handshake()
    s.receive_eof()
    with pytest.raises(errors.UncleanEOF):
        s.handshake()


def test_timed_out_names_the_peer_and_the_time():
    c, _ = layers()
    c.handshake_timeout = 2.5
    error = c.timed_out()
    assert isinstance(error, errors.HandshakeTimeout) and isinstance(error, TimeoutError)
    assert str(error) == (
        "tls handshake timeout: server did not finish the handshake in 2.5 s"
        " (it answered nothing: is it a tls server?)"
    )


def test_close_notify_loses_none_of_the_records_already_received():
    """SSLObject.unwrap() reads on after sending close_notify and would drop what it met."""
    c, s = layers()
    shake(c, s)
    c.write(b"A" * 100)
    c.write(b"B" * 100)
    pump(c, s)
    assert s.read(10) == b"A" * 10  # a record half read, a whole one not read yet
    s.close_notify()
    c.write(b"C" * 50)
    c.close_notify()
    pump(c, s)
    assert s.read_all() == b"A" * 90 + b"B" * 100 + b"C" * 50
    assert s.read() == b""
    assert c.read_all() == b""
