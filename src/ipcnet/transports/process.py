"""exec:command args: a child process, written to on its stdin and read on its stdout.

Role: start the command on two pipes and give the PipeStream joining them (its ``process``
is the child); signal a process group (``signal_group``); signal and reap a server's own
children (``kill``, ``wait``: a child that is gone already is an answer, not an error);
have a forked worker stopped when its parent dies (``parent_death``); start this
program again on inherited listening sockets (``reexec``: SIGUSR2's new master, never
waited for here, since it outlives us).
Rules: the command is split into words as a POSIX shell splits them, but no shell runs
(``addresses.split_words``); stderr and the environment are inherited, less a service
manager's variables (``MANAGER_VARIABLES``: its notifications are ours alone);
closing the stream closes both pipes, then waits ``exit_timeout`` for the child,
terminates it, waits again, and kills it last (at once if a signal interrupts the wait:
a stop signal repeated, so that no child outlives us); ``failure`` says how a child failed: a
status over 0, or a signal that was not ours (nor SIGPIPE). Every fork of ours (``fork``) and every
start of a program (``spawn``, ``reexec``) holds FORK_LOCK: a process forked while another
thread starts a program would inherit that start's descriptors (subprocess's exec-error
pipe, the child's stdin), and hold them open for its whole life: the start then waited
for ever for an exec it had seen (a SIGUSR2 during a prefork worker's fork).
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from ipcnet.addresses import Address
from ipcnet.errors import AddressError
from ipcnet.transports.oserrors import translate, translating
from ipcnet.transports.pipes import PipeStream

if TYPE_CHECKING:
    import subprocess

FORK_LOCK = threading.RLock()  # see the rules (an RLock: a signal handler may fork too)
_STOPPED: weakref.WeakSet[subprocess.Popen[bytes]] = weakref.WeakSet()  # we signalled them


#: a service manager's variables, ours alone (sd_notify(3)'s unset_environment): an exec:
#: child that speaks sd_notify would speak for our unit (STOPPING=1 under NotifyAccess=all)
MANAGER_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _child_environment() -> dict[str, str] | None:
    """Our environment less the service manager's variables (None: nothing to leave out)."""
    if not any(name in os.environ for name in MANAGER_VARIABLES):
        return None
    return {k: v for k, v in os.environ.items() if k not in MANAGER_VARIABLES}


def connect(address: Address, timeout: float | None) -> PipeStream:
    return spawn(address)


