"""The public Python API, audit 7: each object against the contract Python users already
know (io.IOBase, socket, multiprocessing.connection, threading.Semaphore, subprocess,
signal, pickle), run on real pipes, sockets, shared memory, semaphores and processes.

Each case pins a defect the audit found:
- ``Channel`` had no ``isatty()`` (AttributeError), which every io object has
  (io.IOBase.isatty: False unless the stream is a terminal; ``stdio:``/``fd://`` may be);
- a wrong-typed size (``read(1.5)``) on a unix stream or socketpair Channel waited for
  input first (for ever, without a timeout) and only then failed; ``read("x")`` and
  ``readline("x")`` said "'<' not supported between str and int". io refuses at once:
  "argument should be integer or None, not 'float'" (TypeError);
- ``readinto(b"...")`` (a read-only buffer) raised TypeError, BufferError or "cannot modify
  read-only memory" depending on the transport; io says TypeError, "read-write
  bytes-like object";
- a timeout was not checked when set: NaN or infinity raised a raw ValueError /
  OverflowError on sockets, but were taken by pipes, fifos, exec: and shm and failed at
  the next read (OverflowError); a Listener's or datagram endpoint's negative timeout was
  a raw "Timeout value out of range" (socket.settimeout's) although every other timeout
  of ipcnet (Channel, Semaphore, multiprocessing's) treats a negative one as expired;
- ``connect(timeout=nan)``, ``open_datagram(timeout=-1 | max_size=-1)`` and
  ``listen(backlog="x")`` raised a raw error *after* opening the socket, which leaked
  (ResourceWarning: unclosed socket);
- after ``close()`` (io: every operation raises ValueError): a Listener's and a datagram
  endpoint's ``fileno()`` returned -1 and ``signals()``'s its old number (which the
  kernel hands to the next file opened); ``with`` on a closed Listener, endpoint or
  signal source went on; setting a timeout on a closed pipe, Listener or endpoint raised a
  raw ``OSError: [Errno 9]`` (and on a pipe touched a descriptor number that may be
  another file's by then); ``read_exactly(0)`` returned b"";
- pickling was not refused clearly: a fifo Listener pickled (its copy, closed, removes the
  fifo), an exec: Channel and SharedSemaphore/UndoSemaphore raised a raw AttributeError
  ("Can't pickle local object"), the rest a TypeError naming an internal ('_thread.lock',
  'module', 'select.poll'); socket and io objects say "cannot pickle 'socket' object";
- ``repr()`` of a datagram endpoint, the semaphores and a signal source was the default
  ``<... object at 0x...>``;
- an unclosed pipe (``pipe()``, ``spawn()``, fifo ends) leaked its descriptors silently
  (the peer never saw EOF) and an unclosed ``signals()`` source its signalfd, leaving the
  signals blocked; io.FileIO and socket.socket close on collection with a ResourceWarning;
- Semaphores: ``acquire(True)`` (threading's ``acquire(blocking=True)``) silently meant
  "wait 1 s", ``acquire()`` returned None where threading's returns True (so
  ``if sem.acquire(timeout=1):`` never ran), ``release(n)`` (threading, 3.9) was a
  TypeError, ``Semaphore(123)`` a raw AttributeError, and a NaN timeout did not wait;
- ``signals(1.5)`` and ``send_signal(pid, 1.5)`` truncated to SIGHUP (the signal module and
  os.kill refuse a float); ``send_signal(2**40, 0)`` raised a raw OverflowError and
  ``send_signal(pid, None)`` "int() argument must be...";
- ``spawn([Path("/bin/echo"), "hi"])`` and bytes arguments, which subprocess takes, were an
  unclear TypeError ("expected string or bytes-like object, got 'PosixPath'");
- ``endpoint.send(data, to=5)`` raised a raw AttributeError ("'int' object has no
  attribute 'is_unix'").
"""

from __future__ import annotations

import gc
import math
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import ipcnet
from ipcnet.errors import Busy, Closed, InvalidAddress, LimitExceeded, PeerClosed, Timeout
from ipcnet.testing import pairs


def _fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


@contextmanager
def _no_leak() -> Iterator[None]:
    """The block leaves no descriptor open and no ResourceWarning behind."""
    gc.collect()
    before = _fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    leaked = _fds() - before
    assert not leaked, f"descriptors left open: {leaked}"
    resource = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not resource, resource


