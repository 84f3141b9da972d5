"""The blocking JSON-RPC client: a proxy, per-call timeouts, pipelined calls from threads.

Role: ``connect(url)`` gives a Client over any stream address (tcp, unix, exec:, ...).
``client.add(1, 2)`` calls ``add``; ``client.request(method, params, timeout=...)`` is the
explicit form; ``client.submit`` sends without waiting (pipelining). Rules:
- many threads may call at once over one connection: each call registers its id before it
  writes; whichever caller is waiting reads for everyone (leader/follower: no extra thread,
  so a lone caller reads its own reply with no hand-off) and files each reply under its id;
- a call that times out forgets its id; a reply arriving later finds no one and is
  dropped; ids only grow, so it is never handed to a later call;
- an error with id null (the server could not read a request's id) fails the calls of
  the one frame in flight (a call, or a batch), when only one is and no timed-out call
  may own it (``ClientProtocol.orphan``); else it is dropped like a late reply;
- a notification the server sends is ignored; a request it sends gets Method Not Found
  (written by the caller that read it);
- a connection the server broke (EOF, a reply that breaks the rules) fails every waiting
  and later call with that error.
"""

from __future__ import annotations

import select
import threading
import time
from types import TracebackType
from typing import Any, cast

from ipcnet.addresses import Address, parse
from ipcnet.channel import Channel
from ipcnet.channel import connect as connect_channel
from ipcnet.errors import Broken, Closed, IPCError, Timeout
from ipcnet.framing import Codec, Framing
from ipcnet.protocols.jsonrpc import ClientProtocol, Reply, make_params
from ipcnet.protocols.jsonrpc.client import Calls
from ipcnet.rpc.defaults import choose

READ_SIZE = 64 * 1024
_UNSET: Any = object()


class Pending:
    """A call sent and not yet answered; ``result()`` waits for it."""

    __slots__ = ("_client", "deadline", "done", "frame", "id", "method", "reply")

    def __init__(
        self, client: Client, rid: int, method: str, deadline: float | None, frame: int = 0
    ) -> None:
        self._client = client
        self.id = rid
        self.frame = frame or rid  # the first id of the frame it went in (a batch's)
        self.method = method
        self.deadline = deadline
        self.reply: Reply | None = None
        self.done = False

    def result(self, timeout: float | None = _UNSET) -> Any:
        """The call's result, or its RPCError raised; Timeout at the deadline."""
        deadline = self.deadline if timeout is _UNSET else _deadline(timeout)
        reply = self._client._wait(self, deadline)
        if reply.error is not None:
            raise reply.error
        return reply.result


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


class _Method:
    """``client.name`` (and ``client.a.b`` for the method "a.b"): call it to call it."""

    __slots__ = ("_client", "_name", "_timeout")

    def __init__(self, client: Client, name: str, timeout: float | None) -> None:
        self._client = client
        self._name = name
        self._timeout = timeout

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self._client, f"{self._name}.{name}", self._timeout)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        params = make_params(args, kwargs)
        return self._client.request(self._name, params, timeout=self._timeout)

    def __repr__(self) -> str:
        return f"<remote method {self._name}>"


class _Proxy:
    def __init__(self, client: Client, timeout: float | None) -> None:
        self._client = client
        self._timeout = timeout

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self._client, name, self._timeout)