def spawn(address: Address, exit_timeout: float = 2.0) -> PipeStream:
    """Start the exec: command with its stdin and stdout on pipes; stderr is inherited."""
    import subprocess  # here: a server that only forks and reaps children does not load it

    argv = address.argv
    with FORK_LOCK:  # until the child's ends are closed here (see the rules)
        with translating("create pipes for", address):
            child_in, our_out = os.pipe2(os.O_CLOEXEC)
            our_in, child_out = os.pipe2(os.O_CLOEXEC)
        try:
            proc = subprocess.Popen(
                argv, stdin=child_in, stdout=child_out, close_fds=True, env=_child_environment()
            )
        except OSError as exc:
            for fd in (child_in, our_out, our_in, child_out):
                os.close(fd)
            why = _cannot_start(exc, argv[0])
            if why is None:
                raise translate(exc, "start", address) from exc
            raise AddressError(f"cannot run {address}: {why}") from exc
        os.close(child_in)
        os.close(child_out)

    def reap() -> None:
        try:
            proc.wait(exit_timeout)
        except subprocess.TimeoutExpired:
            _STOPPED.add(proc)  # what it dies of now is our doing, no failure of its own
            proc.terminate()
            try:
                proc.wait(exit_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        except BaseException:  # a signal (KeyboardInterrupt) while we wait: kill, not orphan
            _STOPPED.add(proc)
            proc.kill()
            proc.wait()
            raise

    stream = PipeStream(our_in, our_out, str(address), on_close=reap)
    stream.process = proc
    return stream


def _cannot_start(exc: OSError, program: str) -> str | None:
    """Why execve(2) refused ``program``, in words (as bash says it), or None."""
    if isinstance(exc, FileNotFoundError):
        import shutil  # here, as subprocess is: only a start that failed needs it

        path = program if "/" in program else shutil.which(program)
        if path is None or not os.path.isfile(path):
            return f"{program!r} not found"
        interpreter = _interpreter(path)
        if interpreter is not None and not os.path.exists(interpreter):
            return f"its interpreter {interpreter!r} (#! line) not found"  # bash: bad interpreter
        # bash: "cannot execute: required file not found" (an ELF's loader, a library)
        return f"{program!r} is there, but a file it needs to start (its loader) is not found"
    if isinstance(exc, PermissionError):
        return f"{program!r} is not executable"
    if exc.errno == errno.ENOEXEC:
        return f"{program!r} is not a program this system can start (a script needs a #! line)"
    return None


def _interpreter(path: str) -> str | None:
    """The interpreter a ``#!`` line names, or None."""
    try:
        with open(path, "rb") as file:
            head = file.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return os.fsdecode(words[0]) if words else None


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to a child we give up on (a stop signal reached us, or an idle timer ran
    out) at once, as socat's exit sends it; what it dies of then is ours."""
    if proc.poll() is None:
        _STOPPED.add(proc)
        proc.terminate()


def failure(proc: subprocess.Popen[bytes]) -> str | None:
    """How an exec: child that ended failed, in words ("exited with status 3", "was killed
    by signal 11 (SIGSEGV)"), or None: status 0, still running, or ended by a signal of
    ours (the SIGTERM or SIGKILL of a close it outstayed) or by SIGPIPE (it wrote after we
    stopped reading: the shell's rule, and socat's, which stops its children so too)."""
    code = proc.returncode
    if code is None or code == 0:
        return None
    if code > 0:
        return f"exited with status {code}"
    if proc in _STOPPED or -code == signal.SIGPIPE:
        return None
    try:
        name = signal.Signals(-code).name
    except ValueError:
        return f"was killed by signal {-code}"
    return f"was killed by signal {-code} ({name})"


def signal_group(pgid: int, sig: int) -> bool:
    """killpg(2): send ``sig`` to a process group; False if the group is gone already."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except OSError as exc:
        raise translate(exc, f"send signal {sig} to", f"process group {pgid}") from exc
    return True


# --- a server's own children (the fork models and prefork) ----------------------------------


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def fork(what: str) -> int:
    """os.fork() for a child serving ``what``; out of processes (EAGAIN: RLIMIT_NPROC, a
    cgroup's pids.max) is Busy, out of memory Broken."""
    try:
        with FORK_LOCK:
            return os.fork()
    except OSError as exc:
        raise translate(exc, "fork a child for", what) from exc


def kill(pid: int, sig: int) -> bool:
    """kill(2) one of our children; False if it is gone already."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    except OSError as exc:
        raise translate(exc, f"send signal {sig} to", f"process {pid}") from exc
    return True


def parent_death(sig: int) -> Callable[[], None]:
    """prctl(PR_SET_PDEATHSIG), made ready in a parent before it forks (ctypes is loaded
    here once, not in every child's start): the function returned, called in a child
    forked from this thread, has ``sig`` sent to the child when this process ends (as
    gunicorn's workers notice a dead master), at once if it ended already."""
    import ctypes

    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def arm() -> None:
        if prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) != 0:
            code = ctypes.get_errno()
            raise translate(OSError(code, os.strerror(code)), "ask for a signal at", "exit")
        if os.getppid() != parent:  # reparented before the call: the parent is gone
            os.kill(os.getpid(), sig)

    return arm


def wait(pid: int = -1, block: bool = True) -> tuple[int, int] | None:
    """waitpid(2): (pid, status) of a child that ended, (0, 0) if none has yet (when not
    blocking), None if there is no such child (any more)."""
    try:
        return os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return None


def reexec(argv: list[str], env: dict[str, str], fds: list[int]) -> int:
    """Start ``argv`` with ``fds`` kept open across exec (every other descriptor stays
    close-on-exec); its pid. A binary upgrade's new master: it outlives us, so it is not
    waited for here."""
    import subprocess

    with FORK_LOCK, translating("re-execute", argv[0]):
        child = subprocess.Popen(argv, env=env, pass_fds=fds, close_fds=True)
    child.returncode = 0  # never waited for here: keep Popen's finalizer from reaping it
    return child.pid
