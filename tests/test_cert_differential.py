"""``ipcnet cert`` against RFC 5280, the CA/Browser profile and what openssl verifies.

Found by a differential pass (generated names, CA files from other tools) against
``openssl verify -purpose sslserver -x509_strict -verify_hostname/-verify_ip``, Python's
ssl, curl and trustme: names became a certificate no client matches (an IP address in a
dNSName, ``*.tld``, a unicode name refused instead of its A-labels), names over 64
characters or an empty client name crashed, the common name was not one of the SANs, and a
reused CA was not checked (another key, not a CA, expired, its own key identifier).
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
from argparse import Namespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from ipcnet.errors import TLSConfigError
from ipcnet.transports.tls.devcert import make

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
LONG = "a" * 63 + ".test"  # 68 characters: too long for a common name (ub-common-name 64)


def openssl_verify(folder, name: str | None = None) -> str:
    """What ``openssl verify`` says of server.pem under ca.pem, for ``name`` if given."""
    check = []
    if name is not None:
        try:
            ipaddress.ip_address(name)
            check = ["-verify_ip", name]
        except ValueError:
            check = ["-verify_hostname", name]
    done = subprocess.run(
        ["openssl", "verify", "-CAfile", str(folder / "ca.pem"), "-purpose", "sslserver",
         "-x509_strict", *check, str(folder / "server.pem")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return (done.stdout + done.stderr).strip()


def leaf(folder) -> x509.Certificate:
    return x509.load_pem_x509_certificate((folder / "server.pem").read_bytes())


@needs_openssl
@pytest.mark.parametrize(
    "names, sans, cn, matches",
    [
        (["Example.COM"], ["example.com"], "example.com", "example.com"),
        (["bücher.test"], ["xn--bcher-kva.test"], "xn--bcher-kva.test", "xn--bcher-kva.test"),
        (["Faß.DE"], ["xn--fa-hia.de"], "xn--fa-hia.de", "xn--fa-hia.de"),  # IDNA 2008
        (["fe80::1%eth0"], ["fe80::1"], "fe80::1", "fe80::1"),
        (["2001:DB8::1"], ["2001:db8::1"], "2001:db8::1", "2001:db8::1"),
        ([LONG], [LONG], None, LONG),
        ([LONG, "localhost"], [LONG, "localhost"], "localhost", LONG),
        (["localhost", "localhost", "::1", "0::1"], ["localhost", "::1"], "localhost", "::1"),
        (["foo.1a"], ["foo.1a"], "foo.1a", "foo.1a"),
        (["_svc.a_b.test"], ["_svc.a_b.test"], "_svc.a_b.test", "_svc.a_b.test"),
        (
            ["*.Bücher.test"],
            ["*.xn--bcher-kva.test"],
            "*.xn--bcher-kva.test",
            "a.xn--bcher-kva.test",
        ),
    ],
)
def test_names_become_what_clients_match(tmp_path, names, sans, cn, matches):
    issued = make(str(tmp_path), tuple(names))
    cert = leaf(tmp_path)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert [str(g.value) for g in san.value] == sans == list(issued.names)
    assert [a.value for a in cert.subject] == ([cn] if cn else [])
    assert san.critical == (cn is None)  # RFC 5280 4.2.1.6: critical when the subject is empty
    assert openssl_verify(tmp_path, matches).endswith(": OK")


@pytest.mark.parametrize(
    "name, why",
    [
        ("127.1", "it ends in a number, as an ip address does, but is not one"),
        ("1.2.3", "it ends in a number, as an ip address does, but is not one"),
        ("010.0.0.1", "it ends in a number, as an ip address does, but is not one"),
        ("0x7f.0.0.1", "it ends in a number, as an ip address does, but is not one"),
        ("host.123", "it ends in a number, as an ip address does, but is not one"),
        ("*.localhost", "a wildcard needs two labels after '*.' (tls clients match no *.tld)"),
        ("*.com", "a wildcard needs two labels after '*.' (tls clients match no *.tld)"),
        (
            "*.a_b.test",
            "a wildcard's other labels cannot hold '_' (openssl matches no such wildcard)",
        ),
        ("q" * 64, "a label is longer than 63 characters"),
        ("foo.-bar-", "not a host name or ip address"),
        ("localhost.", "write it without the trailing dot"),
        ("☃.net", "not a valid internationalized domain name (idna 2008)"),
    ],
)
def test_names_no_client_can_match_are_refused(tmp_path, name, why):
    with pytest.raises(TLSConfigError) as info:
        make(str(tmp_path / "out"), ("localhost", name))
    assert str(info.value) == f"invalid certificate name {name!r}: {why}"
    assert not (tmp_path / "out").exists()  # refused before anything is written


@pytest.mark.parametrize("client", ["", "c" * 65])
def test_a_bad_client_name_is_refused_before_writing(tmp_path, client):
    with pytest.raises(TLSConfigError) as info:
        make(str(tmp_path / "out"), (), client)
    assert str(info.value) == f"invalid client name {client!r}: give 1 to 64 characters"
    assert not (tmp_path / "out").exists()


def _ca(folder, *, ca=True, ski=None, key=None, cert_key=None, days=30, password=None):
    """Write ca.pem and ca-key.pem as another tool might have made them."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    cert_key = cert_key or key
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another tool's ca")])
    now = datetime.datetime.now(datetime.UTC)
    ski = ski or x509.SubjectKeyIdentifier.from_public_key(cert_key.public_key()).digest
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(cert_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=min(days, 0) - 1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, ca, ca, False, False), True)
        .add_extension(x509.SubjectKeyIdentifier(ski), False)
        .sign(cert_key, None if isinstance(cert_key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    )  # fmt: skip
    crypt = (serialization.BestAvailableEncryption(password) if password
             else serialization.NoEncryption())  # fmt: skip
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, crypt)
    (folder / "ca-key.pem").write_bytes(pem)
    (folder / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@needs_openssl
@pytest.mark.parametrize(
    "ca",
    [
        {"ski": bytes(range(1, 21))},  # an identifier not from the key's SHA-1 (RFC 7093 allows)
        {"key": ed25519.Ed25519PrivateKey.generate()},
    ],
    ids=["own-key-identifier", "ed25519"],
)
def test_a_ca_from_another_tool_signs_what_openssl_verifies(tmp_path, ca):
    _ca(tmp_path, **ca)
    assert make(str(tmp_path), ("localhost",)).ca_reused
    assert openssl_verify(tmp_path, "localhost").endswith(": OK")


@pytest.mark.parametrize(
    "ca, why",
    [
        ({"cert_key": ec.generate_private_key(ec.SECP256R1())}, "{key} is not its key"),
        ({"ca": False}, "it is not a ca certificate (basicConstraints has no ca:true)"),
        ({"days": -1}, "it expired on {day}: remove both ca files to make a new ca"),
        ({"password": b"secret"}, "{key} is encrypted: give it without a passphrase"),
    ],
    ids=["other-key", "not-a-ca", "expired", "encrypted"],
)
def test_a_ca_that_cannot_sign_is_not_reused(tmp_path, ca, why):
    _ca(tmp_path, **ca)
    day = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes()).not_valid_after_utc
    with pytest.raises(TLSConfigError) as info:
        make(str(tmp_path), ("localhost",))
    why = why.format(key=tmp_path / "ca-key.pem", day=day.strftime("%Y-%m-%d"))
    assert str(info.value) == f"cannot reuse the ca in {tmp_path / 'ca.pem'}: {why}"
    assert not (tmp_path / "server.pem").exists()


