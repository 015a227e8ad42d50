"""The data dir and every file in it are private to the user, whatever the umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import asyncio, os, sys
from greenroom import Orchestrator
from greenroom.logs import configure_logging, flush_logging
from greenroom.settings import LoggingSettings
os.umask(0o022)  # the usual umask: would make 0755 directories and 0644 files
data = sys.argv[1]
configure_logging(LoggingSettings(path=os.path.join(data, "greenroom.log")))

async def main():
    async with Orchestrator({"data_dir": data, "store": {"kind": "sqlite"}}) as orch:
        session = await orch.create_session()
        await (await session.start_task("secret transcript")).wait(timeout=10)

asyncio.run(main())
flush_logging()
"""


def run_embedded(data: Path) -> subprocess.CompletedProcess[str]:
    """Run SCRIPT in a fresh interpreter (the umask is process-wide) on ``data``."""
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(data)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_dir_is_0700_and_its_files_0600(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    proc = run_embedded(data)
    assert proc.returncode == 0, proc.stderr
    assert mode(data) == 0o700
    files = sorted(p.name for p in data.iterdir())
    assert {"greenroom.db", "greenroom.log", "greenroom.lock"} <= set(files), files
    for name in files:
        assert mode(data / name) == 0o600, (name, oct(mode(data / name)))


def test_an_existing_open_data_dir_keeps_its_mode_and_gets_a_warning(tmp_path: Path) -> None:
    data = tmp_path / "shared"
    data.mkdir()
    os.chmod(data, 0o755)
    proc = run_embedded(data)
    assert proc.returncode == 0, proc.stderr
    assert mode(data) == 0o755  # the owner's choice stands
    log = (data / "greenroom.log").read_text()
    assert '"event":"data_dir_not_private"' in log and "chmod 700" in log
    assert mode(data / "greenroom.db") == 0o600
