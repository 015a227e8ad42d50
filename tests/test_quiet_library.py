"""Embedded, greenroom is a quiet library: it prints nothing and configures nothing global.

Each scenario runs in a fresh interpreter, since logging configuration is process-wide.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RUN_250_TASKS = """
import asyncio, threading
from greenroom import Orchestrator

async def main(data_dir):
    async with Orchestrator({"data_dir": data_dir}) as orch:
        session = await orch.create_session()
        tasks = [await session.start_task(f"job {i}") for i in range(250)]
        done = [await t.wait(timeout=30) for t in tasks]
        assert all(d.status.value == "completed" for d in done)
    return [t.name for t in threading.enumerate()]

threads = asyncio.run(main(DATA_DIR))
"""


def run(tmp_path: Path, prelude: str, epilogue: str = "") -> subprocess.CompletedProcess[str]:
    script = "\n".join(
        [
            textwrap.dedent(prelude),
            RUN_250_TASKS.replace("DATA_DIR", repr(str(tmp_path / "data"))),
            textwrap.dedent(epilogue),
        ]
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_embedded_run_prints_nothing_and_configures_no_logging(tmp_path: Path) -> None:
    proc = run(
        tmp_path,
        "",
        """
        import logging, structlog
        assert not structlog.is_configured(), "greenroom configured structlog"
        assert logging.getLogger().handlers == [], "greenroom added a root handler"
        assert not any("log-writer" in name for name in threads), threads
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout, proc.stderr) == ("", "")
    assert not (tmp_path / "data" / "greenroom.log").exists()


def test_a_host_using_stdlib_logging_gets_greenrooms_events(tmp_path: Path) -> None:
    proc = run(
        tmp_path,
        """
        import logging
        logging.basicConfig(level=logging.INFO, format="%(name)s|%(levelname)s|%(message)s")
        """,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    queued = [line for line in lines if line.startswith("greenroom|INFO|task_queued ")]
    assert len(queued) == 250, proc.stderr[-2000:]
    assert "session_id=ses_" in queued[0] and "task_id=tsk_" in queued[0]
    assert proc.stdout == ""


def test_a_host_that_configured_structlog_keeps_its_configuration(tmp_path: Path) -> None:
    proc = run(
        tmp_path,
        """
        import structlog
        seen = []
        def keep(logger, method, event):
            seen.append(event)
            raise structlog.DropEvent
        structlog.configure(processors=[keep])
        before = structlog.get_config()
        """,
        """
        assert structlog.get_config() == before
        events = {e["event"] for e in seen}
        assert {"orchestrator_started", "task_queued", "completion_recorded"} <= events, events
        print(len([e for e in seen if e["event"] == "completion_recorded"]))
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "250" and proc.stderr == ""
