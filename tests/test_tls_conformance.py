"""TLS against the specs and real peers: key and certificate files, the names a certificate
must carry (RFC 9525), SNI (RFC 6066 §3), version bounds, truncation, and stunnel both ways."""

from __future__ import annotations

import datetime
import ipaddress
import json
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

import pytest

from ipcnet import errors
from ipcnet.channel import connect
from ipcnet.testing.pairs import free_port
from ipcnet.transports.tls import TLSOptions, client_context, server_context
from serverkit import _start
from tlskit import certs, layers, pump, server_options, shake, tls_server, write_pem

STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")


# --- key and certificate files -----------------------------------------------------------


def _encrypted_keys(folder: Path) -> tuple[str, str]:
    """The server key, encrypted, in the traditional and in the PKCS#8 PEM form."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(Path(certs().server.key).read_bytes(), None)
    paths = []
    for name, form in [("trad", serialization.PrivateFormat.TraditionalOpenSSL),
                       ("pkcs8", serialization.PrivateFormat.PKCS8)]:  # fmt: skip
        path = folder / f"{name}-key.pem"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, form, serialization.BestAvailableEncryption(b"pw")
            )
        )
        paths.append(str(path))
    return paths[0], paths[1]


def test_key_and_certificate_errors_name_the_file_and_the_cause(tmp_path):
    pair, missing = certs().server, str(tmp_path / "nope.pem")
    trad, pkcs8 = _encrypted_keys(tmp_path)
    cases = [
        (dict(cert=missing, key=pair.key), f"cannot load certificate: no such file {missing}"),
        (dict(cert=pair.cert, key=missing), f"cannot load key: no such file {missing}"),
        (dict(cert=pair.cert), f"cannot load key: no private key in {pair.cert} (pass --key FILE)"),
        (dict(cert=pair.cert, key=pair.cert), f"cannot load key: no private key in {pair.cert}"),
        (
            dict(cert=pair.key, key=pair.key),
            f"cannot load certificate {pair.key}: not a pem file of the right kind "
            "(no certificate in it)",
        ),
    ]
    for key in (trad, pkcs8):
        cases.append(
            (
                dict(cert=pair.cert, key=key),
                f"cannot load key {key}: it is encrypted and ipcnet takes no passphrase "
                f"(decrypt it: openssl pkey -in {key} -out plain-key.pem)",
            )
        )
    for options, message in cases:
        with pytest.raises(errors.TLSConfigError) as caught:
            server_context(TLSOptions(**options))  # type: ignore[arg-type]
        assert str(caught.value) == message, options
    with pytest.raises(errors.TLSConfigError, match="^cannot load key: no private key in"):
        client_context(TLSOptions(ca=certs().ca, cert=certs().client.cert))
    # OpenSSL's own answer to an encrypted key is a passphrase prompt (on a terminal: a
    # server that waits for a human); ipcnet refuses it in one line instead
    done = subprocess.run(
        [sys.executable, "-m", "ipcnet", "serve", "echo", "tls://127.0.0.1:0",
         "--cert", pair.cert, "--key", trad],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"ipcnet serve: {cases[-2][1]}"]


# --- the names on a certificate ----------------------------------------------------------


def _self_signed(folder: Path, name: str, common_name: str, *sans: object) -> tuple[str, str]:
    """A self-signed certificate (its own CA) with this CN and these subjectAltNames."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)  # type: ignore[arg-type]
    return write_pem(folder, name, builder.sign(key, hashes.SHA256()), key)


def test_an_ip_address_matches_an_ip_san_only(tmp_path):
    """RFC 9525: names are checked against subjectAltName only (never the CN), and an IP
    address only against an iPAddress entry (not a dNSName spelling it)."""
    from cryptography import x509

    loopback = ipaddress.ip_address("127.0.0.1")
    cases = {
        "cn-only": (
            ("127.0.0.1",),
            "(it has no subject alternative names; its common name 127.0.0.1 is not checked)",
        ),
        "dns-spelling": (
            ("x", x509.DNSName("127.0.0.1")),
            "(it names: 127.0.0.1 (a dns name, not an ip address))",
        ),
        "ip-san": (("x", x509.IPAddress(loopback)), None),
    }
    for name, ((common_name, *sans), end) in cases.items():
        cert, key = _self_signed(tmp_path, name, common_name, *sans)
        with tls_server(TLSOptions(cert=cert, key=key, close_timeout=0.3)) as raw:
            url = f"tls://127.0.0.1:{raw.rpartition(':')[2]}"
            if end is None:
                with connect(url, ca=cert, close_timeout=0.3) as ch:
                    ch.write(b"ip")
                    assert ch.read(2) == b"ip"
                continue
            with pytest.raises(errors.HostnameMismatch) as caught:
                connect(url, ca=cert)
        assert str(caught.value) == (
            f"wrong ip address: the certificate of {url} is not valid for 127.0.0.1 {end}"
        )


