"""Jepsen-style failover test of several greenroom nodes over PostgreSQL.

Three ``greenroom serve`` nodes on one PostgreSQL database (our own instance), HAProxy
in front with the shipped ``deploy/haproxy.cfg``, clients through HAProxy (tasks started
with idempotency keys and retried until acknowledged, results read and acknowledged, an
SSE reader per session resuming with Last-Event-ID), and a seeded fault schedule: a node
SIGKILLed and started again, a node SIGSTOPped for longer than its lease then resumed,
PostgreSQL crashed and restarted. Then the checker: every acknowledged task ended
exactly once and is in its session's results exactly once; each session's stored seqs
run from 1 with no hole or duplicate; no seq under two generations, generations never
go back along seq; what every stream delivered is what the store holds, with no hole.
The failover time of each fault is printed (``-s``) and written to
``artifacts/failover.json``.

``JEPSEN_SEED`` picks another fault schedule.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.cluster.clients import LoadConfig
from tests.cluster.postgres import Postgres
from tests.cluster.scenario import ScenarioConfig, run_scenario

SEED = int(os.environ.get("JEPSEN_SEED", "20261126"))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_three_nodes_over_postgres_lose_nothing_through_kills_pauses_and_a_postgres_crash(
    postgres_server: Postgres, haproxy_bin: str, tmp_path: Path
) -> None:
    cfg = ScenarioConfig(
        seed=SEED,
        nodes=3,
        lease_s=2.5,
        fault_count=4,  # one of each kind, and one more the seed picks
        load=LoadConfig(sessions=9, seconds=70.0),
    )
    report = asyncio.run(run_scenario(cfg, tmp_path, postgres_server))
    path = report.write("failover.json")
    print("\n".join(report.lines()), f"\n[jepsen] report written to {path}")
    assert not report.problems, "\n".join(report.lines())
    assert {f.kind for f in report.faults} == {"kill", "pause", "pg_restart"}
    for fault in report.faults:
        assert fault.first_answer_s is not None and fault.first_write_s is not None, fault
