"""POSIX message queues as datagram endpoints: ``mq:///name``.

Role: ``open_queue(address, listen=...)``: the listening end receives (creating the queue if
missing, with ``?depth=`` and ``?msgsize=`` or the system defaults), the connecting end
sends (the queue must exist), as with ``fifo://``. Rules:
- One ``send`` is one message and one ``recv`` returns one whole message (``b""`` is a
  message, not EOF); a message is never cut: the kernel refuses one over the queue's
  ``msgsize`` and so do we, with ``MessageTooLarge``, before the call.
- Unasked, ``depth`` and ``msgsize`` are what mq_open(3) gives a NULL attr: msg_default
  and msgsize_default, each capped at msg_max and msgsize_max as the kernel caps them.
- Limits come from /proc/sys/fs/mqueue (msg_max, msgsize_max, queues_max), or with
  CAP_SYS_RESOURCE the kernel's fixed ceilings, as mq_open(3) applies them; asking for
  more is a ``LimitExceeded`` naming the bound, not the kernel's bare EINVAL.
- A full queue blocks ``send`` (up to ``timeout``, then ``Timeout``: nothing is dropped); with
  ``timeout=0`` it raises ``Busy``. Priority (0..32767) is per message, higher first.
- On Linux a queue descriptor is a file descriptor: ``fileno()`` polls readable when a
  message waits (writable when there is room), so servers serve it like a socket.
- A call is one mq_timedsend/mq_timedreceive (the GIL released), in slices of at most
  ``SLICE`` seconds: nothing can wake a thread blocked in mq_receive on a descriptor
  another thread closed, so ``close()`` wakes a blocked ``recv``/``send`` within a slice.
  Its eventfd is this process's own: a forked copy's close() wakes nobody in the other.
  A signal whose handler returns (posix_ipc's SignalError: EINTR) only ends a slice, as
  PEP 475 retries a call: the wait goes on to its one deadline.
- Names are any bytes but '/' and NUL to the kernel, but posix_ipc spells them in UTF-8:
  a name that is not (a surrogate-escaped byte) is refused before anything is made.
- The queue outlives both ends (that is the point of a message queue): ``unlink()`` or
  ``remove(url)`` deletes it.
Why ``posix_ipc`` and not ctypes: it is the maintained binding (mq_* with timeouts, the
queue descriptor, priorities, GIL released while blocked), and a call through it costs a
fraction of a ctypes call, which matters when the goal is a raw loop's speed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import time
import warnings
from typing import Any

from ipcnet.addresses import Address, parse
from ipcnet.errors import (
    Busy,
    Closed,
    InvalidAddress,
    IPCError,
    LimitExceeded,
    MessageTooLarge,
    NoSuchSocket,
    PermissionDenied,
    Timeout,
    Unsupported,
)
from ipcnet.transports.base import check_timeout
from ipcnet.transports.datagram import DatagramEndpoint

PROC = "/proc/sys/fs/mqueue"
PRIORITY_MAX = 32767
SLICE = 0.1  # seconds a blocked call waits before it looks at close() and its deadline


def _ipc() -> Any:
    try:
        import posix_ipc
    except ImportError as exc:  # pragma: no cover - a dependency; say how to get it
        raise Unsupported("mq:// needs the posix_ipc package (pip install posix_ipc)") from exc
    return posix_ipc


def limit(name: str) -> int:
    """A limit from /proc/sys/fs/mqueue (msg_max, msgsize_max, msg_default, ...)."""
    try:
        with open(f"{PROC}/{name}") as f:
            return int(f.read())
    except (OSError, ValueError) as exc:
        raise Unsupported(f"cannot read {PROC}/{name}: are POSIX message queues enabled?") from exc


def _translate(exc: BaseException, op: str, where: str) -> IPCError:
    """posix_ipc's exceptions (and the ValueErrors it raises) as ipcnet errors."""
    ipc = _ipc()
    text = str(exc).lower()
    if isinstance(exc, ipc.ExistentialError):
        if "exists" in text and "no " not in text:
            return IPCError(f"{where} exists already: {op}")
        return NoSuchSocket(f"no message queue {where} (listen on it first to create it)")
    if isinstance(exc, ipc.PermissionsError):
        return PermissionDenied(f"permission denied: {op} {where}")
    if isinstance(exc, ipc.BusyError):
        return Busy(f"{text}: {op} {where}")
    if isinstance(exc, ValueError) and "too long" in text:
        return MessageTooLarge(f"message too large for {where}")
    if isinstance(exc, OSError):
        from ipcnet.transports.oserrors import translate

        return translate(exc, op, where)
    return IPCError(f"{text}: {op} {where}")


