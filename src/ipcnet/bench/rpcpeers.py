"""The Pyro5 and rpyc peers of ``ipcnet bench rpc`` (issue 17): what Python users pick for
RPC. Each has a server (run as ``python -m ipcnet.bench.rpc --server NAME URL``) and a c=1
client, over tcp and unix sockets, with the same 100-byte echo call as every other peer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _where(url: str) -> tuple[str, int] | str:
    if url.startswith("unix://"):
        return url.removeprefix("unix://")
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


def server_pyro(url: str, ready: Callable[[], None]) -> None:
    import Pyro5.api

    @Pyro5.api.expose
    class Echo:
        def echo(self, data: str) -> str:
            return data

    where = _where(url)
    if isinstance(where, str):
        daemon = Pyro5.api.Daemon(unixsocket=where)
    else:
        daemon = Pyro5.api.Daemon(host=where[0], port=where[1])
    daemon.register(Echo, "echo")
    ready()
    daemon.requestLoop()


def client_pyro(url: str) -> tuple[Callable[[str], Any], Callable[[], None]]:
    import Pyro5.api

    where = _where(url)
    at = f"./u:{where}" if isinstance(where, str) else f"{where[0]}:{where[1]}"
    proxy = Pyro5.api.Proxy(f"PYRO:echo@{at}")
    return proxy.echo, proxy._pyroRelease


def server_rpyc(url: str, ready: Callable[[], None]) -> None:
    import rpyc
    from rpyc.utils.server import ThreadedServer

    class EchoService(rpyc.Service):  # type: ignore[misc]
        def exposed_echo(self, data: str) -> str:
            return data

    where = _where(url)
    if isinstance(where, str):
        server = ThreadedServer(EchoService, socket_path=where)
    else:
        server = ThreadedServer(EchoService, hostname=where[0], port=where[1])
    ready()
    server.start()


def client_rpyc(url: str) -> tuple[Callable[[str], Any], Callable[[], None]]:
    import rpyc
    from rpyc.utils.factory import unix_connect

    where = _where(url)
    conn = unix_connect(where) if isinstance(where, str) else rpyc.connect(*where)
    return conn.root.echo, conn.close
