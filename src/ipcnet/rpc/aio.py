"""The asyncio JSON-RPC client: ``await rpc.aio.connect(url)``, then ``await c.add(1, 2)``.

Role: the same calls as the blocking client, for asyncio programs, over every stream
address the blocking one takes (tcp, unix with abstract names, exec:, fd://...), opened by
the same transports (``ipcnet.transports.aio``), so a failure to connect is the same error
(``Refused``, ``NoSuchSocket``...). Rules: one reader task files each reply under its id; a
call that times out or is cancelled (``wait_for``, ``task.cancel()``, ``asyncio.timeout``)
forgets its id and ``abandon``s it, so its late reply is dropped and an error with id null
that may be its is given to no other call; a call's timeout covers its write too (a server
that does not read); any number of calls may be in flight at once (pipelined); ``batch``
sends several calls in one frame; an error with id null goes to the calls of the one frame
in flight when only one is (``ClientProtocol.orphan``); when the connection breaks, every
waiting call fails with it, and ``close()`` fails them with ``Closed``; the client belongs
to the loop that made it (its reader task runs there): another loop's call is refused.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ipcnet.addresses import Address, parse
from ipcnet.errors import Broken, Closed, IPCError, Timeout
from ipcnet.framing import Codec, Framing
from ipcnet.protocols.jsonrpc import ClientProtocol, Reply, make_params
from ipcnet.protocols.jsonrpc.client import Calls
from ipcnet.rpc.defaults import choose
from ipcnet.transports.aio import AsyncStream, open_async

READ_SIZE = 64 * 1024
_UNSET: Any = object()


class _Method:
    __slots__ = ("_client", "_name")

    def __init__(self, client: AsyncClient, name: str) -> None:
        self._client = client
        self._name = name

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self._client, f"{self._name}.{name}")

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return await self._client.request(self._name, make_params(args, kwargs))


class AsyncClient:
    def __init__(
        self,
        stream: AsyncStream,
        framing: Framing | None = None,
        codec: Codec | None = None,
        timeout: float | None = None,
    ) -> None:
        self.stream = stream
        self.protocol = ClientProtocol(framing, codec)
        self.timeout = timeout
        self.where = stream.where
        # id -> (the first id of the frame it went in, the future its reply completes)
        self._waiting: dict[int, tuple[int, asyncio.Future[Reply]]] = {}
        self._failure: IPCError | None = None
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._read_replies())
        self.dropped = 0

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        return await self.request(method, make_params(args, kwargs))

    async def request(
        self,
        method: str,
        params: list[Any] | dict[str, Any] | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> Any:
        """Call ``method``; RPCError if it failed, Timeout after ``timeout`` seconds."""
        rid, frame = self.protocol.request(method, params)
        (reply,) = await self._exchange(frame, [rid], [method], timeout)
        if reply.error is not None:
            raise reply.error
        return reply.result

    async def batch(self, calls: Calls, *, timeout: float | None = _UNSET) -> list[Any]:
        """Send calls as one JSON-RPC batch; their results (or RPCErrors) in order."""
        if not calls:
            return []  # an empty batch is not a request (the server would answer an error)
        ids, frame = self.protocol.batch(calls)
        replies = await self._exchange(frame, ids, [m for m, _ in calls], timeout)
        return [r.error if r.error is not None else r.result for r in replies]

    async def _exchange(
        self, frame: bytes, ids: list[int], methods: list[str], timeout: float | None
    ) -> list[Reply]:
        """Write ``frame`` and wait for the replies to ``ids`` (registered first, so no
        reply can beat them); Timeout forgets the ids that got none."""
        if self._failure is not None:
            raise self._failure
        self._check_loop()
        loop = self._loop
        futures = [loop.create_future() for _ in ids]
        waiting = self._waiting
        for rid, future in zip(ids, futures, strict=True):
            waiting[rid] = (ids[0], future)
        limit = self.timeout if timeout is _UNSET else timeout
        try:
            async with asyncio.timeout(limit) as scope:
                await self.stream.write(frame)
                for future in futures:
                    await future  # cancelled: the future is, too (it is ours alone)
        except TimeoutError:
            if not scope.expired():
                raise  # the stream's own Timeout (an OS deadline), not this call's
        finally:
            for rid, future in zip(ids, futures, strict=True):
                answered = waiting.pop(rid, None) is None  # its reply came (late: dropped)
                if (future.cancelled() or not future.done()) and not answered:
                    self.protocol.abandon(rid)  # its reply may still come
                else:
                    future.exception()  # seen: one failure raised for all, none logged
        late = [
            (rid, m)
            for rid, m, f in zip(ids, methods, futures, strict=True)
            if f.cancelled() or not f.done()
        ]
        if late:
            rid, method = late[0]
            raise Timeout(f"timed out: no reply to {method} (id {rid}) from {self.where}")
        return [f.result() for f in futures]

    def _check_loop(self) -> None:
        if asyncio.get_running_loop() is not self._loop:  # as asyncio's own objects say
            raise RuntimeError(f"{self!r} is bound to a different event loop")

    async def notify(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        self._check_loop()
        await self.stream.write(self.protocol.notification(method, make_params(args, kwargs)))

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self, name)

    async def _read_replies(self) -> None:
        failure: IPCError = Closed("closed: this rpc client was closed")  # if cancelled
        try:
            while True:
                data = await self.stream.read(READ_SIZE)
                replies = self.protocol.feed(data) if data else self.protocol.feed_eof()
                if self.protocol.outgoing:  # answers to requests the server sent
                    await self.stream.write(self.protocol.take_outgoing())
                for reply in replies:
                    entry = self._waiting.get(reply.id) if type(reply.id) is int else None
                    if entry is not None and not entry[1].done():
                        entry[1].set_result(reply)
                    elif entry is not None or not self._orphan(reply):
                        # late (its call timed out or was cancelled, in this very turn if
                        # it is still listed: it must not abandon an id answered now) or
                        # unknown
                        if entry is not None:
                            del self._waiting[reply.id]
                        self.dropped += 1
                if not data:
                    break
            failure = Broken(f"{self.where} closed the connection")
        except IPCError as exc:
            failure = exc
        finally:  # cancelled too (close(), the loop's end): no call waits for ever
            if self._failure is None:
                self._failure = failure
            for _, future in self._waiting.values():
                if not future.done():
                    future.set_exception(self._failure)

    def _orphan(self, reply: Reply) -> bool:
        """Give an error with id null to the calls waiting, if they are all of one frame
        (see ClientProtocol.orphan); False if it cannot be placed."""
        waiting = [(frame, f) for frame, f in self._waiting.values() if not f.done()]
        if not self.protocol.orphan(reply) or len({frame for frame, _ in waiting}) != 1:
            return False
        for _, future in waiting:
            future.set_result(reply)
        return True

    def __repr__(self) -> str:
        return f"<rpc.aio.AsyncClient {self.where} {self.protocol.framing.name}>"

    async def close(self) -> None:
        if self._failure is None:
            self._failure = Closed("closed: this rpc client was closed")
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        await self.stream.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def connect(
    url: str | Address,
    *,
    framing: str | Framing | None = None,
    codec: str | Codec | None = None,
    timeout: float | None = None,
    connect_timeout: float | None = 30.0,
    max_frame: int | None = None,
) -> AsyncClient:
    """An AsyncClient for any stream address, as ``rpc.connect`` takes."""
    address = parse(url)
    chosen_framing, chosen_codec = choose(address, framing, codec, max_frame)
    stream = await open_async(address, connect_timeout, READ_SIZE)
    return AsyncClient(stream, chosen_framing, chosen_codec, timeout)
