"""Serving JSON-RPC: a registry or object to a JsonRpcService, run by any driver.

Role: ``serve(obj, addresses)`` is the one-call server; ``make_service`` builds the
service; ``serve_channel`` runs it on one already-open Channel (``stdio:``, a pipe) where
there is nothing to accept, through the same engine as every model (so it honours every
action: SendFile, ShutdownWrite, Timer). Rules: the service does not know which driver
runs it; async handlers are ``async def`` jobs (see ``protocols.base``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ipcnet.addresses import Address, parse
from ipcnet.channel import Channel
from ipcnet.drivers import ServeConfig, ServerCore, default_for
from ipcnet.drivers import serve as serve_service
from ipcnet.drivers.blocking import LocalRow, drive
from ipcnet.drivers.core import Conn
from ipcnet.drivers.engine import Engine
from ipcnet.framing import Codec, Framing
from ipcnet.protocols.base import Peer, Service
from ipcnet.protocols.jsonrpc import JsonRpcService
from ipcnet.rpc.defaults import choose
from ipcnet.rpc.registry import as_methods


def make_service(
    obj: Any,
    address: str | Address = "tcp://127.0.0.1:0",
    *,
    framing: str | Framing | None = None,
    codec: str | Codec | None = None,
    debug: bool = False,
    max_frame: int | None = None,
) -> JsonRpcService:
    """The service for ``obj`` (a Methods, a mapping, or an object whose methods to export),
    framed as fits ``address`` unless ``framing``/``codec`` say otherwise."""
    chosen_framing, chosen_codec = choose(parse(address), framing, codec, max_frame)
    return JsonRpcService(
        as_methods(obj),
        chosen_framing,
        chosen_codec,
        debug=debug,
        title=getattr(obj, "__name__", type(obj).__name__),
    )


def serve(
    obj: Any,
    addresses: Sequence[str | Address],
    config: ServeConfig | None = None,
    *,
    framing: str | Framing | None = None,
    codec: str | Codec | None = None,
    debug: bool = False,
    max_frame: int | None = None,
    ready: Callable[[ServerCore], None] | None = None,
) -> ServerCore:
    """Serve ``obj``'s methods on socket addresses until SIGTERM/SIGINT (or request_stop),
    under the model the registry gives RPC (``default_for("rpc")``) unless ``config`` says;
    ``max_frame`` bounds a request's frame (``make_service``'s)."""
    service = make_service(
        obj,
        addresses[0] if addresses else "tcp:",
        framing=framing,
        codec=codec,
        debug=debug,
        max_frame=max_frame,
    )
    config = config or ServeConfig(model=default_for("rpc"))  # the fastest for RPC
    return serve_service(service, addresses, config, ready)


def serve_channel(service: Service, channel: Channel) -> None:
    """Answer calls on one open Channel (stdio:, a pipe) until its peer ends it; then the
    channel is closed."""
    session, first = service.start(Peer(channel.peer_address, channel.local_address))
    engine = Engine(session)
    try:
        engine.push(first)
        drive(engine, channel.transport, Conn(channel.transport), LocalRow())
    finally:
        engine.end()
        channel.close()
