"""The prefork model: N worker processes, each running an inner model on shared sockets.

Role: the master binds (so workers share one listening socket and the kernel hands each
connection to one of them), forks --workers workers, watches them, and forwards stop
signals. With ``reuse_port`` each worker binds its own SO_REUSEPORT socket instead and the
kernel balances between them. Rules:
- a worker that dies is respawned; a worker that exits with a failure status within
  BOOT_WINDOW seconds of its start means the workers cannot start, and the master stops
  instead of respawning in a storm (exit status 1); one killed by a signal is respawned;
- SIGTERM/SIGINT: the master forwards SIGTERM; workers stop gracefully within --grace;
  after that (or on a second signal) the master SIGKILLs what is left; no zombies remain;
- each worker writes its own row of the shared counters; the master's stats add them up.
"""

from __future__ import annotations

import os
import signal
import time

from ipcnet.drivers.core import Model, ServerCore, log
from ipcnet.transports import process

BOOT_WINDOW = 2.0


class BootFailure(RuntimeError):
    """Workers die as soon as they start: respawning would only repeat it."""


class Prefork(Model):
    """The master: fork --workers workers, respawn the dead, forward stops, reap all."""

    def __init__(self, core: ServerCore) -> None:
        super().__init__(core)
        self.workers: dict[int, tuple[int, float]] = {}  # pid -> (slot, started)
        core.on_stop.append(self._signal_workers)

    def serve(self) -> None:
        core = self.core
        for slot in range(1, core.config.workers + 1):
            self._spawn(slot)
        if core.config.reuse_port:
            # each worker has its own SO_REUSEPORT socket; the master's would only
            # collect connections nobody accepts
            for listener in core.listeners:
                listener.abandon()
        # otherwise the master keeps the shared listeners open for respawned workers
        try:
            while self.workers:
                ended = process.wait()
                if ended is None:
                    break
                pid, status = ended
                if pid not in self.workers:
                    continue
                slot, started = self.workers.pop(pid)
                code = os.waitstatus_to_exitcode(status)
                row = core.counters.row(slot)
                row.set_state("gone")
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
            self._reap_all()
            core.close_listeners()

    def _spawn(self, slot: int) -> None:
        core = self.core
        pid = os.fork()
        if pid == 0:
            _worker_main(core, slot)
        if core.trace:
            core.trace(f"fork() -> worker {slot} pid {pid}")
        self.workers[pid] = (slot, time.monotonic())

    def _signal_workers(self, force: bool) -> None:
        for pid in list(self.workers):
            process.kill(pid, signal.SIGKILL if force else signal.SIGTERM)

    def _reap_all(self) -> None:
        deadline = time.monotonic() + max(0.0, self.core.time_left()) + 1.0
        while self.workers:
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


def _worker_main(core: ServerCore, slot: int) -> None:
    """In a worker: become a plain server of the inner model on the inherited sockets."""
    from ipcnet.drivers import model_class

    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        core.on_stop.clear()
        core.row = core.counters.row(slot)
        core.row.set("pid", os.getpid())
        core.row.set("since", int(time.time()))
        core.row.set_state("idle")
        core.renew_waker()
        if core.config.reuse_port:
            core.after_fork_child()
            core.listeners.clear()
            core.datagrams.clear()
            core.config.stats = None
            core.bind()
        core.install_signals()
        # SIGINT from a terminal reaches the whole group: only the master's stop counts
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        model = model_class(core.config.inner)(core)
        model.serve()
        code = 0
    except Exception:
        log.exception("worker %d failed", slot)
    finally:
        os._exit(code)
