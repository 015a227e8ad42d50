"""One Jepsen-style run: nodes, HAProxy, clients through it, seeded faults, the checker.

``run_scenario`` starts the nodes (PostgreSQL-backed cluster nodes, or one SQLite node:
:class:`ScenarioConfig.clustered`), HAProxy on the shipped config, the clients and the
fault schedule; after the load it waits (bounded) until every acknowledged task ended
and every stream reader caught up, reads everything back over HTTP and from the store,
and runs the checker. The :class:`Report` holds the failover time of each fault and
every problem found; the caller asserts on it and writes it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.cluster.checker import check_session
from tests.cluster.clients import Load, LoadConfig
from tests.cluster.faults import KINDS, FaultRecord, FaultRunner, schedule
from tests.cluster.haproxy import NODES, HAProxy
from tests.cluster.history import FinalRead
from tests.cluster.nodes import Node, StoreChoice, config_toml, node_env
from tests.cluster.postgres import Postgres
from tests.cluster.procs import ROOT, free_port, poll_until
from tests.cluster.stores import PostgresProbe, SqliteProbe, StoreProbe

ARTIFACTS = ROOT / "artifacts"


@dataclass(frozen=True)
class ScenarioConfig:
    """The knobs of one run. The defaults are the three-node failover test."""

    seed: int = 20261126
    clustered: bool = True  # PostgreSQL-backed cluster nodes; False: one SQLite node
    nodes: int = 3  # how many of n1, n2, n3 run (HAProxy always knows all three)
    lease_s: float = 3.0
    load: LoadConfig = field(default_factory=LoadConfig)
    kinds: tuple[str, ...] = KINDS
    fault_count: int = 4
    settle_s: float = 30.0  # every acknowledged task terminal within this
    catch_up_s: float = 10.0  # every stream reader at the last seq within this
    slow_delay_s: float = 0.3  # the agent's answer time: tasks are caught running
    heartbeat_s: float = 1.0

    @property
    def failover_timeout_s(self) -> float:
        return self.lease_s * 4 + 10.0


@dataclass
class Report:
    """The figures of one run and every problem the checks found."""

    config: dict[str, Any]
    workdir: str
    faults: list[FaultRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "faults": [f.to_json() for f in self.faults]}

    def write(self, name: str) -> Path:
        """Write the report to ``artifacts/NAME``; its path."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        return path

    def lines(self) -> list[str]:
        c = self.config
        out = [
            f"[jepsen] seed {c['seed']}, {'postgres' if c['clustered'] else 'sqlite'} store, "
            f"{c['nodes']} node(s), lease {c['lease_s']} s, load {c['load']['seconds']} s, "
            f"{c['load']['sessions']} sessions; timings {self.timings}",
            "[jepsen] fault       at      node  held     affected  first 2xx  first write"
            "  served by  restart",
        ]
        for f in self.faults:
            out.append(
                f"[jepsen] {f.kind:<10}  +{f.at_s:6.1f}s  {f.node or '-':<4}  "
                f"{_s(f.held_s):>7}  {len(f.affected):>8}  {_s(f.first_answer_s):>9}  "
                f"{_s(f.first_write_s):>11}  {f.served_by or '-':>9}  {_s(f.restart_s):>7}"
                + (f"  ({f.note})" if f.note else "")
            )
        out.append(f"[jepsen] totals {json.dumps(self.totals, sort_keys=True)}")
        out += [f"[jepsen] PROBLEM {p}" for p in self.problems[:100]]
        if len(self.problems) > 100:
            out.append(f"[jepsen] ... {len(self.problems) - 100} more problems")
        out.append(f"[jepsen] {'FAILED' if self.problems else 'PASSED'} (work dir {self.workdir})")
        return out


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


