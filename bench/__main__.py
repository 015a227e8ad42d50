"""``make bench`` / ``make bench-quick``: run every benchmark, print a table, write results.json.

Each benchmark runs in its own process (clean RSS and thread counts) and reports its
figure beside a bare baseline measured in the same run, as a ratio. The PostgreSQL ones
(bench/pg.py, bench/nodes.py) need a server (``$BENCH_PG_DSN``, default
``postgresql://postgres@127.0.0.1:5432/postgres``) and, for forward_share, ``haproxy``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any

from bench.common import ROOT

ORDER = [
    ("bench.http", "poll_rps"),
    ("bench.http", "metrics_cost"),
    ("bench.http", "notify_latency"),
    ("bench.core", "task_throughput"),
    ("bench.core", "fanout"),
    ("bench.core", "fanout_10k"),
    ("bench.core", "sessions"),
    ("bench.core", "durable_completions"),
    # PostgreSQL (BENCH_PG_DSN, default the local server, trust auth) and several nodes.
    ("bench.pg", "pg_durable_completions"),
    ("bench.pg", "pg_round_trips"),
    ("bench.nodes", "failover"),
    ("bench.nodes", "forward_share"),  # needs haproxy (apt-get install -y haproxy)
]


def _busy_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_s() -> float:
    """CPU seconds used by this runner's finished children and their descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return ""
    return out.strip()


def source() -> tuple[str, bool]:
    """The commit measured, and whether greenroom/ differed from it (a shared checkout)."""
    return _git("rev-parse", "--short", "HEAD"), bool(_git("status", "--porcelain", "greenroom"))


def describe(start: tuple[str, bool], end: tuple[str, bool]) -> str:
    """What was measured: a commit, and whether greenroom/ stayed that commit's."""
    text = start[0] or "unknown"
    if start[1] or end[1]:
        text += " with uncommitted changes in greenroom/"
    if end[0] != start[0]:
        changed = _git("diff", "--name-only", start[0], end[0], "--", "greenroom", "bench")
        text += f" (HEAD moved to {end[0]} during the run; greenroom/ and bench/ " + (
            "changed)" if changed else "unchanged)"
        )
    return text


def machine() -> str:
    cores = len(os.sched_getaffinity(0))
    with open("/proc/meminfo") as handle:
        mem_gib = int(handle.readline().split()[1]) / 2**20
    return (
        f"{platform.machine()}, {cores} cores, {mem_gib:.0f} GiB, "
        f"Python {platform.python_version()}, {platform.system()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="smaller runs, under two minutes")
    parser.add_argument("--only", help="comma-separated benchmark names")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    at_start = source()
    print(
        f"greenroom benchmarks ({'quick' if args.quick else 'full'}) on {machine()}, "
        f"commit {describe(at_start, at_start)}",
        flush=True,
    )
    for module, name in ORDER:
        if wanted and name not in wanted:
            continue
        print(f"running {name} …", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", module, name, *(["--quick"] if args.quick else [])]
        wall, busy, ours = time.perf_counter(), _busy_s(), _children_s()
        proc = subprocess.run(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=1800, check=False
        )
        wall = time.perf_counter() - wall
        # Other processes on the machine skew every figure: say how much CPU they took.
        foreign = max(0.0, (_busy_s() - busy) - (_children_s() - ours)) / wall
        if foreign > 0.1:
            print(f"  ! other processes used {foreign:.2f} cores during {name}", file=sys.stderr)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            results.append(
                {
                    "name": name,
                    "value": None,
                    "unit": "",
                    "baseline": None,
                    "ratio": None,
                    "goal": "",
                    "met": False,
                    "notes": f"failed (exit {proc.returncode})",
                    "foreign_cores": round(foreign, 2),
                }
            )
            continue
        results.append({**json.loads(lines[-1]), "foreign_cores": round(foreign, 2)})
    table(results)
    out = ROOT / "bench" / "results.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "commit": describe(at_start, source()),
                "quick": args.quick,
                "date": time.strftime("%Y-%m-%d"),
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {out.relative_to(ROOT)} in {time.perf_counter() - started:.0f} s")
    return 0


def table(results: list[dict[str, Any]]) -> None:
    print(
        f"\n{'benchmark':<24}{'value':>14}  {'unit':<16}{'baseline':>10}{'ratio':>9}  "
        f"{'goal':<46}met"
    )
    for r in results:
        print(
            f"{r['name']!s:<24}{_fmt(r['value']):>14}  {r['unit']!s:<16}"
            f"{_fmt(r['baseline']):>10}{_fmt(r['ratio']):>9}  {r['goal']!s:<46}"
            f"{'yes' if r['met'] else 'NO'}"
        )
    for r in results:
        print(f"  {r['name']}: {r['notes']}")
    print(
        "ratio: greenroom relative to the bare baseline, >= 1 means as good (throughput: "
        "ours / bare; wall time, memory, latency: bare / ours). Other processes' CPU load "
        "during each benchmark, in cores: "
        + ", ".join(f"{r['name']} {r.get('foreign_cores', 0):.2f}" for r in results)
    )


def _fmt(value: object) -> str:
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    sys.exit(main())
