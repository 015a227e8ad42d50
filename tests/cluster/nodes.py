"""greenroom nodes for the cluster tests: ``greenroom serve`` subprocesses on fixed ports.

A node is configured the way an operator would: a TOML file (``GREENROOM_CONFIG``) for
the agents and the server's knobs, environment variables for what differs per node
(port, data dir, node id, advertised URL) and for the store. :class:`StoreChoice` is the
one switch between today's single SQLite node and PostgreSQL-backed cluster nodes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.procs import (
    end_process_async,
    http_ok,
    log_tail,
    poll_until,
    signal_process,
    spawn,
)

NODE_HEADER = "X-Greenroom-Node"
FORWARDED_HEADER = "X-Greenroom-Forwarded"


@dataclass(frozen=True)
class StoreChoice:
    """Where the nodes keep their state.

    ``postgres``: every node on one database at ``dsn``, with the cluster settings
    (node id, advertised URL, lease). ``sqlite``: a node's own data dir, no cluster
    settings (what greenroom supports before several nodes land).
    """

    kind: str
    dsn: str | None = None
    lease_s: float = 3.0

    @property
    def clustered(self) -> bool:
        return self.kind == "postgres"


def config_toml(*, slow_delay_s: float, heartbeat_s: float, max_wait_s: float) -> str:
    """The nodes' shared TOML file: an ``echo`` agent slow enough to be caught running,
    short SSE heartbeats (a dead stream shows soon), a short shutdown."""
    return f"""
[server]
host = "127.0.0.1"
heartbeat_s = {heartbeat_s}
max_wait_s = {max_wait_s}
shutdown_grace_s = 1.0

[logging]
level = "info"
format = "json"

[agents.slow]
kind = "echo"
delay_s = {slow_delay_s}
"""


def node_env(
    node_id: str, port: int, data_dir: Path, config: Path, store: StoreChoice
) -> dict[str, str]:
    """The environment of one node: ours without any ``GREENROOM_*``, plus its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENROOM_")}
    env.update(
        GREENROOM_CONFIG=str(config),
        GREENROOM_DATA_DIR=str(data_dir),
        GREENROOM_SERVER__PORT=str(port),
        GREENROOM_STORE__KIND=store.kind,
    )
    if store.clustered:
        assert store.dsn is not None, "a postgres store needs a DSN"
        env.update(
            GREENROOM_STORE__DSN=store.dsn,
            GREENROOM_CLUSTER__NODE_ID=node_id,
            GREENROOM_CLUSTER__ADVERTISE_URL=f"http://127.0.0.1:{port}",
            GREENROOM_CLUSTER__LEASE_S=str(store.lease_s),
        )
    return env


class Node:
    """One ``greenroom serve`` process, started again on the same port and data dir.

    Start, SIGKILL, SIGSTOP/SIGCONT and SIGTERM only ever signal the pid we started.
    """

    def __init__(self, node_id: str, port: int, workdir: Path, env: dict[str, str]) -> None:
        self.node_id = node_id
        self.port = port
        self.workdir = workdir
        self.env = env
        self.log = workdir / "stdout.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.starts = 0
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def data_dir(self) -> Path:
        return Path(self.env["GREENROOM_DATA_DIR"])

    def launch(self) -> None:
        """Start the process (from the main thread: see ``procs``).

        Raises:
            RuntimeError: it is already running.
        """
        if self.alive:
            raise RuntimeError(f"{self.node_id} is already running")
        self.starts += 1
        with self.log.open("a") as out:
            out.write(f"--- {self.node_id} start {self.starts} at {time.time():.3f}\n")
        argv = [sys.executable, "-m", "greenroom.cli", "serve"]
        self.proc = spawn(argv, log_path=self.log, env=self.env)
        self.paused = False

    async def wait_ready(self, timeout_s: float = 30.0) -> float:
        """Wait until ``GET /healthz`` answers 200; the seconds it took.

        Raises:
            RuntimeError: the process exited, or did not answer in time.
        """

        async def ready() -> bool:
            if not self.alive:
                code = None if self.proc is None else self.proc.returncode
                raise RuntimeError(f"{self.node_id} exited ({code}):\n{self.tail()}")
            return await http_ok(self.base + "/healthz")

        try:
            return await poll_until(ready, timeout_s, f"{self.node_id} to answer /healthz")
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{self.tail()}") from None

    async def start(self, timeout_s: float = 30.0) -> float:
        """Launch and wait until ready; the seconds it took."""
        self.launch()
        return await self.wait_ready(timeout_s)

    async def kill(self) -> None:
        """SIGKILL, and wait until the process is gone."""
        if self.proc is not None:
            await end_process_async(self.proc, signal.SIGKILL, timeout_s=10)
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets (connections are accepted by the
        kernel) but runs nothing: no answer, no lease renewal."""
        assert self.proc is not None
        signal_process(self.proc, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT."""
        assert self.proc is not None
        signal_process(self.proc, signal.SIGCONT)
        self.paused = False

    async def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (a clean shutdown), SIGKILL if it does not exit in time; the exit
        status, or None if it was not running."""
        if self.proc is None or not self.alive:
            return None if self.proc is None else self.proc.returncode
        code = await end_process_async(self.proc, signal.SIGTERM, timeout_s)
        self.paused = False
        return code

    def tail(self, lines: int = 30) -> str:
        return log_tail(self.log, lines)
