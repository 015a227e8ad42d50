"""``make bench`` / ``make bench-quick``: run every benchmark, print a table, write results.json.

Each benchmark runs in its own process (clean RSS and thread counts) and reports its
figure beside a bare baseline measured in the same run, as a ratio.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

from bench.common import ROOT

ORDER = [
    ("bench.http", "poll_rps"),
    ("bench.http", "notify_latency"),
    ("bench.core", "task_throughput"),
    ("bench.core", "fanout"),
    ("bench.core", "sessions"),
    ("bench.core", "durable_completions"),
]


def machine() -> str:
    cores = len(__import__("os").sched_getaffinity(0))
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
    results, started = [], time.perf_counter()
    print(f"greenroom benchmarks ({'quick' if args.quick else 'full'}) on {machine()}", flush=True)
    for module, name in ORDER:
        if wanted and name not in wanted:
            continue
        print(f"running {name} …", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", module, name, *(["--quick"] if args.quick else [])]
        proc = subprocess.run(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=1800, check=False
        )
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
                }
            )
            continue
        results.append(json.loads(lines[-1]))
    table(results)
    out = ROOT / "bench" / "results.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine(),
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


def table(results: list[dict[str, object]]) -> None:
    print(
        f"\n{'benchmark':<22}{'value':>14}  {'unit':<16}{'baseline':>10}{'ratio':>9}  "
        f"{'goal':<36}met"
    )
    for r in results:
        print(
            f"{r['name']!s:<22}{_fmt(r['value']):>14}  {r['unit']!s:<16}"
            f"{_fmt(r['baseline']):>10}{_fmt(r['ratio']):>9}  {r['goal']!s:<36}"
            f"{'yes' if r['met'] else 'NO'}"
        )
    for r in results:
        print(f"  {r['name']}: {r['notes']}")


def _fmt(value: object) -> str:
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    sys.exit(main())
