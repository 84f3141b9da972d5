"""The prefork model: N worker processes, each running an inner model on shared sockets.

Role: the master binds (so workers share one listening socket and the kernel hands each
connection to one of them), forks --workers workers, watches them, and forwards stop
signals. With ``reuse_port`` each worker slot has its own SO_REUSEPORT socket instead and
the kernel balances between them; the master opens them all (as nginx does) and keeps
them, so a respawned or SIGHUP-replaced worker, or a SIGUSR2 new master, takes over the
very socket (and the connections queued on it: closing it would reset them). Rules:
- a worker that dies is respawned; a worker that exits with a failure status within
  BOOT_WINDOW seconds of its start means the workers cannot start, and the master stops
  instead of respawning in a storm (exit status 1); one killed by a signal is respawned;
  a worker that cannot be forked (out of processes or memory) is logged and tried again
  every RETRY seconds while the others serve, at the start as after a death (nginx's
  master goes on without it; a master that exited would take every worker down);
- SIGTERM/SIGINT: the master forwards SIGTERM and closes its copies of the listening
  sockets at once (as nginx's master does): once the workers close theirs, the kernel
  refuses new connections instead of queueing them for nobody while a busy worker drains
  (a balancer retries a refusal elsewhere at once; its check fails fast); workers stop
  gracefully within --grace; after that (or on a second signal) the master SIGKILLs what
  is left, even a worker that cannot answer (its wait is the waker's, which SIGCHLD and
  the stop write, never a blocking waitpid); no zombies remain;
- each worker writes its own row of the shared counters, unlocked (no other process
  writes it); the master's stats add them up. Each slot has two rows and a SIGHUP
  replacement takes the one its predecessor does not write, so the two never share one
  while the old drains; a SIGHUP while an earlier replacement still drains is refused;
- SIGHUP replaces the workers gracefully: a new worker is forked for each slot and once
  every new one is listening (its row shows its pid, set after its socket is in place)
  the old ones get SIGTERM and drain within --grace; a replaced worker's exit is not a
  death to respawn. Workers let SIGINT, SIGHUP and SIGUSR2 be (the master's signals),
  by a handler that does nothing: an ignored one would stay ignored in their exec: children;
- a worker at --max-conns on the shared socket leaves new connections to a worker under
  its own (``admission``; nginx's ngx_accept_disabled): the kernel wakes every worker
  and the first to accept took it, full or not, so a client was refused while a sibling
  had room; it refuses once every worker is full (with --reuse-port the connection is
  in its own queue already: it refuses);
- a worker never removes the shared sockets' files: they are the master's;
- no stop is lost to a fork (``ServerCore.fork``): a worker unblocks SIGTERM once its
  handler is in place;
- a worker whose master dies (even by SIGKILL) gets SIGTERM and stops gracefully: no
  orphans keep serving on the old sockets; a worker's second SIGTERM is no force (systemd
  signals the whole unit, and the master forwards its own): the master forces by SIGKILL.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable

from ipcnet.addresses import parse
from ipcnet.drivers import upgrade
from ipcnet.drivers.core import STOP_SIGNALS, Model, ServerCore, log, not_ours
from ipcnet.errors import IPCError
from ipcnet.transports import process

BOOT_WINDOW = 2.0
RETRY = 1.0  # seconds between tries to fork a worker that could not be forked
RETRY_LOOK = 0.05  # seconds between looks at the workers while a slot waits for its fork
REPLACE_TIMEOUT = 10.0  # seconds new workers (SIGHUP) may take to listen


class BootFailure(RuntimeError):
    """Workers die as soon as they start: respawning would only repeat it."""


class Prefork(Model):
    """The master: fork --workers workers, respawn the dead, forward stops, reap all."""

    @classmethod
    def check(cls, core: ServerCore) -> None:
        from ipcnet.drivers import MODELS, model_class

        if core.config.inner in MODELS:  # else each worker fails to start, and says so
            model_class(core.config.inner).check(core)

    def __init__(self, core: ServerCore) -> None:
        super().__init__(core)
        self.workers: dict[int, tuple[int, float]] = {}  # pid -> (slot, started)
        self.rows = {slot: slot for slot in range(1, core.config.workers + 1)}  # its row now
        self.retiring: dict[int, int] = {}  # replaced by SIGHUP, draining: pid -> its row
        core.on_stop.append(self._signal_workers)
        core.on_reload.append(self.replace_workers)
        core.on_reopen.append(self._reopen_workers)
        self.arm_worker = process.parent_death(signal.SIGTERM)  # run in each new worker
        self.missing: dict[int, float] = {}  # slot -> when to try to fork its worker again

    def serve(self) -> None:
        core = self.core
        if core.config.reuse_port:
            self._open_slots()
        for slot in range(1, core.config.workers + 1):
            self._spawn(slot)
        # the master keeps every listener open, for respawned and replacing workers
        # a worker's end wakes the master's wait, which install_signals' wakeup fd makes
        # the waker's (in the main thread only: elsewhere the master looks every RETRY_LOOK)
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGCHLD, _child_ended) if in_main else None
        try:
            while self.workers or (self.missing and not core.stopping.is_set()):
                ended = process.wait(block=False) if self.workers else None
                if ended is None or ended[0] == 0:  # none ended yet
                    if core.stopping.is_set() and core.time_left() <= 0:
                        break  # --grace is over: _reap_all kills what is left
                    core.waker.wait(self._nap(in_main))
                    for slot, when in list(self.missing.items()):
                        if time.monotonic() >= when and not core.stopping.is_set():
                            self._spawn(slot)
                    continue
                pid, status = ended
                if pid not in self.workers:
                    if pid in self.retiring:
                        core.counters.row(self.retiring.pop(pid)).set_state("gone")
                    continue
                slot, started = self.workers.pop(pid)
                code = os.waitstatus_to_exitcode(status)
                core.counters.row(self.rows[slot]).set_state("gone")
                if core.stopping.is_set():
                    continue
                if code > 0 and time.monotonic() - started < BOOT_WINDOW:
                    log.error(
                        "worker %d (pid %d) failed at start (status %d): stopping", slot, pid, code
                    )
                    core.request_stop(force=True)
                    raise BootFailure(f"worker {slot} failed at start with status {code}")
                log.warning("worker %d (pid %d) exited with status %d: respawning", slot, pid, code)
                self._spawn(slot)
        finally:
            if in_main:
                signal.signal(signal.SIGCHLD, previous)
            self._reap_all()
            core.close_listeners()

    def _nap(self, woken_by_signals: bool) -> float | None:
        """How long the master may wait for a signal (a worker's SIGCHLD, a stop, SIGHUP
        all wake it): until a slot's next try to fork, or the end of --grace."""
        core, nap = self.core, None
        if self.missing or not woken_by_signals:
            nap = RETRY_LOOK
        if core.stopping.is_set():
            nap = min(nap if nap is not None else core.time_left(), core.time_left())
        return nap

    def _open_slots(self) -> None:
        """--reuse-port: a SO_REUSEPORT listener of each inet address for slots 2..N
        (slot 1 has the ones bound first), inherited ones first; a unix address has one
        socket for all."""
        core = self.core
        for _ in range(2, core.config.workers + 1):
            slot = []
            for named, listener in zip(core.stream_addresses, core.listeners, strict=True):
                address = listener.address  # as bound: port 0 is one port for every slot
                spare = core.spares.get(str(named), [])
                if not address.is_inet:
                    slot.append(listener)
                    continue
                slot.append(core.open_stream(address, spare.pop(0) if spare else None))
            core.slots.append(slot)
        for key, fds in core.spares.items():
            if fds:  # the old master had more workers: their queues cannot be kept
                log.warning("upgrade: %d inherited sockets of %s unused: closed", len(fds), key)
                for fd in fds:
                    upgrade.adopt(fd, parse(key)).abandon()
            fds.clear()

    def _spawn(self, slot: int) -> None:
        core = self.core
        if core.stopping.is_set():
            return
        row = core.counters.row(self.rows[slot])
        row.set_state("starting")  # before the fork: the worker's own "idle" comes after
        try:
            pid, held = core.fork(f"worker {slot}", self._started(slot))
        except IPCError as exc:
            row.set_state("gone")
            if slot not in self.missing:
                log.error("cannot start worker %d: %s; trying again every %g s", slot, exc, RETRY)
            self.missing[slot] = time.monotonic() + RETRY
            return
        if pid == 0:
            _worker_main(core, slot, self.rows[slot], self.arm_worker, held)
        if self.missing.pop(slot, None) is not None:
            log.warning("worker %d started at last (pid %d)", slot, pid)
        if core.trace:
            core.trace(f"fork() -> worker {slot} pid {pid}")

    def _started(self, slot: int) -> Callable[[int], None]:
        """How ``ServerCore.fork`` registers a new worker of ``slot``."""

        def register(pid: int) -> None:
            self.workers[pid] = (slot, time.monotonic())

        return register

    def _signal_workers(self, force: bool) -> None:
        for pid in [*self.workers, *self.retiring]:
            process.kill(pid, signal.SIGKILL if force else signal.SIGTERM)
        self.core.close_listeners()  # no respawn or replacement needs them any more

    def _reopen_workers(self) -> None:
        """SIGUSR1: each worker writes its own log lines, so each reopens its files."""
        if self.core.master:
            for pid in [*self.workers, *self.retiring]:
                process.kill(pid, signal.SIGUSR1)

    def replace_workers(self) -> None:
        """SIGHUP: new workers first; once all of them listen, the old ones drain."""
        core = self.core
        if core.stopping.is_set():
            return
        if self.retiring:
            log.warning("SIGHUP: %d replaced workers still drain; ignored", len(self.retiring))
            return
        old = dict(self.workers)
        workers = core.config.workers
        for slot in range(1, workers + 1):
            self.rows[slot] = slot + workers if self.rows[slot] == slot else slot
            core.counters.retire(self.rows[slot])  # its last user has ended: a clean row
            self._spawn(slot)
        new = [pid for pid in self.workers if pid not in old]
        deadline = time.monotonic() + REPLACE_TIMEOUT
        while time.monotonic() < deadline:
            listening = {core.counters.row(self.rows[self.workers[p][0]]).get("pid") for p in new}
            if all(p in listening for p in new if p in self.workers):
                break
            time.sleep(0.01)
        else:
            log.warning("SIGHUP: new workers not all listening after %g s", REPLACE_TIMEOUT)
        for pid, (slot, _) in old.items():
            self.workers.pop(pid, None)
            self.retiring[pid] = slot if self.rows[slot] != slot else slot + workers
            process.kill(pid, signal.SIGTERM)
        log.info("SIGHUP: %d new workers serve; %d old ones drain", len(new), len(old))

    def _reap_all(self) -> None:
        deadline = time.monotonic() + max(0.0, self.core.time_left()) + 1.0
        while self.workers or self.retiring:
            if time.monotonic() > deadline or self.core.forcing.is_set():
                self._signal_workers(force=True)
            ended = process.wait(block=False)
            if ended is None:
                break
            pid = ended[0]
            if pid == 0:
                time.sleep(0.05)
                continue
            self.workers.pop(pid, None)
            self.retiring.pop(pid, None)


