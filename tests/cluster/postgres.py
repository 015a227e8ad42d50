"""An own PostgreSQL 15 instance for a test run: initdb into a temporary directory, a free
port on 127.0.0.1, trust authentication; start, crash, restart, query, tear down.

The system PostgreSQL (port 5432) is never touched: every process here is one we started,
signalled by its pid. As root, initdb and postgres run as the ``postgres`` user (they
refuse to run as root), and the directory is theirs. Queries go through ``psql`` (no
Python driver needed), each answering one JSON value.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.cluster.procs import (
    end_process,
    end_process_async,
    free_port,
    log_tail,
    poll_until,
    spawn,
)

PG_BIN = Path(os.environ.get("GREENROOM_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",  # TCP only: nothing to clash with the system server
    "max_connections": "100",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
    "log_line_prefix": "%m [%p] ",
}


_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


def missing() -> str | None:
    """Why no instance can be made here (one line), or None when it can."""
    for tool in ("initdb", "postgres", "psql", "pg_isready"):
        if not (PG_BIN / tool).exists():
            return f"PostgreSQL 15 server binaries not found ({PG_BIN / tool} is missing)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, but there is no `postgres` user to run PostgreSQL as"
        if shutil.which("setpriv") is None:
            return "running as root, but setpriv (util-linux) is missing to drop to postgres"
    return None


class Postgres:
    """One PostgreSQL server in its own directory, on its own port.

    Args:
        base: the directory to create it in (default: the system's temporary directory;
            it must be reachable by the ``postgres`` user, so not pytest's ``tmp_path``).
    """

    def __init__(self, base: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="greenroom-pg-", dir=base))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.proc: subprocess.Popen[bytes] | None = None
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def dsn(self, database: str = "postgres") -> str:
        """``postgresql://postgres@127.0.0.1:PORT/DATABASE``."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def init(self) -> None:
        """initdb: superuser ``postgres``, trust authentication, UTF-8.

        Raises:
            RuntimeError: initdb failed (its output is in the message).
        """
        argv = [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres"]
        argv += ["--auth=trust", "-E", "UTF8", "--no-instructions", "--no-sync"]
        proc = spawn(argv, log_path=self.root / "initdb.log", user=self.user)
        if proc.wait(timeout=120) != 0:
            raise RuntimeError(f"initdb failed:\n{log_tail(self.root / 'initdb.log')}")

    def launch(self) -> None:
        """Start the server process (call from the main thread: see ``procs``).

        Raises:
            RuntimeError: it is already running.
        """
        if self.running:
            raise RuntimeError("PostgreSQL is already running")
        argv = [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        for key, value in _SETTINGS.items():
            argv += ["-c", f"{key}={value}"]
        # Our own death takes it down in "immediate" mode (SIGQUIT): its children go too.
        self.proc = spawn(argv, log_path=self.log, user=self.user, death_signal="QUIT")

    def _isready_argv(self) -> list[str]:
        # pg_isready waits up to -t seconds itself, which paces the polling loops below.
        return [
            str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port),
            "-U", "postgres", "-d", "postgres", "-t", "1",
        ]  # fmt: skip

    def _check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise RuntimeError(f"postgres is not running (exit {code}):\n{self.tail()}")

    def start(self, timeout_s: float = 60.0) -> float:
        """Start the server and wait until it accepts connections; the seconds it took.

        Raises:
            RuntimeError: it exited or did not get ready in time (its log is in the message).
        """
        began = time.monotonic()
        self.launch()
        while time.monotonic() - began < timeout_s:
            self._check_alive()
            if subprocess.run(self._isready_argv(), check=False).returncode == 0:
                return time.monotonic() - began
            time.sleep(0.1)  # a refused connection answers at once: pace the polling
        raise RuntimeError(f"postgres not ready within {timeout_s} s:\n{self.tail()}")

    async def start_async(self, timeout_s: float = 60.0) -> float:
        """:meth:`start` without blocking the event loop while the server gets ready."""
        self.launch()

        async def ready() -> bool:
            self._check_alive()
            probe = await asyncio.create_subprocess_exec(*self._isready_argv())
            return await probe.wait() == 0

        try:
            return await poll_until(ready, timeout_s, "postgres to accept connections", 0.1)
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{self.tail()}") from None

    def stop(self, mode: str = "fast", timeout_s: float = 60.0) -> None:
        """Stop the server: ``smart`` (SIGTERM), ``fast`` (SIGINT) or ``immediate``
        (SIGQUIT: a crash; the next start runs recovery), as ``pg_ctl stop -m`` does."""
        if self.proc is not None:
            end_process(self.proc, _STOP_SIGNALS[mode], timeout_s)
            self.proc = None

    async def stop_async(self, mode: str = "fast", timeout_s: float = 60.0) -> None:
        """:meth:`stop` without blocking the event loop."""
        if self.proc is not None:
            await end_process_async(self.proc, _STOP_SIGNALS[mode], timeout_s)
            self.proc = None

    def crash(self) -> None:
        """``stop -m immediate``: no checkpoint, every connection dropped at once."""
        self.stop("immediate")

    async def restart_async(self, down_s: float = 0.0, mode: str = "immediate") -> float:
        """Stop (a crash by default), stay down ``down_s`` seconds (the fault's length),
        start again on the same port; the seconds from the stop to ready."""
        began = time.monotonic()
        await self.stop_async(mode)
        await asyncio.sleep(down_s)
        await self.start_async()
        return time.monotonic() - began

    def tail(self, lines: int = 30) -> str:
        return log_tail(self.log, lines)

    def psql_argv(self, database: str, sql: str) -> list[str]:
        return [
            str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
            "-c", sql,
        ]  # fmt: skip

    def execute(self, sql: str, database: str = "postgres") -> str:
        """Run SQL (blocking); its output.

        Raises:
            RuntimeError: psql failed (its stderr is in the message).
        """
        proc = subprocess.run(
            self.psql_argv(database, sql), capture_output=True, text=True, timeout=60, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def create_database(self, name: str) -> str:
        """``CREATE DATABASE name``; its DSN."""
        self.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    async def query(self, sql: str, database: str = "postgres", timeout_s: float = 30.0) -> Any:
        """The rows of a SELECT as a list of JSON objects, read without blocking the loop.

        Raises:
            RuntimeError: psql failed or timed out (its stderr is in the message).
        """
        wrapped = f"SELECT coalesce(json_agg(q), '[]'::json) FROM ({sql}) AS q"
        proc = await asyncio.create_subprocess_exec(
            *self.psql_argv(database, wrapped),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"psql did not answer within {timeout_s} s: {sql}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed ({proc.returncode}): {err.decode().strip()}")
        return json.loads(out)

    def destroy(self) -> None:
        """Stop the server if it runs, and remove its directory."""
        try:
            self.stop("fast", timeout_s=30)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