PAIRS: dict[str, Callable[[], pairs.Pair]] = {
    "socketpair": pairs.socketpair_pair,
    "unix": pairs.unix_path_pair,
    "tcp": pairs.tcp4_pair,
    "pipe": pairs.pipe_pair,
    "shm": pairs.shm_pair,
}


@pytest.fixture(params=sorted(PAIRS))
def pair(request: pytest.FixtureRequest) -> Iterator[pairs.Pair]:
    a, b = PAIRS[request.param]()
    yield a, b
    a.close()
    b.close()


# --- io.IOBase ---------------------------------------------------------------------------


def test_isatty_as_io(pair: pairs.Pair) -> None:
    a, _ = pair
    assert a.isatty() is False
    a.close()
    with pytest.raises(Closed):
        a.isatty()


def test_isatty_true_on_a_terminal() -> None:
    leader, follower = os.openpty()
    try:
        ch = ipcnet.connect(f"fd://{follower}")
        assert ch.isatty() is True
    finally:
        os.close(leader)
        os.close(follower)


def test_wrong_size_types_refused_at_once(pair: pairs.Pair) -> None:
    a, _ = pair
    a.timeout = 3  # what a read that waits first would run into
    for call in (
        lambda: a.read(1.5),  # type: ignore[arg-type]
        lambda: a.read("x"),  # type: ignore[arg-type]
        lambda: a.readline("x"),  # type: ignore[arg-type]
        lambda: a.read_exactly(1.5),  # type: ignore[arg-type]
    ):
        start = time.monotonic()
        with pytest.raises(TypeError, match="integer"):
            call()
        assert time.monotonic() - start < 1, "the size was checked only after waiting"


def test_readinto_read_only_buffer_is_a_typeerror(pair: pairs.Pair) -> None:
    a, b = pair
    b.write(b"kept")
    with pytest.raises(TypeError, match="read-write"):
        a.readinto(b"....")  # type: ignore[arg-type]
    assert a.read_exactly(4) == b"kept"


# --- timeouts ----------------------------------------------------------------------------


def test_channel_timeout_checked_when_set(pair: pairs.Pair) -> None:
    a, b = pair
    with pytest.raises(ValueError, match="NaN"):
        a.timeout = math.nan
    for bad in ("1", True, b"1"):
        with pytest.raises(TypeError, match="seconds"):
            a.timeout = bad  # type: ignore[assignment]
    a.timeout = math.inf  # for ever, as None
    assert a.timeout is None
    b.write(b"x")
    assert a.read(10) == b"x"
    a.timeout = 0.05
    start = time.monotonic()
    with pytest.raises(Timeout):
        a.read(10)
    assert time.monotonic() - start < 2


def test_listener_and_endpoint_negative_timeout_has_expired(short_tmp: Path) -> None:
    with ipcnet.listen(f"unix://{short_tmp}/l") as listener:
        listener.timeout = -1
        with pytest.raises((Timeout, Busy)):
            listener.accept()
        with pytest.raises(ValueError, match="NaN"):
            listener.timeout = math.nan
        listener.timeout = math.inf
        assert listener.timeout is None
    with ipcnet.open_datagram(f"unixgram://{short_tmp}/d", listen=True) as endpoint:
        endpoint.timeout = -1
        with pytest.raises((Timeout, Busy)):
            endpoint.recv()
        with pytest.raises(TypeError, match="seconds"):
            endpoint.timeout = "1"  # type: ignore[assignment]


def test_bad_arguments_to_open_leak_nothing(short_tmp: Path) -> None:
    with ipcnet.listen("tcp://127.0.0.1:0") as listener:
        with _no_leak():
            with pytest.raises(ValueError, match="NaN"):
                ipcnet.connect(listener.address, timeout=math.nan)
            with pytest.raises(ValueError, match="NaN"):
                ipcnet.connect(listener.address, connect_timeout=math.nan)
        with _no_leak():
            with pytest.raises(TypeError, match="seconds"):
                ipcnet.open_datagram("udp://127.0.0.1:0", listen=True, timeout="1")  # type: ignore[arg-type]
            with pytest.raises(LimitExceeded, match="max_size"):
                ipcnet.open_datagram("udp://127.0.0.1:0", listen=True, max_size=-1)
            with pytest.raises(TypeError, match="backlog"):
                ipcnet.listen("tcp://127.0.0.1:0", backlog="x")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="mode"):
                ipcnet.listen(f"unix://{short_tmp}/m", mode="x")  # type: ignore[arg-type]
        assert not (short_tmp / "m").exists()


