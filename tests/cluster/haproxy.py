"""HAProxy for the cluster tests: the shipped ``deploy/haproxy.cfg`` with other ports.

The test renders the very file that ships: :func:`render` swaps each literal address
(``127.0.0.1:8800`` for the front, ``127.0.0.1:8801``... for the nodes) and refuses a
file where one is missing, so the file and the tests cannot drift apart silently.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import signal
import subprocess
from pathlib import Path

import aiohttp

from tests.cluster.procs import (
    ROOT,
    end_process,
    free_port,
    http_ok,
    log_tail,
    poll_until,
    spawn,
)

CONFIG = ROOT / "deploy" / "haproxy.cfg"
FRONT = "127.0.0.1:8800"
STATS = "127.0.0.1:8804"
NODES = {"n1": "127.0.0.1:8801", "n2": "127.0.0.1:8802", "n3": "127.0.0.1:8803"}


def binary() -> str | None:
    """The haproxy executable, or None."""
    return shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).exists()), None
    )


def render(
    front_port: int, node_ports: dict[str, int], stats_port: int, text: str | None = None
) -> str:
    """The shipped config (or ``text``) with the front, each node and the status page on
    the given ports.

    Raises:
        ValueError: an address to replace is not in the file, or ``node_ports`` names
            other nodes than the file's.
    """
    text = CONFIG.read_text() if text is None else text
    if set(node_ports) != set(NODES):
        raise ValueError(
            f"node_ports: expected the nodes {sorted(NODES)}, got {sorted(node_ports)}"
        )
    swaps = {FRONT: f"127.0.0.1:{front_port}", STATS: f"127.0.0.1:{stats_port}"}
    swaps.update({NODES[name]: f"127.0.0.1:{port}" for name, port in node_ports.items()})
    for old in swaps:
        if not re.search(re.escape(old) + r"\b", text):
            raise ValueError(f"{CONFIG.name}: no {old} to replace")
    pattern = re.compile("|".join(re.escape(old) + r"\b" for old in swaps))
    return pattern.sub(lambda m: swaps[m.group(0)], text)


def check(config: Path) -> subprocess.CompletedProcess[str]:
    """``haproxy -c -f config``: the validation HAProxy itself does."""
    exe = binary()
    if exe is None:
        raise RuntimeError("haproxy is not installed")
    return subprocess.run(
        [exe, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30, check=False
    )


class HAProxy:
    """HAProxy in the foreground (``-db``) on a rendered config, ended by its pid."""

    def __init__(self, workdir: Path, front_port: int, node_ports: dict[str, int]) -> None:
        self.workdir = workdir
        self.front_port = front_port
        self.stats_port = free_port()
        self.config = workdir / "haproxy.cfg"
        self.log = workdir / "haproxy.log"
        self.config.write_text(render(front_port, node_ports, self.stats_port))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    def start(self) -> None:
        """Start it (from the main thread: see ``procs``).

        Raises:
            RuntimeError: haproxy is missing or refuses the config.
        """
        checked = check(self.config)
        if checked.returncode != 0:
            raise RuntimeError(
                f"haproxy -c refused {self.config}:\n{checked.stdout}{checked.stderr}"
            )
        exe = binary()
        assert exe is not None
        self.proc = spawn([exe, "-db", "-f", str(self.config)], log_path=self.log)

    async def wait_ready(self, timeout_s: float = 20.0) -> float:
        """Wait until ``GET /healthz`` through the proxy answers 200 (a node is up).

        Raises:
            RuntimeError: haproxy exited, or no node answered in time.
        """

        async def ready() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"haproxy is not running:\n{log_tail(self.log)}")
            return await http_ok(self.base + "/healthz")

        return await poll_until(ready, timeout_s, "haproxy to answer /healthz")

    async def servers(self) -> dict[str, str]:
        """HAProxy's view of the nodes: ``{"n1": "UP", "n2": "DOWN", ...}`` (the hashed
        backend's check status, from the status page's CSV)."""
        url = f"http://127.0.0.1:{self.stats_port}/;csv"
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response,
        ):
            text = await response.text()
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {
            row["svname"]: row["status"].split()[0]
            for row in rows
            if row["pxname"] == "nodes_by_session" and row["svname"] in NODES
        }

    def stop(self) -> None:
        """SIGTERM (a hard stop: connections close), SIGKILL if it lingers."""
        if self.proc is not None:
            end_process(self.proc, signal.SIGTERM, timeout_s=10)
            self.proc = None
