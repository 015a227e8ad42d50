"""Several real nodes over one PostgreSQL database: failover, forward_share.

Run one with ``python -m bench.nodes NAME [--quick]``; it prints one JSON result line.
Each run starts its own ``greenroom serve`` nodes (and HAProxy for forward_share) on
127.0.0.1 over a fresh database (``bench/pg.py``: ``$BENCH_PG_DSN``), and ends
them by pid and drops the database afterwards, failed runs included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from bench.common import ROOT, Result, free_port, progress
from bench.pg import fresh_database, server_cpu, server_note

NODE = "X-Greenroom-Node"
AGENTS = """
[agents.slow]
kind = "echo"
delay_s = 30.0
"""


# --- nodes ----------------------------------------------------------------------------


@dataclass
class Node:
    """One `greenroom serve` process of ours; ended by its pid."""

    node_id: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "greenroom.cli", "serve"],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def wait_ready(self, deadline: float) -> None:
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.node_id} exited with {self.proc.returncode}")
            if _status(f"{self.url}/readyz") == 200:
                return
            time.sleep(0.05)  # polling for readiness, bounded by the deadline
        raise RuntimeError(f"node {self.node_id} not ready in time")

    def kill(self) -> None:
        """SIGKILL (our own process, by its pid) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)


def _status(url: str, timeout: float = 1.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return 0


@dataclass
class Cluster:
    dsn: str
    nodes: list[Node]
    workdir: Path

    def by_id(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)

    def log_tail(self, lines: int = 15) -> str:
        out = []
        for node in self.nodes:
            text = node.log_path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- node {node.node_id} ---\n" + "\n".join(text))
        return "\n".join(out)


@contextlib.contextmanager
def cluster(count: int, lease_s: float) -> Iterator[Cluster]:
    """``count`` nodes (ids a, b, c...) over a fresh database, all ready; then every
    node of ours killed by its pid, the database dropped, the work dir removed."""
    workdir = Path(tempfile.mkdtemp(prefix="greenroom-bench-nodes-"))
    config = workdir / "greenroom.toml"
    config.write_text(AGENTS)
    nodes: list[Node] = []
    try:
        with fresh_database() as dsn:
            for i in range(count):
                node_id, port = "abcdefgh"[i], free_port()
                env = {
                    **os.environ,
                    "GREENROOM_CONFIG": str(config),
                    "GREENROOM_DATA_DIR": str(workdir / node_id),
                    "GREENROOM_STORE__KIND": "postgres",
                    "GREENROOM_STORE__DSN": dsn,
                    "GREENROOM_SERVER__PORT": str(port),
                    "GREENROOM_CLUSTER__NODE_ID": node_id,
                    "GREENROOM_CLUSTER__LEASE_S": str(lease_s),
                    "GREENROOM_LOGGING__LEVEL": "warning",
                    "GREENROOM_LOGGING__FORMAT": "json",
                }
                nodes.append(Node(node_id, port, env, workdir / f"{node_id}.stderr"))
            try:
                for node in nodes:  # all at once: start-up is most of a short run
                    node.start()
                deadline = time.monotonic() + 45
                for node in nodes:
                    node.wait_ready(deadline)
                yield Cluster(dsn, nodes, workdir)
            except BaseException:
                with contextlib.suppress(Exception):
                    print(Cluster(dsn, nodes, workdir).log_tail(), file=sys.stderr)
                raise
            finally:
                for node in nodes:
                    node.kill()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def owners(dsn: str) -> dict[str, str | None]:
    """Every session's owner, as PostgreSQL records it."""
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return {r[0]: r[1] for r in conn.execute("SELECT id, owner FROM sessions")}


def lease_left_s(dsn: str, node_id: str) -> float:
    """Seconds left on ``node_id``'s lease by the database's clock."""
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM expires_at - now()) FROM nodes WHERE id = %s", (node_id,)
        ).fetchone()
    return float(row[0]) if row else 0.0