# --- use after close ---------------------------------------------------------------------


def test_closed_listener_endpoint_signals_raise_closed(short_tmp: Path) -> None:
    listener = ipcnet.listen(f"unix://{short_tmp}/l")
    endpoint = ipcnet.open_datagram("udp://127.0.0.1:0", listen=True)
    source = ipcnet.signals("USR2")
    for obj in (listener, endpoint, source):
        obj.close()
        with pytest.raises(Closed):
            obj.fileno()
        with pytest.raises(Closed):
            obj.__enter__()
    for obj in (listener, endpoint):
        with pytest.raises(Closed):
            obj.timeout = 1


def test_closed_channel_timeout_and_read_exactly(pair: pairs.Pair) -> None:
    a, _ = pair
    a.close()
    with pytest.raises(Closed):
        a.timeout = 1
    with pytest.raises(Closed):
        a.read_exactly(0)


def test_closed_spawn_timeout_is_closed() -> None:
    ch = ipcnet.spawn(["true"])
    ch.close()
    with pytest.raises(Closed):
        ch.timeout = 1


# --- pickle and repr ---------------------------------------------------------------------


def _objects(tmp: Path) -> list[object]:
    name = f"a7-{uuid.uuid4().hex[:12]}"
    named, undo = ipcnet.Semaphore(name), ipcnet.UndoSemaphore(name)
    named.unlink()
    objects: list[object] = [
        *ipcnet.pipe(),
        *ipcnet.socketpair(),
        ipcnet.spawn(["cat"]),
        ipcnet.listen(f"fifo://{tmp}/f"),
        ipcnet.listen(f"unix://{tmp}/u"),
        ipcnet.open_datagram("udp://127.0.0.1:0", listen=True),
        named,
        ipcnet.SharedSemaphore(),
        undo,
        ipcnet.signals("USR2"),
    ]
    return objects


def test_pickle_refused_clearly(short_tmp: Path) -> None:
    objects = _objects(short_tmp)
    try:
        for obj in objects:
            with pytest.raises(TypeError, match=f"cannot pickle {type(obj).__name__}"):
                pickle.dumps(obj)
    finally:
        for obj in objects:
            obj.close()  # type: ignore[attr-defined]
        objects[-2].unlink()  # type: ignore[attr-defined]
    assert not (short_tmp / "f").exists()


def test_repr_names_the_object(short_tmp: Path) -> None:
    objects = _objects(short_tmp)
    try:
        for obj in objects:
            text = repr(obj)
            assert " object at 0x" not in text, text
            assert type(obj).__name__ in text, text
        assert "udp://127.0.0.1:" in repr(objects[7])
        assert "SIGUSR2" in repr(objects[-1])
    finally:
        for obj in objects:
            obj.close()  # type: ignore[attr-defined]
        objects[-2].unlink()  # type: ignore[attr-defined]
    for obj in objects:
        assert "closed" in repr(obj), repr(obj)


# --- resources left unclosed -------------------------------------------------------------


def test_unclosed_pipe_end_warns_and_is_closed() -> None:
    reader, writer = ipcnet.pipe()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del reader
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught), caught
    with writer, pytest.raises(PeerClosed):  # the read end is gone: nobody reads
        writer.write(b"x")


def test_unclosed_spawn_closes_its_pipes() -> None:
    ch = ipcnet.spawn(["cat"])
    proc = ch.process
    assert proc is not None
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        del ch
        gc.collect()
    assert proc.wait(5) == 0  # cat saw EOF on its stdin


def test_unclosed_signal_source_warns_and_lets_go() -> None:
    assert signal.SIGUSR2 not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    before = _fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = ipcnet.signals("USR2")
        del source
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught), caught
    assert _fds() == before
    assert signal.SIGUSR2 not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


# --- threading.Semaphore ------------------------------------------------------------------


