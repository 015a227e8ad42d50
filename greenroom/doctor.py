"""``greenroom doctor``: scan a log for lost work, unread results and slow handlers.

One streaming pass with small per-id state, so a 100 MB log takes seconds. Works on a
log cut off mid-run (the crash case): a garbled last line is counted and skipped.

Problems (exit 1): tasks that started and never ended; completions never delivered to
their session; turns that never finished; actor crashes. Warnings (exit 1 only with
``--strict``): results never read or never acknowledged; slow handlers; error types.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenroom.logread import DEFAULT_LOG, LogStats, clock, read_lines

# A task whose log ends with one of these was handed to the next start on purpose (a
# shutdown keeps queued tasks, and running ones with attempts left): not lost work.
_HANDED_TO_NEXT_START = ("task_interrupted", "task_kept_queued", "task_kept_for_restart")


@dataclass
class Finding:
    kind: str  # stable snake_case
    message: str
    ids: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "ids": self.ids}


@dataclass
class Report:
    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    stats: LogStats = field(default_factory=LogStats)

    def to_json(self) -> dict[str, Any]:
        return {
            "problems": [f.to_json() for f in self.problems],
            "warnings": [f.to_json() for f in self.warnings],
            "lines": self.stats.lines,
            "garbled_lines": self.stats.garbled,
        }


@dataclass
class _Task:
    session_id: str = ""
    last: str = ""  # the latest lifecycle event seen
    at: str = ""
    finished: str | None = None
    recorded_seq: int | None = None


class _Scan:
    def __init__(self, slow_ms: float) -> None:
        self.slow_ms = slow_ms
        self.tasks: dict[str, _Task] = defaultdict(_Task)
        self.turns: dict[str, tuple[str, str]] = {}  # open turn id -> (session, time)
        self.read: dict[str, set[int]] = defaultdict(set)
        self.read_tasks: set[str] = set()  # ended tasks read through GET .../tasks/{tid}
        self.acked: dict[str, int] = defaultdict(int)
        self.crashes: list[Finding] = []
        self.slow: dict[str, list[float]] = defaultdict(list)
        self.errors: Counter[str] = Counter()

    def feed(self, line: dict[str, Any]) -> None:
        event, tid, sid = line.get("event"), line.get("task_id"), line.get("session_id")
        if tid and event in (
            "task_queued",
            "task_started",
            "task_finished",
            "completion_recorded",
            *_HANDED_TO_NEXT_START,
        ):
            self._task_event(str(tid), str(sid or ""), str(event), line)
        elif event == "turn_started":
            self.turns[str(line.get("turn_id"))] = (str(sid), clock(line))
        elif event in ("turn_completed", "turn_failed"):
            self.turns.pop(str(line.get("turn_id")), None)
        elif event == "results_read" and sid:
            self.read[str(sid)].update(int(s) for s in line.get("seqs") or [])
        elif event == "task_read" and tid and line.get("status") not in ("queued", "running"):
            self.read_tasks.add(str(tid))
        elif event == "results_acked" and sid:
            self.acked[str(sid)] = max(self.acked[str(sid)], int(line.get("up_to") or 0))
        elif event == "actor_crashed":
            ids = {k: str(line[k]) for k in ("session_id", "task_id") if line.get(k)}
            self.crashes.append(
                Finding(
                    "actor_crashed",
                    f"{line.get('actor')} actor crashed: "
                    f"{line.get('error_type')}: {line.get('error')}",
                    ids,
                )
            )
        duration = line.get("duration_ms")
        if (
            isinstance(duration, int | float)
            and duration > self.slow_ms
            and not _long_by_design(line)
        ):
            name = f"{line.get('actor')} {line.get('msg') or line.get('path') or event}"
            self.slow[name].append(float(duration))
        failed_task = event == "task_finished"  # failed, timed out, cancelled, interrupted
        if line.get("error_type") and (failed_task or line.get("level") in ("error", "warning")):
            self.errors[str(line["error_type"])] += 1

    def _task_event(self, tid: str, sid: str, event: str, line: dict[str, Any]) -> None:
        task = self.tasks[tid]
        task.session_id = sid or task.session_id
        task.last, task.at = event, clock(line)
        if event == "task_finished":
            task.finished = str(line.get("status"))
        elif event == "completion_recorded":
            task.recorded_seq = int(line.get("seq") or 0)

    def report(self, report: Report) -> Report:
        for tid, task in self.tasks.items():
            ids = {"task_id": tid, "session_id": task.session_id}
            if task.recorded_seq is not None:
                self._result_warnings(tid, task, ids, report)
            elif task.finished is not None:
                report.problems.append(
                    Finding(
                        "completion_not_delivered",
                        f"task {tid} finished ({task.finished}) but its "
                        "session never recorded the completion",
                        ids,
                    )
                )
            elif task.last not in _HANDED_TO_NEXT_START:
                report.problems.append(
                    Finding(
                        "task_never_ended",
                        f"task {tid} {task.last.removeprefix('task_')} and never "
                        f"ended (last seen {task.at})",
                        ids,
                    )
                )
        for turn_id, (sid, at) in self.turns.items():
            report.problems.append(
                Finding(
                    "turn_never_finished",
                    f"turn {turn_id} started at {at} and never finished",
                    {"turn_id": turn_id, "session_id": sid},
                )
            )
        report.problems.extend(self.crashes)
        for name, durations in sorted(self.slow.items()):
            report.warnings.append(
                Finding(
                    "slow_handler",
                    f"{name}: {len(durations)} over "
                    f"{self.slow_ms:g} ms, max {max(durations):.1f} ms",
                )
            )
        for error_type, count in self.errors.most_common():
            report.warnings.append(Finding("errors", f"{error_type}: {count} time(s)"))
        return report

    def _result_warnings(self, tid: str, task: _Task, ids: dict[str, str], report: Report) -> None:
        seq = task.recorded_seq or 0
        if seq <= self.acked[task.session_id]:
            return
        if seq not in self.read[task.session_id] and tid not in self.read_tasks:
            report.warnings.append(
                Finding(
                    "result_never_read", f"result of task {tid} (seq {seq}) was never read", ids
                )
            )
        else:
            report.warnings.append(
                Finding(
                    "result_never_acknowledged",
                    f"result of task {tid} (seq {seq}) was read but never acknowledged",
                    ids,
                )
            )


def _long_by_design(line: dict[str, Any]) -> bool:
    """Durations that are long on purpose: a task's or a turn's run, an event stream, a
    long-poll (a handler waiting for its answer is not slow)."""
    if line.get("event") in ("task_finished", "turn_completed", "turn_failed"):
        return True
    return bool(line.get("stream") or line.get("wait_s"))


def diagnose(
    lines: Iterable[dict[str, Any]], slow_ms: float = 1000.0, stats: LogStats | None = None
) -> Report:
    """Scan log lines (in file order) and report problems and warnings."""
    scan = _Scan(slow_ms)
    for line in lines:
        scan.feed(line)
    return scan.report(Report(stats=stats or LogStats()))


def doctor_main(argv: list[str] | None = None) -> int:
    """``greenroom doctor``: 0 healthy, 1 problems (or warnings with --strict), 2 no log."""
    parser = argparse.ArgumentParser(prog="greenroom doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--log", default=DEFAULT_LOG, help=f"log file (default {DEFAULT_LOG})")
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.add_argument(
        "--slow-ms",
        type=float,
        default=1000.0,
        help="handlers slower than this are reported (default 1000)",
    )
    args = parser.parse_args(argv)
    path = Path(args.log)
    if not path.exists():
        print(f"greenroom doctor: no log file at {path}", file=sys.stderr)
        return 2
    stats = LogStats()
    report = diagnose(read_lines(path, stats), args.slow_ms, stats)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _print(report, path)
    if report.problems or (args.strict and report.warnings):
        return 1
    return 0


def _print(report: Report, path: Path) -> None:
    print(
        f"greenroom doctor: {path} ({report.stats.lines} lines, {report.stats.garbled} unreadable)"
    )
    for title, findings in (("problems", report.problems), ("warnings", report.warnings)):
        print(f"\n{len(findings)} {title}")
        for finding in findings:
            print(f"  [{finding.kind}] {finding.message}")
    if not report.problems and not report.warnings:
        print("\nall tasks ended and every result was read and acknowledged")
