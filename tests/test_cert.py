"""``ipcnet cert``: a local CA and certificates that real TLS peers accept."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import pytest

from ipcnet.transports.tls import TLSOptions
from ipcnet.transports.tls.probe import der_names
from tlskit import stream_pair

IPCNET = [sys.executable, "-m", "ipcnet", "cert"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*IPCNET, *args], capture_output=True, text=True, timeout=60)


def names_of(path) -> tuple[str, ...]:
    import ssl

    return der_names(ssl.PEM_cert_to_DER_cert(path.read_text()))


def test_default_names_modes_and_usage(tmp_path):
    out = tmp_path / "certs"
    done = run("--out", str(out))
    assert done.returncode == 0, done.stderr
    for name, mode in [("ca.pem", 0o644), ("ca-key.pem", 0o600), ("server.pem", 0o644),
                       ("server-key.pem", 0o600)]:  # fmt: skip
        assert stat.S_IMODE(os.stat(out / name).st_mode) == mode, name
    assert sorted(os.listdir(out)) == ["ca-key.pem", "ca.pem", "server-key.pem", "server.pem"]
    assert names_of(out / "server.pem") == ("localhost", "127.0.0.1", "::1")
    assert "made the local ca" in done.stdout
    assert f"--ca {out}/ca.pem" in done.stdout
    assert f"--cert {out}/server.pem --key {out}/server-key.pem" in done.stdout


def test_the_certificate_works_for_a_tls_pair(tmp_path):
    assert run("--out", str(tmp_path), "--client", "alice").returncode == 0
    server = TLSOptions(cert=str(tmp_path / "server.pem"), key=str(tmp_path / "server-key.pem"),
                        ca=str(tmp_path / "ca.pem"), close_timeout=0.3)  # fmt: skip
    client = TLSOptions(ca=str(tmp_path / "ca.pem"), cert=str(tmp_path / "client.pem"),
                        key=str(tmp_path / "client-key.pem"), close_timeout=0.3)  # fmt: skip
    for host in ("localhost", "127.0.0.1"):
        a, b = stream_pair(server=server, client=client, host=host)
        with a, b:
            a.write(b"x")
            assert b.read(1) == b"x"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_verifies_the_chain_and_purpose(tmp_path):
    assert run("--out", str(tmp_path), "--client", "alice").returncode == 0
    ca = str(tmp_path / "ca.pem")
    for leaf, purpose in (("server.pem", "sslserver"), ("client.pem", "sslclient")):
        done = subprocess.run(
            ["openssl", "verify", "-CAfile", ca, "-purpose", purpose, str(tmp_path / leaf)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0 and done.stdout.strip().endswith(": OK"), done.stdout


def test_the_ca_is_reused_and_new_names_given(tmp_path):
    assert run("--out", str(tmp_path)).returncode == 0
    ca_before = (tmp_path / "ca.pem").read_bytes()
    done = run("--out", str(tmp_path), "example.test", "10.1.2.3")
    assert done.returncode == 0, done.stderr
    assert "reused the local ca" in done.stdout
    assert (tmp_path / "ca.pem").read_bytes() == ca_before
    assert names_of(tmp_path / "server.pem") == ("example.test", "10.1.2.3")


def test_bad_name_and_half_a_ca_are_refused(tmp_path):
    done = run("--out", str(tmp_path), "bad name!")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "ipcnet cert: invalid certificate name 'bad name!': not a host name or ip address"
    )
    (tmp_path / "ca.pem").write_text("x")
    done = run("--out", str(tmp_path))
    assert done.returncode == 1
    assert "without its pair" in done.stderr