def test_a_leaf_never_outlives_the_reused_ca_that_signs_it(tmp_path):
    """RFC 5280 6.1.3: a path is valid only while every certificate in it is, so a leaf
    dated past its CA would stop verifying on the CA's last day while it claims more; it
    ends when the CA ends instead, as step-ca and cfssl cap it."""
    _ca(tmp_path, days=3)
    ca_end = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes()).not_valid_after_utc
    assert make(str(tmp_path), ("localhost",), client="alice").ca_reused
    for name in ("server.pem", "client.pem"):
        cert = x509.load_pem_x509_certificate((tmp_path / name).read_bytes())
        assert cert.not_valid_after_utc == ca_end, name


def test_a_ca_file_that_is_not_pem_gets_a_short_message(tmp_path):
    (tmp_path / "ca.pem").write_text("x\n")
    (tmp_path / "ca-key.pem").write_text("y\n")
    with pytest.raises(TLSConfigError) as info:
        make(str(tmp_path), ())
    assert str(info.value) == f"cannot reuse the ca in {tmp_path / 'ca.pem'}: not a pem certificate"


def test_a_wildcard_certificate_prints_commands_for_a_host_it_covers(tmp_path, capsys):
    from ipcnet.cli import cert

    assert cert.run(Namespace(out=str(tmp_path), names=["*.example.test"], client=None)) == 0
    out = capsys.readouterr().out
    assert "tls://www.example.test:8443" in out and "https://www.example.test:8443/" in out
    assert "*.example.test:8443" not in out
