"""What every stream transport promises to the Channel above it.

Role: a transport owns one or two file descriptors and moves bytes with as few system calls
and copies as it can. Rules, the same for sockets, pipes and fifos:
- ``read_into(buf)`` blocks until at least one byte arrived and returns how many; it
  returns 0 if and only if the peer ended its direction (EOF).
- ``write(data)`` writes all of ``data`` or raises; a peer that left gives ``PeerClosed``
  (never SIGPIPE), and every later write raises again.
- ``send_eof()`` ends our direction only; reading still works. Idempotent.
- ``close()`` is idempotent and wakes a thread blocked reading this transport (and, for
  sockets, one blocked writing), which then raises ``Closed``. Any use after close raises
  ``Closed``. A pipe writer blocked on a full pipe with no timeout wakes when the reader
  drains or leaves (see ``pipes``).
- Blocking calls honour ``timeout`` (seconds, None = wait forever) and raise ``Timeout``.
  A timeout is checked when it is set (``check_timeout``), not at the next blocking call:
  a non-number is a TypeError, NaN a ValueError, infinity is None, a negative one has
  expired (as multiprocessing's and threading's).
- Every OSError is translated by ``oserrors`` before it leaves.

A ``Listener`` hands out stream transports: ``accept()`` blocks for the next peer,
``try_accept()`` (after ``set_blocking(False)``) returns None when none is queued and raises
``Busy`` when the process is out of descriptors. ``close()`` removes what ``listen`` created
(a socket file, a fifo); ``abandon()`` only drops our descriptor, for a forked child.
``servable`` says whether a server's event loops can serve it (a pollable listening socket).
"""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from ipcnet.addresses import Address
from ipcnet.errors import Closed, Unsupported

if TYPE_CHECKING:
    import socket
    import subprocess


def check_timeout(value: object) -> float | None:
    """A timeout as transports keep it: None (wait for ever) or seconds (<= 0: expired).

    Refused when set, as socket.settimeout refuses: anything but a number or None
    (TypeError; a bool too: ``acquire(True)`` is not "wait 1 s"), NaN (ValueError).
    Infinity waits for ever (None).
    """
    if value is None:
        return None
    if isinstance(value, (bool, str, bytes, bytearray)) or not hasattr(value, "__float__"):
        raise TypeError(
            f"a timeout is a number of seconds or None, not {type(value).__name__} {value!r}"
        )
    seconds = float(value)
    if math.isnan(seconds):
        raise ValueError("a timeout is a number of seconds or None, not NaN")
    if math.isinf(seconds):
        return None if seconds > 0 else 0.0
    return value if isinstance(value, (int, float)) else seconds  # 5 stays 5 in messages


def check_count(value: object, what: str) -> int:
    """An integer argument (a size, a backlog, a mode) or a TypeError saying which, as
    io says it ("argument should be integer or None, not 'float'"): floats are not
    truncated, bools are ints as everywhere in Python."""
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} should be integer, not {type(value).__name__!r}") from None


def refuse_pickle(obj: object, where: str) -> TypeError:
    """The error ``__reduce_ex__`` raises for an object that owns descriptors (as
    socket.socket's "cannot pickle 'socket' object")."""
    return TypeError(
        f"cannot pickle {type(obj).__name__} {where}: it owns descriptors of this process "
        "(a child gets it by fork, another process by fd passing: send_fds)"
    )


OPTION_NAMES = ("nodelay", "keepalive", "recv_buffer", "send_buffer")
#: what ``StreamTransport.exchanging`` yields: recv(n[, flags]), send(data, flags), the
#: flags to send with, wait() or None, the flags for a recv after a wait that timed out
Exchange = tuple[
    Callable[..., bytes], Callable[[Any, int], None], int, Callable[[], object] | None, int
]


@dataclass(frozen=True, slots=True)
class Detached:
    """What a transport hands over to another owner (an event loop): a socket, or the read
    and write descriptors of a pipe, and what must run once the new owner closed them."""

    sock: socket.socket | None = None
    read_fd: int | None = None
    write_fd: int | None = None
    after_close: Callable[[], None] | None = None


