"""Start this program again with some descriptors inherited: a binary upgrade's new master.

Role: fork and exec ``argv`` with ``env``, keeping the listening sockets ``fds`` open
across exec (every other descriptor stays close-on-exec), as nginx's SIGUSR2 does. Rules:
the child is not waited for here (it outlives us: it is the new master); a failure to
start becomes an ipcnet error.
"""

from __future__ import annotations

import subprocess

from ipcnet.transports.oserrors import translating


def reexec(argv: list[str], env: dict[str, str], fds: list[int]) -> int:
    """Start ``argv`` with ``fds`` inherited; its pid."""
    with translating("re-execute", argv[0]):
        child = subprocess.Popen(argv, env=env, pass_fds=fds, close_fds=True)
    child.returncode = 0  # never waited for here: do not let Popen's finalizer reap it
    return child.pid
