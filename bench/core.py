"""In-process benchmarks: task throughput, fan-out, sessions, durable completions.

Run one with ``python -m bench.core NAME [--quick]``; it prints one JSON result line.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from bench.common import Result, peak_rss_mib, progress, rss_mib, threads
from greenroom import Orchestrator

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


async def _run_tasks(n: int, store: str, data_dir: str, sessions: int = 100) -> float:
    """Start n instant tasks over some sessions; seconds until every completion is recorded."""
    async with Orchestrator(_config(data_dir, store)) as orch:
        orch.register_agent("instant", instant)
        handles = [await orch.create_session(agent="instant") for _ in range(sessions)]
        started = time.perf_counter()
        per = n // sessions
        tasks = []
        for i in range(per):
            tasks += await asyncio.gather(*(s.start_task(f"t{i}") for s in handles))
            if i % max(1, per // 5) == 0:
                progress(f"{len(tasks)}/{n} tasks started")
        done = await asyncio.gather(*(t.wait(timeout=600) for t in tasks))
        elapsed = time.perf_counter() - started
    assert len(done) == n and all(d.status.value == "completed" for d in done)
    return elapsed


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


def task_throughput(quick: bool) -> Result:
    n = 2_000 if quick else 10_000
    ours = n / _in_tmp(lambda tmp: _run_tasks(n, "memory", tmp))
    bare = n / _thread_per_task(n)
    pool = n / _thread_pool(n)
    ratio = ours / bare
    return Result(
        "task_throughput",
        round(ours),
        "tasks/s",
        round(bare),
        round(ratio, 3),
        "ratio >= 0.5",
        ratio >= 0.5,
        f"{n} tasks; thread-per-task baseline; ThreadPoolExecutor: {round(pool)}/s "
        f"(ratio {ours / pool:.3f})",
    )


def durable_completions(quick: bool) -> Result:
    n = 1_000 if quick else 5_000
    durable = n / _in_tmp(lambda tmp: _run_tasks(n, "sqlite", tmp))
    memory = n / _in_tmp(lambda tmp: _run_tasks(n, "memory", tmp))
    ratio = durable / memory
    return Result(
        "durable_completions",
        round(durable),
        "completions/s",
        round(memory),
        round(ratio, 3),
        "ratio >= 0.5",
        ratio >= 0.5,
        f"{n} tasks, SQLite WAL synchronous=NORMAL vs the memory store",
    )


async def _sample_threads(peak: list[int], stop: asyncio.Event) -> None:
    """Record the highest thread count seen, every few milliseconds."""
    while not stop.is_set():
        peak[0] = max(peak[0], threads())
        await asyncio.sleep(0.005)


async def _fanout(n: int, tmp: str) -> tuple[float, int]:
    async def two_seconds(history: Any) -> str:
        await asyncio.sleep(2.0)
        return "done"

    peak, stop = [0], asyncio.Event()
    sampler = asyncio.create_task(_sample_threads(peak, stop))
    async with Orchestrator(_config(tmp, "memory", max_running_tasks=n)) as orch:
        orch.register_agent("slow", two_seconds)
        session = await orch.create_session(agent="slow")
        started = time.perf_counter()
        tasks = await asyncio.gather(*(session.start_task(f"t{i}") for i in range(n)))
        progress(f"{n} tasks started in {time.perf_counter() - started:.2f} s")
        done = await asyncio.gather(*(t.wait(timeout=120) for t in tasks))
        elapsed = time.perf_counter() - started
    stop.set()
    await sampler
    assert all(d.status.value == "completed" for d in done)
    return elapsed, peak[0]


def fanout(quick: bool) -> Result:
    n = 500 if quick else 2_000
    wall, peak_threads = _in_tmp(lambda tmp: _fanout(n, tmp))
    peak = peak_rss_mib()
    met = wall <= 2.5 and peak <= 300
    return Result(
        "fanout",
        round(wall, 3),
        "s",
        2.0,
        round(2.0 / wall, 3),
        "wall <= 2.5 s, peak RSS <= 300 MiB",
        met,
        f"{n} concurrent 2 s tasks; peak RSS {peak:.0f} MiB; {peak_threads} threads",
    )


async def _sessions(n: int, tmp: str) -> tuple[float, int]:
    peak, stop = [0], asyncio.Event()
    sampler = asyncio.create_task(_sample_threads(peak, stop))
    async with Orchestrator(_config(tmp, "sqlite")) as orch:
        started = time.perf_counter()
        batch = 500
        for i in range(0, n, batch):
            made = await asyncio.gather(*(orch.create_session() for _ in range(batch)))
            await asyncio.gather(*(s.info() for s in made))
            if i % (n // 10) == 0:
                progress(f"{i + batch}/{n} sessions, {rss_mib():.0f} MiB, {peak[0]} threads")
        elapsed = time.perf_counter() - started
    stop.set()
    await sampler
    return elapsed, peak[0]


def sessions(quick: bool) -> Result:
    n = 10_000 if quick else 100_000
    elapsed, peak_threads = _in_tmp(lambda tmp: _sessions(n, tmp))
    peak = peak_rss_mib()
    met = peak <= 1024 and peak_threads <= 300
    return Result(
        "sessions",
        round(peak),
        "MiB peak RSS",
        None,
        None,
        "RSS <= 1 GiB, <= 300 threads",
        met,
        f"{n} sessions created and touched once in {elapsed:.1f} s "
        f"({n / elapsed:.0f}/s), SQLite store, max_live_sessions 256; "
        f"peak {peak_threads} threads",
    )


BENCHMARKS = {f.__name__: f for f in (task_throughput, fanout, sessions, durable_completions)}

if __name__ == "__main__":
    result = BENCHMARKS[sys.argv[1]]("--quick" in sys.argv)
    print(json.dumps(result.to_json()))
