"""TLS audit 9: ``ipcnet relay`` used as stunnel is (terminating and originating TLS),
checked against stunnel4 itself, with Python's ssl as the client where one is needed.

- stunnel reloads its certificates at SIGHUP (``man stunnel``: "SIGHUP: re-read the
  configuration file"), as ``ipcnet serve`` does; a terminating relay must too;
- stunnel in client mode resumes its session as it reconnects (``sessionResume = yes``
  by default): an originating relay must not pay a full handshake per client.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ipcnet.addresses import parse
from ipcnet.errors import CertificateUntrusted, TLSConfigError
from ipcnet.relay import Relay, RelayConfig
from ipcnet.testing.pairs import free_port
from ipcnet.transports import open_stream
from ipcnet.transports.tls import ServerContext, TLSOptions, client_context
from relay_helpers import echo, env, relay_process, server
from test_tls_conformance import _connect_when_up
from tlskit import CLOSE, certs

STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")
needs_stunnel = pytest.mark.skipif(STUNNEL is None, reason="no stunnel4")


def _issuer(port: int, ca: str) -> str:
    """The issuer of the certificate the relay on ``port`` shows a
    Python ssl client that trusts ``ca``; raises ssl.SSLError if that fails."""
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            cert = tls.getpeercert()
    assert cert is not None
    return repr(cert["issuer"])


# --- SIGHUP: a terminating relay reloads its certificate -------------------------------


def test_a_terminating_relay_reloads_its_certificate_at_sighup(tmp_path: Path) -> None:
    """stunnel re-reads its certificate at SIGHUP, for new connections; so does
    ``ipcnet serve``. The relay served the old certificate forever: a client trusting the
    new CA was refused ("unknown ca") after the renewal."""
    c = certs()
    cert, key = tmp_path / "live.pem", tmp_path / "live-key.pem"
    shutil.copy(c.server.cert, cert)
    shutil.copy(c.server.key, key)
    with server(echo) as backend:
        args = ["tls://127.0.0.1:0", backend.url, "--cert", str(cert), "--key", str(key)]
        with relay_process(*args) as r:
            before = _issuer(r.port, c.ca)
            shutil.copy(c.other_server.cert, cert)  # renewed: another CA, another key
            shutil.copy(c.other_server.key, key)
            r.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 3
            while True:
                try:
                    after = _issuer(r.port, c.other_ca)
                    break
                except ssl.SSLError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            assert r.proc.poll() is None  # SIGHUP is a reload, not an end
            lines = r.wait_lines(3)
    assert before != after
    assert any("reloaded the certificate" in line for line in lines), lines


# --- session resumption as an originating relay reconnects -------------------------------


@contextmanager
def _stunnel(folder: Path, config: str) -> Iterator[Path]:
    """stunnel with ``config``, logging at level 6 (where it says "previous session
    reused") to a file, which it yields."""
    assert STUNNEL is not None
    conf, log = folder / "stunnel.conf", folder / "stunnel.log"
    conf.write_text(f"foreground = yes\npid =\nsyslog = no\ndebug = 6\noutput = {log}\n{config}")
    proc = subprocess.Popen([STUNNEL, str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        yield log
    finally:
        proc.terminate()
        proc.wait(10)


def _exchange(sock: socket.socket, data: bytes) -> bytes:
    with sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(1 << 16):
            got += chunk
    return got


def _hashed(folder: Path) -> Path:
    """A directory holding the test CA under its subject hash (``openssl rehash``)."""
    capath = folder / "capath"
    capath.mkdir()
    shutil.copy(certs().ca, capath / "ca.pem")
    subprocess.run(["openssl", "rehash", str(capath)], check=True, capture_output=True)
    return capath


@pytest.fixture(scope="module")
def stunnel_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, int], Path]]:
    """One stunnel terminating TLS 1.3 or TLS 1.2 in front of an echo server (services
    named by version, a port each; its session cache and tickets on, as by default), and
    a stunnel client trusting a hashed CA directory ("capath")."""
    if STUNNEL is None:
        pytest.skip("no stunnel4")
    pair = certs().server
    # a service per test that reads the log (resumption): no other test's lines in it
    versions = {
        "1.3": "1.3",
        "1.2": "1.2",
        "bad1.3": "1.3",
        "bad1.2": "1.2",
        "capath-server": "1.3",
    }
    ports = {name: free_port() for name in versions}
    folder = tmp_path_factory.mktemp("stunnel")
    capath = _hashed(folder)
    with server(echo) as backend:
        back = backend.url.removeprefix("tcp://")
        config = "".join(
            f"[{name}]\naccept = 127.0.0.1:{port}\nconnect = {back}\ncert = {pair.cert}\n"
            f"key = {pair.key}\nsslVersionMax = TLSv{versions[name]}\n"
            for name, port in ports.items()
        )
        ports["capath"] = free_port()  # stunnel's client, trusting the hashed directory
        config += (
            f"[capath]\nclient = yes\naccept = 127.0.0.1:{ports['capath']}\n"
            f"connect = 127.0.0.1:{ports['capath-server']}\nCApath = {capath}\nverifyChain = yes\n"
            "checkHost = localhost\n"
        )
        leaf = folder / "leaf.pem"  # the server's own certificate, without its chain
        leaf.write_bytes(Path(pair.cert).read_bytes().partition(b"-----END CERTIFICATE-----")[0]
                         + b"-----END CERTIFICATE-----\n")  # fmt: skip
        ports["pin"] = free_port()  # stunnel's client, pinning that one certificate
        config += (
            f"[pin]\nclient = yes\naccept = 127.0.0.1:{ports['pin']}\n"
            f"connect = 127.0.0.1:{ports['capath-server']}\nCAfile = {leaf}\nverifyPeer = yes\n"
        )
        with _stunnel(folder, config) as log:
            for port in ports.values():
                _connect_when_up(port).close()
            yield ports, log


