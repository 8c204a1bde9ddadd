"""One server per data folder: an exclusive lock on ``<data_dir>/server.lock``, held while the server runs.

A second server on the same folder (say *Start server* in the panel while one runs in a terminal) would otherwise
run crash recovery on the first one's jobs. The lock is taken before anything touches the jobs; the file names the
holder (process id and address) for the refusal message. The operating system releases it when the process ends,
however it ends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from .errors import BackendError

LOCK_FILE = "server.lock"


class DataDirBusy(BackendError):
    """Another server holds the data folder."""


def _try_lock(handle: IO[str]) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def lock_data_dir(data_dir: Path, address: str) -> IO[str]:
    """Take the data folder's lock for this process (serving ``address``) and return the open lock file (keep it open
    while serving); raise :class:`DataDirBusy` naming the server that holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the process's life
    if not _try_lock(handle):
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise DataDirBusy(f"another groupedit-server ({holder}) uses the data folder {data_dir}: use that server, "
                          "stop it first, or start this one with another --data-dir")
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, {address}\n")
    handle.flush()
    return handle