@pytest.fixture(params=["Semaphore", "SharedSemaphore", "UndoSemaphore"])
def semaphore(request: pytest.FixtureRequest) -> Iterator[ipcnet.Semaphore]:
    if request.param == "SharedSemaphore":
        sem = ipcnet.SharedSemaphore(0)
    else:
        sem = getattr(ipcnet, request.param)(f"a7-{uuid.uuid4().hex[:12]}", value=0)
    yield sem
    sem.close()
    if hasattr(sem, "unlink"):
        sem.unlink()


def test_semaphore_as_threading(semaphore: ipcnet.Semaphore) -> None:
    start = time.monotonic()
    with pytest.raises(TypeError, match="blocking"):
        semaphore.acquire(True)  # threading's acquire(blocking=True): not "wait 1 s"
    assert time.monotonic() - start < 0.5
    with pytest.raises(ValueError, match="NaN"):
        semaphore.acquire(timeout=math.nan)
    semaphore.release(3)
    assert semaphore.value == 3
    assert semaphore.acquire(timeout=0) is True
    assert semaphore.acquire() is True
    with pytest.raises(ValueError, match="one or more"):
        semaphore.release(0)
    assert semaphore.value == 1
    with pytest.raises(Timeout):
        semaphore.acquire(timeout=0) and semaphore.acquire(timeout=0)


def test_semaphore_bad_arguments() -> None:
    with pytest.raises(InvalidAddress, match="name"):
        ipcnet.Semaphore(123)  # type: ignore[arg-type]
    with pytest.raises(InvalidAddress, match="name"):
        ipcnet.UndoSemaphore(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="value"):
        ipcnet.SharedSemaphore("3")  # type: ignore[arg-type]


# --- signal and os.kill -------------------------------------------------------------------


def test_signal_numbers_are_not_truncated() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        with pytest.raises(TypeError):
            ipcnet.signals(1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ipcnet.send_signal(child.pid, 1.5)  # type: ignore[arg-type]
        time.sleep(0.1)
        assert child.poll() is None, "the child got SIGHUP"
        with pytest.raises(InvalidAddress):
            ipcnet.send_signal(child.pid, None)  # type: ignore[arg-type]
        with pytest.raises(InvalidAddress, match="pid"):
            ipcnet.send_signal(2**40, 0)
        with pytest.raises(TypeError, match="pid"):
            ipcnet.send_signal("x", 0)  # type: ignore[arg-type]
    finally:
        child.kill()
        child.wait()
    assert signal.SIGHUP not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


# --- subprocess ----------------------------------------------------------------------------


def test_spawn_takes_what_subprocess_takes() -> None:
    with ipcnet.spawn([Path("/bin/echo"), "path"]) as ch:  # type: ignore[list-item]
        assert ch.read() == b"path\n"
    with ipcnet.spawn([b"echo", b"bytes"]) as ch:  # type: ignore[list-item]
        assert ch.read() == b"bytes\n"
    with pytest.raises(TypeError, match="command"):
        ipcnet.spawn(None)  # type: ignore[arg-type]


# --- datagrams -----------------------------------------------------------------------------


def test_datagram_send_to_a_non_address() -> None:
    with ipcnet.open_datagram("udp://127.0.0.1:0", listen=True) as endpoint:
        with pytest.raises(InvalidAddress):
            endpoint.send(b"x", to=5)  # type: ignore[arg-type]


def test_close_wakes_a_blocked_accept_and_recv(short_tmp: Path) -> None:
    """Already right (the transports' Listener contract); kept as a guard."""
    listener = ipcnet.listen(f"fifo://{short_tmp}/f")
    endpoint = ipcnet.open_datagram("udp://127.0.0.1:0", listen=True)
    results: list[BaseException] = []

    def wait(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=wait, args=(c,)) for c in (listener.accept, endpoint.recv)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    listener.close()
    endpoint.close()
    for t in threads:
        t.join(3)
        assert not t.is_alive()
    assert all(isinstance(e, Closed) for e in results), results


# --- close() while another thread waits ------------------------------------------------------

_CLOSE_WHILE_WAITING = """
import sys, threading, time, uuid, ipcnet
kind, timeout = sys.argv[1], (None if sys.argv[2] == "none" else float(sys.argv[2]))
name = "a7-" + uuid.uuid4().hex[:12]
sem = ipcnet.SharedSemaphore(0) if kind == "SharedSemaphore" else getattr(ipcnet, kind)(name, 0)
got = []
def wait():
    try:
        got.append(sem.acquire(timeout=timeout))
    except BaseException as exc:
        got.append(exc)
thread = threading.Thread(target=wait, daemon=True)
thread.start()
time.sleep(0.3)
sem.close()
thread.join(3)
print(type(got[0]).__name__ if got else "still waiting", flush=True)
if hasattr(sem, "unlink"):
    sem.unlink()
"""


@pytest.mark.parametrize("timeout", ["none", "2"])
@pytest.mark.parametrize("kind", ["Semaphore", "SharedSemaphore", "UndoSemaphore"])
def test_semaphore_close_wakes_a_waiter(kind: str, timeout: str) -> None:
    """close() from another thread unmapped the semaphore under a thread in sem_wait:
    the process died of SIGSEGV when the wait ended (named and shared), or the waiter
    went on waiting (undo). Now the waiter wakes with Closed, as a Channel's reader."""
    run = subprocess.run(
        [sys.executable, "-c", _CLOSE_WHILE_WAITING, kind, timeout],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-500:]}"
    assert run.stdout.strip() == "Closed"


