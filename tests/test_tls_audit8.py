"""TLS audit 8: ``ipcnet cert``, verification verdicts, tls:// to servers that are not TLS,
truncation and close_notify, TLS 1.2 client certificates and renegotiation, each checked
against a real peer (openssl s_server / s_client, curl, Python's ssl) or the spec text."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ipcnet import errors
from ipcnet.channel import connect, listen
from ipcnet.testing.pairs import free_port
from ipcnet.transports.tls import ServerContext, TLSOptions
from ipcnet.transports.tls.devcert import make
from serverkit import serving
from test_listeners import _has_ipv6
from test_proxy_conformance import _wait_port
from tlskit import write_pem

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
IPCNET = [sys.executable, "-m", "ipcnet"]


needs_ipv6 = pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")


# --- ipcnet cert ---------------------------------------------------------------------------


@needs_ipv6
@needs_openssl
def test_cert_takes_ipv6_in_brackets_and_a_client_verifies_tls_to_it(tmp_path):
    """``[::1]`` is how an IPv6 address is written in a URL (RFC 3986 §3.2.2), and what
    ``ipcnet cert`` prints back (``tls://[::1]:8443``); it was refused as "not a host name".
    Its iPAddress SAN is the 16 octets, as openssl x509 -text shows."""
    done = subprocess.run([*IPCNET, "cert", "--out", str(tmp_path), "[::1]", "127.0.0.1",
                           "Example.TEST", "*.example.test"], capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "server.pem"), "-noout",
                           "-text"], capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert ("IP Address:0:0:0:0:0:0:0:1, IP Address:127.0.0.1, DNS:example.test, "
            "DNS:*.example.test") in text  # fmt: skip
    assert "tls://[::1]:8443" in done.stdout
    cert, key, ca = (str(tmp_path / n) for n in ("server.pem", "server-key.pem", "ca.pem"))
    with listen("tls://[::1]:0", cert=cert, key=key, close_timeout=0.2) as listener:
        url = str(listener.address)
        assert url.startswith("tls://[::1]:")

        def serve(n: int) -> None:
            for _ in range(n):
                with listener.accept() as ch:
                    ch.write(ch.read(5))

        worker = threading.Thread(target=serve, args=(2,), daemon=True)
        worker.start()
        with connect(url, ca=ca, close_timeout=0.2, timeout=5) as ch:
            ch.write(b"six-1")
            assert ch.read(5) == b"six-1"
        ctx = ssl.create_default_context(cafile=ca)  # Python's ssl agrees
        with socket.create_connection(("::1", listener.address.port), 5) as raw:
            with ctx.wrap_socket(raw, server_hostname="::1") as tls:
                tls.sendall(b"six-2")
                assert tls.recv(5) == b"six-2"
        worker.join(5)


@pytest.mark.parametrize(
    "name, why",
    [
        ("[127.0.0.1]", "brackets are for an ipv6 address"),
        ("[localhost]", "brackets are for an ipv6 address"),
        ("[::1", "not a host name or ip address"),
    ],
)
def test_brackets_around_anything_but_ipv6_are_refused(tmp_path, name, why):
    with pytest.raises(errors.TLSConfigError, match=f"invalid certificate name .*{why}"):
        make(str(tmp_path), (name,))
    assert not (tmp_path / "server.pem").exists()


def test_a_pair_left_half_replaced_is_refused_on_load_naming_both_files(tmp_path, caplog):
    """The key and the certificate are two renames: a crash between them leaves a new key
    beside the old certificate. No pair of renames is atomic, so the load detects it (OpenSSL's
    key check) and says so, and a reload keeps the pair it had. Chosen over one file holding
    both: that would put the key in a file of mode 0644, or the certificate in one of 0600."""
    first = make(str(tmp_path))
    old_cert = Path(first.cert).read_bytes()
    make(str(tmp_path))  # a new pair; then the "crash": the old certificate comes back
    contexts = ServerContext(TLSOptions(cert=first.cert, key=first.key))
    Path(first.cert).write_bytes(old_cert)
    with pytest.raises(errors.TLSConfigError) as caught:
        ServerContext(TLSOptions(cert=first.cert, key=first.key))
    assert str(caught.value) == f"key {first.key} does not match certificate {first.cert}"
    before = contexts.current
    assert contexts.reload() is False and contexts.current is before
    assert "does not match certificate" in caplog.text


# --- verification verdicts, against openssl s_server ---------------------------------------

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Any]:
    """A CA and leaves that break one rule each (made with cryptography, as openssl would)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder = tmp_path_factory.mktemp("pki")

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("audit ca")).issuer_name(name("audit ca"))
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(NOW - DAY).not_valid_after(NOW + 30 * DAY)
        .add_extension(x509.BasicConstraints(True, None), True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                     False), True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    files: dict[str, Any] = {"ca": write_pem(folder, "ca", ca, ca_key)[0], "folder": folder}

    def leaf(label: str, sans: tuple[str, ...] = ("localhost", "127.0.0.1"), start: int = -1,
             end: int = 30, eku: Any = ExtendedKeyUsageOID.SERVER_AUTH, ku: Any = None,
             self_signed: bool = False) -> None:  # fmt: skip
        key = ec.generate_private_key(ec.SECP256R1())
        alt = [x509.DNSName(s) if s[0].isalpha() else x509.IPAddress(ipaddress.ip_address(s))
               for s in sans]  # fmt: skip
        builder = (
            x509.CertificateBuilder().subject_name(name(label))
            .issuer_name(name(label) if self_signed else ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW + start * DAY).not_valid_after(NOW + end * DAY)
            .add_extension(x509.SubjectAlternativeName(alt), False)
            .add_extension(x509.ExtendedKeyUsage([eku]), False)
        )  # fmt: skip
        if ku is not None:
            builder = builder.add_extension(ku, True)
        cert = builder.sign(key if self_signed else ca_key, hashes.SHA256())
        files[label] = write_pem(folder, label, cert, key)

    leaf("good")
    leaf("good-client", eku=ExtendedKeyUsageOID.CLIENT_AUTH)
    leaf("wrong-host", sans=("example.test",))
    leaf("wrong-ip", sans=("localhost", "10.9.9.9"))
    leaf("expired", start=-10, end=-1)
    leaf("not-yet-valid", start=5, end=10)
    leaf("self-signed", self_signed=True)
    leaf("client-only", eku=ExtendedKeyUsageOID.CLIENT_AUTH)
    sign_only = x509.KeyUsage(False, False, False, False, False, True, False, False, False)
    leaf("cert-sign-only", ku=sign_only)
    for label, start, end in [("expired-ca", -10, -1), ("future-ca", 5, 10)]:
        # a valid leaf under an intermediate CA out of its dates, sent as its chain
        inter_key = ec.generate_private_key(ec.SECP256R1())
        inter = (
            x509.CertificateBuilder().subject_name(name(label)).issuer_name(ca.subject)
            .public_key(inter_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW + start * DAY).not_valid_after(NOW + end * DAY)
            .add_extension(x509.BasicConstraints(True, None), True)
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(name("leaf")).issuer_name(inter.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - DAY).not_valid_after(NOW + 30 * DAY)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(inter_key, hashes.SHA256())
        )  # fmt: skip
        chain, key_path = write_pem(folder, label, cert, key)
        with open(chain, "ab") as f:
            f.write(inter.public_bytes(serialization.Encoding.PEM))
        files[label] = chain, key_path
    return files


