"""HTTP benchmarks against a real `greenroom serve` process: poll_rps, notify_latency.

Run one with ``python -m bench.http NAME [--quick]``; it prints one JSON result line.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import aiohttp

from bench.common import Result, free_port, progress, start_process, stop_process


def _serve(tmp: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = start_process(
        [sys.executable, "-m", "greenroom.cli", "serve"],
        {"GREENROOM_DATA_DIR": tmp, "GREENROOM_SERVER__PORT": str(port)},
    )
    return proc, f"http://127.0.0.1:{port}"


async def _session_with_results(base: str, n: int) -> tuple[str, Any]:
    async with aiohttp.ClientSession() as http:
        sid = (await (await http.post(f"{base}/v1/sessions", json={})).json())["id"]
        for i in range(n):
            await http.post(f"{base}/v1/sessions/{sid}/tasks", json={"prompt": f"result {i}"})
        while True:
            page = await (await http.get(f"{base}/v1/sessions/{sid}/results?wait=5")).json()
            if len(page["results"]) == n:
                return sid, page


def _wrk(url: str, seconds: int) -> float:
    out = subprocess.run(
        ["wrk", "-t2", "-c50", f"-d{seconds}s", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match or "Non-2xx" in out:
        raise RuntimeError(f"wrk failed: {out}")
    return float(match.group(1))


def poll_rps(quick: bool) -> Result:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk); make bench installs it")
    seconds = 3 if quick else 10
    tmp = tempfile.mkdtemp()
    proc, base = _serve(tmp)
    try:
        sid, page = asyncio.run(_session_with_results(base, 10))
        progress(f"wrk on greenroom for {seconds} s")
        ours = _wrk(f"{base}/v1/sessions/{sid}/results", seconds)
    finally:
        stop_process(proc)
        shutil.rmtree(tmp)
    port = free_port()
    bare = start_process([sys.executable, "-m", "bench.bare_server", str(port), json.dumps(page)])
    try:
        progress(f"wrk on the bare aiohttp baseline for {seconds} s")
        baseline = _wrk(f"http://127.0.0.1:{port}/v1/sessions/{sid}/results", seconds)
    finally:
        stop_process(bare)
    ratio = ours / baseline
    return Result(
        "poll_rps",
        round(ours),
        "req/s",
        round(baseline),
        round(ratio, 3),
        "ratio >= 0.6",
        ratio >= 0.6,
        "wrk -t2 -c50, GET results (10 results), default config (INFO logs to file)",
    )


async def _latencies(base: str, n: int) -> tuple[list[float], list[float]]:
    poll_ms, sse_ms = [], []
    async with aiohttp.ClientSession() as http:
        sid = (await (await http.post(f"{base}/v1/sessions", json={})).json())["id"]
        after = 0
        stream = await http.get(f"{base}/v1/sessions/{sid}/events")
        for i in range(n):
            poll = asyncio.ensure_future(
                http.get(f"{base}/v1/sessions/{sid}/results?after={after}&wait=10")
            )
            await asyncio.sleep(0.005)  # let the long-poll park before the task exists
            await http.post(f"{base}/v1/sessions/{sid}/tasks", json={"prompt": f"n{i}"})
            page = await (await poll).json()
            poll_ms.append((time.time() - page["results"][0]["finished_at"]) * 1000)
            after = page["next_after"]
            sse_ms.append(await _sse_completion_latency(stream))
            if i % max(1, n // 5) == 0:
                progress(f"{i}/{n} notifications")
        stream.close()
    return poll_ms, sse_ms


async def _sse_completion_latency(stream: aiohttp.ClientResponse) -> float:
    event = ""
    async for raw in stream.content:
        line = raw.decode().strip()
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "task.completed":
            return (time.time() - json.loads(line[6:])["finished_at"]) * 1000
    raise RuntimeError("event stream ended")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def notify_latency(quick: bool) -> Result:
    n = 50 if quick else 300
    tmp = tempfile.mkdtemp()
    proc, base = _serve(tmp)
    try:
        poll_ms, sse_ms = asyncio.run(_latencies(base, n))
    finally:
        stop_process(proc)
        shutil.rmtree(tmp)
    both = poll_ms + sse_ms
    p50, p99 = statistics.median(both), _pct(both, 0.99)
    baseline_ms = 1500.0  # a 3 s interval poller: completions land uniformly in the interval
    return Result(
        "notify_latency",
        round(p50, 3),
        "ms p50",
        baseline_ms,
        round(baseline_ms / p50, 1),
        "p50 <= 5 ms, p99 <= 50 ms",
        p50 <= 5 and p99 <= 50,
        f"{n} completions; long-poll p50 {statistics.median(poll_ms):.2f} / p99 "
        f"{_pct(poll_ms, 0.99):.2f} ms; SSE p50 {statistics.median(sse_ms):.2f} / "
        f"p99 {_pct(sse_ms, 0.99):.2f} ms; p99 overall {p99:.2f} ms; baseline is "
        "the mean wait of a 3 s poller (interval / 2)",
    )


BENCHMARKS = {f.__name__: f for f in (poll_rps, notify_latency)}

if __name__ == "__main__":
    result = BENCHMARKS[sys.argv[1]]("--quick" in sys.argv)
    print(json.dumps(result.to_json()))