def _child_ended(signum: int, frame: object) -> None:
    """SIGCHLD in the master: nothing to do here (a Python handler is what makes the
    signal write the wakeup fd)."""


def _worker_main(
    core: ServerCore, slot: int, row: int, arm: Callable[[], None], held: Iterable[int]
) -> None:
    """In a worker: become a plain server of the inner model on the inherited sockets;
    SIGTERM stays blocked (its mask ``held`` once unblocked) until its handler is ours."""
    from ipcnet.drivers import model_class

    code = 1
    try:
        for sig in (*STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        core.on_stop.clear()
        core.on_reload.clear()
        core.row = core.counters.row(row)
        core.row.set("since", int(time.time()))
        core.renew_waker()
        if core.config.reuse_port:  # serve this slot's sockets; drop our copies of the rest
            mine = core.listeners if slot == 1 else core.slots[slot - 2]
            for listener in [*core.listeners, *(x for s in core.slots for x in s)]:
                if not any(listener is x for x in mine):
                    listener.abandon()
            core.listeners, core.slots = list(mine), []
        elif core.config.workers > 1:  # one listener for all: a full worker lets others take
            core.room_elsewhere = lambda: _room_elsewhere(core)
        core.keep_listeners = True  # the master's sockets: never remove their files
        core.install_signals()
        # SIGINT and SIGQUIT from a terminal (systemd's KillSignal=SIGQUIT too) reach the
        # whole group: only the master's stop counts (it forwards SIGTERM);
        # SIGHUP and SIGUSR2 are the master's too
        # (a handler that does nothing, not SIG_IGN: execve keeps an ignored signal, so
        # every exec: child a worker ran ignored Ctrl-C, a hang-up and SIGUSR2 too)
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR2):
            signal.signal(sig, not_ours)
        signal.signal(signal.SIGTERM, lambda signum, frame: _worker_sigterm(core))
        arm()  # our master's death sends SIGTERM: after SIGTERM's handler is ours
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a SIGTERM that came is heard now
        core.row.set_state("idle")
        core.row.set("pid", os.getpid())  # listening now: the master's SIGHUP waits for it
        model = model_class(core.config.inner)(core)
        model.serve()
        code = 0
    except Exception:
        log.exception("worker %d failed", slot)
    finally:
        os._exit(code)


def _room_elsewhere(core: ServerCore) -> bool:
    """Whether another worker serving the shared listeners is under --max-conns, or is
    starting and soon will be (read in the counters rows: state starting from the fork,
    then pid set once it listens, state stopping once it stops). Without the starting
    ones, the first worker up refused its third client while its siblings still started."""
    me, limit = os.getpid(), core.config.max_conns
    for index in range(1, core.counters.rows_count):
        row = core.counters.row(index).as_dict()
        if row["state"] == "starting":
            return True
        pid = row["pid"]
        if pid and pid != me and row["state"] in ("idle", "busy") and row["active"] < limit:
            return True
    return False


def _worker_sigterm(core: ServerCore) -> None:
    """A worker's SIGTERM begins its graceful stop, and a second one does not force it:
    systemd signals every process of the unit and the master forwards its own, so each
    worker gets two. The master forces with SIGKILL (a second stop signal, --grace over)."""
    if not core.stopping.is_set():
        core.row.set_state("stopping")  # no sibling at its limit leaves connections to us
        core.terminate()
