"""The greenroom command as a user meets it: one clear line on a mistake, no traceback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def greenroom(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenroom.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_a_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = greenroom("serve", "--port", str(port), env={"GREENROOM_DATA_DIR": str(tmp_path)})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("greenroom: error:")]
    assert len(errors) == 1 and "address already in use" in errors[0].lower(), proc.stderr


def test_config_masks_the_token(tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text('[agents.remote]\nkind = "openai"\napi_key_env = "MY_KEY"\n')
    proc = greenroom(
        "config", "--config", str(config), env={"GREENROOM_TOKEN": "s3cret-token-value"}
    )
    assert proc.returncode == 0, proc.stderr
    assert "s3cret-token-value" not in proc.stdout
    shown = json.loads(proc.stdout)
    assert shown["server"]["token"] == "[redacted]"
    assert shown["agents"]["remote"]["kind"] == "openai"  # the rest is shown as it is


def test_doctor_piped_into_a_reader_that_leaves_ends_quietly(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    with log.open("w") as handle:  # many never-ended tasks: a long --json report
        for i in range(3000):
            line = {"event": "task_started", "task_id": f"tsk_{i}", "session_id": "ses_1"}
            handle.write(json.dumps({**line, "ts": "2026-01-01T00:00:00Z", "level": "info"}))
            handle.write("\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "greenroom.cli", "doctor", "--log", str(log), "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10)  # like `| head -c 10`, then hang up
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    code = proc.wait(timeout=60)
    assert "BrokenPipeError" not in err and "Traceback" not in err, err
    assert code in (0, 1)  # doctor's own verdict; never a crash


def test_serve_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    from tests.http.test_server_process import _start

    server = _start(tmp_path, GREENROOM_LOGGING__LEVEL="info")
    assert server.proc.poll() is None
    server.proc.send_signal(signal.SIGINT)
    code = server.proc.wait(timeout=30)
    stderr = server.proc.stderr.read() if server.proc.stderr else ""
    for stream in (server.proc.stdout, server.proc.stderr):
        if stream is not None:
            stream.close()
    assert code == 0 and "Traceback" not in stderr, stderr
    events = [json.loads(x)["event"] for x in (tmp_path / "greenroom.log").read_text().splitlines()]
    assert events.index("orchestrator_stopped") < events.index("server_stopped")


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (("cluster", "status"), {}, "cluster status needs store.kind = 'postgres'"),
        (
            ("cluster", "status"),
            {
                "GREENROOM_STORE__KIND": "postgres",
                "GREENROOM_STORE__DSN": "postgresql://ada:pw@127.0.0.1:1/x",
            },
            "open failed on postgresql://ada@127.0.0.1:1/x",
        ),
        (("serve",), {"GREENROOM_STORE__KIND": "postgres"}, "store.dsn: kind 'postgres' needs"),
    ],
)
def test_postgres_mistakes_are_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    proc = greenroom(*args, env={"GREENROOM_DATA_DIR": str(tmp_path), **env})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"greenroom: error: {says}"), proc.stderr
    assert proc.stderr.count("\n") == 1 and "pw@" not in proc.stderr


def test_config_masks_the_dsn() -> None:
    proc = greenroom("config", env={"GREENROOM_STORE__DSN": "postgresql://ada:pw@db/x"})
    assert proc.returncode == 0 and "pw@" not in proc.stdout
    assert json.loads(proc.stdout)["store"]["dsn"] == "[redacted]"
