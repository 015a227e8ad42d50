"""``greenroom trace ID``: everything a request, session or task id touched, in order.

Two passes over the log. The first finds what the id leads to: a request's sessions
and tasks, a task's request and completion seq. The second prints those lines in time
order, indented by cause (request → session → task → completion → reads), with the
time between steps and a one-line verdict.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from greenroom.logread import DEFAULT_LOG, ID_FIELDS, clock, read_lines, timestamp

_SKIP_KEYS = {"event", "ts", "level", "actor", *ID_FIELDS}


@dataclass
class Trace:
    ident: str
    kind: str  # "request" | "session" | "task" | "turn"
    steps: list[dict[str, Any]] = field(default_factory=list)
    verdict: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.ident, "kind": self.kind, "steps": self.steps, "verdict": self.verdict}


@dataclass
class _Related:
    requests: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)
    seqs: dict[str, set[int]] = field(default_factory=dict)  # session -> completion seqs


def _kind(ident: str, lines: Iterable[dict[str, Any]]) -> str:
    prefixes = {"ses_": "session", "tsk_": "task", "turn_": "turn"}
    for prefix, kind in prefixes.items():
        if ident.startswith(prefix):
            return kind
    return "request"


def _related(ident: str, kind: str, lines: Iterable[dict[str, Any]]) -> _Related:
    rel = _Related()
    getattr(
        rel, {"request": "requests", "session": "sessions", "task": "tasks", "turn": "tasks"}[kind]
    ).add(ident)
    for line in lines:
        rid, sid, tid = line.get("request_id"), line.get("session_id"), line.get("task_id")
        if kind == "request" and rid == ident:
            rel.tasks.update([tid] if tid else [])
        if tid in rel.tasks or line.get("turn_id") == ident:
            if rid and line.get("event") == "task_queued":
                rel.requests.add(rid)
            if line.get("event") == "completion_recorded" and sid:
                rel.seqs.setdefault(sid, set()).add(int(line.get("seq") or 0))
        if kind == "session" and sid == ident and rid:
            rel.requests.add(rid)
    return rel


def _depth(line: dict[str, Any]) -> int:
    event = line.get("event")
    if event in ("results_read", "results_acked", "task_read"):
        return 4
    if event == "completion_recorded":
        return 3
    if line.get("task_id") or line.get("turn_id"):
        return 2
    return 0 if line.get("actor") == "http" else 1


def _matches(line: dict[str, Any], ident: str, kind: str, rel: _Related) -> bool:
    if ident in (line.get(f) for f in ID_FIELDS):
        return True
    if line.get("request_id") in rel.requests and line.get("actor") == "http":
        return True
    if line.get("task_id") in rel.tasks:
        return True
    sid = line.get("session_id")
    seqs = rel.seqs.get(str(sid), set())
    if line.get("event") == "results_read" and seqs & set(line.get("seqs") or []):
        return True
    return bool(
        line.get("event") == "results_acked" and seqs and int(line.get("up_to") or 0) >= min(seqs)
    )


def build_trace(lines: list[dict[str, Any]], ident: str) -> Trace:
    """The story of ``ident`` from already-read log lines."""
    kind = _kind(ident, lines)
    rel = _related(ident, kind, lines)
    chosen = [ln for ln in lines if _matches(ln, ident, kind, rel)]
    chosen.sort(key=timestamp)
    trace = Trace(ident, kind)
    previous = None
    for line in chosen:
        now = timestamp(line)
        delta_ms = 0.0 if previous is None else (now - previous) * 1000
        previous = now
        details = {k: v for k, v in line.items() if k not in _SKIP_KEYS}
        trace.steps.append(
            {
                "ts": line.get("ts"),
                "delta_ms": round(delta_ms, 3),
                "depth": _depth(line),
                "event": line.get("event"),
                "actor": line.get("actor"),
                "ids": {f: line[f] for f in ID_FIELDS if line.get(f)},
                "details": details,
                "clock": clock(line),
            }
        )
    trace.verdict = _verdict(trace, chosen, rel)
    return trace


def _verdict(trace: Trace, lines: list[dict[str, Any]], rel: _Related) -> str:
    if not lines:
        return f"{trace.kind} {trace.ident}: not found in the log"
    events = [ln.get("event") for ln in lines]
    reads = events.count("results_read")
    acked = "acknowledged" if "results_acked" in events else "not acknowledged"
    if trace.kind in ("task", "request") and rel.tasks:
        done = [ln for ln in lines if ln.get("event") == "completion_recorded"]
        started = [ln for ln in lines if ln.get("event") in ("task_queued", "task_started")]
        if done:
            took = timestamp(done[-1]) - timestamp(started[0]) if started else 0.0
            tasks = len(done)
            what = f"task {done[0].get('task_id')}" if tasks == 1 else f"{tasks} tasks"
            return (
                f"{what} {done[-1].get('status')} in {took:.3f} s, result read {reads} "
                f"time(s), {acked}"
            )
        last = lines[-1]
        return (
            f"task(s) {', '.join(sorted(rel.tasks))} started and never ended "
            f"(last seen {clock(last)}: {last.get('event')})"
        )
    if trace.kind == "request":
        finished = [ln for ln in lines if ln.get("event") == "request_finished"]
        if finished:
            return (
                f"request {trace.ident} finished {finished[-1].get('status')} in "
                f"{finished[-1].get('duration_ms')} ms"
            )
        return f"request {trace.ident} never finished"
    recorded = events.count("completion_recorded")
    return (
        f"{trace.kind} {trace.ident}: {len(lines)} events, {recorded} completion(s) "
        f"recorded, {reads} result read(s), {acked}"
    )


def _render(trace: Trace) -> str:
    out = [f"trace of {trace.kind} {trace.ident}"]
    for step in trace.steps:
        details = " ".join(f"{k}={v}" for k, v in step["details"].items())
        ids = " ".join(f"{k}={v}" for k, v in step["ids"].items() if v != trace.ident)
        indent = "  " * step["depth"]
        out.append(
            f"{step['clock']}  +{step['delta_ms']:>9.1f} ms  {indent}{step['event']}"
            f"  {ids} {details}".rstrip()
        )
    out.append(f"verdict: {trace.verdict}")
    return "\n".join(out)


def trace_main(argv: list[str] | None = None) -> int:
    """``greenroom trace ID``: 0 when found, 2 when the id or the log is missing."""
    parser = argparse.ArgumentParser(prog="greenroom trace", description=__doc__.splitlines()[0])
    parser.add_argument("id", help="a request id (X-Request-ID), session id or task id")
    parser.add_argument("--log", default=DEFAULT_LOG, help=f"log file (default {DEFAULT_LOG})")
    parser.add_argument("--json", action="store_true", help="print JSON for tools")
    args = parser.parse_args(argv)
    path = Path(args.log)
    if not path.exists():
        print(f"greenroom trace: no log file at {path}", file=sys.stderr)
        return 2
    trace = build_trace(list(read_lines(path)), args.id)
    if not trace.steps:
        print(f"greenroom trace: {args.id} appears nowhere in {path}", file=sys.stderr)
        return 2
    print(json.dumps(trace.to_json(), indent=2) if args.json else _render(trace))
    return 0
