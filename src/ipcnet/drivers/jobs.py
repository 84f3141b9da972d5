"""Worker threads for blocking jobs (``Run``) under the event-loop models.

Role: a ``concurrent.futures.Executor`` whose threads are daemons, started on demand up to a
limit. Rules: unlike ThreadPoolExecutor, nothing joins these threads at interpreter exit, so
a forced stop is not held up by a job that will not finish (its result is simply dropped);
a thread is started whenever the jobs not yet taken outnumber the threads waiting for one,
so a job never waits behind a blocked one while the limit allows another thread.
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
    def __init__(self, max_workers: int, name: str = "ipcnet-job") -> None:
        self.max_workers = max(1, max_workers)
        self.name = name
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
                name = f"{self.name}-{len(self._threads)}"
                thread = threading.Thread(target=self._work, name=name, daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            item = self._queue.get()
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
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()
