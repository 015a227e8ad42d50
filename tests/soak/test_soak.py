"""Soak: a real `greenroom serve` under a minute of mixed churn leaks nothing.

The scenario and its checks live in ``tests/soak/load.py`` (``make soak`` runs the same
for ten minutes). ``SOAK_SECONDS`` sets the load duration here (default 60).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.soak.load import SoakConfig, run_soak

SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 300)  # load + warm-up + bounded waits; normally ~SECONDS + 20
def test_churn_leaves_no_actor_thread_fd_or_lost_result_behind(tmp_path: Path) -> None:
    cfg = SoakConfig(seconds=SECONDS)
    report = run_soak(cfg, tmp_path)
    print(report.summary())
    failures = report.failures()
    assert not failures, "\n".join([*failures, report.summary()])
    # The load really churned: sessions past the live bound, every kind of task ending.
    assert report.sessions_created > 5 * cfg.max_live_sessions
    assert {"completed", "failed", "cancelled", "timed_out"} <= set(report.task_statuses)
    assert report.tally.sse_resumed > 0
    assert report.tally.sse_aborted > 0
    assert report.tally.bad_requests > 0