@contextmanager
def s_server(pair: tuple[str, str], *args: str) -> Iterator[int]:
    """openssl s_server with this certificate, answering connection after connection."""
    port = free_port()
    argv = ["openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}", "-cert", pair[0],
            "-key", pair[1], *args]  # fmt: skip
    server = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_port(port, server)
        yield port
    finally:
        server.kill()
        server.wait(10)


def _one_line(url: str, *args: str) -> str:
    done = subprocess.run([*IPCNET, "connect", *args, url], input=b"x", capture_output=True,
                          timeout=30)  # fmt: skip
    assert done.returncode == 1, done
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    return lines[0].removeprefix("ipcnet connect: ")


def _stamp(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


# openssl s_client -verify_return_error says, for each: "verify error:num=N:<words>"
VERDICTS = [
    # (leaf, host, openssl's words, ipcnet's line after "the certificate of URL")
    ("wrong-host", "localhost", "hostname mismatch",
     "wrong host name: {whose} is not valid for 'localhost' (it names: example.test)"),
    ("wrong-ip", "127.0.0.1", "IP address mismatch",
     "wrong ip address: {whose} is not valid for 127.0.0.1 (it names: localhost, 10.9.9.9)"),
    ("expired", "localhost", "certificate has expired",
     "expired certificate: {whose} has expired (valid until " + _stamp(NOW - DAY) + ")"),
    ("not-yet-valid", "localhost", "certificate is not yet valid",
     "certificate not yet valid: {whose} (valid from " + _stamp(NOW + 5 * DAY) + "; is this "
     "machine's clock right?)"),
    # openssl s_client: depth=1, the intermediate; the server's own certificate is fine
    ("expired-ca", "localhost", "certificate has expired",
     "expired certificate: a ca certificate in the chain of {url} has expired (its own is "
     "valid until " + _stamp(NOW + 30 * DAY) + ")"),
    ("future-ca", "localhost", "certificate is not yet valid",
     "certificate not yet valid: a ca certificate in the chain of {url} (is this machine's "
     "clock right?)"),
    ("self-signed", "localhost", "self-signed certificate",
     "untrusted certificate: {whose} (self-signed certificate; pass --ca FILE holding that "
     "certificate to trust it)"),
    ("unknown-ca", "localhost", "unable to get local issuer certificate",
     "untrusted certificate: {whose} (unable to get local issuer certificate; pass --ca FILE "
     "to trust its ca)"),
    ("client-only", "localhost", "unsuitable certificate purpose",
     "unsuitable certificate: {whose} is not for a tls server (its key usage or extended "
     "key usage does not allow it: unsuitable certificate purpose)"),
    ("cert-sign-only", "localhost", "unsuitable certificate purpose",
     "unsuitable certificate: {whose} is not for a tls server (its key usage or extended "
     "key usage does not allow it: unsuitable certificate purpose)"),
]  # fmt: skip


@needs_openssl
@pytest.mark.parametrize("leaf, host, openssl_says, line", VERDICTS, ids=[v[0] for v in VERDICTS])
def test_each_verification_failure_is_one_line_naming_openssls_cause(
    pki, leaf, host, openssl_says, line
):
    """Each verdict of openssl s_client -verify_return_error, as one ipcnet line: an IP
    address mismatch was called a wrong host name; a certificate for another purpose was
    "untrusted" with the hint to pass --ca, which cannot help (its ca was trusted); an
    expired intermediate was blamed on the server's own certificate; dates were missing
    (s_client prints notAfter)."""
    pair = pki["good" if leaf == "unknown-ca" else leaf]
    ca = pki["self-signed"][0] if leaf == "unknown-ca" else pki["ca"]
    chain = ["-cert_chain", pair[0]] if leaf.endswith("-ca") else []
    with s_server(pair, *chain) as port:
        verify = ["-verify_ip", host] if host[0].isdigit() else ["-verify_hostname", host]
        s_client = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                                   "-CAfile", ca, "-verify_return_error", *verify],
                                  input=b"", capture_output=True, timeout=10)  # fmt: skip
        assert f":{openssl_says}".encode() in s_client.stdout + s_client.stderr
        url = f"tls://{host}:{port}"
        got = _one_line(url, "--ca", ca)
    assert got == line.format(whose=f"the certificate of {url}", url=url)


