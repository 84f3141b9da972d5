"""TLS options, contexts and reload: secure defaults, clear errors for bad files."""

from __future__ import annotations

import logging
import shutil
import ssl

import pytest

from ipcnet import errors
from ipcnet.transports.tls import ServerContext, TLSOptions, client_context, parse_alpn
from ipcnet.transports.tls.context import server_context
from tlskit import certs, layers, server_options


def test_client_defaults_are_secure():
    ctx = client_context(TLSOptions())
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.cert_store_stats()["x509_ca"] > 0 or ssl.get_default_verify_paths().cafile is None


def test_insecure_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="ipcnet.tls"):
        ctx = client_context(TLSOptions(insecure=True))
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    assert "--insecure: the server's certificate is not checked" in caplog.text


def test_server_defaults():
    ctx = server_context(server_options())
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.num_tickets == 0
    assert ctx.verify_mode == ssl.CERT_NONE  # no --ca: no client certificates asked for
    assert server_context(server_options(ca=certs().ca)).verify_mode == ssl.CERT_REQUIRED
    assert server_context(server_options(tls_tickets=2)).num_tickets == 2


def after_client_finished(tickets: int) -> int:
    """Bytes a TLS 1.3 server sends, unasked, once the client's handshake is done."""
    c, s = layers(server=server_options(tls_tickets=tickets))
    c.handshake()
    s.receive(c.outgoing())
    s.handshake()
    c.receive(s.outgoing())
    assert c.handshake()  # the client is done: it sends Finished and may now close
    s.receive(c.outgoing())
    assert s.handshake()
    return s.pending


def test_no_session_tickets_by_default_so_nothing_is_left_unread():
    assert after_client_finished(0) == 0  # a client that never reads loses nothing
    assert after_client_finished(2) > 0  # with tickets: records the client may leave unread


def test_a_ready_context_is_used_as_is():
    ctx = ssl.create_default_context()
    assert client_context(TLSOptions(context=ctx)) is ctx
    assert server_context(TLSOptions(context=ctx)) is ctx


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(tls_min="1.1"), "invalid --tls-min '1.1': expected 1.2 or 1.3"),
        (dict(tls_tickets=-1), "invalid --tls-tickets -1: expected 0 or more"),
        (dict(alpn=("",)), "invalid --alpn protocol ''"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(errors.TLSConfigError, match=f"^{message}$".replace("(", r"\(")):
        TLSOptions(**options)


def test_bad_files(tmp_path):
    with pytest.raises(errors.TLSConfigError, match="a tls server needs a certificate"):
        server_context(TLSOptions())
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(
        errors.TLSConfigError, match=f"cannot load certificate: no such file {missing}"
    ):
        server_context(TLSOptions(cert=missing))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(errors.TLSConfigError, match="not a pem file of the right kind"):
        server_context(TLSOptions(cert=str(garbage)))
    with pytest.raises(errors.TLSConfigError, match="does not match certificate"):
        server_context(TLSOptions(cert=certs().server.cert, key=certs().client.key))
    with pytest.raises(errors.TLSConfigError, match=f"cannot load ca file {missing}"):
        client_context(TLSOptions(ca=missing))


def test_alpn_list():
    assert parse_alpn("h2, http/1.1") == ("h2", "http/1.1")
    assert parse_alpn(None) == ()


def test_reload_swaps_the_context_for_new_handshakes_only(tmp_path, caplog):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(certs().server.cert, cert)
    shutil.copy(certs().server.key, key)
    contexts = ServerContext(TLSOptions(cert=str(cert), key=str(key)))
    first = contexts.current
    cert.write_text("half a file")
    with caplog.at_level(logging.ERROR, logger="ipcnet.tls"):
        assert contexts.reload() is False
    assert contexts.current is first  # a bad file keeps the old context
    assert "reload failed, keeping the current certificate: cannot load" in caplog.text
    shutil.copy(certs().wrong_host.cert, cert)
    shutil.copy(certs().wrong_host.key, key)
    assert contexts.reload() is True
    assert contexts.current is not first and contexts.reloads == 1
