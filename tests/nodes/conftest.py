"""Real `greenroom serve` nodes sharing a fresh PostgreSQL database."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.cluster.nodes import StoreChoice, node_env
from tests.cluster.procs import free_port
from tests.pg import fresh_database

ROOT = Path(__file__).resolve().parents[2]
AGENTS = """
[logging]
format = "json"

[agents.slow]
kind = "echo"
delay_s = 1.0
"""


@dataclass
class Node:
    """One node process; start() again after kill() reuses its id and port."""

    node_id: str
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log: Any = field(default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "greenroom.cli", "serve"],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"node {self.node_id} exited with {self.proc.returncode}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)  # polling for readiness, bounded by the deadline
        pytest.fail(f"node {self.node_id} not ready in 30 s")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@dataclass
class Cluster:
    dsn: str
    nodes: list[Node]

    def by_id(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Two nodes, `a` and `b`, with a 2 s lease (indirect param: a token for both)."""
    token = getattr(request, "param", None)
    config = tmp_path / "greenroom.toml"
    config.write_text(AGENTS)
    with fresh_database() as dsn:
        nodes = []
        for i in range(2):
            node_id = "abcdefgh"[i]
            port = free_port()
            store = StoreChoice("postgres", dsn, lease_s=2.0)
            env = node_env(node_id, port, tmp_path / node_id, config, store)
            if token:
                env["GREENROOM_TOKEN"] = token
            node = Node(node_id, port, env, log=(tmp_path / f"{node_id}.stderr").open("ab"))
            nodes.append(node)
        try:
            for node in nodes:
                node.start()
            yield Cluster(dsn, nodes)
        finally:
            for node in nodes:
                node.kill()
                node.log.close()
