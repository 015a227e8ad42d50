"""Private files: transcripts and results are nobody else's business.

The data dir is created ``0700`` and every file greenroom creates in it ``0600``,
whatever the umask, as PostgreSQL and OpenSSH do. A directory that already exists keeps
the mode its owner gave it; if others can read it, a warning says so once.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TextIO

from greenroom.logs import get_logger

log = get_logger(actor="files")
_warned: set[str] = set()


def private_dir(path: Path, *, warn: bool = True) -> Path:
    """Make ``path`` (and missing parents) ``0700``; warn when an existing one is open."""
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.chmod(0o700)  # mkdir's mode is filtered by the umask
        return path
    mode = stat.S_IMODE(path.stat().st_mode)
    if warn and mode & 0o077 and str(path) not in _warned:
        _warned.add(str(path))
        log.warning(
            "data_dir_not_private",
            path=str(path),
            mode=oct(mode),
            hint=f"chmod 700 {path}: other users can read its transcripts and results",
        )
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode ``0600`` if it does not exist (umask-proof)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return path
    os.fchmod(fd, 0o600)
    os.close(fd)
    return path


def open_private(path: Path) -> TextIO:
    """Open a text file for appending, creating it ``0600`` first."""
    private_file(path)
    return open(path, "a", encoding="utf-8")
