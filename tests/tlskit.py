"""Helpers for the TLS tests: certificates from trustme, written once per test process.

``certs()`` gives a CA and, signed by it, a server certificate for localhost, 127.0.0.1
and ::1, an expired one, one for another host, and a client certificate; ``other`` is a
second CA nobody trusts, with a server and a client certificate of its own.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import shutil
import ssl
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme

from ipcnet.addresses import parse
from ipcnet.channel import Channel
from ipcnet.errors import IPCError
from ipcnet.transports import open_listener, open_stream
from ipcnet.transports.tls import ServerContext, TLSLayer, TLSListener, TLSOptions, TLSStream
from ipcnet.transports.tls import stream as tls_stream
from ipcnet.transports.tls.context import client_context, server_context


@dataclass(frozen=True)
class Pair:
    cert: str  # chain PEM
    key: str


@dataclass(frozen=True)
class Certs:
    ca: str
    server: Pair
    expired: Pair
    wrong_host: Pair
    client: Pair
    other_ca: str
    other_server: Pair
    other_client: Pair
    folder: Path


def _write(folder: Path, name: str, issued: trustme.LeafCert) -> Pair:
    cert, key = folder / f"{name}.pem", folder / f"{name}-key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    key.write_bytes(issued.private_key_pem.bytes())
    return Pair(str(cert), str(key))


def write_pem(folder: Path, name: str, cert: Any, key: Any) -> tuple[str, str]:
    """A certificate and key made with ``cryptography`` as NAME.pem and NAME-key.pem."""
    from cryptography.hazmat.primitives import serialization

    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    key_path.write_bytes(key.private_bytes(*pem, serialization.NoEncryption()))
    return str(cert_path), str(key_path)


EC = trustme.KeyType.ECDSA  # fast to make, and what ipcnet cert makes


@functools.cache
def certs() -> Certs:
    folder = Path(tempfile.mkdtemp(prefix="ipcnet-tls-"))
    atexit.register(shutil.rmtree, folder, True)
    ca, other = trustme.CA(key_type=EC), trustme.CA(key_type=EC)
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    other.cert_pem.write_to_path(str(folder / "other-ca.pem"))

    def issue(name: str, by: trustme.CA, *names: str, **kw: object) -> Pair:
        return _write(folder, name, by.issue_cert(*names, key_type=EC, **kw))  # type: ignore[arg-type]

    past = datetime.datetime(2021, 1, 1)
    return Certs(
        ca=str(folder / "ca.pem"),
        server=issue("server", ca, "localhost", "127.0.0.1", "::1"),
        expired=issue("expired", ca, "localhost", "127.0.0.1", not_after=past),
        wrong_host=issue("wrong", ca, "example.test", "www.example.test"),
        client=issue("client", ca, "client@ipcnet.test"),
        other_ca=str(folder / "other-ca.pem"),
        other_server=issue("other-server", other, "localhost", "127.0.0.1"),
        other_client=issue("other-client", other, "client@ipcnet.test"),
        folder=folder,
    )


CLOSE = 0.3  # seconds a test's endpoint waits for the peer's close_notify


def server_options(pair: Pair | None = None, **kw: object) -> TLSOptions:
    pair = pair or certs().server
    kw.setdefault("close_timeout", CLOSE)
    return TLSOptions(cert=pair.cert, key=pair.key, **kw)  # type: ignore[arg-type]


def client_options(**kw: object) -> TLSOptions:
    kw.setdefault("ca", certs().ca)
    kw.setdefault("close_timeout", CLOSE)
    return TLSOptions(**kw)  # type: ignore[arg-type]


def layers(
    server: TLSOptions | None = None,
    client: TLSOptions | None = None,
    host: str | None = "localhost",
) -> tuple[TLSLayer, TLSLayer]:
    """A (client, server) pair of sans-IO layers, not yet shaken hands."""
    s = TLSLayer(server_context(server or server_options()), server_side=True, where="client")
    c = TLSLayer(
        client_context(client or client_options()),
        server_side=False,
        server_hostname=host,
        where="server",
    )
    return c, s


def pump(a: TLSLayer, b: TLSLayer) -> None:
    """Move ciphertext both ways until neither side has any to send."""
    while a.pending or b.pending:
        if a.pending:
            b.receive(a.outgoing())
        if b.pending:
            a.receive(b.outgoing())


def shake(c: TLSLayer, s: TLSLayer, rounds: int = 6) -> None:
    """Drive both handshakes, raising the first side's error."""
    for _ in range(rounds):
        done = c.handshake() & s.handshake()
        pump(c, s)
        if done:
            return


def version(name: str) -> ssl.TLSVersion:
    return {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[name]


def stream_pair(
    raw_url: str = "tcp4://127.0.0.1:0",
    server: TLSOptions | None = None,
    client: TLSOptions | None = None,
    host: str | None = "localhost",
) -> tuple[Channel, Channel]:
    """(client, server) Channels over TLS on a fresh raw listener; handshakes done."""
    import threading

    server = server or server_options()
    client = client or client_options()
    raw_listener = open_listener(parse(raw_url))
    box: dict[str, object] = {}
    try:
        raw_client = open_stream(raw_listener.address, 5)
        raw_server = raw_listener.accept()

        def serve() -> None:
            try:
                box["server"] = tls_stream.server(raw_server, server_context(server), server)
            except BaseException as exc:
                box["error"] = exc

        worker = threading.Thread(target=serve, daemon=True)
        worker.start()
        try:
            a = tls_stream.client(raw_client, client, host)
        finally:
            worker.join(10)
    finally:
        raw_listener.close()
    if "error" in box:
        a.close()
        raise box["error"]  # type: ignore[misc]
    return Channel(a), Channel(box["server"])  # type: ignore[arg-type]


@contextmanager
def tls_server(
    options: TLSOptions | None = None,
    handler: Callable[[Channel], None] | None = None,
    raw_url: str = "tcp4://127.0.0.1:0",
) -> Iterator[str]:
    """A TLS listener served by threads (handshake, then ``handler``; default: echo until
    EOF, then half-close); yields its raw address, as ``tcp4://127.0.0.1:PORT``."""
    import threading

    options = options or server_options()
    listener = TLSListener(open_listener(parse(raw_url)), ServerContext(options), options)

    def echo(ch: Channel) -> None:
        while data := ch.read(65536):
            ch.write(data)
        ch.send_eof()

    def one(stream: TLSStream) -> None:
        with Channel(stream) as ch:
            try:
                (handler or echo)(ch)
            except IPCError:
                pass

    def loop() -> None:
        while True:
            try:
                raw = listener.raw.accept()
            except IPCError:
                return
            threading.Thread(target=lambda raw=raw: _handshake_then(raw, one), daemon=True).start()

    def _handshake_then(raw: object, then: Callable[[TLSStream], None]) -> None:
        try:
            stream = tls_stream.server(raw, listener.contexts.current, options)  # type: ignore[arg-type]
        except IPCError:
            return
        then(stream)

    threading.Thread(target=loop, daemon=True).start()
    try:
        yield str(listener.raw.address)
    finally:
        listener.close()
