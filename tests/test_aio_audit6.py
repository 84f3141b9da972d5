"""Audit 6 of the asyncio client side: ``ipcnet.transports.aio`` (open_async, AsyncStream)
and ``ipcnet.rpc.aio`` against asyncio's stream contracts and trio's cancellation rules.

Rules checked here (none had a case before):
- a stream this side closed raises Closed on every later read and write, and a read or a
  write blocked at the time wakes with Closed (a blocking Channel's contract; asyncio's own
  StreamReader hands a blocked reader b"", which means EOF, and drops a late write);
- ``close()`` never hangs for a peer that does not read, and a cancelled ``close()`` still
  closes (trio: "aclose must be cancellable, and then close forcefully"), an exec: child too;
- ``write()`` returns once the kernel holds every byte (Channel.write), so a close after it
  loses nothing; ``send_eof()`` half-closes (asyncio's write_eof; a pipe's write end closes);
- a write to an exec: child that exited is PeerClosed, as the blocking channel's EPIPE;
- ``open_async`` cancelled while its worker thread connects closes what the thread opens;
- an rpc call cancelled (task.cancel, wait_for) forgets its id as a timed-out one does, so an
  error with id null it may own is never given to a later call; close() fails every call
  still waiting with Closed; a call's timeout covers its write; a client used from another
  loop says so at once; hundreds of calls answered out of order and cancelled at random each
  get their own reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ipcnet.addresses import parse
from ipcnet.errors import Broken, Closed, PeerClosed, Timeout
from ipcnet.rpc import RPCError, aio
from ipcnet.transports.aio import open_async

PY = sys.executable


@contextmanager
def silent_peer() -> Iterator[tuple[str, list[socket.socket]]]:
    """A tcp listener whose connections are accepted and never read."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                held.append(listener.accept()[0])
        except OSError:
            return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}", held
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)
        for conn in held:
            conn.close()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


# --- AsyncStream: the closed state ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["tcp", "exec"])
def test_close_wakes_a_blocked_read_with_closed_and_later_calls_raise_closed(kind: str) -> None:
    async def main(url: str) -> None:
        stream = await open_async(parse(url))
        reading = asyncio.create_task(stream.read(100))
        await asyncio.sleep(0.05)
        await stream.close()
        with pytest.raises(Closed, match="closed while reading"):
            await reading  # was b"": EOF, which the peer never sent
        with pytest.raises(Closed):
            await stream.read(100)  # was b""
        with pytest.raises(Closed):
            await stream.write(b"x")  # was Broken("connection lost")
        with pytest.raises(Closed):
            await stream.send_eof()
        await stream.close()  # idempotent

    if kind == "exec":
        run(main(f"exec:{PY} -c 'import sys; sys.stdin.read()'"))  # ends at our EOF
    else:
        with silent_peer() as (url, _):
            run(main(url))


def test_close_while_a_write_waits_for_a_peer_that_does_not_read() -> None:
    """The blocked write wakes with Closed and close() returns (it waited for ever for the
    buffer to drain, and the write with it)."""

    async def main(url: str) -> None:
        stream = await open_async(parse(url))
        writing = asyncio.create_task(stream.write(b"x" * 30_000_000))
        await asyncio.sleep(0.2)
        assert not writing.done()
        await asyncio.wait_for(stream.close(), 2)
        with pytest.raises(Closed, match="closed while waiting to write"):
            await asyncio.wait_for(writing, 2)

    with silent_peer() as (url, _):
        run(main(url))


def test_close_after_a_cancelled_write_does_not_hang() -> None:
    """A write cancelled while the peer did not read leaves bytes queued: closing drops them
    (as a blocking channel's close drops what an interrupted write left) instead of waiting
    for a peer that never reads."""

    async def main(url: str) -> None:
        stream = await open_async(parse(url))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(stream.write(b"x" * 30_000_000), 0.2)
        await asyncio.wait_for(stream.close(), 2)

    with silent_peer() as (url, _):
        run(main(url))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_cancelled_close_still_ends_an_exec_child() -> None:
    """trio's rule for aclose: cancelled, it closes forcefully. The child that does not read
    its stdin kept our bytes queued: close() waited, and once cancelled the child was never
    waited for nor terminated."""
    script = "import os, sys, time; print(os.getpid(), flush=True); time.sleep(30)"

    async def main() -> int:
        stream = await open_async(parse(f"exec:{PY} -c '{script}'"))
        pid = int(await stream.read(100))
        # over the pipe's 64 KiB and cancelled: bytes stay queued in the loop's transport
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(stream.write(b"x" * 200_000), 0.2)
        try:
            await asyncio.wait_for(stream.close(), 0.01)
        except TimeoutError:
            pass
        return pid

    pid = run(main())
    try:
        deadline = time.monotonic() + 8
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
    finally:
        if _alive(pid):
            os.kill(pid, 9)