@needs_openssl
@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_a_client_certificate_for_another_purpose_is_named_so_by_the_server(pki, version):
    """A server certificate (serverAuth only) offered as a client's: the server's error
    said "untrusted", though its ca is the one the server trusts."""
    got: list[BaseException] = []
    with listen("tls://127.0.0.1:0", cert=pki["good"][0], key=pki["good"][1], ca=pki["ca"],
                close_timeout=0.2) as listener:  # fmt: skip

        def accept() -> None:
            try:
                listener.accept().close()
            except errors.IPCError as exc:
                got.append(exc)

        worker = threading.Thread(target=accept, daemon=True)
        worker.start()
        subprocess.run(["openssl", "s_client", version, "-connect",
                        f"127.0.0.1:{listener.address.port}", "-CAfile", pki["ca"],
                        "-cert", pki["good"][0], "-key", pki["good"][1]],
                       input=b"", capture_output=True, timeout=10)  # fmt: skip
        worker.join(10)
    assert len(got) == 1
    assert isinstance(got[0], errors.TLSError)
    message = str(got[0])
    assert message.startswith("unsuitable certificate: the client certificate of tls://127.0.0.1:")
    assert message.endswith(" is not for a tls client (its key usage or extended key usage "
                            "does not allow it: unsuitable certificate purpose)")  # fmt: skip


