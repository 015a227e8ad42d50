"""One process per data dir: an advisory lock file in ``data_dir``.

Two processes on one directory would each mark the other's running tasks
``interrupted`` at start-up; the second one refuses to start instead.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from greenroom.errors import StoreError
from greenroom.files import private_dir, private_file


class DataDirLock:
    """An exclusive, non-blocking ``flock`` on ``data_dir/greenroom.lock``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "greenroom.lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock.

        Raises:
            StoreError: another process holds it, or the directory is not writable.
        """
        try:
            private_dir(self.path.parent)
            private_file(self.path)
            handle = open(self.path, "a+")  # noqa: SIM115  (held open for the lock's life)
        except OSError as exc:
            raise StoreError(f"cannot create lock file {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise StoreError(
                f"data_dir {self.path.parent} is in use by another greenroom process "
                f"(pid {holder}); stop it or choose another data_dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