class StreamTransport(ABC):
    """A two-way (or one-way) byte stream over file descriptors."""

    #: what this transport is connected to, for messages ("tcp://127.0.0.1:80", "pipe:")
    where: str
    readable: bool = True
    writable: bool = True
    #: the child process at the other end (exec:), else None
    process: subprocess.Popen[bytes] | None = None
    _closed: bool = False

    @abstractmethod
    def read_into(self, buf: memoryview) -> int: ...

    def read(self, n: int) -> bytes:
        """Up to n bytes as a new bytes object; b"" at EOF."""
        buf = bytearray(n)
        got = self.read_into(memoryview(buf))
        del buf[got:]
        return bytes(buf)

    @abstractmethod
    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    @abstractmethod
    def send_eof(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def fileno(self) -> int: ...

    @property
    @abstractmethod
    def timeout(self) -> float | None: ...

    @timeout.setter
    @abstractmethod
    def timeout(self, value: float | None) -> None: ...

    @property
    def closed(self) -> bool:
        return self._closed

    def isatty(self) -> bool:
        """Whether the stream is a terminal (only an inherited descriptor can be)."""
        return False

    def __reduce_ex__(self, protocol: object) -> Any:
        raise refuse_pickle(self, self.where)

    def exchanging(self) -> AbstractContextManager[Exchange] | None:
        """For a blocking driver's hot loop: a context manager whose block gets raw calls
        ``(recv, send, flags, wait, nowait)``, ``recv(n)`` returning up to n bytes (b"" at
        EOF) and ``send(data, flags)`` writing all of data, all of them C calls with no
        Python frame of ours. ``wait`` is None, or a read is ``wait()`` first (it returns
        once a recv would not block: input, EOF, an error; or at the stream's timeout as
        it was when the block began), then ``recv(n)`` if what it returned is true, else
        ``recv(n, nowait)``, which does not block and, nothing having come, fails as a
        timed-out read. The block keeps every rule above: any OSError leaving it is
        translated (a timeout is Timeout), a close() from another thread wakes a blocked
        ``wait`` or ``recv`` and the block then raises Closed. None (the default) where a
        read is more than these calls: use ``read`` and ``write``."""
        return None

    @property
    def read_ready(self) -> bool:
        """A read would return at once without the descriptor being readable: code that
        polls the descriptor before reading asks this first (a TLS stream holds records
        it already took from the kernel). False for plain descriptors."""
        return False

    @property
    def local_address(self) -> Address | None:
        return None

    @property
    def peer_address(self) -> Address | None:
        return None

    def detach(self) -> Detached:
        """Give up the descriptors to a new owner; this transport is closed afterwards."""
        raise Unsupported(f"cannot hand {self.where} over to an event loop")

    def get_option(self, name: str) -> int:
        raise Unsupported(f"option {name!r} is not available on {self.where}")

    def set_option(self, name: str, value: int) -> None:
        raise Unsupported(f"option {name!r} is not available on {self.where}")

    def _check_open(self, op: str) -> None:
        if self._closed:
            raise Closed(f"closed: cannot {op} {self.where}: this side closed it")


S_co = TypeVar("S_co", bound=StreamTransport, covariant=True)


class Listener(ABC, Generic[S_co]):
    """A bound address that accepts peers, each as a stream transport of type ``S_co``."""

    #: a server can serve it: a listening socket that poll() reports ready to accept
    servable: ClassVar[bool]
    #: the address as asked for, with the real port when port 0 was asked
    address: Address
    #: ``str(address)``, for messages
    where: str

    @abstractmethod
    def accept(self) -> S_co:
        """The next peer; blocks (up to ``timeout``)."""

    @abstractmethod
    def try_accept(self) -> S_co | None:
        """The next queued peer or None, without blocking (after ``set_blocking(False)``)."""

    @abstractmethod
    def set_blocking(self, flag: bool) -> None: ...

    @abstractmethod
    def fileno(self) -> int: ...

    @property
    @abstractmethod
    def timeout(self) -> float | None: ...

    @timeout.setter
    @abstractmethod
    def timeout(self, value: float | None) -> None: ...

    @property
    def local_address(self) -> Address | None:
        """The kernel's view of the bound address (getsockname where there is one)."""
        return self.address

    @property
    @abstractmethod
    def closed(self) -> bool: ...

    @abstractmethod
    def abandon(self) -> None:
        """Close only our descriptor: no shutdown, nothing removed (for a forked child)."""

    @abstractmethod
    def close(self) -> None:
        """Idempotent; wakes a thread blocked in accept(); removes what listen created."""

    def __reduce_ex__(self, protocol: object) -> Any:
        raise refuse_pickle(self, self.where)

    def bridge(self) -> Listener[Any] | None:
        """For a listener that is not ``servable``: a servable stand-in that joins each peer
        to a socket (shm:// does), or None when a server cannot serve it at all."""
        return None
