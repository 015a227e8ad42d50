"""The failure harness against what greenroom is today: one SQLite node behind the
shipped HAProxy config (its two other servers absent, so marked down), the same clients,
fault injection and checker as the three-node test, with the faults one node allows:
SIGKILL and restart, SIGSTOP and SIGCONT. Every acknowledged task must end exactly once,
every stream resumed with Last-Event-ID must match the store with no hole."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.cluster.clients import LoadConfig
from tests.cluster.scenario import ScenarioConfig, run_scenario


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_one_sqlite_node_through_haproxy_keeps_every_acknowledged_task_across_kills_and_pauses(
    tmp_path: Path, haproxy_bin: str
) -> None:
    cfg = ScenarioConfig(
        clustered=False,
        nodes=1,
        lease_s=1.5,  # no lease on SQLite: only the length of the pauses (1.5 to 2 x this)
        kinds=("kill", "pause"),
        fault_count=3,
        load=LoadConfig(sessions=4, seconds=25.0),
        settle_s=30.0,
    )
    report = asyncio.run(run_scenario(cfg, tmp_path))
    path = report.write("failover-solo.json")
    print("\n".join(report.lines()), f"\n[jepsen] report written to {path}")
    assert not report.problems, "\n".join(report.lines())
    assert {f.kind for f in report.faults} == {"kill", "pause"}
    assert all(f.first_answer_s is not None for f in report.faults)