class MqEndpoint(DatagramEndpoint):
    """One end of a POSIX message queue (a DatagramEndpoint, so drivers can serve it)."""

    def __init__(self, queue: Any, where: str, *, reading: bool, priority: int = 0) -> None:
        # the socket-based attributes of DatagramEndpoint do not apply; everything is ours
        self.queue = queue
        self.where = where
        self.reading = reading
        self.priority = priority
        self.max_size = int(queue.max_message_size)
        self.depth = int(queue.max_messages)
        self._fd = int(queue.mqd)
        self._closed = False
        self._timeout: float | None = None
        self._fast = True  # open, no timeout: send/recv may take their one-call hot paths
        self._waker = -1
        self._own_waker()

    def _own_waker(self) -> None:
        """The eventfd close() signals, this process's own: a forked copy shares the open
        file description, and a child's close() left the parent's readable for good (its
        wait on the sending end then spun, past its timeout), as the parent's did the
        child's; a process that finds it inherited one makes its own."""
        if self._waker >= 0:
            os.close(self._waker)  # our copy of the parent's
        self._waker = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._waker_pid = os.getpid()
        self._pollers: dict[int, select.poll] = {}

    # --- messages --------------------------------------------------------------------

    def send(
        self,
        data: bytes | bytearray | memoryview,
        to: Address | str | None = None,
        priority: int | None = None,
    ) -> None:
        """Put one message on the queue (blocks while it is full, up to ``timeout``)."""
        fast = self._fast and to is None and priority is None and type(data) is bytes
        if fast and len(data) <= self.max_size:  # the hot path: one mq_timedsend
            try:
                self.queue.send(data, SLICE, self.priority)
                return
            except Exception:
                pass  # full (or closed): the full path below says which, and waits
        self._check_open("send on")
        if self.reading:
            raise Unsupported(f"cannot send on {self.where}: this is the receiving end")
        if to is not None and str(to) != self.where.partition("?")[0]:
            raise Unsupported(f"a message queue has one destination ({self.where}), not {to}")
        prio = self.priority if priority is None else priority
        if not 0 <= prio <= PRIORITY_MAX:
            raise LimitExceeded(f"priority {prio} out of range 0..{PRIORITY_MAX}")
        message = data if type(data) is bytes else bytes(data)  # len() of a view counts items
        if len(message) > self.max_size:
            raise MessageTooLarge(
                f"message too large for {self.where}: {len(message)} bytes, "
                f"the queue's limit is {self.max_size}"
            )
        if self._timeout == 0:
            try:
                self.queue.send(message, 0, prio)
                return
            except Exception as exc:
                err = self._error(exc, "send to")
                if isinstance(err, Busy):
                    raise Busy(f"queue full: {self.where} holds {self.depth} messages") from exc
                raise err from exc
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            try:
                self.queue.send(message, self._slice(deadline), prio)
                return
            except Exception as exc:
                if not self._waits_on(exc, "send to"):
                    raise self._error(exc, "send to") from exc
                self._check_deadline(deadline, "send to", exc, " (the queue is full)")

    def recv(self) -> tuple[bytes, Address | None]:
        """The next message (highest priority first); a queue names no sender: None."""
        if self._fast:
            try:
                return self.queue.receive(SLICE)[0], None  # the hot path: one mq_timedreceive
            except Exception:
                pass  # nothing within a slice (or closed): the full path waits on
        return self.recv_with_priority()[0], None

    def recv_with_priority(self) -> tuple[bytes, int]:
        if self._closed or not self.reading:
            self._check_open("receive on")
            # the sending end has nothing to read: it waits as for a silent peer, until
            # close() (Closed) or its timeout (Timeout; Busy at once for timeout=0)
            if self._timeout == 0:
                raise Busy(f"no message waiting on {self.where}: this is the sending end")
            deadline = None if self._timeout is None else time.monotonic() + self._timeout
            while True:
                self._wait(0, deadline, "receive on")
        if self._timeout == 0:
            try:
                data, prio = self.queue.receive(0)
                return data, prio
            except Exception as exc:
                err = self._error(exc, "receive on")
                if isinstance(err, Busy):
                    raise Busy(f"no message waiting on {self.where}") from exc
                raise err from exc
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            try:
                data, prio = self.queue.receive(self._slice(deadline))
                return data, prio
            except Exception as exc:
                if not self._waits_on(exc, "receive on"):
                    raise self._error(exc, "receive on") from exc
                self._check_deadline(deadline, "receive on", exc)

    def _slice(self, deadline: float | None) -> float:
        if deadline is None:
            return SLICE
        return max(0.001, min(SLICE, deadline - time.monotonic()))

    def _check_deadline(
        self, deadline: float | None, op: str, exc: BaseException, why: str = ""
    ) -> None:
        if self._closed:
            raise Closed(f"closed while waiting: {op} {self.where}") from exc
        if deadline is not None and time.monotonic() >= deadline:
            raise Timeout(f"timed out: {op} {self.where} after {self._timeout} s{why}") from exc

    def _wait(self, events: int, deadline: float | None, op: str) -> None:
        if self._waker_pid != os.getpid():
            self._own_waker()
        poller = self._pollers.get(events)
        if poller is None:
            poller = self._pollers[events] = select.poll()
            poller.register(self._waker, select.POLLIN)
            if events:
                poller.register(self._fd, events)
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        poller.poll(None if wait is None else int(wait * 1000) + 1)
        if self._closed:
            raise Closed(f"closed while waiting: {op} {self.where}")
        if deadline is not None and time.monotonic() >= deadline:  # ready or not
            raise Timeout(f"timed out: {op} {self.where} after {self._timeout} s")

    def _waits_on(self, exc: BaseException, op: str) -> bool:
        """A slice that ended without a message: it timed out (full or empty), or a signal
        handler ran and returned (EINTR, retried as PEP 475 does)."""
        return isinstance(exc, _ipc().SignalError) or isinstance(self._error(exc, op), Busy)

    def _error(self, exc: BaseException, op: str) -> IPCError:
        if self._closed:
            return Closed(f"closed: {op} {self.where}")
        return _translate(exc, op, self.where)

    # --- state -----------------------------------------------------------------------

    @property
    def messages(self) -> int:
        """How many messages wait in the queue now."""
        self._check_open("inspect")
        return int(self.queue.current_messages)

    def unlink(self) -> None:
        """Remove the queue's name (ends that are open keep working until closed)."""
        remove(self.where)

    @property
    def timeout(self) -> float | None:
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        value = check_timeout(value)
        self._check_open("set a timeout on")
        self._timeout = value
        self._fast = value is None and not self._closed

    @property
    def local_address(self) -> Address | None:
        return parse(self.where)

    @property
    def peer_address(self) -> Address | None:
        return None

    def fileno(self) -> int:
        self._check_open("get the descriptor of")
        return self._fd

    def abandon(self) -> None:
        self.close()  # a queue descriptor has no shared state to disturb

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._fast = False
        if self._waker_pid == os.getpid():  # (a forked copy's wakes nobody here)
            os.eventfd_write(self._waker, 1)
        with contextlib.suppress(Exception):
            self.queue.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):  # dropped unclosed: posix_ipc would keep the
            with contextlib.suppress(Exception):  # queue descriptor open (as a socket does not)
                warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1, source=self)
            with contextlib.suppress(Exception):
                self.queue.close()
        waker = getattr(self, "_waker", None)
        if waker is not None:
            with contextlib.suppress(OSError):
                os.close(waker)


