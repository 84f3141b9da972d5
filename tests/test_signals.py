"""Signals as events with the sender's pid and uid; send_signal's errors (issue 13, item 4).

Each test that blocks signals runs in a child interpreter: signalfd needs the signals
blocked in every thread, and the test runner has threads of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import ipcnet
from ipc_helpers import as_other_user
from ipcnet import errors

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, "PYTHONPATH": SRC},
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def test_event_names_the_sender() -> None:
    out = _run(
        """
        import os, signal, ipcnet
        with ipcnet.signals(signal.SIGUSR1, "TERM") as source:
            child = os.fork()
            if child == 0:
                ipcnet.send_signal(os.getppid(), "USR1")
                os._exit(0)
            event = source.read(timeout=20)
            os.waitpid(child, 0)
            print(event.name, event.pid == child, event.uid == os.getuid())
        """
    )
    assert out.split() == ["SIGUSR1", "True", "True"]


def test_pollable_and_iterable_realtime_signals_queue() -> None:
    out = _run(
        """
        import os, select, signal, ipcnet
        source = ipcnet.signals(signal.SIGRTMIN, signal.SIGUSR2)
        assert select.select([source], [], [], 0)[0] == []
        assert source.try_read() is None
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGRTMIN)
        os.kill(os.getpid(), signal.SIGRTMIN)  # real-time signals queue: two events
        assert select.select([source], [], [], 5)[0] == [source]
        source.timeout = 0.2
        names = []
        try:
            for event in source:
                names.append(event.name)
        except ipcnet.errors.Timeout:
            pass
        print(" ".join(sorted(names)))
        source.close()
        """
    )
    assert out.split() == ["SIGRTMIN", "SIGRTMIN", "SIGUSR2"]


def test_a_short_timeout_waits_rather_than_rounding_to_none() -> None:
    out = _run(
        """
        import signal, time, ipcnet
        with ipcnet.signals(signal.SIGUSR1) as source:
            for timeout in (0.0004, 0.05):
                start = time.monotonic()
                try:
                    source.read(timeout=timeout)
                except ipcnet.errors.Timeout:
                    print(time.monotonic() - start >= timeout)
        """
    )
    assert out.split() == ["True", "True"]


def test_close_restores_the_mask_and_wakes_a_reader() -> None:
    out = _run(
        """
        import signal, threading, time, ipcnet
        before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        source = ipcnet.signals("USR1")
        got = []
        def wait():
            try:
                source.read(timeout=20)
            except ipcnet.errors.Closed as exc:
                got.append(exc)
        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.1)
        source.close()
        t.join(10)
        print(bool(got), signal.pthread_sigmask(signal.SIG_BLOCK, []) == before)
        """
    )
    assert out.split() == ["True", "True"]


def test_send_signal_errors() -> None:
    with pytest.raises(errors.AddressError, match="^no such process: pid 4194304$"):
        ipcnet.send_signal(4194304, "USR1")  # above the largest pid_max
    with pytest.raises(errors.InvalidAddress, match="unknown signal 'SIGNOPE'"):
        ipcnet.send_signal(os.getpid(), "SIGNOPE")
    with pytest.raises(errors.InvalidAddress, match="process group"):
        ipcnet.send_signal(0, "USR1")
    ipcnet.send_signal(os.getpid(), 0)  # 0: only checks that the process is there


def test_send_signal_not_permitted() -> None:
    def signal_init() -> str:
        ipcnet.send_signal(1, 0)
        return "sent"

    assert as_other_user(signal_init) == (
        "PermissionDenied: not permitted to signal pid 1 (it belongs to another user)"
    )


def test_uncatchable_signals_are_refused() -> None:
    with pytest.raises(errors.InvalidAddress, match="SIGKILL cannot be caught"):
        ipcnet.signals("KILL")
    with pytest.raises(errors.InvalidAddress, match="at least one signal"):
        ipcnet.signals()
