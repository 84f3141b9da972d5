"""systemd:// against sd_listen_fds(3) and sd_listen_fds_with_names(3), and under the real
systemd-socket-activate: garbage or missing variables, counts past the open descriptors,
names that do not match the count, descriptors that are not sockets or of the wrong kind
are clear errors; the variables leave the environment once read and the descriptors get
FD_CLOEXEC, as a conforming daemon's do.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid

import pytest

import ipcnet

# One child runs every case: it puts the case's descriptors at 3.., sets the variables
# (LISTEN_PID "me" is its own pid), opens the address and reports what happened.
CHILD = r"""
import fcntl, json, os, socket, sys
import ipcnet

def make(kind):
    if kind == "tcp-listen":
        return socket.create_server(("127.0.0.1", 0)).detach()
    if kind == "udp":
        s = socket.socket(type=socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); return s.detach()
    if kind == "pipe":
        r, w = os.pipe(); os.close(w); return r
    raise ValueError(kind)

out = []
for kinds, env, call, url in json.loads(sys.argv[1]):
    made = [make(k) for k in kinds]
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in made]
    for fd in made:
        os.close(fd)
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i); os.close(fd)
    for name, value in env.items():
        os.environ[name] = str(os.getpid()) if value == "me" else value
    try:
        getattr(ipcnet, call)(url).close()
        result = "ok"
    except ipcnet.errors.IPCError as exc:
        result = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        result = f"UNCLEAN {type(exc).__name__}: {exc}"
    left = sorted(n for n in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES") if n in os.environ)
    out.append([result, left])
    for fd in range(3, 3 + len(kinds)):
        try:
            os.close(fd)  # those the opened endpoint did not close
        except OSError:
            pass
    for n in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(n, None)
print(json.dumps(out))
"""

ME = {"LISTEN_PID": "me"}
L, D, C = "listen", "open_datagram", "connect"
CASES = [
    # (descriptors, environment, call, address, expected error or "ok")
    (["tcp-listen"], {"LISTEN_PID": "abc", "LISTEN_FDS": "1"}, L, "systemd://",
     "AddressNotAvailable: address not available: systemd:// (bad LISTEN_PID 'abc')"),
    (["tcp-listen"], {"LISTEN_PID": "1", "LISTEN_FDS": "1"}, L, "systemd://",
     "LISTEN_PID is not this process)"),
    (["tcp-listen"], ME, L, "systemd://", "(LISTEN_FDS is unset)"),
    (["tcp-listen"], {**ME, "LISTEN_FDS": "x"}, L, "systemd://", "(bad LISTEN_FDS 'x')"),
    (["tcp-listen"], {**ME, "LISTEN_FDS": "0"}, L, "systemd://", "(bad LISTEN_FDS '0')"),
    (["tcp-listen"], {**ME, "LISTEN_FDS": "-1"}, L, "systemd://", "(bad LISTEN_FDS '-1')"),
    (["tcp-listen"], {**ME, "LISTEN_FDS": "1_0"}, L, "systemd://", "(bad LISTEN_FDS '1_0')"),
    (["tcp-listen"], {**ME, "LISTEN_FDS": "9" * 20}, L, "systemd://",
     f"(bad LISTEN_FDS '{'9' * 20}')"),
    (["tcp-listen"], {**ME, "LISTEN_FDS": " 1"}, L, "systemd://", "ok"),  # strtol's leading space
    (["tcp-listen"], {**ME, "LISTEN_FDS": "3"}, L, "systemd://2",
     "(LISTEN_FDS is 3 but descriptor 5 is not open)"),
    (["tcp-listen", "udp"], {**ME, "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web"}, L,
     "systemd://web", "(LISTEN_FDNAMES has 1 names for 2 fds)"),
    (["tcp-listen", "udp"], {**ME, "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web"}, D,
     "systemd://1", "ok"),  # by index, as sd_listen_fds(3) without names
    (["tcp-listen", "udp"], {**ME, "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:dns"}, D,
     "systemd://dns", "ok"),
    (["tcp-listen"], {**ME, "LISTEN_FDS": "1"}, L, "systemd://unknown", "ok"),  # the default
    (["tcp-listen"], {**ME, "LISTEN_FDS": "1", "LISTEN_FDNAMES": ""}, L, "systemd://unknown", "ok"),
    (["pipe"], {**ME, "LISTEN_FDS": "1"}, D, "systemd://",
     "Unsupported: systemd:// is not a socket; connect() to use it as a stream"),
]  # fmt: skip


@pytest.fixture(scope="module")
def results() -> list[list[object]]:
    cases = [[kinds, env, call, url] for kinds, env, call, url, _ in CASES]
    run = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(run.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", range(len(CASES)), ids=lambda i: f"{CASES[i][3]}-{i}")
def test_systemd_variables_as_sd_listen_fds_reads_them(results, case: int) -> None:
    result, left = results[case]
    expected = CASES[case][4]
    assert result == "ok" if expected == "ok" else result.endswith(expected), result
    assert left == []  # read once, then unset (sd_listen_fds with unset_environment)


PEER = r"""
import fcntl, os, ipcnet
with ipcnet.listen("systemd://api") as listener:
    fd = listener.transport.fileno()
    print(fd, bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC),
          [n for n in os.environ if n.startswith("LISTEN_")], flush=True)
    with listener.accept() as channel:
        channel.write(channel.read_exactly(4).upper())
"""


@pytest.mark.skipif(
    not shutil.which("systemd-socket-activate"), reason="no systemd-socket-activate"
)
def test_under_systemd_socket_activate() -> None:
    web, api = (f"@ipcnet-activate-{uuid.uuid4().hex[:10]}" for _ in range(2))
    src = os.path.dirname(os.path.dirname(ipcnet.__file__))  # it passes on no environment
    proc = subprocess.Popen(
        ["systemd-socket-activate", "-l", web, "-l", api, "--fdname=web:api",
         f"--setenv=PYTHONPATH={src}",
         sys.executable, "-c", PEER],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        while "as 4." not in proc.stderr.readline():  # "Listening on @... as 4."
            assert proc.poll() is None
        # it execs the daemon at the first connection on any of its sockets
        with socket.socket(socket.AF_UNIX) as poke:
            poke.connect("\0" + api[1:])
            assert proc.stdout is not None
            assert proc.stdout.readline().split(" ", 2) == ["4", "True", "[]\n"]
            poke.sendall(b"ping")
            assert poke.recv(4) == b"PING"
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(
    not shutil.which("systemd-socket-activate"), reason="no systemd-socket-activate"
)
def test_serve_a_datagram_socket_systemd_passes() -> None:
    """systemd-socket-activate --datagram (ListenDatagram=): `ipcnet serve` answers on it
    (it took every systemd:// for a stream listener and refused it)."""
    name = f"@ipcnet-activate-{uuid.uuid4().hex[:10]}"
    src = os.path.dirname(os.path.dirname(ipcnet.__file__))
    proc = subprocess.Popen(
        ["systemd-socket-activate", "--datagram", "-l", name, f"--setenv=PYTHONPATH={src}",
         sys.executable, "-m", "ipcnet", "serve", "echo", "systemd://"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        while "as 3." not in proc.stderr.readline():
            assert proc.poll() is None
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            client.settimeout(20)  # bounds a server that died; not a timing assertion
            client.bind("")  # an autobound name for the answer
            client.sendto(b"ping", "\0" + name[1:])  # queued: it execs the server on it
            assert client.recv(64) == b"ping"
    finally:
        proc.terminate()
        proc.wait(20)
