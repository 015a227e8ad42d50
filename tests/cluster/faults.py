"""The fault schedule (from a seed) and its execution, with the failover time of each.

Three kinds of fault: ``kill`` (SIGKILL a node, start it again), ``pause`` (SIGSTOP a
node for longer than its lease, then SIGCONT) and ``pg_restart`` (PostgreSQL stopped in
"immediate" mode, i.e. crashed, then started again). Faults run one after another, each
on a cluster whole again after the previous one.

The failover time of a fault is from the fault to the first 2xx answer, for a session
the faulted node owned, to a request sent after the fault (``first_answer_s``); and to
the first such answer to a task start, which must be written (``first_write_s``). For a
PostgreSQL restart every session is affected.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.cluster.clients import Load, Probe
from tests.cluster.nodes import Node
from tests.cluster.stores import StoreProbe

KINDS = ("kill", "pause", "pg_restart")
WRITES = frozenset({"start"})


@dataclass(frozen=True)
class FaultPlan:
    """One scheduled fault: at ``at_s`` after the load began, on ``node`` (preferred:
    the node owning the most sessions is taken if it owns none), held ``hold_s`` (a
    pause's least length; how long PostgreSQL stays down)."""

    kind: str
    at_s: float
    node: str | None
    hold_s: float


def schedule(
    seed: int,
    *,
    kinds: tuple[str, ...],
    nodes: list[str],
    load_s: float,
    count: int,
    lease_s: float,
) -> list[FaultPlan]:
    """``count`` faults spread over the load (each kind at least once, in an order the
    seed decides), leaving the load's first and last tenth quiet.

    Raises:
        ValueError: ``count`` is smaller than the number of kinds.
    """
    if count < len(kinds):
        raise ValueError(f"count: at least one fault of each kind needs {len(kinds)}")
    rng = random.Random(seed)
    order = list(kinds)
    rng.shuffle(order)
    order += [rng.choice(kinds) for _ in range(count - len(kinds))]
    begin, end = load_s * 0.1, load_s * 0.75
    slot = (end - begin) / count
    plans = []
    for number, kind in enumerate(order):
        at = begin + number * slot + rng.uniform(0, slot * 0.25)
        node = None if kind == "pg_restart" else rng.choice(nodes)
        hold = {"kill": 0.0, "pause": lease_s * rng.uniform(1.5, 2.0)}.get(kind, 0.0)
        if kind == "pg_restart":
            hold = rng.uniform(0.5, 2.0)
        plans.append(FaultPlan(kind, round(at, 2), node, round(hold, 2)))
    return plans


@dataclass
class FaultRecord:
    """What happened when one fault ran."""

    kind: str
    node: str | None
    at_s: float  # after the load began
    at_wall: float  # time.time() at the fault
    affected: list[str] = field(default_factory=list)
    held_s: float | None = None  # how long the node was stopped / PostgreSQL was down
    first_answer_s: float | None = None
    first_write_s: float | None = None
    served_by: str | None = None  # X-Greenroom-Node of the first answer
    restart_s: float | None = None  # to a killed node's /healthz, or PostgreSQL's ready
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        at_utc = datetime.fromtimestamp(self.at_wall, UTC).isoformat(timespec="milliseconds")
        return {**asdict(self), "at_utc": at_utc}


class FaultRunner:
    """Runs a schedule against the cluster's processes while the load goes on.

    Args:
        takeover: whether other nodes can take a faulted node's sessions over (several
            nodes); if not, a node is restarted / resumed before failover is awaited.
        restart_pg: restarts PostgreSQL (down ``down_s``); None when there is none.
        whole: returns once the cluster is whole again (every node back, and seen up
            by HAProxy); awaited after each fault, so faults do not overlap.
    """

    def __init__(
        self,
        *,
        nodes: dict[str, Node],
        load: Load,
        store: StoreProbe,
        takeover: bool,
        failover_timeout_s: float,
        restart_pg: Callable[[float], Awaitable[float]] | None = None,
        whole: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.nodes = nodes
        self.load = load
        self.store = store
        self.takeover = takeover
        self.failover_timeout_s = failover_timeout_s
        self.restart_pg = restart_pg
        self.whole = whole
        self.records: list[FaultRecord] = []

    async def run(self, plans: list[FaultPlan], began: float) -> list[FaultRecord]:
        """Each fault at its time (or at once if the previous one overran)."""
        for plan in plans:
            await asyncio.sleep(max(0.0, began + plan.at_s - time.monotonic()))
            self.records.append(await self.inject(plan, began))
            if self.whole is not None:
                await self.whole()
        return self.records

    async def _target(self, preferred: str | None) -> tuple[str, set[str]]:
        """The node to fault and the sessions it owns now."""
        owners = await self.store.owners()
        owned = Counter(owner for owner in owners.values() if owner in self.nodes)
        node = preferred if preferred in self.nodes and owned[preferred] else None
        if node is None:
            node = max(sorted(self.nodes), key=lambda n: owned[n])
        sids = {
            sid for sid, owner in owners.items() if owner == node and sid in self.load.histories
        }
        if not sids:  # no owner column filled in: the node that last served a session
            sids = {sid for sid, served in self.load.last_node.items() if served == node}
        return node, sids

    async def inject(self, plan: FaultPlan, began: float) -> FaultRecord:
        if plan.kind == "pg_restart":
            node, sids = None, set(self.load.histories)
        else:
            node, sids = await self._target(plan.node)
        t0 = time.monotonic()
        record = FaultRecord(plan.kind, node, round(t0 - began, 2), time.time(), sorted(sids))
        if not sids:
            record.note = "the node owned no session of the load"
        probes = (self.load.probe(sids, t0), self.load.probe(sids, t0, WRITES))
        try:
            if plan.kind == "kill":
                await self._kill(self.nodes[str(node)], record, probes)
            elif plan.kind == "pause":
                await self._pause(self.nodes[str(node)], plan.hold_s, record, probes)
            else:
                assert self.restart_pg is not None, "pg_restart needs PostgreSQL"
                record.restart_s = round(await self.restart_pg(plan.hold_s), 3)
                record.held_s = plan.hold_s
                await self._await_failover(probes, record)
        finally:
            for probe in probes:
                self.load.probes.remove(probe)
        return record

    async def _kill(self, node: Node, record: FaultRecord, probes: tuple[Probe, Probe]) -> None:
        began = time.monotonic()
        await node.kill()
        if self.takeover:  # the others take its sessions over while it is down
            await self._await_failover(probes, record)
        record.held_s = round(time.monotonic() - began, 3)
        record.restart_s = round(await node.start(), 3)
        if not self.takeover:
            await self._await_failover(probes, record)

    async def _pause(
        self, node: Node, hold_s: float, record: FaultRecord, probes: tuple[Probe, Probe]
    ) -> None:
        began = time.monotonic()
        node.pause()
        try:
            if self.takeover:  # taken over while it is stopped: fencing is then tested
                await self._await_failover(probes, record)
            # The fault's length: at least hold_s (longer than the lease) stopped.
            await asyncio.sleep(max(0.0, began + hold_s - time.monotonic()))
        finally:
            node.resume()
        record.held_s = round(time.monotonic() - began, 3)
        if not self.takeover:
            await self._await_failover(probes, record)

    async def _await_failover(self, probes: tuple[Probe, Probe], record: FaultRecord) -> None:
        """Wait (bounded) for the first answer and the first write after the fault."""
        firsts = [probe.first for probe in probes]
        await asyncio.wait(firsts, timeout=self.failover_timeout_s)
        t0 = probes[0].t0
        answer, write = (f.result() if f.done() else None for f in firsts)
        if answer is not None:
            record.first_answer_s = round(answer.done - t0, 3)
            record.served_by = answer.node
        if write is not None:
            record.first_write_s = round(write.done - t0, 3)
        if (answer is None or write is None) and not record.note:
            record.note = (
                f"no {'answer' if answer is None else 'write'} within {self.failover_timeout_s} s"
            )