# --- tls:// to servers that are not TLS ------------------------------------------------------


def test_tls_to_an_echo_server_says_it_sent_our_hello_back():
    """An echo server sends the ClientHello back; OpenSSL says "unexpected message" (so did
    curl and openssl s_client). A server never sends a ClientHello: the peer is not TLS."""
    with serving("echo", "tcp://127.0.0.1:0") as server:
        url = server.url("tcp").replace("tcp://", "tls://")
        with pytest.raises(errors.NotTLS) as caught:
            connect(url, insecure=True, timeout=5)
    assert str(caught.value) == (
        f"not tls: {url} sent our own tls hello back (an echo server? it is not a tls server)"
    )


@contextmanager
def _plain_server(answer: Any) -> Iterator[str]:
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", 0))
        plain.listen()

        def serve() -> None:
            try:
                conn, _ = plain.accept()
            except OSError:
                return
            with conn:
                answer(conn)

        threading.Thread(target=serve, daemon=True).start()
        yield f"tls://127.0.0.1:{plain.getsockname()[1]}"


def test_tls_to_a_real_http_server_is_not_tls():
    """python -m http.server answers the ClientHello with a plain 400, as curl's
    "wrong version number" shows."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        url = f"tls://127.0.0.1:{port}"
        with pytest.raises(errors.NotTLS, match=r"did not answer in tls \(is it a tls server\?\)"):
            connect(url, insecure=True, timeout=5)
    finally:
        proc.kill()
        proc.wait(10)


def test_a_server_that_closes_at_once_is_named_as_such():
    """A server that closes on accept: openssl s_client says "unexpected eof while reading",
    curl SSL_ERROR_SYSCALL. ipcnet said "closed the connection without close_notify", as if
    a session had been open; it closed before any answer to our hello."""
    with _plain_server(lambda conn: None) as url:
        with pytest.raises(errors.UncleanEOF) as caught:
            connect(url, insecure=True, timeout=5)
    assert str(caught.value) == (
        f"unclean eof: {url} closed the connection before answering our tls hello "
        "(is it a tls server?)"
    )


def test_a_server_that_closes_inside_its_answer_closed_during_the_handshake():
    """Half a ServerHello, then FIN: no session was open, so no close_notify was missing."""

    def cut(conn: socket.socket) -> None:
        conn.recv(4096)
        conn.sendall(b"\x16\x03\x03\x00\x40\x02\x00\x00")  # a record header, 3 of 64

    with _plain_server(cut) as url:
        with pytest.raises(errors.UncleanEOF) as caught:
            connect(url, insecure=True, timeout=5)
    assert str(caught.value) == f"unclean eof: {url} closed the connection during the handshake"


def test_a_server_that_never_answers_is_named_as_such():
    """A plain server waiting for its client to speak first says nothing to our hello:
    the timeout says it sent nothing at all."""

    def hold(conn: socket.socket) -> None:
        conn.recv(4096)
        time.sleep(3)

    with _plain_server(hold) as url:
        with pytest.raises(errors.HandshakeTimeout) as caught:
            connect(url, insecure=True, timeout=5, handshake_timeout=0.4)
    assert str(caught.value) == (
        f"tls handshake timeout: {url} did not finish the handshake in 0.4 s "
        "(it answered nothing: is it a tls server?)"
    )


# --- truncation and close_notify -----------------------------------------------------------


@needs_openssl
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_close_sends_close_notify_that_openssl_sees(pki, version):
    """Closing without send_eof still sends close_notify (RFC 8446 §6.1), as openssl
    s_server -msg shows."""
    flag = "-tls1_2" if version == "1.2" else "-tls1_3"
    port = free_port()
    argv = ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", pki["good"][0],
            "-key", pki["good"][1], "-naccept", "1", "-msg", flag]  # fmt: skip
    server = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)  # fmt: skip
    try:
        assert server.stdout is not None
        while not server.stdout.readline().startswith(b"ACCEPT"):
            assert server.poll() is None
        ch = connect(f"tls://localhost:{port}", ca=pki["ca"], close_timeout=0.3, timeout=5)
        ch.write(b"bye\n")
        ch.close()
        out, _ = server.communicate(timeout=10)
    finally:
        server.kill()
        server.wait(10)
    assert f"<<< TLS {version}, Alert [length 0002], warning close_notify".encode() in out


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_a_python_ssl_peer_that_cuts_mid_data_is_truncation(pki, version):
    """Python's ssl hides a ragged EOF (suppress_ragged_eofs=True); ipcnet's client does not
    (curl neither): the data it read before stays, then UncleanEOF, a Broken error."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pki["good"])
    ctx.maximum_version = ctx.minimum_version = getattr(ssl.TLSVersion, f"TLSv1_{version[-1]}")
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            tls = ctx.wrap_socket(conn, server_side=True)
            tls.sendall(b"first half")
            time.sleep(0.1)
            socket.socket(fileno=tls.detach()).close()  # TCP FIN, no close_notify

        worker = threading.Thread(target=serve, daemon=True)
        worker.start()
        url = f"tls://localhost:{listener.getsockname()[1]}"
        with connect(url, ca=pki["ca"], close_timeout=0.2, timeout=5) as ch:
            assert ch.read(10) == b"first half"
            with pytest.raises(errors.UncleanEOF, match="without close_notify") as caught:
                ch.read(10)
            assert isinstance(caught.value, errors.Broken)
        worker.join(5)