def datagram(address: Address, listen: bool, max_size: int, mode: int) -> MqEndpoint:
    """The registry's entry (``max_size`` is the queue's own msgsize here: see open_queue)."""
    return open_queue(address, listen=listen, mode=mode)


def _name(address: Address) -> str:
    """The queue's name as mq_open(3) takes it ("/name"), in UTF-8 as posix_ipc spells it."""
    name = "/" + (address.path or "")
    try:
        name.encode()
    except UnicodeEncodeError:
        raise InvalidAddress(
            f"invalid address {str(address)!r}: the queue name is not valid UTF-8"
        ) from None
    return name


def open_queue(address: Address, *, listen: bool, mode: int = 0o600) -> MqEndpoint:
    """The receiving end (listen=True, creates the queue) or the sending end of a queue."""
    ipc = _ipc()
    where = str(address)
    name = _name(address)
    priority = address.option("priority", 0) or 0
    if not 0 <= priority <= PRIORITY_MAX:
        raise LimitExceeded(f"priority {priority} out of range 0..{PRIORITY_MAX}: {where}")
    try:
        if listen:
            # unasked, the kernel's own default (mq_open(3) with a NULL attr): the smaller of
            # msg_default and msg_max (msgsize likewise), which are set independently
            depth = address.option("depth")
            if depth is None:
                depth = min(limit("msg_default"), limit("msg_max"))
            msgsize = address.option("msgsize")
            if msgsize is None:
                msgsize = min(limit("msgsize_default"), limit("msgsize_max"))
            _check_limits(depth, msgsize, where)
            queue = ipc.MessageQueue(
                name,
                ipc.O_CREAT,
                mode=mode,
                max_messages=depth,
                max_message_size=msgsize,
                read=True,
                write=False,
            )
        else:
            queue = ipc.MessageQueue(name, 0, read=False, write=True)
    except IPCError:
        raise
    except ValueError as exc:  # EINVAL: over a limit we could not see, or queues_max
        raise LimitExceeded(
            f"the kernel refused to create {where}: over a limit in {PROC} (queues_max is "
            f"{limit('queues_max')}, msg_max {limit('msg_max')}, "
            f"msgsize_max {limit('msgsize_max')})"
        ) from exc
    except OSError as exc:
        # EMFILE is also mq_open(3)'s answer to RLIMIT_MSGQUEUE (posix_ipc gives no errno)
        if listen and (exc.errno == errno.EMFILE or "maximum number of files" in str(exc)):
            raise LimitExceeded(_emfile(where)) from exc
        if listen and (exc.errno == errno.ENOSPC or "insufficient space" in str(exc).lower()):
            raise LimitExceeded(
                f"cannot create {where}: the system holds its queues_max of "
                f"{limit('queues_max')} queues ({PROC}/queues_max)"
            ) from exc
        raise _translate(exc, "open", where) from exc
    except Exception as exc:
        raise _translate(exc, "open", where) from exc
    return MqEndpoint(queue, where, reading=listen, priority=priority)