class Cluster:
    """The processes of one run: nodes and HAProxy (PostgreSQL belongs to the caller)."""

    def __init__(self, cfg: ScenarioConfig, workdir: Path, store: StoreChoice) -> None:
        ports = {name: free_port() for name in NODES}
        self.front_port = free_port()
        config = workdir / "node.toml"
        config.write_text(
            config_toml(
                slow_delay_s=cfg.slow_delay_s,
                heartbeat_s=cfg.heartbeat_s,
                max_wait_s=max(10.0, cfg.load.poll_wait_s),
            )
        )
        self.nodes: dict[str, Node] = {}
        for name in sorted(NODES)[: cfg.nodes]:
            data = workdir / name / "data"
            env = node_env(name, ports[name], data, config, store)
            self.nodes[name] = Node(name, ports[name], workdir / name, env)
        self.haproxy = HAProxy(workdir, self.front_port, ports)

    async def start(self) -> None:
        for node in self.nodes.values():
            node.launch()
        await asyncio.gather(*(node.wait_ready() for node in self.nodes.values()))
        self.haproxy.start()
        await self.haproxy.wait_ready()
        await self.whole()

    async def whole(self, timeout_s: float = 20.0) -> None:
        """Wait until every node runs and HAProxy's checks see it up (and the nodes
        never started down): the load begins, and each fault ends, on a whole cluster.

        Raises:
            RuntimeError: a node is not running.
            TimeoutError: HAProxy did not agree in time.
        """
        for name, node in self.nodes.items():
            if not node.alive or node.paused:
                raise RuntimeError(f"{name} is not running")
        expected = {name: "UP" if name in self.nodes else "DOWN" for name in NODES}

        async def agreed() -> bool:
            return await self.haproxy.servers() == expected

        await poll_until(agreed, timeout_s, f"haproxy to see the nodes {expected}")

    async def stats(self) -> dict[str, Any]:
        """Each live node's ``/v1/stats`` (its ``cluster`` object where it has one)."""
        out: dict[str, Any] = {}
        async with aiohttp.ClientSession() as http:
            for name, node in self.nodes.items():
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                    timeout = aiohttp.ClientTimeout(total=5)
                    async with http.get(node.base + "/v1/stats", timeout=timeout) as r:
                        body = await r.json()
                        out[name] = body.get("cluster", {})
        return out

    async def stop(self) -> dict[str, int | None]:
        """SIGTERM every node (their exit statuses), then stop HAProxy."""
        codes = {}
        for name, node in self.nodes.items():
            codes[name] = await node.stop()
        self.haproxy.stop()
        return codes


async def run_scenario(cfg: ScenarioConfig, workdir: Path, pg: Postgres | None = None) -> Report:
    """Run the whole scenario in ``workdir``; the report (never raises for a failed check:
    every problem is in ``report.problems``).

    Raises:
        RuntimeError: the cluster could not be started.
    """
    began = time.monotonic()
    report = Report(asdict(cfg), str(workdir))
    probe: StoreProbe
    if cfg.clustered:
        assert pg is not None, "a clustered run needs PostgreSQL"
        database = f"jepsen_{uuid.uuid4().hex[:8]}"
        store = StoreChoice("postgres", pg.create_database(database), cfg.lease_s)
        probe = PostgresProbe(pg, database)
    else:
        store = StoreChoice("sqlite")
        probe = SqliteProbe(workdir / "n1" / "data" / "greenroom.db", "n1")
    cluster = Cluster(cfg, workdir, store)
    try:
        await cluster.start()
        report.timings["startup_s"] = round(time.monotonic() - began, 2)
        await _run_load(cfg, cluster, probe, pg, report)
        report.totals["node_stats"] = await cluster.stats()
    finally:
        codes = await cluster.stop()
    for name, code in codes.items():
        if code not in (0, None):
            report.problems.append(f"{name} exited {code} after SIGTERM (expected 0)")
    report.totals["node_log_errors"] = {n: _log_errors(node) for n, node in cluster.nodes.items()}
    report.timings["total_s"] = round(time.monotonic() - began, 2)
    return report


async def _run_load(
    cfg: ScenarioConfig, cluster: Cluster, probe: StoreProbe, pg: Postgres | None, report: Report
) -> None:
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as http:
        load = Load(cluster.haproxy.base, cfg.load, cfg.seed)
        load.http = http
        await load.create_sessions()
        load.start_readers()
        try:
            await _faults_and_load(
                cfg, cluster=cluster, load=load, probe=probe, pg=pg, report=report
            )
            await _settle(cfg, load, report)
        finally:
            await load.stop_readers()
        deadline = time.monotonic() + 30
        finals: dict[str, FinalRead] = {}
        for sid in load.histories:
            try:
                finals[sid] = await load.final_read(sid, deadline)
            except RuntimeError as exc:  # e.g. a 404: the checks below say what it lost
                report.problems.append(f"{sid}: reading it back failed: {exc}")
                finals[sid] = FinalRead()
        stored = await probe.sessions(load.histories)
    for sid, history in load.histories.items():
        report.problems += check_session(history, finals[sid], stored[sid])
    for name, node in cluster.nodes.items():
        if not node.alive:
            report.problems.append(f"{name} was not running at the end: {node.tail(5)}")
    report.totals.update(_totals(load, finals, stored))
    if report.totals["tasks_acknowledged"] < 5 * cfg.load.sessions:
        report.problems.append(f"too little load: {report.totals['tasks_acknowledged']} tasks")
    if not report.totals["sse_resumed"]:
        report.problems.append("no SSE stream was resumed: the faults never cut one")