async def _json(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None, timeout: float = 10
) -> tuple[int, Any, str]:
    async with http.request(
        method, url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as response:
        data = await response.json() if response.content_type == "application/json" else None
        return response.status, data, response.headers.get(NODE, "")


# --- failover -------------------------------------------------------------------------


@dataclass
class Failover:
    lease_s: float
    victim: str
    sessions: int  # sessions the victim owned
    floor_s: float  # the victim's lease left when it was killed: no takeover before it
    times_s: list[float]
    answered_by: dict[str, int]
    unanswered: int
    tasks: dict[str, int]  # the victim's sessions' tasks afterwards: "status attempt N"


async def _failover_run(c: Cluster, n_sessions: int) -> Failover:
    lease_s = float(c.nodes[0].env["GREENROOM_CLUSTER__LEASE_S"])
    async with aiohttp.ClientSession() as http:
        sids = []
        for i in range(n_sessions):
            status, body, _ = await _json(http, "POST", f"{c.nodes[i % 3].url}/v1/sessions", {})
            assert status == 201, (status, body)
            sids.append(body["id"])
        # The first request for a session claims it where it lands: a third on each node.
        for i, sid in enumerate(sids):
            node = c.nodes[i % 3]
            status, body, by = await _json(http, "GET", f"{node.url}/v1/sessions/{sid}")
            assert status == 200 and by == node.node_id, (status, body, by)
            status, body, _ = await _json(
                http,
                "POST",
                f"{node.url}/v1/sessions/{sid}/tasks",
                {"prompt": f"work {i}", "agent": "slow", "max_attempts": 2},
            )
            assert status == 202, (status, body)
        await asyncio.sleep(0.3)  # let the tasks start running
        owned = owners(c.dsn)
        counts = {n.node_id: sum(1 for o in owned.values() if o == n.node_id) for n in c.nodes}
        victim = max(counts, key=lambda k: counts[k])
        theirs = [sid for sid, owner in owned.items() if owner == victim]
        survivors = [n for n in c.nodes if n.node_id != victim]
        floor_s = lease_left_s(c.dsn, victim)
        c.by_id(victim).kill()
        killed = time.monotonic()
        progress(
            f"lease {lease_s:g} s: killed node {victim} ({len(theirs)} sessions, "
            f"{floor_s:.1f} s left on its lease)"
        )
        deadline = killed + lease_s + 30

        async def back(i: int, sid: str) -> tuple[float, str] | None:
            url = f"{survivors[i % len(survivors)].url}/v1/sessions/{sid}"
            while time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                    status, _, by = await _json(http, "GET", url, timeout=3)
                    if 200 <= status < 300:
                        return time.monotonic() - killed, by
                await asyncio.sleep(0.1)  # polling, bounded by the deadline
            return None

        outcomes = await asyncio.gather(*(back(i, sid) for i, sid in enumerate(theirs)))
        tasks: dict[str, int] = {}
        for i, sid in enumerate(theirs):  # their running tasks: recovered (attempt 2)?
            url = f"{survivors[i % len(survivors)].url}/v1/sessions/{sid}/tasks"
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                status, body, _ = await _json(http, "GET", url, timeout=5)
                for t in body["tasks"] if status == 200 else []:
                    key = f"{t['status']} attempt {t['attempt']}"
                    tasks[key] = tasks.get(key, 0) + 1
    times = sorted(o[0] for o in outcomes if o is not None)
    answered: dict[str, int] = {}
    for o in outcomes:
        if o is not None:
            answered[o[1]] = answered.get(o[1], 0) + 1
    return Failover(
        lease_s,
        victim,
        len(theirs),
        floor_s,
        times,
        answered,
        sum(1 for o in outcomes if o is None),
        tasks,
    )


def _describe(f: Failover) -> str:
    if not f.times_s:
        return f"lease {f.lease_s:g} s: no session answered again within lease + 30 s"
    return (
        f"lease {f.lease_s:g} s: node {f.victim} SIGKILLed owning {f.sessions} sessions, "
        f"{f.floor_s:.2f} s left on its lease; back after max {max(f.times_s):.2f} s, "
        f"median {statistics.median(f.times_s):.2f} s, min {min(f.times_s):.2f} s "
        f"(answered by {', '.join(f'{k}: {v}' for k, v in sorted(f.answered_by.items()))}"
        + (f"; {f.unanswered} never answered" if f.unanswered else "")
        + "; their tasks right after: "
        + (", ".join(f"{v} {k}" for k, v in sorted(f.tasks.items())) or "none read")
        + ")"
    )


def failover(quick: bool) -> Result:
    n_sessions = 15 if quick else 30
    leases = (10.0,) if quick else (10.0, 2.0)
    runs: list[Failover] = []
    started = time.perf_counter()
    with server_cpu() as cpu:
        for lease_s in leases:
            progress(f"3 nodes, lease {lease_s:g} s, {n_sessions} sessions with running tasks")
            with cluster(3, lease_s) as c:
                runs.append(asyncio.run(_failover_run(c, n_sessions)))
    wall = time.perf_counter() - started
    main = runs[0]
    worst = max(main.times_s) if main.times_s and not main.unanswered else float("inf")
    limit = main.lease_s + 5
    return Result(
        "failover",
        round(worst, 2),
        "s max",
        round(main.floor_s, 2),
        round(main.floor_s / worst, 3),
        f"max <= lease + 5 s = {limit:g} s",
        worst <= limit,
        "3 `greenroom serve` nodes over a fresh PostgreSQL database; sessions created "
        "and claimed a third on each node, each given a running 30 s task (max_attempts "
        "2); the node owning most (sessions.owner) SIGKILLed; each of its sessions then "
        "polled with GET /v1/sessions/<sid> every 0.1 s through a surviving node until "
        "2xx: " + "; ".join(_describe(f) for f in runs) + "; baseline: the victim's "
        "lease left when it was killed, by the database clock (no takeover may happen "
        "before it); " + server_note(cpu[0], wall),
    )


# --- forward_share --------------------------------------------------------------------

_SESSION_PATH = re.compile(r"^/v1/sessions/[^/?]+")
# The shipped config; $BENCH_HAPROXY_CFG measures another file instead.
_SHIPPED = Path(os.environ.get("BENCH_HAPROXY_CFG") or ROOT / "deploy" / "haproxy.cfg")
_SHIPPED_FRONT, _SHIPPED_STATS = "127.0.0.1:8800", "127.0.0.1:8804"
_SHIPPED_NODES = ("127.0.0.1:8801", "127.0.0.1:8802", "127.0.0.1:8803")

_MINIMAL = """\
global
    maxconn 4096
defaults
    mode http
    retries 2
    option redispatch 1
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 10s
frontend greenroom
    bind {front}
    acl session_path path_beg /v1/sessions/
    use_backend nodes_by_session if session_path
    default_backend nodes
backend nodes_by_session
    balance hash path,field(4,/)
    hash-type consistent
{servers}
backend nodes
    balance roundrobin
{servers}
"""

_ROUND_ROBIN = """\
global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 10s
frontend greenroom
    bind {front}
    default_backend nodes
backend nodes
    balance roundrobin
{servers}
"""


def haproxy_config(front: int, nodes: list[Node], *, by_session: bool) -> tuple[str, str]:
    """The config text and where it comes from: ``deploy/haproxy.cfg`` with our ports
    when it exists (each literal address swapped), else the minimal equivalent here; or,
    without ``by_session``, plain round-robin for every request (the baseline)."""
    servers = "\n".join(f"    server n{i + 1} {n.url[7:]}" for i, n in enumerate(nodes))
    if not by_session:
        return _ROUND_ROBIN.format(front=f"127.0.0.1:{front}", servers=servers), "round-robin"
    if _SHIPPED.exists():
        text = _SHIPPED.read_text()
        swaps = {_SHIPPED_FRONT: f"127.0.0.1:{front}", _SHIPPED_STATS: f"127.0.0.1:{free_port()}"}
        swaps.update({old: n.url[7:] for old, n in zip(_SHIPPED_NODES, nodes, strict=True)})
        if all(re.search(re.escape(old) + r"\b", text) for old in swaps):
            pattern = re.compile("|".join(re.escape(old) + r"\b" for old in swaps))
            return pattern.sub(lambda m: swaps[m.group(0)], text), _shown(_SHIPPED)
        progress(f"{_shown(_SHIPPED)} lacks an expected address; using the minimal config")
    return _MINIMAL.format(front=f"127.0.0.1:{front}", servers=servers), "minimal (bench)"


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _haproxy_binary() -> str:
    exe = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).exists()), None
    )
    if exe is None:
        raise RuntimeError("haproxy is not installed (apt-get install -y haproxy)")
    return exe


