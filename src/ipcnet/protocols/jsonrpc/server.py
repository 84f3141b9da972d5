"""The JSON-RPC 2.0 server as a sans-IO service: frames in, replies out, handlers as jobs.

Role: the state machine half of the protocol, on the service/driver contract of
``protocols.base``, so one JSON-RPC server runs under every driver. Rules:
- frames come from the configured framing and payloads from the codec; a payload that does
  not decode is answered with Parse Error (id null), a bad request with Invalid Request,
  and the connection goes on; a framing error the framing survives (an over-long line) is
  answered likewise; one it does not (a declared length over the limit) is answered, then
  the connection is closed;
- handler calls are blocking work: each batch of calls that arrived together becomes one
  ``Run`` job, or two when it mixes plain and ``async def`` handlers: the plain ones in a
  plain job, then the async ones in an ``async def`` job (the contract's coroutine form,
  see ``protocols.base``: whatever driver runs it, it is awaited, so the service never
  knows which); ``inline`` handlers and ``rpc.discover`` run at once;
- the common case, one whole frame holding one request (with an id) for a plain handler,
  takes a fast path: no group, unit or call objects, the session itself holds the call
  and its id while the job runs, and the handler's exception comes back as the job's
  error; every other frame goes the general way, which answers it the same;
- while a job runs, bytes that arrive wait in the decoder; replies go out in the order the
  jobs finish (a batch is answered by one array); the peer's EOF closes once all is answered
  (a last line without its newline is a request too: JSON Lines allows it);
- a handler's exception becomes an error reply (type and message, a traceback only with
  ``debug``); methods are found only by exact name in ``methods``.

States of a connection:  IDLE --frames needing handlers--> RUNNING --resume--> IDLE
                         IDLE/RUNNING --EOF--> DRAINING --last reply--> CLOSED
"""

from __future__ import annotations

import traceback
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from types import CoroutineType
from typing import Any

from ipcnet.errors import LimitExceeded, LocalProtocolError, RemoteProtocolError
from ipcnet.framing.codecs import Codec, JSONCodec
from ipcnet.framing.decoders import Framing, NewlineDelimited
from ipcnet.framing.errors import DecodeError, FrameTooLarge
from ipcnet.protocols.base import (
    CLOSE,
    Action,
    Actions,
    BaseService,
    BaseSession,
    Outcome,
    Peer,
    Run,
)
from ipcnet.protocols.jsonrpc.handlers import Handler
from ipcnet.protocols.jsonrpc.messages import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    MISSING,
    PARSE_ERROR,
    SERVER_ERROR,
    BadRequest,
    RPCError,
    common_request,
    error_reply,
    parse_request,
    result_reply,
    shorten,
)

MAX_BATCH = 1000  # requests in one batch
MAX_GROUP = 256  # calls handed to one job
DISCOVER = "rpc.discover"
MESSAGE_LIMIT = 500  # characters of an exception's text in an error reply


class _Call:
    """One handler call waiting for a job; once run, ``reply`` holds its reply dict (None
    for a notification)."""

    __slots__ = ("call", "handler", "id", "notification", "reply", "service")

    def __init__(
        self,
        service: JsonRpcService,
        handler: Handler,
        call: Callable[[], Any],
        rid: Any,
        note: bool,
    ) -> None:
        self.service = service
        self.handler = handler
        self.call = call
        self.id = rid
        self.notification = note
        self.reply: dict[str, Any] | None = None

    def run(self) -> None:
        """Call a plain handler where blocking is harmless and keep the reply."""
        service = self.service
        try:
            value = self.call()
            if value.__class__ is CoroutineType:
                _refuse(value)
            self.reply = service.finish(self, value, None)
        except Exception as exc:
            self.reply = service.finish(self, None, exc)

    async def run_async(self) -> None:
        """Await an ``async def`` handler on the loop and keep the reply."""
        try:
            self.reply = self.service.finish(self, await self.call(), None)
        except Exception as exc:
            self.reply = self.service.finish(self, None, exc)