def test_write_returns_once_the_kernel_holds_every_byte() -> None:
    """Channel.write's contract: after ``await write()`` nothing waits in user space, so a
    close() right after is immediate and loses nothing."""

    async def main(url: str, held: list[socket.socket]) -> None:
        stream = await open_async(parse(url))
        data = os.urandom(4_000_000)
        writing = asyncio.create_task(stream.write(data))
        while not held:
            await asyncio.sleep(0.01)
        conn = held[0]
        got = bytearray()

        def drain() -> None:
            while chunk := conn.recv(1 << 20):
                got.extend(chunk)

        reader = threading.Thread(target=drain)
        reader.start()
        await writing
        assert stream._writer.transport.get_write_buffer_size() == 0
        await stream.close()
        await asyncio.to_thread(reader.join, 5)
        assert bytes(got) == data

    with silent_peer() as (url, held):
        run(main(url, held))


def test_send_eof_half_closes_an_exec_child_and_a_socket() -> None:
    """``sort`` answers only after the end of its input: an asyncio program needs to send
    that end and keep reading (asyncio's write_eof; the blocking Channel's send_eof)."""

    async def child() -> bytes:
        stream = await open_async(parse("exec:sort"))
        await stream.write(b"b\na\n")
        await stream.send_eof()
        await stream.send_eof()  # idempotent
        with pytest.raises(Closed, match="after send_eof"):
            await stream.write(b"c\n")
        out = b""
        while chunk := await stream.read(100):
            out += chunk
        await stream.close()
        return out

    assert run(child()) == b"a\nb\n"

    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while chunk := conn.recv(100):
                data += chunk
            conn.sendall(data.upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def sock() -> bytes:
        stream = await open_async(parse(f"tcp://127.0.0.1:{listener.getsockname()[1]}"))
        await stream.write(b"hello")
        await stream.send_eof()
        out = b""
        while chunk := await stream.read(100):
            out += chunk
        await stream.close()
        return out

    try:
        assert run(sock()) == b"HELLO"
    finally:
        thread.join(5)
        listener.close()


def test_writing_to_an_exec_child_that_exited_is_peer_closed_without_asyncio_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The blocking channel says PeerClosed (EPIPE); asyncio's pipe transport drops the
    writes and, from the fifth on, logs a warning for each."""

    async def main() -> None:
        stream = await open_async(parse("exec:true"))
        assert await stream.read(10) == b""
        await asyncio.sleep(0.2)
        for _ in range(8):
            with pytest.raises(PeerClosed, match="peer closed: write to exec:true"):
                await stream.write(b"x")
        await stream.close()

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run(main())
    assert not [r for r in caplog.records if r.name == "asyncio"]


def test_open_async_cancelled_while_connecting_closes_what_its_thread_opens() -> None:
    """A listener whose queue is full holds the connect (the SYN is dropped and sent again
    a second later); cancelled meanwhile, the socket the worker thread still opens was left
    to the garbage collector: an 'unclosed socket' ResourceWarning, the server's end open."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)  # fills the queue
    accepted: list[socket.socket] = []

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(open_async(parse(f"tcp://127.0.0.1:{port}")), 0.3)
        accepted.append(listener.accept()[0])  # room again: the thread's connect completes
        listener.settimeout(5)
        accepted.append(await asyncio.to_thread(lambda: listener.accept()[0]))
        accepted[-1].settimeout(5)
        assert await asyncio.to_thread(accepted[-1].recv, 1) == b""  # closed by ipcnet

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            run(main())
            gc.collect()
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    finally:
        for conn in [*accepted, filler, listener]:
            conn.close()


# --- the rpc client ---------------------------------------------------------------------


NULL_ERROR = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "unread"}}


