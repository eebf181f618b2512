"""One process per file: an exclusive flock on a lock file that holds the holder's pid.

The daemon's outbox (`<EDGED_STATE_DIR>/outbox.lock`) and the dashboard's history (`<database>.lock`) are each
owned by one process: two daemons on one spool would hand out the same `seq` twice, two dashboards on one history
would count every message twice. The second one refuses to start; the caller turns `InUse` into its own error
(exit 69: systemd retries, and the first may be a previous instance still shutting down). The kernel drops the
lock when its holder dies, so a crash never leaves a stale one behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class InUse(Exception):  # not an error of ours: the callers convert it, naming their file
    """Another process holds the lock; `holder` is its pid as it wrote it ("unknown" if it wrote none)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def _holder(fd: int) -> str:
    return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"


def acquire(path: Path) -> int:
    """An exclusive lock on `path` (created if missing), as a file descriptor held until closed or the process dies;
    this process's pid is written into it. InUse when another process holds it; OSError when it cannot be opened."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _holder(fd)
        os.close(fd)
        raise InUse(holder) from None
    try:  # the pid only makes the refusal helpful; a full disk is reported by whoever writes the real file
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass
    return fd


def check(path: Path) -> None:
    """InUse when another process holds the lock on `path`, without taking it or creating the file (for `edged
    check`, which may run as root and must leave nothing behind)."""
    if not path.exists():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # conflicts with a holder's exclusive lock
    except OSError:
        raise InUse(_holder(fd)) from None
    finally:
        os.close(fd)