Slot = dict[str, Any] | _Call | None


class _Unit:
    """What one frame asks for: one request, or a batch answered by one array."""

    __slots__ = ("batch", "calls", "slots")

    def __init__(self, slots: list[Slot], batch: bool, calls: list[_Call] | None = None) -> None:
        self.slots = slots
        self.batch = batch
        self.calls = [s for s in slots if s.__class__ is _Call] if calls is None else calls

    def replies(self) -> list[dict[str, Any]]:
        """The replies to send, in request order (notifications have none)."""
        out = []
        for slot in self.slots:
            reply = slot.reply if isinstance(slot, _Call) else slot
            if reply is not None:
                out.append(reply)
        return out


class JsonRpcService(BaseService):
    """JSON-RPC 2.0 over any stream framing and codec (newline + JSON by default)."""

    name = "jsonrpc"

    def __init__(
        self,
        methods: Mapping[str, Handler],
        framing: Framing | None = None,
        codec: Codec | None = None,
        *,
        debug: bool = False,
        max_batch: int = MAX_BATCH,
        title: str = "ipcnet",
    ) -> None:
        self.methods = dict(methods)
        self.framing = framing or NewlineDelimited()
        self.codec = codec or JSONCodec()
        self._encode = self.framing.encoder(self.codec)  # obj -> frame, in one step
        self.debug = debug
        self.max_batch = max_batch
        self.title = title
        if DISCOVER not in self.methods:
            self.methods[DISCOVER] = Handler.of(DISCOVER, self.discover, inline=True)

    def discover(self) -> dict[str, Any]:
        """The OpenRPC document of this server: its methods, with their parameters."""
        return {
            "openrpc": "1.2.6",
            "info": {"title": self.title, "version": "1"},
            "methods": [h.describe() for name, h in sorted(self.methods.items())],
        }

    def start(self, peer: Peer) -> tuple[JsonRpcSession, Actions]:
        return JsonRpcSession(self), None

    # --- turning decoded messages into units of work -------------------------------------

    def unit(self, message: Any) -> _Unit:
        if isinstance(message, list):
            if not message:
                return _Unit([self._invalid(None, "empty batch")], False)
            if len(message) > self.max_batch:
                detail = f"batch of {len(message)} requests; the limit is {self.max_batch}"
                return _Unit([self._invalid(None, detail)], False)
            return _Unit([self.slot(m) for m in message], True)
        slot = self.slot(message)
        return _Unit([slot], False, [slot] if slot.__class__ is _Call else [])

    def _invalid(self, rid: Any, detail: str) -> dict[str, Any]:
        return error_reply(rid, RPCError.standard(INVALID_REQUEST, detail))

    def slot(self, message: Any) -> Slot:
        common = common_request(message)  # no Request made in the common case
        params: list[Any] | dict[str, Any] | None
        if common is not None:
            method, params, rid = common
        else:
            request = parse_request(message)
            if isinstance(request, BadRequest):
                return error_reply(request.id, request.error)
            method, params, rid = request.method, request.params, request.id
        note = rid is MISSING  # Request.notification, without the call
        handler = self.methods.get(method)
        if handler is None:
            if note:
                return None
            return error_reply(rid, RPCError.standard(METHOD_NOT_FOUND, shorten(method)))
        try:
            call = handler.bind(params)
        except RPCError as error:
            return None if note else error_reply(rid, error)
        if handler.inline:
            return self.finish(_Call(self, handler, call, rid, note), *_run(call))
        return _Call(self, handler, call, rid, note)

    def finish(self, call: _Call, value: Any, error: BaseException | None) -> dict[str, Any] | None:
        if call.notification:
            return None
        if error is None:
            return result_reply(call.id, value)
        return error_reply(call.id, self.error_for(error))

    def error_for(self, exc: BaseException) -> RPCError:
        if isinstance(exc, RPCError):
            return exc
        text = shorten(f"{type(exc).__name__}: {exc}", MESSAGE_LIMIT)
        if self.debug:
            trace = "".join(traceback.format_exception(exc))
            return RPCError(SERVER_ERROR, text, {"traceback": trace})
        return RPCError(SERVER_ERROR, text)

    # --- encoding replies ----------------------------------------------------------------

    def encode_unit(self, unit: _Unit) -> bytes:
        message: Any
        if unit.batch:
            message = unit.replies()
        else:  # one request: its reply (None for a notification), no list built
            slot = unit.slots[0]
            message = slot.reply if slot.__class__ is _Call else slot
        if not message:
            return b""
        try:
            return self._encode(message)
        except (LocalProtocolError, LimitExceeded):
            return self.encode_fixed(message, unit.batch)

    def encode_fixed(self, message: Any, batch: bool) -> bytes:
        """The frame of a reply (or a batch's list of them) that ``_encode`` refused, with
        each reply that cannot go replaced by its Internal Error. A batch whose replies fit
        one by one but not together gets an Internal Error for each call, and if even those
        do not fit, one error with id null (the error of every call in it, §5): never
        silence for calls that were made."""
        if not batch:
            return self._frame(self.codec.encode(self._encodable(message)))
        fixed = [self._encodable(r) for r in message]
        payload = self.codec.encode(fixed)
        if len(payload) <= self.framing.max_size:
            return self._frame(payload)
        detail = (
            f"the batch's {len(fixed)} replies are {len(payload)} bytes together, over the"
            f" frame limit of {self.framing.max_size}"
        )
        error = RPCError.standard(INTERNAL_ERROR, detail)
        payload = self.codec.encode([error_reply(r.get("id"), error) for r in fixed])
        if len(payload) <= self.framing.max_size:
            return self._frame(payload)
        return self._frame(self.codec.encode(self._error(None, INTERNAL_ERROR, detail)))

    def _encodable(self, reply: dict[str, Any]) -> dict[str, Any]:
        try:
            size = len(self.codec.encode(reply))
        except LocalProtocolError as exc:
            detail = f"the result cannot be encoded: {exc}"
            return self._error(reply.get("id"), INTERNAL_ERROR, detail)
        if size > self.framing.max_size:
            detail = f"a reply of {size} bytes is over the frame limit of {self.framing.max_size}"
            return self._error(reply.get("id"), INTERNAL_ERROR, detail)
        return reply

    def _error(self, rid: Any, code: int, detail: str) -> dict[str, Any]:
        """An error reply saying ``detail``; with the bare standard message (§5.1) where the
        detail would make it too long for the frame limit (a limit of 100 bytes left an
        over-long request unanswered: its error said how long it was, in 118 bytes)."""
        reply = error_reply(rid, RPCError.standard(code, detail))
        if len(self.codec.encode(reply)) > self.framing.max_size:
            reply = error_reply(rid, RPCError.standard(code))
        return reply

    def _frame(self, payload: bytes) -> bytes:
        try:
            return self.framing.encode(payload)
        except LimitExceeded:
            return b""  # even the error does not fit a frame this small: say nothing

    def frame_error(self, code: int, text: str) -> bytes:
        return self._frame(self.codec.encode(self._error(None, code, text)))


