"""Zero-downtime life: systemd readiness, the watchdog, the SIGUSR2 binary upgrade and
the --drain-delay before a stop.

Role: what a server tells its service manager (sd_notify READY=1 once it listens,
STOPPING=1 when a stop begins, WATCHDOG=1 every half $WATCHDOG_USEC; STATUS= with each
change of state, so that `systemctl status` never says "listening" of a server that
stops) and how it hands its listening sockets to a new copy of itself (nginx's binary
upgrade). Rules:
- only the serving (master) process notifies; prefork workers never do;
- SIGUSR1 reopens the log files (nginx, gunicorn: after logrotate); a prefork master
  passes it to its workers, each of which writes its own lines;
- SIGHUP is systemd's reload (Type=notify-reload): ``RELOADING=1`` with
  ``MONOTONIC_USEC=`` before the reload hooks run (prefork's new workers, TLS's new
  certificate), ``READY=1`` once they returned; both even when there is nothing to reload,
  since the manager waits for them;
- SIGUSR2: the master starts the same command line again with its listening sockets
  inherited and named in $IPCNET_LISTEN_FDS (JSON: address -> fd); the new master opens
  each inherited address as ``fd://N`` instead of binding it, so connections queued in the
  kernel's backlog are never lost; once it listens it says ``READY=1`` to the old master's
  private unixgram socket ($IPCNET_UPGRADE_NOTIFY); only then the old master tells systemd
  ``MAINPID=<new>`` and stops gracefully (drains within --grace), dropping its listening
  descriptors without removing socket files. After MAINPID= it is no longer the main
  process and tells systemd nothing more: under NotifyAccess=all its STOPPING=1 would
  stop the whole unit, the new master with it, and its WATCHDOG=1 would vouch for a new
  master that hangs. A new master that exits before READY=1 is reaped and reported at
  once, one not ready within UPGRADE_TIMEOUT is killed; either way the old one keeps
  serving (and a later SIGUSR2 may try again); a stop that comes first abandons it: the
  new master gets SIGTERM and is waited for within --grace (no orphan serves on after a
  stop, on socket files the stop removed);
- the new master's environment has no ``WATCHDOG_PID`` of ours: sd_watchdog_enabled(3)
  honours it only in that pid, and after MAINPID=<new> the new master's pings count;
- datagram endpoints (udp://, unixgram://), the --stats and --metrics listeners are
  handed over the same way, and so are a
  prefork --reuse-port master's per-worker SO_REUSEPORT sockets (address -> [fd, ...],
  one a slot): closing one would reset the connections queued on it;
- a socket file belongs to the newest generation: the new master adopts it (and removes
  it when it stops, if it is still that file); the old one never unlinks it;
- the private ready socket is the master's alone: a process forked while it is open (a
  prefork worker respawned during the upgrade) drops its copy at once, or that copy would
  keep the name bound and the next SIGUSR2 would fail with "address in use".
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ipcnet.addresses import Address, parse
from ipcnet.errors import IPCError, Timeout
from ipcnet.transports import DatagramEndpoint, open_datagram
from ipcnet.transports.notify import notify, watchdog_interval

if TYPE_CHECKING:
    from ipcnet.drivers.core import ServerCore
    from ipcnet.transports.base import Listener, StreamTransport

log = logging.getLogger("ipcnet.serve")

ENV_FDS = "IPCNET_LISTEN_FDS"
ENV_READY = "IPCNET_UPGRADE_NOTIFY"
UPGRADE_TIMEOUT = 30.0
READY_POLL = 0.2  # seconds between looks at whether a starting new master died

_ready_sockets: list[DatagramEndpoint] = []  # open private ready sockets (see the rules)
_ready_lock = threading.Lock()  # held across os.fork(), so a copy is always on the list


def _drop_ready_sockets_in_child() -> None:
    for endpoint in _ready_sockets:
        endpoint.abandon()  # our descriptor only: the name stays the master's
    _ready_sockets.clear()
    _ready_lock.release()


os.register_at_fork(
    before=_ready_lock.acquire,
    after_in_parent=_ready_lock.release,
    after_in_child=_drop_ready_sockets_in_child,
)


def tell(*lines: str, where: str | None = None) -> None:
    """sd_notify, never failing the server (a manager that went away is logged)."""
    try:
        notify(*lines, where=where)
    except IPCError as exc:
        log.warning("%s", exc)


def inherited() -> dict[str, list[int]]:
    """The sockets an old master handed us (address -> fds, one per --reuse-port slot);
    read once."""
    text = os.environ.pop(ENV_FDS, "")
    if not text:
        return {}
    try:
        fds = json.loads(text)
        return {str(a): [int(fd) for fd in fd_list] for a, fd_list in fds.items()}
    except (ValueError, AttributeError, TypeError) as exc:
        raise IPCError(f"bad ${ENV_FDS}: {text!r} ({exc})") from exc


def adopt(fd: int, address: Address) -> Listener[StreamTransport]:
    """Open an inherited listening socket as the address it was bound to; its socket
    file (if it has one) is ours now."""
    from ipcnet.transports import open_listener
    from ipcnet.transports.unix import claim

    listener = open_listener(parse(f"fd://{fd}"))
    listener.address = _as_bound(fd, address)
    if address.path is not None:
        listener.own(claim(address))  # type: ignore[attr-defined]
    return listener


def adopt_datagram(fd: int, address: Address) -> DatagramEndpoint:
    """An inherited datagram endpoint (udp://, unixgram://), as ``adopt``."""
    from ipcnet.transports.unix import claim

    endpoint = open_datagram(parse(f"fd://{fd}"), listen=True)
    endpoint.where = str(_as_bound(fd, address))
    if address.path is not None:
        endpoint.own(claim(address))
    return endpoint


def _as_bound(fd: int, address: Address) -> Address:
    """An inet address of port 0 as the old master's socket is bound (its port stays)."""
    if not address.is_inet or address.port:
        return address
    with socket.socket(fileno=os.dup(fd)) as sock:
        return address.with_port(sock.getsockname()[1])


def ready(core: ServerCore) -> None:
    """The server listens: say READY=1 (to systemd, and to an old master waiting on us)
    and start the watchdog pings."""
    tell("READY=1", f"MAINPID={os.getpid()}", _listening(core))
    waiting = os.environ.pop(ENV_READY, "")
    if waiting:
        tell("READY=1", f"MAINPID={os.getpid()}", where=waiting)
    watchdog(core.forcing)


def watchdog(until: threading.Event) -> None:
    """Ping WATCHDOG=1 every half $WATCHDOG_USEC (if systemd asks) until ``until`` is set."""
    interval = watchdog_interval()
    if interval:
        threading.Thread(
            target=_watchdog, args=(until, interval), name="ipcnet-watchdog", daemon=True
        ).start()


def _watchdog(until: threading.Event, interval: float) -> None:
    while not until.wait(interval):
        tell("WATCHDOG=1")


def stopping(status: str = "stopping") -> None:
    """STOPPING=1, with the STATUS= text `systemctl status` shows from then on."""
    tell("STOPPING=1", f"STATUS={status}")


def _listening(core: ServerCore) -> str:
    return f"STATUS=listening on {' '.join(core.bound)}"


def reload(core: ServerCore) -> None:
    """SIGHUP: the reload hooks, inside systemd's RELOADING=1 ... READY=1 (each with its
    STATUS=, as HAProxy's master says them)."""
    master = core.master
    if master:
        tell("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", "STATUS=reloading")
    if not core.on_reload:
        log.info("SIGHUP: model %s has no workers to replace", core.config.model)
    for hook in list(core.on_reload):
        hook()
    if master:
        tell("READY=1", _listening(core))


def reopen(core: ServerCore) -> None:
    """SIGUSR1, as nginx's and gunicorn's: reopen the log files (logrotate moved them);
    never the end of the server, whose default action it was."""
    if not core.on_reopen:
        log.info("SIGUSR1: no log file to reopen")
    for hook in list(core.on_reopen):
        hook()


def terminate(core: ServerCore) -> None:
    """SIGTERM/SIGINT. With --drain-delay the master first fails its health checks
    (/_health 503 "draining", the stats' health, ipcnet_up 0) while it still accepts and
    serves, so that a balancer routes away before anything is refused (Traefik's
    requestAcceptGraceTimeout, Kubernetes' preStop); then the graceful stop. A signal
    during the delay stops at once (gracefully), as without it."""
    delay = core.config.drain_delay
    if delay <= 0 or core.draining or core.stopping.is_set() or not core.master:
        core.request_stop()
        return
    core.draining = True
    core.counters.main.set_state("draining")  # prefork workers answer the checks
    stopping(f"draining: health checks fail for {delay:g} s")
    log.info("draining: health checks fail for %g s, then the stop begins", delay)
    timer = threading.Timer(delay, core.request_stop)
    timer.daemon = True
    timer.start()


def upgrade(core: ServerCore) -> None:
    """SIGUSR2: start a new master on our sockets; once it is ready, stop gracefully."""
    if core.stopping.is_set() or core.upgrading or core.draining:
        log.warning("upgrade: already upgrading, draining or stopping; SIGUSR2 ignored")
        return
    core.upgrading = True
    core.upgrader = threading.Thread(
        target=_upgrade, args=(core,), name="ipcnet-upgrade", daemon=True
    )
    core.upgrader.start()


def settle(core: ServerCore) -> None:
    """The server stopped: wait for an upgrade under way to end (one a stop abandoned
    ends once its new master has stopped), so that no new master outlives us."""
    thread = core.upgrader
    if thread is not None and thread is not threading.current_thread():
        thread.join(core.config.grace + 2.0)


def _upgrade(core: ServerCore) -> None:
    from ipcnet.transports.process import reexec

    name = f"@ipcnet-upgrade-{os.getpid()}-{id(core):x}"
    try:
        with _ready_socket(name) as endpoint:
            fds = core.handed_over()
            env = dict(os.environ, **{ENV_FDS: json.dumps(fds), ENV_READY: name})
            if env.get("WATCHDOG_PID") == str(os.getpid()):
                del env["WATCHDOG_PID"]  # ours: the new master's pings are the ones to send
            argv = [sys.executable, *sys.orig_argv[1:]]
            pid = reexec(argv, env, [fd for slot in fds.values() for fd in slot])
            log.info(
                "upgrade: started a new master, pid %d, on %d inherited sockets", pid, len(fds)
            )
            _await_ready(endpoint, pid, core)
    except IPCError as exc:
        if core.stopping.is_set():
            log.warning("upgrade abandoned: %s", exc)
        else:
            log.error("upgrade failed (the old master keeps serving): %s", exc)
        core.upgrading = False
        return
    log.info("upgrade: new master pid %d is serving; this one (pid %d) drains", pid, os.getpid())
    tell(f"MAINPID={pid}")
    os.environ.pop("NOTIFY_SOCKET", None)  # the new master is the service now (see the rules)
    core.keep_listeners = True
    core.counters.main.set_state("upgraded")  # our health stays ok: the address serves on
    core.request_stop()


@contextmanager
def _ready_socket(name: str) -> Iterator[DatagramEndpoint]:
    """The private ready socket, on ``_ready_sockets`` while it is open, and closed before
    a next SIGUSR2 may bind the same name again."""
    with _ready_lock:
        endpoint = open_datagram(parse(f"unixgram://{name}"), listen=True)
        _ready_sockets.append(endpoint)
    try:
        yield endpoint
    finally:
        with _ready_lock:
            _ready_sockets.remove(endpoint)
        endpoint.close()


def _await_ready(endpoint: DatagramEndpoint, pid: int, core: ServerCore) -> None:
    """Wait for the new master's READY=1; a new master that exits first (a broken
    binary, a bad config) is reaped and reported at once, as nginx's master does on
    SIGCHLD, instead of after UPGRADE_TIMEOUT (and a later SIGUSR2 may try again).
    A stop that comes first abandons the upgrade (``_abandon``)."""
    from ipcnet.transports.process import kill, wait

    deadline = time.monotonic() + UPGRADE_TIMEOUT
    endpoint.timeout = READY_POLL
    while True:
        if core.stopping.is_set():
            _abandon(core, pid)
        try:
            data, _ = endpoint.recv()
        except Timeout:
            ended = wait(pid, block=False)
            if ended != (0, 0):  # it ended (None: another waiter, prefork's, reaped it)
                how = "" if ended is None else _how(ended[1])
                raise IPCError(f"new master pid {pid} exited before it was ready{how}") from None
            if time.monotonic() >= deadline:
                kill(pid, signal.SIGKILL)
                wait(pid)
                raise IPCError(
                    f"new master pid {pid} not ready within {UPGRADE_TIMEOUT:g} s; killed it"
                ) from None
            continue
        if b"READY=1" in data.split(b"\n"):
            if core.stopping.is_set():
                _abandon(core, pid)
            return


def _abandon(core: ServerCore, pid: int) -> None:
    """A stop came while the new master starts: the operator asked the service to stop,
    so the new master stops too (gracefully: it may have accepted already), within our
    grace period, before we exit; else it would serve on as an orphan (on a unix socket
    whose file our stop removes)."""
    from ipcnet.transports.process import kill, wait

    kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + core.time_left() + 1.0
    while wait(pid, block=False) == (0, 0):
        if time.monotonic() >= deadline or core.forcing.is_set():
            kill(pid, signal.SIGKILL)
            wait(pid)
            break
        time.sleep(READY_POLL / 4)
    raise IPCError(f"a stop came first; new master pid {pid} stopped too")


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f" (killed by signal {os.WTERMSIG(status)})"
    return f" (exit status {os.waitstatus_to_exitcode(status)})"