def _accepted(text: str, service: str) -> list[str]:
    """What stunnel's log says of each handshake of ``service`` ("new session negotiated",
    "previous session reused"): its lines are tagged LOGn[connection number]."""
    tag = re.compile(r" LOG\d\[(\d+)\]: (.*)$")
    ours, said = set(), []
    for line in text.splitlines():
        match = tag.search(line)
        if match is None:
            continue
        conn, words = match.groups()
        if words.startswith(f"Service [{service}] accepted connection"):
            ours.add(conn)
        elif conn in ours and words.startswith("TLS accepted: "):
            said.append(words.removeprefix("TLS accepted: "))
    return said


@needs_stunnel
@pytest.mark.xdist_group("tls_audit9_stunnel")
@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_an_originating_relay_resumes_its_session_with_stunnel(
    stunnel_servers: tuple[dict[str, int], Path], version: str
) -> None:
    """stunnel as a client offers its last session as it reconnects ("TLS connected:
    previous session reused"); the relay did a full handshake for every client."""
    ports, log = stunnel_servers
    target = f"tls://localhost:{ports[version]}"
    start = log.stat().st_size if log.exists() else 0
    with Relay("tcp://127.0.0.1:0", [target], RelayConfig(target_tls={"ca": certs().ca})) as r:
        r.start()
        for i in range(3):
            data = f"client {i}\n".encode()
            assert _exchange(_connect_when_up(int(r.address.port or 0)), data) == data
    deadline = time.monotonic() + 2
    while True:
        text = log.read_bytes()[start:].decode()
        said = _accepted(text, version)
        if len(said) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert said == [
        "new session negotiated",
        "previous session reused",
        "previous session reused",
    ], text


# --- a record that fails: the fatal alert goes to the peer -----------------------------


def _bad_record_verdict(port: int, version: str) -> str:
    """What a Python ssl client reads after one garbage record under its TLS session: the
    alert's reason, or what ended the connection instead."""
    ctx = ssl.create_default_context(cafile=certs().ca)
    ctx.maximum_version = ctx.minimum_version = getattr(ssl.TLSVersion, f"TLSv1_{version[2]}")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(b"ping\n")
            assert tls.recv(100) == b"ping\n"
            os.write(tls.fileno(), b"\x17\x03\x03\x00\x30" + b"G" * 48)  # under the session
            try:
                while tls.recv(100):
                    pass
            except ssl.SSLError as exc:
                return str(exc.reason)
            except OSError as exc:
                return type(exc).__name__
    return "eof"