@contextlib.contextmanager
def haproxy(workdir: Path, text: str, front: int, name: str) -> Iterator[str]:
    """HAProxy in the foreground on ``text``; yields its URL; ended by its pid."""
    exe = _haproxy_binary()
    path = workdir / f"{name}.cfg"
    path.write_text(text)
    checked = subprocess.run(
        [exe, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30, check=False
    )
    if checked.returncode != 0:
        raise RuntimeError(f"haproxy -c: {checked.stdout}{checked.stderr}")
    with (workdir / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            [exe, "-db", "-f", str(path)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{front}"
    try:
        deadline = time.monotonic() + 20
        while _status(f"{url}/healthz") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not come up ({name})")
            time.sleep(0.05)  # polling, bounded by the deadline
        yield url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@dataclass
class Share:
    session_requests: int
    other_requests: int
    forwarded: int
    per_node: dict[str, int]
    seconds: float
    failed: int


async def _forwarded(nodes: list[Node]) -> dict[str, int]:
    async with aiohttp.ClientSession() as http:
        out = {}
        for node in nodes:
            status, body, _ = await _json(http, "GET", f"{node.url}/v1/stats")
            assert status == 200, (status, body)
            out[node.node_id] = int(body["cluster"]["forwarded"])
        return out


async def _mixed(front: str, nodes: list[Node], n_sessions: int, rounds: int) -> Share:
    """Sessions created through the proxy, then in each (all sessions at once) rounds of
    start a task, long-poll its result, ack it; then every node's forwarded count."""
    before = await _forwarded(nodes)
    counts = {"session": 0, "other": 0, "failed": 0}
    deadline = time.monotonic() + 40

    async def call(
        http: aiohttp.ClientSession, method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        counts["session" if _SESSION_PATH.match(path) else "other"] += 1
        status, data, _ = await _json(http, method, front + path, body, timeout=15)
        if not 200 <= status < 300:
            counts["failed"] += 1
        return status, data

    async def rounds_of(http: aiohttp.ClientSession, sid: str) -> None:
        after = 0
        for i in range(rounds):
            if time.monotonic() > deadline:
                return
            status, _ = await call(http, "POST", f"/v1/sessions/{sid}/tasks", {"prompt": f"r{i}"})
            if status != 202:
                continue
            for _ in range(5):  # a long-poll may end empty; bounded
                status, page = await call(
                    http, "GET", f"/v1/sessions/{sid}/results?after={after}&wait=5"
                )
                if status == 200 and page["results"]:
                    after = page["next_after"]
                    break
            await call(http, "POST", f"/v1/sessions/{sid}/results/ack", {"up_to": after})

    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as http:
        sids = []
        for _ in range(n_sessions):
            status, body = await call(http, "POST", "/v1/sessions", {})
            assert status == 201, (status, body)
            sids.append(body["id"])
        await asyncio.gather(*(rounds_of(http, sid) for sid in sids))
    seconds = time.monotonic() - started
    after_counts = await _forwarded(nodes)
    per_node = {k: after_counts[k] - before[k] for k in after_counts}
    return Share(
        counts["session"],
        counts["other"],
        sum(per_node.values()),
        per_node,
        seconds,
        counts["failed"],
    )


def _share_text(s: Share) -> str:
    return (
        f"{s.forwarded}/{s.session_requests} forwarded "
        f"({100 * s.forwarded / max(s.session_requests, 1):.1f}%; by node "
        f"{', '.join(f'{k} {v}' for k, v in sorted(s.per_node.items()))}) in {s.seconds:.1f} s"
        + (f", {s.failed} non-2xx" if s.failed else "")
    )


def forward_share(quick: bool) -> Result:
    n_sessions, rounds = (12, 4) if quick else (30, 8)
    started = time.perf_counter()
    with server_cpu() as cpu, cluster(3, 10.0) as c:
        front = free_port()
        text, origin = haproxy_config(front, c.nodes, by_session=True)
        with haproxy(c.workdir, text, front, "by-session") as url:
            progress(f"{n_sessions} sessions x {rounds} rounds through HAProxy ({origin})")
            ours = asyncio.run(_mixed(url, c.nodes, n_sessions, rounds))
        front = free_port()
        text, _ = haproxy_config(front, c.nodes, by_session=False)
        with haproxy(c.workdir, text, front, "round-robin") as url:
            progress("the same through a round-robin HAProxy (baseline)")
            bare = asyncio.run(_mixed(url, c.nodes, n_sessions, rounds))
    wall = time.perf_counter() - started
    share = ours.forwarded / max(ours.session_requests, 1)
    bare_share = bare.forwarded / max(bare.session_requests, 1)
    return Result(
        "forward_share",
        round(100 * share, 2),
        "% forwarded",
        round(100 * bare_share, 2),
        round(bare_share / share, 3) if share else None,
        "<= 5 %",
        share <= 0.05 and not ours.failed,
        f"3 `greenroom serve` nodes (lease 10 s) over a fresh PostgreSQL database behind "
        f"HAProxy, config {origin} (a session's requests hashed on its id, hash-type "
        f"consistent); {n_sessions} sessions created through it (POST /v1/sessions, "
        f"round-robin), then in each, all at once, {rounds} rounds of start a task, "
        f"long-poll its result, ack; forwarded: the sum of the nodes' /v1/stats "
        f"cluster.forwarded over the run, over the session requests sent: "
        f"{_share_text(ours)}; baseline: the same workload on fresh sessions through "
        f"HAProxy balancing every request round-robin: {_share_text(bare)}; "
        + server_note(cpu[0], wall),
    )


BENCHMARKS = {f.__name__: f for f in (failover, forward_share)}

if __name__ == "__main__":
    result = BENCHMARKS[sys.argv[1]]("--quick" in sys.argv)
    print(json.dumps(result.to_json()))
