"""``ipcnet ipcs``: IPC objects with owners, sizes, message counts and holders (issue 13, item 6).

Objects are made by real peers where there are some (util-linux ipcmk/ipcrm, posix_ipc)
and checked against what ``ipcs`` itself prints.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

import ipcnet
from ipcnet.inspector import ipc
from ipcnet.transports import mq

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
ENV = {**os.environ, "PYTHONPATH": SRC}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ipcnet", "ipcs", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _rows(kind: str) -> list[ipc.IpcRow]:
    return ipc.collect([kind])[0]


def test_posix_shared_memory_with_size_owner_and_holder() -> None:
    import posix_ipc

    name = f"ipcnet-t-{uuid.uuid4().hex}"
    seg = posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, mode=0o640, size=8192)
    try:
        mapping = mmap.mmap(seg.fd, 8192)
        seg.close_fd()
        row = next(r for r in _rows("posix-shm") if r.name == name)
        assert (row.size, row.mode, row.uid) == (8192, "0640", os.getuid())
        assert row.holders is not None and os.getpid() in [p for p, _ in row.holders]
        mapping.close()
        row = next(r for r in _rows("posix-shm") if r.name == name)
        assert row.holders == ()  # nobody maps it any more; it still exists
    finally:
        seg.unlink()


def test_named_semaphore_is_listed_with_its_holder() -> None:
    sem = ipcnet.Semaphore(f"ipcnet-t-{uuid.uuid4().hex}")
    try:
        row = next(r for r in _rows("posix-sem") if r.name == sem.name)
        assert row.holders is not None and os.getpid() in [p for p, _ in row.holders]
    finally:
        sem.unlink()
        sem.close()


@pytest.mark.skipif(shutil.which("ipcmk") is None, reason="util-linux ipcmk is not installed")
def test_sysv_objects_match_ipcs() -> None:
    made = []
    try:
        for flag, kind in (("-M", "sysv-shm"), ("-Q", "sysv-msg"), ("-S", "sysv-sem")):
            args = ["ipcmk", flag, "4096"] if flag == "-M" else ["ipcmk", flag]
            if flag == "-S":
                args.append("3")
            out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
            ident = int(out.split(":")[-1])
            made.append((flag.lower(), ident))
            row = next(r for r in _rows(kind) if r.id == ident)
            listed = subprocess.run(
                ["ipcs", flag.lower().replace("-", "-")], capture_output=True, text=True
            ).stdout
            line = next(ln for ln in listed.splitlines() if ln.split()[1:2] == [str(ident)])
            key = line.split()[0]
            assert int(row.name, 16) == int(key, 16)
            if kind == "sysv-shm":
                assert row.size == 4096 and row.holders == ()
            elif kind == "sysv-msg":
                assert (row.size, row.messages) == (0, 0)
            else:
                assert row.size == 3  # semaphores in the set
    finally:
        for flag, ident in made:
            subprocess.run(["ipcrm", flag, str(ident)], check=False)


def test_memfd_and_eventfds_of_an_shm_pair() -> None:
    a, b = ipcnet.shm_pair(ring=65536)
    with a, b:
        memfds = [r for r in _rows("memfd") if r.name == "ipcnet shm-pair"]
        mine = [r for r in memfds if r.holders and os.getpid() in [p for p, _ in r.holders]]
        assert mine and mine[0].size == 2 * (256 + 65536)
        efds = [r for r in _rows("eventfd") if r.holders == ((os.getpid(), mine[0].holders[0][1]),)]
        assert len(efds) >= 8  # each end holds the four eventfds


def test_signalfd_of_another_process_names_its_signals() -> None:
    code = (
        "import sys, ipcnet\n"
        "s = ipcnet.signals('USR1', 'TERM', 'RTMIN+2')\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        rows = [r for r in _rows("signalfd") if r.holders and r.holders[0][0] == child.pid]
        assert len(rows) == 1 and rows[0].name.endswith("SIGUSR1,SIGTERM,SIGRTMIN+2")
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(20)


@contextlib.contextmanager
def _mqueue_mount():
    if os.getuid() != 0:
        pytest.skip("mounting an mqueue filesystem needs root")
    point = tempfile.mkdtemp(prefix="ipcnet-mq-")
    try:
        if subprocess.run(["mount", "-t", "mqueue", "none", point]).returncode != 0:
            pytest.skip("cannot mount an mqueue filesystem here")
        try:
            yield point
        finally:
            subprocess.run(["umount", point], check=True)
    finally:
        os.rmdir(point)


def test_message_queue_with_count_and_holder() -> None:
    url = f"mq:///ipcnet-t-{uuid.uuid4().hex}"
    try:
        with ipcnet.open_datagram(url, listen=True) as receiver, ipcnet.open_datagram(url) as s:
            s.send(b"one")
            s.send(b"two!")
            with _mqueue_mount():
                row = next(r for r in _rows("posix-mq") if r.name == url[6:])
                assert (row.messages, row.size) == (2, 7)  # QSIZE is bytes queued
                assert row.holders is not None and os.getpid() in [p for p, _ in row.holders]
            assert receiver.recv()[0] == b"one"
    finally:
        mq.remove(url)


def test_no_mqueue_mount_is_a_note(tmp_path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 0:21 / /dev/shm rw,relatime shared:3 - tmpfs tmpfs rw\n")
    assert ipc.mqueue_mounts(str(mountinfo)) == []
    rows, notes = ipc.collect(["posix-mq"], pids=[], mountinfo=str(mountinfo))
    assert rows == []
    assert notes == [
        "no mqueue filesystem is mounted: POSIX message queues are not listed "
        "(mount -t mqueue none /dev/mqueue)"
    ]
    mountinfo.write_text("30 1 0:40 / /dev/mqueue rw,relatime - mqueue mqueue rw\n")
    assert ipc.mqueue_mounts(str(mountinfo)) == ["/dev/mqueue"]


def test_cli_table_json_csv_and_bad_kind() -> None:
    a, b = ipcnet.shm_pair()
    with a, b:
        table = _cli("-k", "memfd", "--pid", str(os.getpid()))
        assert table.returncode == 0, table.stderr
        assert table.stdout.splitlines()[0].split() == [
            "Kind",
            "Name",
            "Id",
            "Owner",
            "Mode",
            "Size",
            "Msgs",
            "Holders",
        ]
        assert "ipcnet shm-pair" in table.stdout
        # (this process may hold other memfds too: counters of a server an earlier test ran)
        doc = json.loads(_cli("--json", "-k", "memfd", "-p", str(os.getpid())).stdout)
        ours = [row for row in doc["ipc"] if row["name"] == "ipcnet shm-pair"]
        assert doc["version"] == 1 and len(ours) == 1 and ours[0]["kind"] == "memfd"
        assert ours[0]["holders"][0]["pid"] == os.getpid()
        csv_lines = _cli("--csv", "-k", "memfd", "-p", str(os.getpid())).stdout.splitlines()
        assert csv_lines[0] == ",".join(ipc.SCHEMA)
        assert any(line.startswith("memfd,ipcnet shm-pair,") for line in csv_lines[1:])
    bad = _cli("-k", "nope")
    assert bad.returncode == 2  # a usage error, as sockets --state nope
    assert bad.stderr.startswith("ipcnet ipcs: unknown kind 'nope' (known: posix-shm,")