# --- TLS 1.2 client certificates, renegotiation --------------------------------------------


@needs_openssl
def test_tls12_server_that_asked_for_a_client_certificate_is_named(pki):
    """openssl s_server -Verify over TLS 1.2 sends CertificateRequest, then handshake_failure
    when none comes (TLS 1.3 has its own certificate_required alert). The request was in
    the clear in the server's flight, so the client knows why: it was offered none."""
    with s_server(pki["good"], "-Verify", "1", "-CAfile", pki["ca"], "-tls1_2",
                  "-verify_return_error") as port:  # fmt: skip
        url = f"tls://localhost:{port}"
        with pytest.raises(errors.NoClientCertificate) as caught:
            connect(url, ca=pki["ca"], timeout=5)
        assert str(caught.value) == (
            f"no client certificate offered: {url} requires one (pass --cert and --key)"
        )
        cert, key = pki["good-client"]
        with connect(url, ca=pki["ca"], cert=cert, key=key, timeout=5, close_timeout=0.2) as ch:
            assert ch.transport.version == "TLSv1.2"  # type: ignore[attr-defined]


@needs_openssl
@pytest.mark.parametrize("model", ["epoll", "thread"])
def test_openssl_s_client_renegotiating_r_is_declined_and_ends_cleanly(pki, model):
    """s_client's "R" line asks a TLS 1.2 server to renegotiate: ipcnet's server answers with
    a no_renegotiation alert (RFC 5746 leaves it free to), s_client gives up with "no
    renegotiation", nothing hangs, and the server goes on serving."""
    cert, key = pki["good"]
    with serving("echo", "tls://127.0.0.1:0", model=model,
                 extra=("--cert", cert, "--key", key, "-v")) as server:  # fmt: skip
        port = server.url("tls").rsplit(":", 1)[1]
        s_client = subprocess.Popen(["openssl", "s_client", "-tls1_2", "-connect",
                                     f"127.0.0.1:{port}", "-CAfile", pki["ca"]],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)  # fmt: skip
        assert s_client.stdin is not None and s_client.stdout is not None
        s_client.stdin.write(b"before\n")
        s_client.stdin.flush()
        while s_client.stdout.readline() != b"before\n":  # its session report, then the echo
            assert s_client.poll() is None
        s_client.stdin.write(b"R\n")
        s_client.stdin.flush()
        try:
            _, err = s_client.communicate(timeout=10)  # stdin closes: s_client must be done
        finally:
            s_client.kill()
        assert s_client.returncode != 0 and b"no renegotiation" in err
        with connect(server.url("tls"), ca=pki["ca"], timeout=5, close_timeout=0.2) as ch:
            ch.write(b"still serving")
            assert ch.read(13) == b"still serving"
    assert any("renegotiation declined" in line for line in server.log), server.log


