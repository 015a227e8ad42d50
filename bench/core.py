"""In-process benchmarks: task throughput, fan-out, sessions, durable completions.

Run one with ``python -m bench.core NAME [--quick]``; it prints one JSON result line.
Every ratio reads the same way: greenroom's figure relative to the bare baseline's,
oriented so that >= 1 means "as good as the baseline" (throughput: ours / bare; wall
time, memory: bare / ours).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from bench import bare_sqlite
from bench.common import ROOT, Result, ThreadSampler, peak_rss_mib, progress, rss_mib
from greenroom import Orchestrator
from greenroom.store.sqlite import MIGRATIONS

T = TypeVar("T")


async def instant(history: Any) -> str:
    return "done"


def _in_tmp(make: Callable[[str], Coroutine[Any, Any, T]]) -> T:
    """Run ``make(tmp_dir)`` on a fresh loop in a fresh temporary data dir."""
    tmp = tempfile.mkdtemp(prefix="greenroom-bench-")
    try:
        return asyncio.run(make(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _config(data_dir: str, store: str, **limits: Any) -> dict[str, Any]:
    return {
        "data_dir": data_dir,
        "store": {"kind": store},
        "logging": {"level": "warning"},
        "limits": {"max_queued_tasks": 1_000_000, **limits},
    }


# --- task_throughput and durable_completions ------------------------------------------


async def _run_tasks(
    n: int,
    store: str,
    data_dir: str,
    sessions: int = 100,
    overrides: dict[str, Any] | None = None,
) -> tuple[float, int | None]:
    """Start n instant tasks over some sessions, all at once; seconds until every
    completion is recorded, and the store's committed batches (SQLite, PostgreSQL).
    ``overrides``: more top-level config tables (a ``store`` one merges into the store's)."""
    config = _config(data_dir, store)
    more = dict(overrides or {})
    config["store"].update(more.pop("store", {}))
    async with Orchestrator({**config, **more}) as orch:
        orch.register_agent("instant", instant)
        handles = [await orch.create_session(agent="instant") for _ in range(sessions)]
        batches_before = getattr(orch.runtime.store, "batches", None)
        started = time.perf_counter()
        tasks = await asyncio.gather(*(handles[i % sessions].start_task(f"t{i}") for i in range(n)))
        progress(f"{n} tasks started in {time.perf_counter() - started:.2f} s")
        done = await asyncio.gather(*(t.wait(timeout=600) for t in tasks))
        elapsed = time.perf_counter() - started
        batches_after = getattr(orch.runtime.store, "batches", None)
    assert len(done) == n and all(d.status.value == "completed" for d in done)
    batches = None if batches_before is None else batches_after - batches_before
    return elapsed, batches


class _Tracker:
    """The in-memory tracker such UIs keep: a dict of results behind a lock."""

    def __init__(self) -> None:
        self.results: dict[int, str] = {}
        self.lock = threading.Lock()

    def job(self, i: int) -> None:
        with self.lock:
            self.results[i] = "done"


def _thread_per_task(n: int) -> float:
    """How web UIs run background jobs today: a bare thread per job, a dict and a lock."""
    tracker = _Tracker()
    started = time.perf_counter()
    workers = [threading.Thread(target=tracker.job, args=(i,)) for i in range(n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(tracker.results) == n
    return time.perf_counter() - started


def _thread_pool(n: int) -> float:
    """The same tracker fed by a ThreadPoolExecutor (for information)."""
    tracker = _Tracker()
    started = time.perf_counter()
    with ThreadPoolExecutor(64) as pool:
        list(pool.map(tracker.job, range(n)))
    assert len(tracker.results) == n
    return time.perf_counter() - started


def _runs(values: list[float]) -> str:
    return "/".join(f"{v:.0f}" for v in values)


def task_throughput(quick: bool) -> Result:
    n, reps = (2_000, 1) if quick else (10_000, 3)
    ours_runs: list[float] = []
    bare_runs: list[float] = []
    for rep in range(reps):  # interleaved, so a burst of other load hits both
        progress(f"run {rep + 1}/{reps}")
        elapsed, _ = _in_tmp(lambda tmp: _run_tasks(n, "memory", tmp))
        ours_runs.append(n / elapsed)
        bare_runs.append(n / _thread_per_task(n))
    pool = n / _thread_pool(n)
    ours, bare = max(ours_runs), max(bare_runs)
    ratio = ours / bare
    return Result(
        "task_throughput",
        round(ours),
        "tasks/s",
        round(bare),
        round(ratio, 3),
        "ratio >= 1.0",
        ratio >= 1.0,
        f"{n} instant tasks over 100 sessions, memory store, all started at once, each "
        f"awaited with Task.wait; best of {reps} interleaved runs (greenroom "
        f"{_runs(ours_runs)}/s; baseline {_runs(bare_runs)}/s); baseline: a thread per "
        f"task + dict + lock; ThreadPoolExecutor(64): {round(pool)}/s (ratio "
        f"{ours / pool:.3f})",
    )


def _bare_completions(n: int) -> tuple[float, int]:
    async def run(tmp: str) -> tuple[float, int]:
        path = Path(tmp) / "bare.db"
        bare_sqlite.create_schema(path, MIGRATIONS)
        return await bare_sqlite.completions(n, path)

    return _in_tmp(run)


def durable_completions(quick: bool) -> Result:
    n, reps = (1_000, 1) if quick else (5_000, 3)
    ours_runs: list[float] = []
    bare_runs: list[float] = []
    commits: list[int] = []
    bare_commits: list[int] = []
    for rep in range(reps):  # interleaved, so a burst of other load hits both
        progress(f"run {rep + 1}/{reps}")
        elapsed, batches = _in_tmp(lambda tmp: _run_tasks(n, "sqlite", tmp))
        ours_runs.append(n / elapsed)
        commits.append(batches or 0)
        bare_elapsed, bare_batches = _bare_completions(n)
        bare_runs.append(n / bare_elapsed)
        bare_commits.append(bare_batches)
    best, bare_best = ours_runs.index(max(ours_runs)), bare_runs.index(max(bare_runs))
    durable, bare = ours_runs[best], bare_runs[bare_best]
    ratio = durable / bare
    return Result(
        "durable_completions",
        round(durable),
        "completions/s",
        round(bare),
        round(ratio, 3),
        "ratio >= 0.5",
        ratio >= 0.5,
        f"{n} instant tasks over 100 sessions, SQLite store, {3 * n} writes in "
        f"{commits[best]} commits; best of {reps} interleaved runs (greenroom "
        f"{_runs(ours_runs)}/s; baseline {_runs(bare_runs)}/s); baseline: bare sqlite3, "
        f"same schema and rows (3 writes per task, each queued once the previous one is "
        f"durable), WAL + synchronous=NORMAL, one writer thread, one transaction per "
        f"batch of queued writes: {bare_commits[bare_best]} commits",
    )


# --- fanout ---------------------------------------------------------------------------


async def _two_seconds(history: Any) -> str:
    await asyncio.sleep(2.0)
    return "done"


async def _fanout(n: int, tmp: str) -> float:
    async with Orchestrator(_config(tmp, "memory", max_running_tasks=n)) as orch:
        orch.register_agent("slow", _two_seconds)
        session = await orch.create_session(agent="slow")
        started = time.perf_counter()
        tasks = await asyncio.gather(*(session.start_task(f"t{i}") for i in range(n)))
        progress(f"{n} tasks started in {time.perf_counter() - started:.2f} s")
        done = await asyncio.gather(*(t.wait(timeout=120) for t in tasks))
        elapsed = time.perf_counter() - started
    assert all(d.status.value == "completed" for d in done)
    return elapsed


async def _bare_fanout(n: int) -> float:
    """The floor: n coroutines sleeping 2 s under a bare asyncio.gather."""
    started = time.perf_counter()
    await asyncio.gather(*(_two_seconds([]) for _ in range(n)))
    return time.perf_counter() - started


def _fanout_result(name: str, n: int, max_wall: float, resources: bool, reps: int) -> Result:
    walls: list[float] = []
    with ThreadSampler() as sampler:
        for rep in range(reps):
            progress(f"run {rep + 1}/{reps}")
            walls.append(_in_tmp(lambda tmp: _fanout(n, tmp)))
    peak = peak_rss_mib()  # before the baseline runs in this process
    bare = min(asyncio.run(_bare_fanout(n)) for _ in range(reps))
    wall = min(walls)
    met = wall <= max_wall
    goal = f"wall <= {max_wall} s"
    if resources:
        met = met and peak <= 300 and sampler.peak <= 64
        goal += ", RSS <= 300 MiB, <= 64 threads"
    return Result(
        name,
        round(wall, 3),
        "s wall",
        round(bare, 3),
        round(bare / wall, 3),
        goal,
        met,
        f"{n} concurrent 2 s tasks in one session, memory store, max_running_tasks {n}, "
        f"each awaited with Task.wait; best of {reps} runs ({'/'.join(f'{w:.2f}' for w in walls)}"
        f" s); peak RSS {peak:.0f} MiB; peak {sampler.peak} OS threads ({sampler.samples} "
        f"samples, every 5 ms); baseline: bare asyncio.gather of {n} 2 s sleeps, best of {reps}",
    )


def fanout(quick: bool) -> Result:
    n, reps = (500, 1) if quick else (2_000, 3)
    return _fanout_result("fanout", n, 2.5, resources=False, reps=reps)


def fanout_10k(quick: bool) -> Result:
    return _fanout_result("fanout_10k", 10_000, 4.0, resources=True, reps=1 if quick else 3)


# --- sessions -------------------------------------------------------------------------


async def _sessions(n: int, max_live: int, tmp: str) -> tuple[float, int]:
    most_live = 0
    async with Orchestrator(_config(tmp, "sqlite", max_live_sessions=max_live)) as orch:
        started = time.perf_counter()
        batch = 500
        for i in range(0, n, batch):
            made = await asyncio.gather(*(orch.create_session() for _ in range(batch)))
            await asyncio.gather(*(s.info() for s in made))
            most_live = max(most_live, (await orch.stats())["live_sessions"])
            if i % (n // 10) == 0:
                progress(f"{i + batch}/{n} sessions, {rss_mib():.0f} MiB, {most_live} live")
        elapsed = time.perf_counter() - started
    return elapsed, most_live


def _bare_sessions(n: int, max_live: int) -> dict[str, Any]:
    """The baseline in a process of its own, so its RSS and threads are its own."""
    tmp = tempfile.mkdtemp(prefix="greenroom-bench-")
    try:
        path = Path(tmp) / "bare.db"
        bare_sqlite.create_schema(path, MIGRATIONS)
        out = subprocess.run(
            [sys.executable, "-m", "bench.bare_sqlite", "sessions", str(n), str(max_live), path],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        ).stdout
        result: dict[str, Any] = json.loads(out.splitlines()[-1])
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sessions(quick: bool) -> Result:
    n, max_live = (10_000, 1_000) if quick else (100_000, 10_000)
    with ThreadSampler() as sampler:
        elapsed, most_live = _in_tmp(lambda tmp: _sessions(n, max_live, tmp))
    peak = peak_rss_mib()
    progress("bare baseline")
    bare = _bare_sessions(n, max_live)
    met = peak <= 1024 and sampler.peak <= 64
    return Result(
        "sessions",
        round(peak),
        "MiB peak RSS",
        round(bare["peak_rss_mib"]),
        round(bare["peak_rss_mib"] / peak, 3),
        "RSS <= 1 GiB, <= 64 threads",
        met,
        f"{n} sessions created (500 at a time) and read once in {elapsed:.1f} s "
        f"({n / elapsed:.0f}/s), SQLite store, max_live_sessions {max_live} (at most "
        f"{most_live} live seen); peak {sampler.peak} OS threads; baseline: bare asyncio + "
        f"sqlite3 group commit, the same session rows, an LRU dict of {max_live} live "
        f"sessions, {bare['threads']} threads, {n / bare['seconds']:.0f} sessions/s",
    )


BENCHMARKS = {
    f.__name__: f for f in (task_throughput, fanout, fanout_10k, sessions, durable_completions)
}

if __name__ == "__main__":
    result = BENCHMARKS[sys.argv[1]]("--quick" in sys.argv)
    print(json.dumps(result.to_json()))