@needs_stunnel
@pytest.mark.xdist_group("tls_audit9_stunnel")
def test_a_bad_record_gets_the_alert_before_the_relay_resets(
    stunnel_servers: tuple[dict[str, int], Path], caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 8446 §6.2 and RFC 5246 §7.2.2: a record that fails its MAC is answered with a
    fatal bad_record_mac alert; stunnel (and ``ipcnet serve``) send it. The terminating
    relay reset the connection with the alert unsent: the client saw only a reset. Its
    log line names the client as the error in it does (tls://, as ``ipcnet serve``), not
    as the plain socket under the TLS (tcp://)."""
    caplog.set_level(logging.INFO, "ipcnet.relay")
    ports, _ = stunnel_servers
    pair = certs().server
    config = RelayConfig(tls={"cert": pair.cert, "key": pair.key, "close_timeout": CLOSE})
    with server(echo) as backend, Relay("tls://127.0.0.1:0", [backend.url], config) as r:
        r.start()
        port = int(r.address.port or 0)
        for version in ("1.3", "1.2"):
            assert _bad_record_verdict(ports[f"bad{version}"], version) == (
                "SSLV3_ALERT_BAD_RECORD_MAC"
            )
            assert _bad_record_verdict(port, version) == "SSLV3_ALERT_BAD_RECORD_MAC", version
        line = r.stats.snapshot()
    assert line["total"] == 2, line
    logged = [rec.getMessage() for rec in caplog.records if rec.name == "ipcnet.relay"]
    assert len(logged) == 2 and all(m.startswith("tls://127.0.0.1:") for m in logged), logged
    assert all("bad record mac" in m for m in logged), logged


# --- an originating relay's TLS files are checked before it starts -----------------------


def test_target_tls_files_that_cannot_load_stop_the_relay_at_start(tmp_path: Path) -> None:
    """stunnel refuses to start with a CAfile, cert or key it cannot load (and the relay's
    own listen side binds nothing with a bad certificate); the target side's were read
    only per connection, so the relay started and refused every client ("server
    refused"). Each is one line and exit status 1, naming the flag as given."""
    c = certs()
    missing = str(tmp_path / "missing.pem")
    tls_to_tls = ["tls://127.0.0.1:0", "tls://127.0.0.1:9", "--cert", c.server.cert,
                  "--key", c.server.key]  # fmt: skip
    cases = [
        (["tcp://127.0.0.1:0", "tls://127.0.0.1:9", "--ca", missing],
         f"cannot load ca file {missing}: no such file"),
        ([*tls_to_tls, "--target-ca", missing, "--once"], f"cannot load ca file {missing}"),
        ([*tls_to_tls, "--target-key", c.client.key], "--target-key without --target-cert"),
    ]  # fmt: skip
    for args, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "ipcnet", "relay", *args],
            capture_output=True, text=True, timeout=10, env=env(),
        )  # fmt: skip
        assert done.returncode == 1, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and message in done.stderr, (args, done.stderr)
    for tls, message in [
        ({"ca": missing}, "cannot load ca file"),
        ({"key": c.client.key}, "--key without --cert"),
        ({"cert": c.client.cert, "key": c.server.key}, "does not match certificate"),
    ]:
        with pytest.raises(TLSConfigError, match=message):
            Relay("tcp://127.0.0.1:0", ["tls://127.0.0.1:9"], RelayConfig(target_tls=tls))


# --- --ca DIR: a hashed directory, as stunnel's CApath ---------------------------------


@needs_stunnel
@pytest.mark.xdist_group("tls_audit9_stunnel")
def test_ca_takes_a_hashed_directory_as_stunnels_capath(
    stunnel_servers: tuple[dict[str, int], Path], tmp_path: Path
) -> None:
    """stunnel's CApath (curl's --capath, openssl's -CApath) trusts the certificates of a
    directory made by ``openssl rehash``; ``--ca DIR`` said "is a directory". A directory
    with no hashed name in it would trust nothing, silently: it is refused, saying how."""
    ports, _ = stunnel_servers
    capath = Path(stunnel_servers[1]).parent / "capath"
    assert (
        _exchange(_connect_when_up(ports["capath"]), b"stunnel\n") == b"stunnel\n"
    )  # the reference
    stream = open_stream(parse(f"tls://localhost:{ports['capath-server']}"), 5, ca=str(capath),
                         close_timeout=CLOSE)  # fmt: skip
    stream.write(b"ipcnet\n")
    stream.send_eof()
    got = b""
    buf = memoryview(bytearray(100))
    while n := stream.read_into(buf):
        got += buf[:n]
    stream.close()
    assert got == b"ipcnet\n"
    pair = certs().server
    ServerContext(TLSOptions(cert=pair.cert, key=pair.key, ca=str(capath)))  # mutual tls
    with pytest.raises(TLSConfigError) as caught:
        client_context(TLSOptions(ca=str(tmp_path)))
    assert str(caught.value) == (
        f"cannot load ca directory {tmp_path}: no certificate in it under its hash "
        f"(run: openssl rehash {tmp_path})"
    )


@needs_stunnel
@pytest.mark.xdist_group("tls_audit9_stunnel")
def test_ca_holding_the_servers_own_certificate_pins_it_as_stunnels_verifypeer(
    stunnel_servers: tuple[dict[str, int], Path],
) -> None:
    """stunnel's ``verifyPeer`` with the server's certificate as its CAfile trusts that
    certificate alone; ``--ca server.pem`` (a CA-signed leaf, not its CA) failed "unable to
    get local issuer certificate; pass --ca FILE", after --ca had been passed. Another
    certificate is still untrusted."""
    ports, log = stunnel_servers
    leaf = log.parent / "leaf.pem"
    assert _exchange(_connect_when_up(ports["pin"]), b"stunnel\n") == b"stunnel\n"  # the reference
    url = parse(f"tls://localhost:{ports['capath-server']}")
    stream = open_stream(url, 5, ca=str(leaf), close_timeout=CLOSE)
    stream.write(b"pinned\n")
    stream.send_eof()
    got, buf = b"", memoryview(bytearray(100))
    while n := stream.read_into(buf):
        got += buf[:n]
    stream.close()
    assert got == b"pinned\n"
    other = log.parent / "other-leaf.pem"
    other.write_bytes(Path(certs().other_server.cert).read_bytes())
    with pytest.raises(CertificateUntrusted, match="unable to get local issuer certificate"):
        open_stream(url, 5, ca=str(other), close_timeout=CLOSE)