async def _faults_and_load(
    cfg: ScenarioConfig,
    *,
    cluster: Cluster,
    load: Load,
    probe: StoreProbe,
    pg: Postgres | None,
    report: Report,
) -> None:
    plans = schedule(
        cfg.seed,
        kinds=cfg.kinds,
        nodes=sorted(cluster.nodes),
        load_s=cfg.load.seconds,
        count=cfg.fault_count,
        lease_s=cfg.lease_s,
    )
    runner = FaultRunner(
        nodes=cluster.nodes,
        load=load,
        store=probe,
        takeover=cfg.clustered and len(cluster.nodes) > 1,
        failover_timeout_s=cfg.failover_timeout_s,
        restart_pg=None if pg is None else pg.restart_async,
        whole=cluster.whole,
    )
    began = time.monotonic()
    faults = asyncio.create_task(runner.run(plans, began))
    await load.run_clients(cfg.load.seconds)
    report.timings["load_s"] = round(time.monotonic() - began, 2)
    try:
        await faults
    except Exception as exc:  # the checks still run: they show what the fault broke
        report.problems.append(f"the fault schedule failed: {type(exc).__name__}: {exc}")
    report.faults = runner.records
    for record in runner.records:
        if record.note:
            report.problems.append(f"{record.kind} of {record.node or 'postgres'}: {record.note}")


async def _settle(cfg: ScenarioConfig, load: Load, report: Report) -> None:
    """Bounded waits: every acknowledged task terminal; every reader at the last seq."""
    began = time.monotonic()
    deadline = began + cfg.settle_s
    left: dict[str, Any] = {}

    async def finished() -> bool:
        nonlocal left
        left = await load.unfinished(deadline)
        return not left

    try:
        await poll_until(finished, cfg.settle_s, "acknowledged tasks to end", poll_s=0.5)
    except (TimeoutError, RuntimeError) as exc:
        report.problems.append(f"{exc}: still unfinished {left}")
    lagging: dict[str, Any] = {}

    async def caught_up() -> bool:
        nonlocal lagging
        lagging = await load.lagging_readers(time.monotonic() + cfg.catch_up_s)
        return not lagging

    try:
        await poll_until(caught_up, cfg.catch_up_s, "stream readers to catch up", poll_s=0.25)
    except (TimeoutError, RuntimeError) as exc:
        report.problems.append(f"{exc}: (seen, last) {lagging}")
    report.timings["settle_s"] = round(time.monotonic() - began, 2)


def _totals(load: Load, finals: dict[str, FinalRead], stored: dict[str, Any]) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    for sid, history in load.histories.items():
        for tid in history.acked_tasks:
            statuses[finals[sid].statuses.get(tid, "missing")] += 1
    connections = [c for h in load.histories.values() for c in h.sse]
    return {
        "sessions": len(load.histories),
        "tasks_acknowledged": sum(len(h.acked_tasks) for h in load.histories.values()),
        "task_statuses": dict(statuses),
        "starts_never_acknowledged": sum(len(h.unacked) for h in load.histories.values()),
        "requests": len(load.requests),
        "http_statuses": {str(k): v for k, v in sorted(load.statuses.items())},
        "client_errors": dict(load.errors),
        "served_by": dict(Counter(r.node or "-" for r in load.requests if r.ok)),
        "sse_connections": len(connections),
        "sse_resumed": sum(1 for c in connections if c.resume > 0),
        "sse_events": sum(len(c.frames) for c in connections),
        "events_stored": sum(len(s.events) for s in stored.values()),
    }


def _log_errors(node: Node) -> int:
    """Error-level lines in a node's log files."""
    count = 0
    for path in sorted(node.data_dir.glob("greenroom.log*")):
        for line in path.read_text(errors="replace").splitlines():
            if '"level": "error"' in line or '"level":"error"' in line:
                count += 1
    return count