# --- SNI ---------------------------------------------------------------------------------


@contextmanager
def _sni_recorder(host: str) -> Iterator[tuple[int, list[str | None]]]:
    """Python's ssl as the reference server: records the SNI of each client, answers ok."""
    seen: list[str | None] = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs().server.cert, certs().server.key)
    ctx.sni_callback = lambda _sock, name, _ctx: seen.append(name)  # type: ignore[assignment,misc,return-value]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family)
    listener.bind((host, 0))
    listener.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn, ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
                tls.unwrap()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1], seen
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("host", "url_host", "sni", "sent"),
    [
        ("127.0.0.1", "localhost", None, "localhost"),
        ("127.0.0.1", "127.0.0.1", None, None),  # RFC 6066 §3: no IP literal in SNI
        ("::1", "[::1]", None, None),
        ("127.0.0.1", "127.0.0.1", "localhost", "localhost"),  # --sni
        # RFC 6066 §3: "without a trailing dot"; curl strips it and checks the name without
        ("127.0.0.1", "127.0.0.1", "localhost.", "localhost"),
    ],
)
def test_sni_is_the_host_name_and_never_an_ip_literal(host, url_host, sni, sent):
    with _sni_recorder(host) as (port, seen):
        extra = {"sni": sni} if sni else {}
        with connect(f"tls://{url_host}:{port}", ca=certs().ca, close_timeout=0.3, **extra) as ch:
            assert ch.read() == b"ok"
    assert seen == [sent]


# --- versions ----------------------------------------------------------------------------


def test_tls_max_bounds_the_version_on_both_sides():
    with pytest.raises(errors.TLSConfigError, match=r"^invalid --tls-max 1.2: older than"):
        TLSOptions(tls_min="1.3", tls_max="1.2")
    with tls_server() as raw:
        url = f"tls://localhost:{raw.rpartition(':')[2]}"
        with connect(url, ca=certs().ca, tls_max="1.2", close_timeout=0.3) as ch:
            assert ch.transport.version == "TLSv1.2"  # type: ignore[attr-defined]
    with tls_server(server_options(tls_max="1.2")) as raw:
        url = f"tls://localhost:{raw.rpartition(':')[2]}"
        with pytest.raises(errors.ProtocolTooOld) as caught:
            connect(url, ca=certs().ca, tls_min="1.3")
    assert str(caught.value) == (
        f"protocol too old: {url} and we share no tls version (we accept tls 1.3 and newer)"
    )
    with tls_server(server_options(tls_min="1.3")) as raw:  # a client that stops at 1.2
        url = f"tls://localhost:{raw.rpartition(':')[2]}"
        with pytest.raises(errors.ProtocolTooOld) as caught:
            connect(url, ca=certs().ca, tls_max="1.2")
    assert str(caught.value) == (
        f"protocol too old: {url} and we share no tls version (we accept tls 1.2 only)"
    )
    ctx = server_context(server_options(tls_max="1.2"))
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_2


# --- truncation ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_after_an_unclean_eof_our_direction_still_works(version):
    """A TCP EOF without close_notify is reported (UncleanEOF, after the data before it), and
    is not made fatal: the reply and our close_notify still reach the peer, where OpenSSL
    would answer it with a decode_error alert and refuse to write."""
    c, s = layers(server=server_options(tls_max=version))
    shake(c, s)
    c.write(b"request")
    pump(c, s)
    s.receive_eof()
    assert s.read_all() == b"request"
    with pytest.raises(errors.UncleanEOF, match="without close_notify"):
        s.read_all()
    s.write(b"reply")
    s.close_notify()
    pump(c, s)
    assert c.read_all() == b"reply"
    assert c.read_all() == b""  # the server's close_notify


# --- a server, real peers ----------------------------------------------------------------


def _stats(path: str) -> dict[str, object]:
    with connect(f"unix://{path}") as ch:
        return json.loads(ch.read())["tls"]  # type: ignore[no-any-return]


