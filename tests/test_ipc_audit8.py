"""The notes' other IPC against its peers, eighth audit: message queues, semaphores, ipcs.

Peers: posix_ipc and libc's own mq_open(3) (through ctypes, with a NULL attr), the kernel's
SEM_UNDO accounting (semop(2): a forked child has no adjustments, the parent's are applied at
its exit), ``ls -l`` of a mounted mqueue filesystem, util-linux ``lsipc``. Specs:
mq_overview(7) (msg_default and msgsize_default are the NULL-attr defaults, bounded by
msg_max and msgsize_max: the kernel takes the smaller), fork(2) (a child shares the parent's
open file descriptions, eventfds included).

Found and fixed here:
- a sending end's wait (recv on it, which waits for close() or its timeout) polled an eventfd
  shared with every forked copy: a child's close() left it readable for good, and the
  parent's recv spun at full CPU for ever, past its timeout;
- an UndoSemaphore unit taken by a parent and released by a forked child came back a second
  time when the parent exited (the parent's SEM_UNDO adjustment stayed): the value climbed
  over its initial one for every later user of the set;
- ``ipcnet ipcs`` left out a queue it could not open for reading (another user's, mode
  0600), which ``ls -l /dev/mqueue`` lists with its owner and mode;
- a queue made without ``?depth=``/``?msgsize=`` took msg_default/msgsize_default as they
  are, and was refused when they are over msg_max/msgsize_max, where mq_open(3) with a NULL
  attr makes the queue with the smaller of the two.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator

import posix_ipc
import pytest

import ipcnet
from ipcnet.inspector import ipc
from test_ipcs import _mqueue_mount

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
ENV = {**os.environ, "PYTHONPATH": SRC}
NOBODY = 65534


def _python(code: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    """``code`` in a child interpreter, bounded (a hang is a failure, not a stuck suite)."""
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the child did not finish in {timeout} s: {exc.stdout!r} {exc.stderr!r}")


@pytest.fixture
def qname() -> Iterator[str]:
    name = f"ipcnet-t-{uuid.uuid4().hex}"
    yield name
    with contextlib.suppress(posix_ipc.ExistentialError):
        posix_ipc.unlink_message_queue("/" + name)


def _as_nobody(work: object) -> str:
    """Run ``work()`` in a forked child as uid/gid 65534 (every module it needs imported
    already: the interpreter's own files may not be readable by that user); its result as
    JSON, or its error."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(w, json.dumps(work()).encode())  # type: ignore[operator]
            code = 0
        except BaseException as exc:
            os.write(w, json.dumps({"error": repr(exc)}).encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


# --- mq: a sending end's wake-up is its own process's -------------------------------------


def test_a_forked_copy_closing_does_not_wake_the_parents_sending_end(qname) -> None:
    # recv on the sending end waits for close() or its timeout; a forked child's close() of
    # its copy used to leave the shared eventfd readable, and the parent's wait spun for ever
    code = f"""
        import os, time, ipcnet
        from ipcnet import errors
        url = "mq:///{qname}"
        receiver = ipcnet.open_datagram(url, listen=True)
        sender = ipcnet.open_datagram(url, timeout=0.5)
        pid = os.fork()
        if pid == 0:
            sender.send(b"from the child")  # a child's send is one message, nothing more
            sender.close()
            receiver.close()
            os._exit(0)
        os.waitpid(pid, 0)
        cpu, wall = time.process_time(), time.monotonic()
        try:
            sender.recv()
        except errors.Timeout:
            pass
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        assert wall < 3 and cpu < 0.3, (wall, cpu)
        assert receiver.recv()[0] == b"from the child"
        # the other way: the parent's close() must not wake a child's wait either
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            os.read(r, 1)  # the parent has closed its copy
            cpu = time.process_time()
            try:
                sender.recv()
            except errors.Timeout:
                pass
            os._exit(0 if time.process_time() - cpu < 0.3 else 3)
        os.close(r)
        sender.close()
        os.close(w)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        receiver.unlink()
        receiver.close()
        print("ok")
    """
    done = _python(code)
    assert done.stdout.strip() == "ok", done.stderr


# --- mq: the default limits are the kernel's ----------------------------------------------


def test_default_queue_limits_are_what_mq_open_makes_with_a_null_attr() -> None:
    # in an IPC namespace of its own, whose mqueue sysctls are its own: msg_default and
    # msgsize_default over msg_max and msgsize_max (mq_overview(7): the kernel takes the
    # smaller when attr is NULL)
    code = """
        import ctypes, os, uuid, ipcnet
        from ipcnet.transports import mq
        class _MqAttr(ctypes.Structure):  # struct mq_attr
            _fields_ = [(k, ctypes.c_long) for k in ("flags", "maxmsg", "msgsize", "cur")]
            _fields_ += [("reserved", ctypes.c_long * 4)]
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x08000000) != 0:  # CLONE_NEWIPC
            print("skip: unshare", os.strerror(ctypes.get_errno())); raise SystemExit
        for key, value in (("msg_default", 20), ("msgsize_default", 16384)):
            with open(f"/proc/sys/fs/mqueue/{key}", "w") as f:
                f.write(str(value))
        # a new namespace starts from the kernel's defaults, whatever the host set
        assert (mq.limit("msg_max"), mq.limit("msgsize_max")) == (10, 8192)
        name = "/ipcnet-t-" + uuid.uuid4().hex
        fd = libc.mq_open(name.encode(), os.O_CREAT | os.O_RDONLY, 0o600, None)
        assert fd >= 0, os.strerror(ctypes.get_errno())
        attr = _MqAttr()
        assert libc.mq_getattr(fd, ctypes.byref(attr)) == 0
        libc.mq_close(fd)
        libc.mq_unlink(name.encode())
        with ipcnet.open_datagram("mq://" + name, listen=True) as q:
            ours = (q.depth, q.max_size)
            q.unlink()
        assert ours == (attr.maxmsg, attr.msgsize) == (10, 8192), ours
        print("ok")
    """
    done = _python(code)
    if done.stdout.startswith("skip:"):
        pytest.skip(done.stdout.strip())
    assert done.stdout.strip() == "ok", done.stderr


# --- SysV semaphores: a unit handed to a forked child --------------------------------------


@pytest.fixture
def undo_name() -> Iterator[str]:
    name = f"ipcnet-t-{uuid.uuid4().hex}"
    yield name
    with contextlib.suppress(ipcnet.errors.NoSuchSocket):
        sem = ipcnet.UndoSemaphore(name, create=False)
        sem.unlink()


def test_an_undo_unit_taken_by_a_parent_and_released_by_its_child_comes_back_once(
    undo_name,
) -> None:
    # the job-slot pattern: the parent takes a slot, forks a worker, the worker gives it back
    sem = ipcnet.UndoSemaphore(undo_name, value=1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the parent of the worker
        code = 1
        try:
            mine = ipcnet.UndoSemaphore(undo_name, create=False)
            mine.acquire(timeout=5)
            worker = os.fork()
            if worker == 0:
                mine.release()
                os._exit(0)
            os.waitpid(worker, 0)
            code = 0 if mine.value == 1 else 2
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    # the exit took back nothing and gave back nothing: one slot, as before
    assert sem.value == 1


def test_an_undo_unit_held_across_a_fork_may_be_released_by_the_parent(undo_name) -> None:
    sem = ipcnet.UndoSemaphore(undo_name, value=1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        code = 1
        try:
            mine = ipcnet.UndoSemaphore(undo_name, create=False)
            mine.acquire(timeout=5)
            child = os.fork()
            if child == 0:
                os._exit(0)  # a child that never touches it
            os.waitpid(child, 0)
            mine.release()
            mine.acquire(timeout=5)  # taken after the fork: the kernel gives it back
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(code)
    os.waitpid(pid, 0)
    assert sem.value == 1


# --- ipcnet ipcs: what a user may not open is still listed ---------------------------------


def test_ipcs_lists_a_queue_this_user_may_not_open_as_ls_does(qname) -> None:
    queue = posix_ipc.MessageQueue(
        "/" + qname, posix_ipc.O_CREX, mode=0o600, max_messages=2, max_message_size=16
    )
    try:
        queue.send(b"abc")
        with _mqueue_mount() as point:
            ipc.collect(["posix-mq"])  # everything it imports, imported as root

            def look() -> object:
                rows = [r.to_dict() for r in ipc.collect(["posix-mq"])[0] if r.name == qname]
                listed = subprocess.run(
                    ["ls", "-ln", point], capture_output=True, text=True, check=True
                ).stdout
                return {"rows": rows, "ls": [ln.split() for ln in listed.splitlines()[1:]]}

            seen = json.loads(_as_nobody(look))
        assert "error" not in seen, seen
        ls = next(f for f in seen["ls"] if f[-1] == qname)
        assert (ls[0], ls[2]) == ("-rw-------", "0")  # ls lists it: root's, 0600
        assert len(seen["rows"]) == 1, seen
        row = seen["rows"][0]
        assert (row["uid"], row["user"], row["mode"]) == (0, "root", "0600")
        assert (row["size"], row["messages"]) == (None, None)  # unknown, not invented
    finally:
        queue.close()


def test_ipcs_text_says_unknown_for_a_queue_count_it_cannot_read() -> None:
    from ipcnet.cli.ipcs import _table

    row = ipc.IpcRow("posix-mq", "q", 1, 0, "root", "0600", None, None, None)
    line = _table([row])[1].split()
    assert line[5:8] == ["?", "?", "?"]  # Size, Msgs, Holders: unknown, not "none"


# --- ipcnet ipcs against lsipc and ls for another user's objects ---------------------------


@pytest.mark.skipif(
    shutil.which("lsipc") is None or shutil.which("ipcmk") is None,
    reason="util-linux lsipc and ipcmk are not installed",
)
def test_another_users_objects_match_lsipc_and_ls(qname) -> None:
    tag = uuid.uuid4().hex[:12]
    ipc.collect()
    import ipcnet.transports.semaphore  # noqa: F401  (imported before the uid changes)

    made: dict[str, object] = {}
    with _mqueue_mount():

        def make() -> object:
            os.umask(0o022)
            shm = posix_ipc.SharedMemory(f"/a8shm{tag}", posix_ipc.O_CREX, mode=0o666, size=5000)
            shm.close_fd()
            posix_ipc.Semaphore(f"/a8sem{tag}", posix_ipc.O_CREX, mode=0o640, initial_value=3)
            q = posix_ipc.MessageQueue(
                "/" + qname, posix_ipc.O_CREX, mode=0o604, max_messages=4, max_message_size=64
            )
            q.send(b"hello", priority=3)
            q.close()
            ids = {}
            for flag, args in (
                ("m", ["-M", "4096", "-p", "0604"]),
                ("q", ["-Q", "-p", "0620"]),
                ("s", ["-S", "5", "-p", "0660"]),
            ):
                out = subprocess.run(["ipcmk", *args], capture_output=True, text=True).stdout
                ids[flag] = int(out.rsplit(":", 1)[1])
            return ids

        out = json.loads(_as_nobody(make))
        assert "error" not in out, out
        made = out
        try:
            rows = ipc.collect()[0]
            doc = json.loads(
                subprocess.run(
                    [sys.executable, "-m", "ipcnet", "ipcs", "--json"],
                    env=ENV,
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=True,
                ).stdout
            )
            by = {(r["kind"], r["name"]): r for r in doc["ipc"]}
            # POSIX objects: as ls shows the files (mode after the umask, as open(2) does)
            for kind, name, path, mode, size in (
                ("posix-shm", f"a8shm{tag}", f"/dev/shm/a8shm{tag}", "0644", 5000),
                ("posix-sem", f"a8sem{tag}", f"/dev/shm/sem.a8sem{tag}", "0640", 32),
            ):
                st = os.stat(path)
                row = by[(kind, name)]
                assert (row["uid"], row["user"], row["mode"]) == (NOBODY, "nobody", mode)
                assert row["size"] == st.st_size == size
            row = by[("posix-mq", qname)]
            assert (row["uid"], row["mode"], row["size"], row["messages"]) == (
                NOBODY,
                "0604",
                5,  # QSIZE: bytes queued
                1,
            )
            # SysV objects: as lsipc prints them
            for flag, kind in (("m", "sysv-shm"), ("q", "sysv-msg"), ("s", "sysv-sem")):
                listed = json.loads(
                    subprocess.run(
                        ["lsipc", f"-{flag}", "--json", "-b", "-P", "-i", str(made[flag])],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                )
                (entry,) = next(iter(listed.values()))
                row = next(r for r in rows if r.kind == kind and r.id == made[flag])
                assert int(row.name, 16) == int(entry["key"], 16)
                assert row.user == entry["owner"] == "nobody"
                if entry.get("perms"):  # lsipc 2.38 prints none for a queue
                    assert int(row.mode or "", 8) == int(entry["perms"], 8)
                if kind == "sysv-shm":
                    assert row.size == int(entry["size"]) == 4096
                elif kind == "sysv-sem":
                    assert row.size == int(entry["nsems"]) == 5
                else:
                    assert (row.size, row.messages) == (int(entry["usedbytes"]), 0)
            table = subprocess.run(
                [sys.executable, "-m", "ipcnet", "ipcs", "-k", "posix"],
                env=ENV,
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
            line = next(ln.split() for ln in table.splitlines() if f"a8shm{tag}" in ln)
            assert line[:6] == ["posix-shm", f"a8shm{tag}", line[2], "nobody", "0644", "5000"]
        finally:
            for path in (f"/dev/shm/a8shm{tag}", f"/dev/shm/sem.a8sem{tag}"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            for flag, ident in made.items():
                subprocess.run(["ipcrm", f"-{flag}", str(ident)], check=False)


# --- mq against posix_ipc the other way: its queue, its messages, our ends ------------------


def test_a_posix_ipc_queue_and_its_messages_meet_our_ends(qname) -> None:
    peer = posix_ipc.MessageQueue(
        "/" + qname, posix_ipc.O_CREX, mode=0o600, max_messages=2, max_message_size=32
    )
    try:
        # mq_open(3): O_CREAT on an existing queue opens it, attr ignored; our end reports
        # the queue's own limits, not the asked ones
        with ipcnet.open_datagram(f"mq:///{qname}?depth=5&msgsize=64", listen=True) as ours:
            assert (ours.depth, ours.max_size) == (2, 32)
            ours.timeout = 1
            peer.send(b"")  # a zero-length message is a message
            peer.send(b"m" * 32, priority=1)  # exactly mq_msgsize
            assert ours.recv_with_priority() == (b"m" * 32, 1)
            assert ours.recv_with_priority() == (b"", 0)
            with ipcnet.open_datagram(f"mq:///{qname}", timeout=0.2) as sender:
                with pytest.raises(ipcnet.errors.MessageTooLarge, match="limit is 32"):
                    sender.send(b"m" * 33)
                peer.send(b"1")
                peer.send(b"2")  # full: mq_maxmsg messages
                with pytest.raises(ipcnet.errors.Timeout, match="the queue is full"):
                    sender.send(b"3")
                sender.timeout = 0
                with pytest.raises(ipcnet.errors.Busy, match="queue full"):
                    sender.send(b"3")
            assert peer.current_messages == 2  # nothing was dropped, nothing added
    finally:
        peer.close()
