"""Worker threads for blocking jobs (``Run``) under the event-loop models.

Role: a ``concurrent.futures.Executor`` whose threads are daemons, started on demand up to a
limit. Rules: unlike ThreadPoolExecutor, nothing joins these threads at interpreter exit, so
a forced stop is not held up by a job that will not finish (its result is simply dropped);
a thread is started whenever the jobs not yet taken outnumber the threads waiting for one,
so a job never waits behind a blocked one while the limit allows another thread; with
``idle_exit``, a thread that waited that long for a job ends (a burst's threads do not stay).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")
Job = tuple[Future[Any], Callable[[], Any]]


class DaemonPool(Executor):
    def __init__(
        self, max_workers: int, name: str = "ipcnet-job", idle_exit: float | None = None
    ) -> None:
        self.max_workers = max(1, max_workers)
        self.name = name
        self.idle_exit = idle_exit
        self._started = 0
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a job
        self._untaken = 0  # jobs queued that no thread has taken yet
        self._lock = threading.Lock()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((future, lambda: fn(*args, **kwargs)))
        with self._lock:
            self._untaken += 1
            # an idle thread may be about to take an earlier job: count jobs, not just idlers
            if self._untaken > self._idle and len(self._threads) < self.max_workers:
                name, self._started = f"{self.name}-{self._started}", self._started + 1
                thread = threading.Thread(target=self._work, name=name, daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                item = self._queue.get(timeout=self.idle_exit)
            except queue.Empty:
                with self._lock:
                    if self._untaken:  # a job came as we gave up: submit counted us idle
                        self._idle -= 1
                        continue
                    self._idle -= 1
                    self._threads.remove(threading.current_thread())
                return
            with self._lock:
                self._idle -= 1
                if item is not None:
                    self._untaken -= 1
            if item is None:
                return
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        if wait:
            for thread in threads:
                thread.join()


def handover_pool(max_conns: int) -> DaemonPool:
    """The pool of hand-over jobs (a relay's connects, which a blackholed target hangs for
    the connect timeout): a thread per job in progress up to ``max_conns``, so none waits
    behind another; a burst's threads end after 30 s without one."""
    return DaemonPool(max_conns, "ipcnet-handover", idle_exit=30.0)