@contextmanager
def _stunnel(folder: Path, config: str) -> Iterator[None]:
    conf = folder / "stunnel.conf"
    conf.write_text(f"foreground = yes\npid =\nsyslog = no\ndebug = 3\n{config}")
    proc = subprocess.Popen([STUNNEL, str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def _connect_when_up(port: int) -> socket.socket:
    """A connection to a port that stunnel is about to listen on (a refused try has no
    side effects; a probe that connects would be a client of its own)."""
    for _ in range(400):
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except ConnectionRefusedError:
            time.sleep(0.025)
    raise AssertionError(f"nothing listens on port {port}")


def _round_trip(sock: socket.socket, payload: bytes) -> bytes:
    writer = threading.Thread(target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR)))
    writer.start()
    got = bytearray()
    while chunk := sock.recv(1 << 16):
        got += chunk
    writer.join(10)
    return bytes(got)


@pytest.mark.skipif(STUNNEL is None, reason="no stunnel4")
def test_serve_with_stunnel_both_ways_and_a_truncating_client(short_tmp):
    """stunnel (a client with verifyChain and checkHost) in front of `ipcnet serve echo
    tls://`, and ipcnet's client behind stunnel's server: 4 MiB byte-exact each way. A client
    that ends its stream without close_notify is EOF to the service, counted and logged."""
    payload = bytes(range(251)) * (4 * 1024 * 1024 // 251)
    pair, stats = certs().server, f"{short_tmp}/stats.sock"
    argv = [sys.executable, "-m", "ipcnet", "serve", "echo", "tls://127.0.0.1:0", "-v",
            "--cert", pair.cert, "--key", pair.key, "--stats", f"unix://{stats}"]  # fmt: skip
    server = _start(argv, 1)
    try:
        port = int(server.url("tls").rpartition(":")[2])
        plain = socket.create_server(("127.0.0.1", 0))
        threading.Thread(
            target=lambda: _echo_once(plain), daemon=True
        ).start()  # behind stunnel's server
        front, back = free_port(), free_port()
        config = (
            f"[client]\nclient = yes\naccept = 127.0.0.1:{front}\nconnect = 127.0.0.1:{port}\n"
            f"CAfile = {certs().ca}\nverifyChain = yes\ncheckHost = localhost\nsni = localhost\n"
            f"[server]\naccept = 127.0.0.1:{back}\nconnect = 127.0.0.1:{plain.getsockname()[1]}\n"
            f"cert = {pair.cert}\nkey = {pair.key}\n"
        )
        with _stunnel(short_tmp, config):
            with _connect_when_up(front) as sock:
                assert _round_trip(sock, payload) == payload
            with connect(f"tls://localhost:{back}", ca=certs().ca, close_timeout=0.3) as ch:
                writer = threading.Thread(target=lambda: (ch.write(payload), ch.send_eof()))
                writer.start()
                assert ch.read() == payload
                writer.join(10)
        ctx = ssl.create_default_context(cafile=certs().ca)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            tls = ctx.wrap_socket(sock, server_hostname="localhost")
            tls.sendall(b"last words")
            with socket.fromfd(tls.fileno(), socket.AF_INET, socket.SOCK_STREAM) as same:
                same.shutdown(socket.SHUT_WR)  # a TCP FIN right after them, no close_notify
            got = b""
            while chunk := tls.recv(100):  # raises at a TLS alert or a cut
                got += chunk
            assert got == b"last words"  # then the server's close_notify
        tls_stats = _stats(stats)
        assert tls_stats["unclean_eofs"] == 1 and tls_stats["failed"] == 0
        assert tls_stats["handshakes"] == 2  # stunnel's and python's
    finally:
        code = server.stop()
    assert code == 0
    assert any("without close_notify (taken as eof)" in line for line in server.log), server.log


def _echo_once(listener: socket.socket) -> None:
    with listener:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(1 << 16):
                conn.sendall(data)


# --- ALPN --------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
def test_alpn_agreed_with_openssl_s_server_and_no_overlap_is_one_clear_line():
    """RFC 7301 §3.2: a server that speaks none of the offered protocols answers with a
    fatal no_application_protocol alert (openssl s_server does)."""
    pair, port = certs().server, free_port()
    server = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", pair.cert,
         "-key", pair.key, "-alpn", "foo,bar", "-naccept", "2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        while not server.stdout.readline().startswith(b"ACCEPT"):  # listening
            assert server.poll() is None, "openssl s_server did not start"
        url = f"tls://localhost:{port}"
        with connect(url, ca=certs().ca, alpn="zzz,bar", close_timeout=0.3) as ch:
            assert ch.transport.alpn == "bar"  # type: ignore[attr-defined]
        with pytest.raises(errors.TLSError) as caught:
            connect(url, ca=certs().ca, alpn="zzz")
        assert str(caught.value) == (
            f"no common application protocol: {url} accepts none of those offered (--alpn)"
        )
    finally:
        server.kill()
        server.wait(10)


# --- ipcnet cert, curl and mutual TLS ----------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_ipcnet_cert_files_with_curl_and_mutual_tls(tmp_path):
    """What `ipcnet cert --client alice` writes serves HTTPS that curl trusts with --cacert;
    the server requires the client certificate, says why it refused a client without one
    (or with an untrusted one), and keeps serving."""
    from ipcnet.transports.tls.devcert import make

    issued = make(str(tmp_path / "certs"), (), "alice")
    assert issued.client_cert is not None and issued.client_key is not None
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("over https\n")
    argv = [sys.executable, "-m", "ipcnet", "serve", "http", str(tmp_path / "site"),
            "tls://127.0.0.1:0", "--cert", issued.cert, "--key", issued.key, "--ca", issued.ca]  # fmt: skip
    server = _start(argv, 1)
    try:
        port = server.url("tls").rpartition(":")[2]

        def curl(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["curl", "-sS", "--max-time", "20", "--cacert", issued.ca, *args,
                 f"https://localhost:{port}/"], capture_output=True, text=True, timeout=30,
            )  # fmt: skip

        bare = curl()
        assert bare.returncode != 0 and "alert certificate required" in bare.stderr, bare
        other = tmp_path / "other"
        strange = make(str(other), (), "mallory")  # a client certificate from another ca
        wrong = curl("--cert", strange.client_cert or "", "--key", strange.client_key or "")
        assert wrong.returncode != 0 and "alert unknown ca" in wrong.stderr, wrong
        good = curl("--cert", issued.client_cert, "--key", issued.client_key)
        assert good.returncode == 0 and good.stdout == "over https\n", good
    finally:
        code = server.stop()
    assert code == 0
    refusals = [line for line in server.log if "tls handshake failed" in line]
    assert len(refusals) == 2, server.log
    assert "no client certificate: tls://127.0.0.1:" in refusals[0]
    assert "untrusted certificate: the client certificate of tls://127.0.0.1:" in refusals[1]


# --- resumption --------------------------------------------------------------------------


def _s_client(port: int, version: str, session: Path, resume: bool) -> str:
    """One `openssl s_client` session that sends a line and waits for its echo; the
    session is saved (-sess_out) and, with ``resume``, offered again (-sess_in)."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", f"-tls{version}",
            "-CAfile", certs().ca, "-servername", "localhost", "-verify_return_error",
            "-sess_out", str(session), *(["-sess_in", str(session)] if resume else [])]  # fmt: skip
    client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write("echo me\n")
    client.stdin.flush()
    watchdog = threading.Timer(20, client.kill)  # no echo: the test fails, it never hangs
    watchdog.start()
    lines = []
    for line in client.stdout:  # the echo comes after the tickets a TLS 1.3 server sends
        lines.append(line)
        if line == "echo me\n":
            break
    client.stdin.close()
    client.wait(10)
    watchdog.cancel()
    return "".join(lines)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
@pytest.mark.parametrize(("version", "tickets", "reused"), [("1_3", 2, True), ("1_3", 0, False),
                                                           ("1_2", 0, True)])  # fmt: skip
def test_openssl_s_client_resumes_with_tickets(tmp_path, version, tickets, reused):
    """--tls-tickets N: TLS 1.3 resumption with openssl s_client -sess_out/-sess_in; none
    with the default 0. TLS 1.2 sends its ticket inside the handshake, so it resumes."""
    session = tmp_path / "session.pem"
    with tls_server(server_options(tls_tickets=tickets)) as raw:
        port = int(raw.rpartition(":")[2])
        first = _s_client(port, version, session, resume=False)
        assert "\nNew, TLSv1." in first and "Verify return code: 0 (ok)" in first, first
        second = _s_client(port, version, session, resume=True)
    assert ("\nReused, TLSv1." in second) == reused, second