@needs_ipv6
@pytest.mark.parametrize("sni", ["[::1]", "::1"])
def test_sni_takes_ipv6_in_brackets_as_the_address_and_sends_no_sni(tmp_path, sni):
    """``--sni [::1]`` (the URL's spelling, as ``ipcnet cert [::1]``) was sent as the SNI
    host name "[::1]", which RFC 6066 §3 forbids (no IP literals, and no brackets in a
    host name), then checked as a DNS name and failed; it is the address ::1."""
    issued = make(str(tmp_path), ("::1",))
    seen: list[str | None] = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(issued.cert, issued.key)
    ctx.sni_callback = lambda _sock, name, _ctx: seen.append(name)  # type: ignore[assignment,misc,return-value]
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            with conn, ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
                tls.unwrap()

        worker = threading.Thread(target=serve, daemon=True)
        worker.start()
        url = f"tls://[::1]:{listener.getsockname()[1]}"
        with connect(url, ca=issued.ca, sni=sni, timeout=5, close_timeout=0.2) as ch:
            assert ch.read(2) == b"ok"
        worker.join(5)
    assert seen == [None]
    assert TLSOptions(sni=sni).sni == "::1"
    with pytest.raises(errors.TLSConfigError, match="brackets are for an ipv6 address"):
        TLSOptions(sni="[localhost]")


@needs_openssl
def test_sni_picks_openssl_s_servers_second_certificate(pki):
    """openssl s_server -servername NAME -cert2: the name ipcnet sends (the URL's host, or
    --sni) picks the certificate, which is then checked against that name."""
    with s_server(pki["good"], "-servername", "example.test", "-cert2", pki["wrong-host"][0],
                  "-key2", pki["wrong-host"][1]) as port:  # fmt: skip
        url = f"tls://localhost:{port}"
        with connect(url, ca=pki["ca"], sni="example.test", timeout=5, close_timeout=0.2) as ch:
            names = ch.transport.peer_certificate()["subjectAltName"]  # type: ignore[attr-defined]
        assert names == (("DNS", "example.test"),)
        with connect(url, ca=pki["ca"], timeout=5, close_timeout=0.2) as ch:
            names = ch.transport.peer_certificate()["subjectAltName"]  # type: ignore[attr-defined]
        assert ("DNS", "localhost") in names