# --- a timeout loses nothing ------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, rest",
    [
        (lambda ch: ch.read_exactly(8), b"5678"),
        (lambda ch: ch.read(), b"5678\n"),
        (lambda ch: ch.readlines(), b"5678\n"),
    ],
    ids=["read_exactly", "read", "readlines"],
)
def test_a_timeout_keeps_what_was_read(
    pair: pairs.Pair, call: Callable[[ipcnet.Channel], object], rest: bytes
) -> None:
    """read_exactly(n), read() and readlines() dropped the bytes they had gathered when a
    Timeout ended them: the next read lost them (asyncio's readexactly keeps them
    buffered; ipcnet's readline already did)."""
    a, b = pair
    a.timeout = 0.2
    b.write(b"1\n234")
    with pytest.raises(Timeout):
        call(a)
    b.write(rest)
    b.send_eof()
    a.timeout = 5
    assert a.read() == b"1\n234" + rest


def test_a_mistyped_keyword_is_a_typeerror() -> None:
    """connect(url, timout=5) said "tls options given for tcp://...: use tls://": a
    misspelt keyword is Python's TypeError, naming it; a real TLS option on a plain
    address is still Unsupported."""
    with ipcnet.listen("tcp://127.0.0.1:0") as listener:
        with pytest.raises(TypeError, match="'timout'"):
            ipcnet.connect(listener.address, timout=5)
        with pytest.raises(ipcnet.errors.Unsupported, match="tls"):
            ipcnet.connect(listener.address, ca="/nonexistent")
    with pytest.raises(TypeError, match="'bakclog'"):
        ipcnet.listen("tcp://127.0.0.1:0", bakclog=5)


# --- after fork ---------------------------------------------------------------------------


def _child_cpu_while_blocked(
    make: Callable[[], tuple[Callable[[], object], Callable[[], None]]],
) -> float:
    """Fork; the child blocks in ``wait`` while the parent calls ``close`` on its own
    copy; what CPU the child burnt in the next 0.5 s (nothing, if it sleeps)."""
    wait, close = make()
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: block, and say how much CPU the blocking cost
        os.close(report_r)
        start = time.process_time()

        def report() -> None:
            time.sleep(0.6)
            os.write(report_w, f"{time.process_time() - start:.3f}".encode())
            os._exit(0)

        threading.Thread(target=report, daemon=True).start()
        try:
            wait()
        finally:
            time.sleep(5)
            os._exit(1)
    os.close(report_w)
    time.sleep(0.1)
    close()  # the parent's copy only
    try:
        return float(os.read(report_r, 64) or b"99")
    finally:
        os.close(report_r)
        os.waitpid(pid, 0)


