"""TLS verdicts that a differential pass against openssl s_client / s_server, curl and
stunnel found wrong: each case is what the reference peer (or the spec it follows) does."""

from __future__ import annotations

import datetime
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ipcnet import errors
from ipcnet.addresses import parse
from ipcnet.channel import connect
from ipcnet.drivers.tls import TLSService
from ipcnet.protocols.base import CLOSE, Peer, as_list
from ipcnet.protocols.simple import Echo
from ipcnet.testing.pairs import free_port
from ipcnet.transports.tls import ServerContext, TLSOptions
from tlskit import certs, client_options, layers, server_options, tls_server, write_pem

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")


@contextmanager
def _s_server(*args: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """openssl s_server with our server certificate, one connection, stdin a pipe (its
    one-letter lines are commands: r renegotiates, k/K send a TLS 1.3 KeyUpdate)."""
    pair, port = certs().server, free_port()
    argv = ["stdbuf", "-oL", "openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", pair.cert,
            "-key", pair.key, "-naccept", "1", *args]  # fmt: skip
    server = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    watchdog = threading.Timer(20, server.kill)  # a hang fails the test, never stalls it
    watchdog.start()
    try:
        _wait_for(server, b"ACCEPT")
        yield port, server
    finally:
        watchdog.cancel()
        server.kill()
        server.wait(10)


def _wait_for(server: subprocess.Popen[bytes], start: bytes) -> None:
    assert server.stdout is not None
    while not server.stdout.readline().startswith(start):
        assert server.poll() is None, "openssl s_server ended"


def _say(server: subprocess.Popen[bytes], line: bytes) -> None:
    assert server.stdin is not None
    server.stdin.write(line)
    server.stdin.flush()


@needs_openssl
def test_a_tls12_renegotiation_the_server_asks_for_is_declined_in_one_clear_line():
    """A server's HelloRequest (openssl s_server's "r") is declined with a no_renegotiation
    alert, as Go, BoringSSL and rustls clients do (and ipcnet's server). The reader queued
    that alert and then waited for the server, which waited for the alert: both hung.
    OpenSSL's server answers the alert by ending the connection, which now reads so."""
    with _s_server("-tls1_2") as (port, server):
        url = f"tls://localhost:{port}"
        with connect(url, ca=certs().ca, timeout=10, close_timeout=0.3) as ch:
            _say(server, b"before\n")
            assert ch.read(7) == b"before\n"
            _say(server, b"r\n")  # HelloRequest
            with pytest.raises(errors.TLSError) as caught:
                ch.read(10)
    assert str(caught.value) == (
        f"renegotiation declined: {url} ended the connection when we would not "
        "renegotiate (ipcnet never does; alert: handshake failure)"
    )


def _cn_only(folder: Path, common_name: str) -> tuple[str, str, str]:
    """A CA, and signed by it a leaf with this common name and no subjectAltName."""
    import trustme
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return str(folder / "ca.pem"), *write_pem(folder, "cn-only", cert, key)


def test_a_host_name_is_never_matched_against_the_common_name(tmp_path):
    """RFC 9525 §6.3: a client MUST NOT seek a match in the subject's common name. OpenSSL
    (and so curl and s_client) still falls back to it when a certificate has no
    subjectAltName; Chrome, Go and rustls do not, and ipcnet's own message said "its common
    name is not checked" while it was, for a DNS name (only an IP address was never)."""
    ca, cert, key = _cn_only(tmp_path, "localhost")
    with tls_server(TLSOptions(cert=cert, key=key, close_timeout=0.3)) as raw:
        url = f"tls://localhost:{raw.rpartition(':')[2]}"
        with pytest.raises(errors.HostnameMismatch) as caught:
            connect(url, ca=ca)
    assert str(caught.value) == (
        f"wrong host name: the certificate of {url} is not valid for 'localhost' "
        "(it has no subject alternative names; its common name localhost is not checked)"
    )


@needs_openssl
def test_a_server_that_speaks_none_of_the_offered_protocols_sends_no_application_protocol():
    """RFC 7301 §3.2: the server SHALL answer with a fatal no_application_protocol alert, as
    openssl s_server and nginx do. Python's ssl went on without a protocol, so a client that
    offered only "foo" was served as if it had been understood. Both server paths: the
    blocking listener and the servers' session wrapper."""
    with tls_server(server_options(alpn=("h2", "bar"))) as raw:
        port = int(raw.rpartition(":")[2])
        url = f"tls://localhost:{port}"
        for offer, agreed in [("foo,bar", "bar"), ("", None)]:
            with connect(url, ca=certs().ca, alpn=offer, close_timeout=0.3) as ch:
                assert ch.transport.alpn == agreed  # type: ignore[attr-defined]
        with pytest.raises(errors.TLSError) as caught:
            connect(url, ca=certs().ca, alpn="foo")
        assert str(caught.value) == (
            f"no common application protocol: {url} accepts none of those offered (--alpn)"
        )
        s_client = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-alpn", "foo,baz"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert s_client.returncode == 1 and "alert no application protocol" in s_client.stderr

    service = TLSService(Echo(), ServerContext(server_options(alpn=("http/1.1",))))
    session, _ = service.start(Peer(parse("tcp://127.0.0.1:5555")))
    client, _ = layers(client=client_options(alpn=("h2",)))
    client.handshake()
    actions = as_list(session.feed(client.outgoing()))
    assert actions[-1] == CLOSE
    client.receive(b"".join(a for a in actions if isinstance(a, bytes)))
    with pytest.raises(errors.TLSError, match="^no common application protocol"):
        client.handshake()
    assert service.stats.snapshot()["failed"] == 1


def test_data_that_came_before_the_peer_left_survives_a_failed_write():
    """A server that sends a line and closes without close_notify: openssl s_client prints
    the line, then reports the cut. ipcnet's writer, failing on the reset its close_notify
    (or data) met, read the socket to look for an alert there and dropped the line with it
    (and left the socket non-blocking): 'ipcnet connect' lost it about one run in two."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs().server.cert, certs().server.key)
    ctx.num_tickets = 0
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"last words\n")
                tls.shutdown(socket.SHUT_RDWR)  # no close_notify; what comes next: RST

        server = threading.Thread(target=serve)
        server.start()
        url = f"tls://localhost:{listener.getsockname()[1]}"
        with connect(url, ca=certs().ca, timeout=10, close_timeout=0.3) as ch:
            server.join(10)
            with pytest.raises(errors.Broken):
                for _ in range(1000):  # the first writes may go out before the RST is back
                    ch.write(b"x")
            assert ch.read(100) == b"last words\n"
            with pytest.raises(errors.IPCError):
                ch.read(100)


@needs_openssl
def test_a_server_name_the_server_does_not_know_is_named_as_such():
    """openssl s_server -servername_fatal answers an SNI it has no certificate for with a
    fatal unrecognized_name alert (RFC 6066 §3); curl and s_client then print OpenSSL's
    "tlsv1 unrecognized name", ipcnet said the same words after "tls error with"."""
    other = certs().wrong_host
    with _s_server("-servername", "example.test", "-servername_fatal",
                   "-cert2", other.cert, "-key2", other.key) as (port, _):  # fmt: skip
        url = f"tls://127.0.0.1:{port}"
        with pytest.raises(errors.TLSError) as caught:
            connect(url, ca=certs().ca, sni="localhost.test")
    assert str(caught.value) == (
        f"unrecognized server name: {url} serves no site by the name we sent "
        "(alert: unrecognized name; the url's host or --sni)"
    )


def test_a_tls12_close_notify_is_answered_at_once():
    """RFC 5246 §7.2.1: the other party MUST respond with a close_notify of its own and close
    down, discarding pending writes (openssl s_client does, in 0.04 s). ipcnet answered only
    when its own side ended, so a TLS 1.2 server waiting in SSL_shutdown for the answer
    (Python's unwrap) got 'ipcnet connect's next line from stdin and failed instead."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs().server.cert, certs().server.key)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    answered: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            conn.settimeout(5)
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"bye\n")
                with tls.unwrap() as plain:  # waits for our close_notify
                    answered.append(plain.recv(10))  # then the TCP FIN that follows it

        server = threading.Thread(target=serve)
        server.start()
        url = f"tls://localhost:{listener.getsockname()[1]}"
        with connect(url, ca=certs().ca, timeout=10, close_timeout=0.3) as ch:
            assert ch.read(10) == b"bye\n"
            assert ch.read(10) == b""
            server.join(10)  # before our close: the answer came from the read
            assert answered == [b""]
            with pytest.raises(errors.PeerClosed, match="ended the tls 1.2 session"):
                ch.write(b"more\n")