@contextmanager
def line_peer(answer: Callable[[Any], list[Any]], gap: float = 0.0) -> Iterator[str]:
    """A newline JSON peer: ``answer(message)`` is what it sends back, one line each,
    ``gap`` seconds apart."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn, conn.makefile("rb") as stream:
            for line in stream:
                for m in answer(json.loads(line)):
                    conn.sendall(json.dumps(m).encode() + b"\n")
                    time.sleep(gap)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(10)


@pytest.mark.parametrize("how", ["wait_for", "cancel"])
def test_a_cancelled_call_is_forgotten_like_a_timed_out_one(how: str) -> None:
    """The error with id null that comes after a cancelled call may be its answer: a later
    call must not take it (the cancelled call did not ``abandon`` its id)."""

    def answer(message: Any) -> list[Any]:
        if message["method"] == "first":
            return []
        return [NULL_ERROR, {"jsonrpc": "2.0", "id": message["id"], "result": "mine"}]

    async def main(url: str) -> None:
        async with await aio.connect(url) as client:
            if how == "wait_for":
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(client.request("first"), 0.2)
            else:
                call = asyncio.create_task(client.request("first"))
                await asyncio.sleep(0.2)
                call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call
            assert await client.request("second", timeout=5) == "mine"
            assert client.dropped == 1 and not client._waiting

    with line_peer(answer, gap=0.1) as url:
        run(main(url))


def test_close_fails_the_calls_still_waiting() -> None:
    async def main(url: str) -> None:
        client = await aio.connect(url)
        calls = [asyncio.create_task(client.request("never")) for _ in range(3)]
        await asyncio.sleep(0.1)
        await client.close()
        for call in calls:  # they waited for ever
            with pytest.raises(Closed):
                await asyncio.wait_for(call, 2)
        with pytest.raises(Closed):
            await client.request("later")

    with line_peer(lambda m: []) as url:
        run(main(url))


def test_a_call_timeout_covers_its_write() -> None:
    """A server that does not read: the call's timeout passes while its frame waits to go
    (it waited for ever), and closing the client does not wait for that frame either."""

    async def main(url: str) -> None:
        client = await aio.connect(url, max_frame=1 << 26)
        started = time.monotonic()
        with pytest.raises(Timeout):
            await client.request("echo", ["x" * 10_000_000], timeout=0.3)
        assert time.monotonic() - started < 2
        await asyncio.wait_for(client.close(), 2)

    with silent_peer() as (url, _):
        run(main(url))


def test_a_client_used_from_another_loop_says_so() -> None:
    """Its reader task runs on the loop that made it: from another loop a call waited for
    ever (or timed out, though the reply had come), where asyncio's objects raise at once."""

    def answer(message: Any) -> list[Any]:
        return [{"jsonrpc": "2.0", "id": message["id"], "result": "ok"}]

    with line_peer(answer) as url:
        loop = asyncio.new_event_loop()
        try:
            client = loop.run_until_complete(aio.connect(url, timeout=5))
            assert loop.run_until_complete(client.request("x")) == "ok"

            async def elsewhere() -> None:
                with pytest.raises(RuntimeError, match="different event loop"):
                    await client.request("y")
                with pytest.raises(RuntimeError, match="different event loop"):
                    await client.notify("z")

            asyncio.run(asyncio.wait_for(elsewhere(), 3))
            assert loop.run_until_complete(client.request("x")) == "ok"
            loop.run_until_complete(client.close())
        finally:
            loop.close()