def _emfile(where: str) -> str:
    import resource

    soft = resource.getrlimit(resource.RLIMIT_MSGQUEUE)[0]
    cap = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft} bytes"
    return (
        f"cannot create {where}: over this user's RLIMIT_MSGQUEUE ({cap}, ulimit -q: "
        "the sum of depth x msgsize over the user's queues), or out of descriptors"
    )


# the kernel's ceilings for a process with CAP_SYS_RESOURCE, which msg_max and msgsize_max
# do not bind (ipc/mqueue.c, mq_attr_ok; HARD_MSGMAX, HARD_MSGSIZEMAX since Linux 3.5)
HARD = {"msg_max": 65536, "msgsize_max": 16 << 20}
CAP_SYS_RESOURCE = 24


def _check_limits(depth: int, msgsize: int, where: str) -> None:
    privileged = _capable(CAP_SYS_RESOURCE)
    for value, key, what in ((depth, "msg_max", "depth"), (msgsize, "msgsize_max", "msgsize")):
        top = HARD[key] if privileged else limit(key)
        if not 1 <= value <= top:
            bound = "the kernel's ceiling" if privileged else f"{PROC}/{key}"
            raise LimitExceeded(f"{what}={value} is outside 1..{top} ({bound}): {where}")


def _capable(cap: int) -> bool:
    """Whether this process has capability ``cap`` in its effective set."""
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("CapEff:"))
        return bool(int(line.split()[1], 16) >> cap & 1)
    except (OSError, StopIteration, ValueError):
        return False


def remove(url: str | Address) -> None:
    """mq_unlink(3): remove the queue's name; NoSuchSocket if there is none."""
    address = parse(url)
    if address.scheme != "mq":
        raise Unsupported(f"{address} is not a message queue address")
    name = _name(address)
    try:
        _ipc().unlink_message_queue(name)
    except Exception as exc:
        raise _translate(exc, "remove", str(address)) from exc


def message_count(url: str | Address) -> int | None:
    """How many messages wait in the queue at ``url`` (see ``queue_messages``)."""
    return queue_messages(_name(parse(url))[1:])


def queue_messages(name: str) -> int | None:
    """How many messages wait in the queue called ``name`` (as /dev/mqueue lists it, any
    characters: the inspector's, not a URL): None if it is gone, or if posix_ipc is missing
    or we may not open it. Opening it for reading takes nothing."""
    try:
        ipc = _ipc()
        queue = ipc.MessageQueue("/" + name, read=True, write=False)
    except Exception:
        return None
    try:
        return int(queue.current_messages)
    finally:
        queue.close()