def test_parent_closing_its_pipe_copy_leaves_the_child_asleep() -> None:
    """A pipe reader that had waited once before fork shared its close eventfd with the
    child: the parent's close() of its own copy woke the child's blocked read into a busy
    loop (100% CPU, for ever). The eventfd is this process's only now."""

    def make() -> tuple[Callable[[], object], Callable[[], None]]:
        reader, writer = ipcnet.pipe()
        reader.timeout = 0.01
        with pytest.raises(Timeout):
            reader.read(1)  # waited once: the close eventfd exists now
        reader.timeout = None
        return lambda: (reader.read(1), writer), reader.close  # (the writer stays open)

    assert _child_cpu_while_blocked(make) < 0.1


def test_parent_closing_its_signal_source_copy_leaves_the_child_asleep() -> None:
    def make() -> tuple[Callable[[], object], Callable[[], None]]:
        source = ipcnet.signals("USR2")
        return source.read, source.close

    assert _child_cpu_while_blocked(make) < 0.1
    assert signal.SIGUSR2 not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_unclosed_message_queue_warns() -> None:
    """A message queue end dropped unclosed was closed silently: as a socket, it warns."""
    from ipcnet.transports import mq

    url = f"mq:///a7-{uuid.uuid4().hex[:12]}"
    try:
        endpoint = ipcnet.open_datagram(url, listen=True)
    except ipcnet.errors.IPCError as exc:
        pytest.skip(f"no message queues here: {exc}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del endpoint
            gc.collect()
        assert any(issubclass(w.category, ResourceWarning) for w in caught), caught
    finally:
        mq.remove(url)


def test_undo_semaphore_release_by_another_process_stays() -> None:
    """SEM_UNDO on every release: a process that released a unit it had not taken (a
    child signalling its parent, as threading.Semaphore allows from any thread) had it
    taken back by the kernel when it exited: the parent's acquire timed out. The module
    says the kernel gives back "what a process still holds": only a release of a unit
    this process took carries SEM_UNDO now."""
    sem = ipcnet.UndoSemaphore(f"a7-{uuid.uuid4().hex[:12]}", value=0)
    try:
        pid = os.fork()
        if pid == 0:
            try:
                sem.release(2)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert sem.value == 2
        assert sem.acquire(timeout=1) is True
        # and what this process takes and gives back leaves no adjustment behind
        sem.release()
        pid = os.fork()
        if pid == 0:
            try:
                sem.acquire(timeout=1)  # held when it dies: the kernel gives it back
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert sem.value == 2
    finally:
        sem.close()
        sem.unlink()


def _close_wakes_an_accept_in_its_handshake(
    listener: ipcnet.Listener, silent: socket.socket
) -> None:
    """accept() in a thread, inside the handshake of ``silent`` (a peer that sends
    nothing) when close() comes: it must wake at once with Closed."""
    results: list[BaseException | ipcnet.Channel] = []

    def accept() -> None:
        try:
            results.append(listener.accept())
        except BaseException as exc:
            results.append(exc)

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        time.sleep(0.3)  # inside the handshake by now, waiting for the peer's first bytes
        listener.close()
        thread.join(2)
        assert not thread.is_alive(), "close() did not wake accept() in a handshake"
        assert isinstance(results[0], Closed), results
    finally:
        silent.close()
        thread.join(15)


def test_tls_listener_close_wakes_an_accept_in_its_handshake() -> None:
    """close() of a tls:// Listener left a thread whose accept() was inside the handshake
    of a silent peer waiting out the handshake timeout (10 s), where the Listener
    contract says close() wakes a blocked accept(): it wakes at once with Closed."""
    cert, key, _ = pairs._tls_files()
    listener = ipcnet.listen("tls://127.0.0.1:0", cert=cert, key=key)
    silent = socket.create_connection(("127.0.0.1", int(listener.address.port or 0)))
    _close_wakes_an_accept_in_its_handshake(listener, silent)


def test_shm_listener_close_wakes_an_accept_in_its_handshake() -> None:
    """As for tls://: an shm:// accept() waiting for a connected peer's hello (a plain
    unix client of the rendezvous) went on for the 5 s handshake timeout after close(),
    then raised RemoteProtocolError; it wakes at once with Closed."""
    listener = ipcnet.listen(f"shm://@a7-{uuid.uuid4().hex[:12]}")
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(listener.transport.sock.getsockname())  # type: ignore[attr-defined]
    _close_wakes_an_accept_in_its_handshake(listener, silent)
