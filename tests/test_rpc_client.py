"""The clients over every stream transport: exec: (a child's stdin/stdout), unix, tcp;
the asyncio client; and the `ipcnet rpc` command line."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import pytest

from ipcnet import rpc
from ipcnet.errors import Broken, Timeout
from ipcnet.rpc import aio
from test_rpc_api import HERE, rpc_server, stdio_command

IPCNET = [sys.executable, "-m", "ipcnet"]


def test_sync_client_over_exec_like_a_language_server() -> None:
    with rpc.connect(stdio_command(), timeout=20) as client:
        assert client.add(1, 2) == 3
        assert client.slow_add(a=1, b=2) == 3
        pendings = [client.submit("add", [i, 1]) for i in range(100)]
        assert [p.result() for p in pendings] == [i + 1 for i in range(100)]
        names = [m["name"] for m in client.request("rpc.discover")["methods"]]
        assert "add" in names and "block" in names
        process = client.channel.process
    assert process is not None and process.wait(10) == 0  # EOF on its stdin ends it


def test_exec_with_newline_framing_when_asked() -> None:
    with rpc.connect(stdio_command("--framing", "newline"), framing="newline") as client:
        assert client.echo("hi") == "hi"


def test_sync_client_over_abstract_unix() -> None:
    name = f"unix://@ipcnet-rpc-{uuid.uuid4().hex[:8]}"
    with rpc_server(name, model="epoll") as server:
        with rpc.connect(server.addresses[0], timeout=10) as client:
            assert client.add(2, 2) == 4


def test_a_server_that_goes_away_fails_waiting_calls() -> None:
    # --grace 0: the call in flight is cut off rather than finished and answered
    with rpc_server("tcp://127.0.0.1:0", model="thread", extra=("--grace", "0")) as server:
        client = rpc.connect(server.url("tcp"), timeout=20)
        pending = client.submit("sleep", [5])
        server.stop()
        with pytest.raises(Broken):
            pending.result()
        with pytest.raises(Broken):
            client.add(1, 2)
        client.close()


async def _async_calls(url: str) -> None:
    async with await aio.connect(url, timeout=20) as client:
        assert await client.add(1, 2) == 3
        assert await client.greet(name="bo") == "hello, bo"
        results = await asyncio.gather(*(client.add(i, i) for i in range(200)))
        assert results == [2 * i for i in range(200)]
        with pytest.raises(rpc.RPCError) as info:
            await client.nope()
        assert info.value.code == rpc.METHOD_NOT_FOUND
        with pytest.raises(Timeout):
            await client.request("sleep", [0.3], timeout=0.05)
        assert await client.echo("late reply dropped") == "late reply dropped"
        await client.notify("add", 1, 2)
        assert await client.add(5, 5) == 10


def test_asyncio_client_over_tcp_unix_and_exec() -> None:
    unix = f"unix:///tmp/ipcnet-rpc-{uuid.uuid4().hex[:10]}.sock"
    with rpc_server("tcp://127.0.0.1:0", unix, model="asyncio") as server:
        asyncio.run(_async_calls(server.url("tcp")))
        asyncio.run(_async_calls(server.url("unix")))
    asyncio.run(_async_calls(stdio_command()))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IPCNET, "rpc", *args], capture_output=True, text=True, timeout=30, cwd=str(HERE)
    )


def test_cli_call_and_list() -> None:
    with rpc_server("tcp://127.0.0.1:0", model="epoll") as server:
        url = server.url("tcp")
        done = _cli("call", url, "add", "1", "2")
        assert done.returncode == 0 and json.loads(done.stdout) == 3
        done = _cli("call", url, "greet", "-n", 'name="x"', "-n", 'greeting="yo"')
        assert json.loads(done.stdout) == "yo, x"
        done = _cli("call", url, "echo", '{"a": [1, 2]}')
        assert json.loads(done.stdout) == {"a": [1, 2]}
        done = _cli("call", url, "boom")
        assert done.returncode == 1 and "-32000" in done.stderr and "ValueError" in done.stderr
        assert done.stdout == ""
        done = _cli("call", url, "nope")
        assert done.returncode == 1 and "method not found" in done.stderr
        done = _cli("call", url, "echo", "not-json")
        assert done.returncode == 2 and "not JSON" in done.stderr
        done = _cli("list", url)
        assert (
            done.returncode == 0 and "add(a: int, b: int) -> int  # Add two numbers." in done.stdout
        )
        done = _cli("list", url, "--json")
        assert any(m["name"] == "slow_add" for m in json.loads(done.stdout)["methods"])
    done = _cli("call", stdio_command(), "add", "3", "4")
    assert json.loads(done.stdout) == 7


def test_cli_serve_an_object_and_a_bad_target() -> None:
    done = _cli("serve", "test_rpc_api:nothing_here", "tcp://127.0.0.1:0")
    assert done.returncode == 2 and "cannot load" in done.stderr
    command = f"exec:{sys.executable} -m ipcnet rpc serve json stdio:"  # a module's functions
    with rpc.connect(command) as client:
        assert client.dumps([1, 2]) == "[1, 2]"
        names = {m["name"] for m in client.request("rpc.discover")["methods"]}
        assert "loads" in names and "JSONDecoder" not in names and "_default_encoder" not in names


def test_registry_refuses_private_and_reserved_names() -> None:
    m = rpc.Methods()
    for name in ("_x", "__class__", "rpc.mine", "", "a b", "x._y"):
        with pytest.raises(ValueError):
            m.add(print, name=name)

    class Api:
        def public(self) -> int:
            return 1

        def _private(self) -> int:
            return 2

    assert list(rpc.as_methods(Api())) == ["public"]


def test_asyncio_client_fails_to_connect_with_the_sync_clients_errors(short_tmp) -> None:
    """One opener: the same error class and message from rpc.connect and rpc.aio.connect."""
    from ipcnet.errors import IPCError, NoSuchSocket, Refused
    from ipcnet.testing import free_port

    cases = {
        f"tcp://127.0.0.1:{free_port()}": Refused,
        f"unix://{short_tmp}/nothing": NoSuchSocket,
    }
    for url, kind in cases.items():
        with pytest.raises(kind) as sync_info:
            rpc.connect(url, connect_timeout=5)
        with pytest.raises(IPCError) as async_info:
            asyncio.run(aio.connect(url, connect_timeout=5))
        assert type(async_info.value) is kind
        assert str(async_info.value) == str(sync_info.value)
    assert str(sync_info.value) == f"no socket at unix://{short_tmp}/nothing"


def test_asyncio_client_refuses_a_one_way_address(short_tmp) -> None:
    """A fifo's connect end only writes: the asyncio opener says so and leaves no fd open."""
    import os

    import ipcnet
    from ipcnet.errors import Unsupported

    path = short_tmp / "f"
    before = set(os.listdir("/proc/self/fd"))  # numbers, not a count: another test's
    # thread may close a descriptor of its own meanwhile
    with ipcnet.listen(f"fifo://{path}"):  # creates the fifo
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            with pytest.raises(Unsupported, match=f"^fifo://{path} is one-way"):
                asyncio.run(aio.connect(f"fifo://{path}", connect_timeout=5))
        finally:
            os.close(reader)
    assert not set(os.listdir("/proc/self/fd")) - before