class Client:
    """JSON-RPC 2.0 over one Channel; safe to share between threads."""

    def __init__(
        self,
        channel: Channel,
        framing: Framing | None = None,
        codec: Codec | None = None,
        timeout: float | None = None,
    ) -> None:
        self.channel = channel
        self.protocol = ClientProtocol(framing, codec)
        #: the default per-call timeout in seconds (None: wait for ever)
        self.timeout = timeout
        self._lock = threading.Lock()  # guards the fields below; _cond waits on it
        self._cond = threading.Condition(self._lock)
        self._write_lock = threading.Lock()
        self._waiting: dict[int, Pending] = {}
        self._reading = False
        self._followers = 0  # callers blocked in _cond.wait
        self._failure: IPCError | None = None
        self._buf = memoryview(bytearray(READ_SIZE))
        # the transport's calls, bound once: Channel.write only forwards, and Channel.readinto
        # adds ~1 µs a call (a memoryview cast) for nothing unless it holds bytes read ahead
        self._write = channel.transport.write
        self._read_into = channel.readinto if channel.buffered else channel.transport.read_into
        self._poll = select.poll()
        self._poll.register(channel.fileno(), select.POLLIN)
        #: replies that came after their call gave up (counted, then dropped)
        self.dropped = 0

    # --- calling -------------------------------------------------------------------------

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` with positional or named params and return its result."""
        return self.request(method, make_params(args, kwargs))

    def request(
        self,
        method: str,
        params: list[Any] | dict[str, Any] | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> Any:
        """Call ``method``; RPCError if it failed, Timeout after ``timeout`` seconds."""
        pending = self.submit(method, params, timeout=timeout)
        reply = self._wait(pending, pending.deadline)  # Pending.result, one call less
        if reply.error is not None:
            raise reply.error
        return reply.result

    def submit(
        self,
        method: str,
        params: list[Any] | dict[str, Any] | None = None,
        *,
        timeout: float | None = _UNSET,
    ) -> Pending:
        """Send a call now and return at once; ``.result()`` waits for its reply."""
        rid, frame = self.protocol.request(method, params)
        limit = self.timeout if timeout is _UNSET else timeout
        pending = Pending(self, rid, method, None if limit is None else time.monotonic() + limit)
        self._send(frame, pending)
        return pending

    def _send(self, frame: bytes, *pendings: Pending) -> None:
        """Register the calls in ``frame`` (before it goes, so no reply can beat them),
        write it; on a failure to write, forget them again."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            for p in pendings:
                self._waiting[p.id] = p
        try:
            with self._write_lock:
                self._write(frame)
        except BaseException:
            with self._lock:
                for p in pendings:
                    self._waiting.pop(p.id, None)
            raise

    def notify(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a notification: no reply, no error, ever."""
        frame = self.protocol.notification(method, make_params(args, kwargs))
        with self._write_lock:
            self._write(frame)

    def batch(self, calls: Calls, *, timeout: float | None = _UNSET) -> list[Any]:
        """Send calls as one JSON-RPC batch; their results (or RPCErrors) in order."""
        if not calls:
            return []  # an empty batch is not a request (the server would answer an error)
        ids, frame = self.protocol.batch(calls)
        limit = self.timeout if timeout is _UNSET else timeout
        deadline = _deadline(limit)
        pendings = [
            Pending(self, rid, m, deadline, ids[0]) for rid, (m, _) in zip(ids, calls, strict=True)
        ]
        self._send(frame, *pendings)
        out: list[Any] = []
        try:
            for p in pendings:
                reply = self._wait(p, deadline)
                out.append(reply.error if reply.error is not None else reply.result)
        except Timeout:
            with self._lock:  # the rest of the batch stops waiting too
                for p in pendings:
                    if self._waiting.pop(p.id, None) is not None:
                        self.protocol.abandon(p.id)
            raise
        return out

    def with_timeout(self, timeout: float | None) -> _Proxy:
        """A proxy whose calls time out after ``timeout`` seconds: ``c.with_timeout(1).f()``."""
        return _Proxy(self, timeout)

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self, name, _UNSET)

    # --- waiting (leader/follower) ---------------------------------------------------------

    def _wait(self, pending: Pending, deadline: float | None) -> Reply:
        lock, cond = self._lock, self._cond
        lock.acquire()
        try:
            while True:
                if pending.done:
                    assert pending.reply is not None
                    return pending.reply
                if self._failure is not None:
                    self._waiting.pop(pending.id, None)
                    raise self._failure
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    if self._waiting.pop(pending.id, None) is not None:
                        self.protocol.abandon(pending.id)
                    raise Timeout(
                        f"timed out: no reply to {pending.method} (id {pending.id}) "
                        f"from {self.channel.transport.where}"
                    )
                if self._reading:  # another caller reads: wait for it to hand out replies
                    self._followers += 1
                    try:
                        cond.wait(left)
                    finally:
                        self._followers -= 1
                    continue
                self._reading = True  # this caller leads: read, unlocked
                lock.release()
                try:
                    replies = self._read(left)
                finally:
                    lock.acquire()
                    self._reading = False
                    if self._followers:
                        cond.notify_all()
                waiting = self._waiting  # file each reply under its call, the lock held
                for reply in replies:
                    rid = reply.id
                    got = waiting.pop(rid, None) if rid.__class__ is int else None
                    if got is not None:
                        got.reply = reply
                        got.done = True
                    elif not self._orphan(reply):
                        self.dropped += 1  # late (its call timed out) or unknown
        finally:
            lock.release()

    def _orphan(self, reply: Reply) -> bool:
        """Give an error with id null to the calls waiting, if they are all of one frame
        (see ClientProtocol.orphan); False if it cannot be placed. The lock is held."""
        waiting = self._waiting
        if not self.protocol.orphan(reply) or len({p.frame for p in waiting.values()}) != 1:
            return False
        for p in waiting.values():
            p.reply = reply
            p.done = True
        waiting.clear()
        return True

    def _read(self, left: float | None) -> list[Reply]:
        """Read once (waiting at most ``left`` s): the replies that came; a broken
        connection becomes the failure every waiting and later call sees."""
        try:
            if (
                left is not None
                and not self.channel.transport.read_ready  # a TLS stream may hold a reply
                and not self._poll.poll(max(1, int(left * 1000 + 0.999)))
            ):
                return []
            buf = self._buf
            got = self._read_into(buf)
            if got == 0:
                replies = self.protocol.feed_eof()
                if replies:
                    return replies  # the next read finds the end again
                raise Broken(f"{self.channel.transport.where} closed the connection")
            replies = self.protocol.feed(buf[:got].tobytes())
            if self.protocol.outgoing:  # answers to requests the server sent
                out = self.protocol.take_outgoing()
                with self._write_lock:
                    self._write(out)
            return replies
        except IPCError as exc:
            with self._lock:
                if self._failure is None:
                    self._failure = exc
            return []

    # --- closing -------------------------------------------------------------------------

    def close(self) -> None:
        with self._cond:
            if self._failure is None:
                self._failure = Closed("closed: this rpc client was closed")
            self._cond.notify_all()
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<rpc.Client {self.channel.transport.where} {self.protocol.framing.name}>"


def connect(
    url: str | Address,
    *,
    framing: str | Framing | None = None,
    codec: str | Codec | None = None,
    timeout: float | None = None,
    connect_timeout: float | None = 30.0,
    max_frame: int | None = None,
    **tls: Any,
) -> Client:
    """A Client for ``url``: newline JSON on sockets, Content-Length on exec:/stdio:
    (tls:// and tls+unix:// take TLS keywords, as ``ipcnet.connect`` does); for
    ``http://HOST:PORT/PATH`` an ``HttpClient`` (JSON-RPC in HTTP POST bodies)."""
    if isinstance(url, str) and url.startswith("http://"):
        from ipcnet.rpc.http import HttpClient

        chosen_codec = choose(parse("tcp://127.0.0.1:1"), None, codec)[1]
        # the same calls as Client (request, call, notify, batch, with_timeout, client.name(),
        # with); typed as Client so callers need no union: submit is refused (no pipelining)
        return cast(Client, HttpClient(url, chosen_codec, timeout, connect_timeout, max_frame))
    address = parse(url)
    chosen_framing, chosen_codec = choose(address, framing, codec, max_frame)
    channel = connect_channel(address, connect_timeout=connect_timeout, **tls)  # tcp: NODELAY
    return Client(channel, chosen_framing, chosen_codec, timeout)