def _refuse(value: CoroutineType[Any, Any, Any]) -> None:
    """A plain function made a coroutine: close it and fail the call."""
    value.close()
    raise LocalProtocolError("the handler returned a coroutine: make it async def")


def _run(call: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return call(), None
    except Exception as exc:
        return None, exc


class _Group:
    """Units run by one job (two, if plain and async handlers mix), answered together."""

    __slots__ = ("later", "ncalls", "units")

    def __init__(self) -> None:
        self.units: list[_Unit] = []
        self.ncalls = 0
        self.later: list[_Call] = []  # the async calls, once the plain ones are done

    def calls(self) -> list[_Call]:
        units = self.units
        return units[0].calls if len(units) == 1 else [c for u in units for c in u.calls]


class JsonRpcSession(BaseSession):
    def __init__(self, service: JsonRpcService) -> None:
        self.service = service
        self.decoder = service.framing.decoder()
        self.running: tuple[Run, _Group | None] | None = None  # None: the fast path's job
        self.call: Callable[..., Any] | None = None  # the fast path's call, its args, its id
        self.args: list[Any] | tuple[()] = ()
        self.id: Any = None
        # the fast path's one job, made once: a frozen dataclass costs ~3,000 instructions
        # to build, and only one job of a session is ever in flight (``running``)
        self.fast_job = Run(self._run_fast)
        self.waiting: deque[_Group] = deque()
        self.eof = False
        self.broken = False  # the framing is lost: answer what is in hand, then close
        self.closed = False

    # --- the contract --------------------------------------------------------------------

    def feed(self, data: bytes) -> Actions:
        if self.running is None and not self.closed:
            # the common case: whole requests (one, or pipelined ones), nothing buffered
            frames = self.decoder.whole(data)
            if frames is not None:
                if len(frames) == 1:
                    return self._one(frames[0])
                return _unwrapped(self._pump(frames=frames))
        self.decoder.feed(data)
        if self.running is not None or self.closed:
            return None  # read again once the job is done
        return self._pump()

    def feed_eof(self) -> Actions:
        self.eof = True
        if self.running is not None or self.closed:
            return None
        return self._pump()

    def resume(self, job: Run, outcome: Outcome) -> Actions:
        assert self.running is not None and self.running[0] is job
        group = self.running[1]
        self.running = None
        if group is None:  # the fast path's call: its outcome is the handler's
            service = self.service
            error = outcome.error
            if error is None:  # result_reply(), inline
                reply = {"jsonrpc": "2.0", "id": self.id, "result": outcome.value}
            else:
                reply = error_reply(self.id, service.error_for(error))
            self.call = None
            self.args = ()
            try:
                out = service._encode(reply)
            except (LocalProtocolError, LimitExceeded):
                out = service.encode_fixed(reply, False)
            decoder = self.decoder  # _quiet() and Decoder.buffered, inline:
            if self.eof or self.broken or len(decoder._buf) != decoder._pos:
                return _unwrapped(self._pump(bytearray(out)))
            return out or None
        if outcome.error is None and group.later:
            later, group.later = group.later, []
            return self._job(later, group)
        return self._complete(group, outcome.error)

    # --- the machine ---------------------------------------------------------------------

    def _complete(self, group: _Group, error: BaseException | None) -> Actions:
        """A job is done: answer its units, then go on with what waits."""
        service = self.service
        if error is not None:  # the job itself failed, not a handler: every call gets it
            for call in group.calls():
                call.reply = service.finish(call, None, error)
        if (
            len(group.units) == 1
            and not self.waiting
            and not (self.eof or self.broken or self.decoder.buffered)  # _quiet(), inline
        ):
            return service.encode_unit(group.units[0]) or None  # nothing else to do
        out = bytearray()
        for unit in group.units:
            out += service.encode_unit(unit)
        return _unwrapped(self._pump(out))

    def _pump(
        self, out: bytearray | None = None, frames: list[bytes] | None = None
    ) -> list[Action]:
        """Read every whole frame (or take ``frames``, whole ones a read brought), answer
        what can be answered now, start the next job."""
        out = out if out is not None else bytearray()
        service = self.service
        decoder = self.decoder
        group = _Group()
        for payload in frames or ():  # not in the decoder: past MAX_GROUP calls, they wait
            if group.ncalls >= MAX_GROUP:
                self.waiting.append(group)
                group = _Group()
            out += self._answer(payload, group)
        while frames is None and not self.broken and group.ncalls < MAX_GROUP:
            try:
                frame = decoder.next_frame()
            except FrameTooLarge as exc:
                out += service.frame_error(INVALID_REQUEST, str(exc))
                self.broken = decoder.failed
                continue
            except RemoteProtocolError as exc:
                out += service.frame_error(PARSE_ERROR, str(exc))
                self.broken = decoder.failed
                continue
            if frame is None:
                break
            out += self._answer(frame, group)
        if group.units:
            self.waiting.append(group)
        actions: list[Action] = [bytes(out)] if out else []
        if self.running is not None:
            return actions
        if self.waiting:
            actions.append(self._start(self.waiting.popleft()))
        elif (self.eof or self.broken) and not self.closed:
            if not self.broken:
                try:
                    decoder.feed_eof()
                except RemoteProtocolError as exc:  # EOF inside a frame
                    actions.append(service.frame_error(PARSE_ERROR, str(exc)))
                else:
                    if decoder.buffered:  # the end ended a last frame (a line's newline)
                        return actions + self._pump()
            self.closed = True
            actions.append(CLOSE)
        return actions

    def _one(self, frame: bytes) -> Actions:
        """The one frame a read brought, nothing in hand: a request with an id for a plain
        handler becomes the fast path's job; anything else goes the general way."""
        service = self.service
        try:
            message = service.codec.decode(frame)
        except DecodeError:
            message = None  # _answer says why (a frame of JSON null goes there too)
        else:
            request = common_request(message)
            if request is not None and request[2] is not MISSING:
                method, params, rid = request
                handler = service.methods.get(method)
                if handler is not None and not (handler.inline or handler.is_async):
                    simple = handler.simple
                    if (
                        simple is not None
                        and params.__class__ is list
                        and simple[1] <= len(params) <= len(simple[0])
                    ):  # Handler.bind's first case, without a functools.partial
                        self.call, self.args = handler.function, params
                    else:
                        try:
                            self.call = handler.bind(params)
                        except RPCError:
                            pass  # _answer answers it
                    if self.call is not None:
                        self.id = rid
                        job = self.fast_job
                        self.running = (job, None)
                        return job
        group = _Group()
        out = self._answer(frame, group, MISSING if message is None else message)
        return self._start(group) if group.units else out or None

    def _run_fast(self) -> Any:
        """The fast path's job: the handler's value (its exception is the job's error)."""
        assert self.call is not None
        value = self.call(*self.args)
        if value.__class__ is CoroutineType:
            _refuse(value)
        return value

    def _answer(self, frame: bytes, group: _Group, message: Any = MISSING) -> bytes:
        """One frame (``message``: its payload, if decoded already): its reply when it can
        be given now, else b"" and its calls join ``group`` (to be run by a job)."""
        service = self.service
        if message is MISSING:
            try:
                message = service.codec.decode(frame)
            except DecodeError as exc:
                return service.frame_error(PARSE_ERROR, shorten(str(exc), MESSAGE_LIMIT))
        unit = service.unit(message)
        calls = unit.calls
        if not calls:
            return service.encode_unit(unit)
        group.units.append(unit)
        group.ncalls += len(calls)
        return b""

    def _start(self, group: _Group) -> Run:
        if group.ncalls == 1:  # one call: in the one unit (no list of every unit's calls)
            return self._job(group.units[0].calls, group)
        calls = group.calls()
        plain = [c for c in calls if not c.handler.is_async]
        if plain and len(plain) < len(calls):  # mixed: the plain ones first
            group.later = [c for c in calls if c.handler.is_async]
            calls = plain
        return self._job(calls, group)

    def _job(self, calls: list[_Call], group: _Group) -> Run:
        if calls[0].handler.is_async:
            job = Run(calls[0].run_async if len(calls) == 1 else _async_job(calls))
        else:
            job = Run(calls[0].run if len(calls) == 1 else _sync_job(calls))
        self.running = (job, group)
        return job


def _unwrapped(actions: list[Action]) -> Actions:
    """One action as itself, not in a list: a driver's hot path takes a lone answer or job
    at once (``Engine.feed``), a list goes through its queue."""
    return actions[0] if len(actions) == 1 else actions or None


def _sync_job(calls: list[_Call]) -> Callable[[], None]:
    def job() -> None:
        for call in calls:
            call.run()

    return job


def _async_job(calls: list[_Call]) -> Callable[[], Coroutine[Any, Any, None]]:
    async def job() -> None:
        for call in calls:
            await call.run_async()

    return job