@contextmanager
def shuffling_peer(seed: int) -> Iterator[tuple[str, list[int]]]:
    """Answers each call with its own params, in random order and in random bursts; the
    list it yields holds the id of each call it received."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[int] = []
    pending: list[bytes] = []
    lock = threading.Lock()
    done = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        rng = random.Random(seed)

        def send() -> None:
            while not done.is_set():
                with lock:
                    rng.shuffle(pending)
                    burst = pending[: rng.randint(1, 20)]
                    del pending[: len(burst)]
                if burst:
                    conn.sendall(b"".join(burst))
                time.sleep(0.002)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        with conn, conn.makefile("rb") as stream:
            for line in stream:
                m = json.loads(line)
                received.append(m["id"])
                reply = {"jsonrpc": "2.0", "id": m["id"], "result": m["params"]}
                with lock:
                    pending.append(json.dumps(reply).encode() + b"\n")
        done.set()
        sender.join(5)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}", received
    finally:
        done.set()
        listener.close()
        thread.join(10)


@pytest.mark.parametrize("seed", [1, 2])
def test_hundreds_of_calls_answered_out_of_order_and_cancelled_at_random(seed: int) -> None:
    async def main(url: str, received: list[int]) -> None:
        rng = random.Random(seed)
        async with await aio.connect(url, timeout=10) as client:

            async def one(i: int) -> str:
                try:
                    if rng.random() < 0.3:
                        got = await asyncio.wait_for(client.echo(i), rng.random() * 0.05)
                    else:
                        got = await client.echo(i)
                except TimeoutError:
                    return "cancelled"
                assert got == [i]
                return "ok"

            tasks = [asyncio.create_task(one(i)) for i in range(400)]
            await asyncio.sleep(0.01)
            for task in rng.sample(tasks, 40):
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            errors = [r for r in results if isinstance(r, Exception)]
            assert not errors
            assert results.count("ok") > 100
            assert not client._waiting
            assert await client.echo("after") == ["after"]  # the connection is fine
            # the calls cancelled after they were sent: their replies come late and are
            # dropped (all but those filed in the instant their task was cancelled), and
            # then no trace of them is left
            gone = len(received) - 1 - results.count("ok")
            assert gone > 0
            deadline = time.monotonic() + 5
            while client.protocol._abandoned and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert not client.protocol._abandoned and not client._waiting
            assert 0 < client.dropped <= gone

    with shuffling_peer(seed) as (url, received):
        run(main(url, received))


def test_a_reply_read_before_its_cancelled_call_ends_leaves_no_abandoned_id() -> None:
    """The race the random test above met once in a full run: a call's future cancelled
    (a timer's callback: wait_for's timeout, or here a cancel) in the same loop turn as its
    reply is read. The reader found the future done and dropped the reply; then the call's
    own ending abandoned its id, whose reply had come already: an id abandoned for good
    (a null-id error could never again be told whose it is). Forced here: the reply is in
    the kernel, and the cancel is a timer due at the turn that reads it."""
    listener = socket.create_server(("127.0.0.1", 0))
    asked, answer = threading.Semaphore(0), threading.Semaphore(0)

    def serve() -> None:  # each call answered when the test says so
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as stream:
            for line in stream:
                m = json.loads(line)
                asked.release()
                answer.acquire()
                reply = {"jsonrpc": "2.0", "id": m["id"], "result": m["params"]}
                conn.sendall(json.dumps(reply).encode() + b"\n")

    async def main(url: str) -> None:
        loop = asyncio.get_running_loop()
        async with await aio.connect(url, timeout=10) as client:
            for i in range(5):
                call = asyncio.create_task(client.echo(i))
                while not asked.acquire(blocking=False):  # sent, and the peer has it
                    await asyncio.sleep(0.001)
                loop.call_later(0, call.cancel)  # run after the next turn's socket events
                answer.release()
                time.sleep(0.05)  # the reply comes into the kernel meanwhile
                with contextlib.suppress(asyncio.CancelledError):
                    await call
            assert client.dropped == 5  # each reply came after its call was cancelled
            assert not client.protocol._abandoned and not client._waiting

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        run(main(f"tcp://127.0.0.1:{listener.getsockname()[1]}"))
    finally:
        listener.close()
        thread.join(5)


def test_an_rpc_error_still_reaches_its_call_after_cancellations() -> None:
    """A cancelled call's own (late) error reply is dropped, not raised in another call."""

    def answer(message: Any) -> list[Any]:
        if message["method"] == "fail":
            error = {"code": 7, "message": "mine"}
            return [{"jsonrpc": "2.0", "id": message["id"], "error": error}]
        return [{"jsonrpc": "2.0", "id": message["id"], "result": message["method"]}]

    async def main(url: str) -> None:
        async with await aio.connect(url, timeout=5) as client:
            late = asyncio.create_task(client.request("fail"))
            await asyncio.sleep(0)
            late.cancel()
            assert await client.request("ok") == "ok"
            with pytest.raises(RPCError, match="mine"):
                await client.request("fail")

    with line_peer(answer, gap=0.05) as url:
        run(main(url))


def test_a_batch_cut_off_by_the_server_logs_no_unretrieved_future(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every call of the batch fails with the connection; the first raises, and the rest
    were left for the garbage collector to log "Future exception was never retrieved"."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def main() -> None:
        async with await aio.connect(f"tcp://127.0.0.1:{listener.getsockname()[1]}") as client:
            with pytest.raises(Broken, match="closed the connection"):
                await client.batch([("a", None), ("b", None), ("c", None)])
        gc.collect()

    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            run(main())
            gc.collect()
        assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    finally:
        thread.join(5)
        listener.close()


@pytest.mark.parametrize("url", ["tls://127.0.0.1:{port}", "tls+unix://@{name}"])
def test_open_async_refuses_tls_before_it_connects(url: str) -> None:
    """A TLS stream cannot be handed to an event loop (its TLS state is this process's
    SSLObject). open_async said so only after a TCP connect and a whole handshake, which
    the server saw as a client that left; it now says so before connecting."""
    from ipcnet.errors import Unsupported
    from ipcnet.transports.aio import open_async

    name = f"ipcnet-aio-tls-{os.getpid()}"
    family = socket.AF_UNIX if url.startswith("tls+unix") else socket.AF_INET
    with socket.socket(family) as server:
        server.bind(("127.0.0.1", 0) if family == socket.AF_INET else f"\0{name}")
        server.listen()
        port = server.getsockname()[1] if family == socket.AF_INET else 0
        with pytest.raises(Unsupported, match="event loop"):
            asyncio.run(open_async(parse(url.format(port=port, name=name)), 2.0))
        server.settimeout(0.2)
        with pytest.raises(socket.timeout):
            server.accept()  # nobody connected