@needs_openssl
@pytest.mark.parametrize(
    "only, ours, version",
    [("-tls1_2", {"tls_max": "1.2"}, "TLSv1.2"), ("-tls1_3", {"tls_min": "1.3"}, "TLSv1.3"),
     ("-tls1_2", {}, "TLSv1.2"), ("-tls1_2", {"tls_min": "1.3"}, None),
     ("-tls1_3", {"tls_max": "1.2"}, None)],
)  # fmt: skip
def test_versions_against_one_version_openssl_servers(pki, only, ours, version):
    with s_server(pki["good"], only) as port:
        url = f"tls://localhost:{port}"
        if version is None:
            with pytest.raises(errors.ProtocolTooOld, match="share no tls version"):
                connect(url, ca=pki["ca"], timeout=5, **ours)
            return
        with connect(url, ca=pki["ca"], timeout=5, close_timeout=0.2, **ours) as ch:
            assert ch.transport.version == version  # type: ignore[attr-defined]


@needs_openssl
@pytest.mark.parametrize("model", ["epoll", "thread", "asyncio"])
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_a_server_that_closes_sends_close_notify_that_openssl_s_client_sees(pki, model, version):
    """daytime answers and closes: close_notify goes out before the FIN on every model,
    as openssl s_client -msg shows (RFC 8446 §6.1), and s_client's own is read."""
    cert, key = pki["good"]
    with serving("daytime", "tls://127.0.0.1:0", model=model,
                 extra=("--cert", cert, "--key", key)) as server:  # fmt: skip
        port = server.url("tls").rsplit(":", 1)[1]
        flag = "-tls1_2" if version == "1.2" else "-tls1_3"
        s_client = subprocess.Popen(["openssl", "s_client", flag, "-connect",
                                     f"127.0.0.1:{port}", "-CAfile", pki["ca"], "-msg"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)  # fmt: skip
        watchdog = threading.Timer(10, s_client.kill)  # a hang fails the test, never stalls it
        watchdog.start()
        try:
            assert s_client.stdout is not None
            out = s_client.stdout.read()  # stdin stays open: the server's close ends it
        finally:
            watchdog.cancel()
            s_client.kill()
            s_client.wait(10)
    assert f"<<< TLS {version}, Alert [length 0002], warning close_notify".encode() in out


def test_send_eof_is_a_half_close_a_python_ssl_peer_answers_after(pki):
    """TLS 1.3 (RFC 8446 §6.1): our close_notify ends our direction only; Python's ssl reads
    it as EOF (recv returns b""), answers, and its unwrap() gets ipcnet's close reply."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*pki["good"])
    seen: dict[str, object] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            tls = ctx.wrap_socket(conn, server_side=True)
            got = b""
            while data := tls.recv(100):
                got += data
            seen["got"] = got
            tls.sendall(b"answer after your eof")
            tls.unwrap().close()  # raises unless our close_notify had come
            seen["unwrapped"] = True

        worker = threading.Thread(target=serve, daemon=True)
        worker.start()
        url = f"tls://localhost:{listener.getsockname()[1]}"
        with connect(url, ca=pki["ca"], timeout=5, close_timeout=0.5) as ch:
            ch.write(b"question")
            ch.send_eof()
            assert ch.read() == b"answer after your eof"
            assert ch.read() == b""
            assert ch.transport.version == "TLSv1.3"  # type: ignore[attr-defined]
        worker.join(5)
    assert seen == {"got": b"question", "unwrapped": True}
