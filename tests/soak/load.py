"""Soak load for a real ``greenroom serve``: mixed HTTP churn, then a leak check.

Two ways in, one scenario:

* ``tests/soak/test_soak.py`` (in ``make test``): about 60 s of load, then asserts.
* ``make soak`` = ``python -m tests.soak.load --seconds 600``: the same for ten minutes,
  a trajectory line every ~10 s and a summary; exit status 1 when a check fails.

The scenario: ``greenroom serve`` on a free loopback port, a temporary data dir (SQLite
store), a small live-session bound and short idle, heartbeat and read-pool times. A short
warm-up, then wait (on ``/v1/stats``, with a deadline) until the server is quiet and take
the baseline: threads, open fds, RSS. Then a few aiohttp clients run the mixed load:
sessions created past the live bound, fast, slow, failing, timing-out and cancelled
tasks, long-polls, acks, SSE streams dropped abruptly and resumed with ``Last-Event-ID``,
malformed requests, and 30 % of requests naming sessions that do not exist. Afterwards:
wait until every task ended; every accepted task must be in its session's results
exactly once; close every client; wait until no session or task actor is alive and
threads and fds are back to the baseline; SIGTERM; the process must exit 0.

Every wait is on a condition with a deadline; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out", "interrupted"})
MIB = 1024.0


@dataclass(frozen=True)
class SoakConfig:
    """The knobs of one soak run. The defaults are the ``make test`` run."""

    seconds: float = 60.0  # the mixed load
    warmup_s: float = 4.0  # load before the baseline, so lazy pools exist in both
    clients: int = 3  # aiohttp.ClientSession instances
    workers: int = 4  # concurrent request loops per client
    sample_s: float = 10.0  # trajectory period
    seed: int = 20261126
    fake_share: float = 0.3  # requests naming a session that does not exist
    pool: int = 10  # sessions in play at once (older ones are left to be swept)
    max_sse: int = 4  # SSE streams open at once
    # server settings
    max_live_sessions: int = 3
    session_idle_s: float = 1.0
    heartbeat_s: float = 1.0
    read_pool_size: int = 2
    read_idle_s: float = 1.0
    slow_delay_s: float = 0.8
    log_max_bytes: int = 4 * 1024 * 1024  # small, so the long run rotates its log
    # checks
    settle_s: float = 90.0  # deadline of each wait for the server to be quiet
    thread_margin: int = 2
    fd_margin: int = 4
    rss_margin_mib: float = 32.0  # end RSS <= baseline RSS + this
    # runs of at least level_off_min_s must show RSS levelling off over the load: peak of
    # its second half within level_growth_mib of the first half's, slope within this
    level_off_min_s: float = 300.0
    level_growth_mib: float = 4.0
    level_slope_mib_min: float = 0.5

    @property
    def max_ops_per_worker(self) -> int:
        """A hard bound on each request loop besides its deadline."""
        return int(self.seconds * 500) + 1000


# --- the server process ---------------------------------------------------------------


@dataclass(frozen=True)
class Metrics:
    """What /proc says about a process."""

    rss_kib: int
    threads: int
    fds: int
    fd_kinds: Counter[str]

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / MIB


def proc_metrics(pid: int) -> Metrics:
    """RSS and thread count from /proc/PID/status, open fds from /proc/PID/fd."""
    status = Path(f"/proc/{pid}/status").read_text()
    values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    kinds: Counter[str] = Counter()
    fd_dir = Path(f"/proc/{pid}/fd")
    for entry in fd_dir.iterdir():
        with contextlib.suppress(OSError):  # an fd closed while we looked
            kinds[_fd_kind(os.readlink(entry))] += 1
    return Metrics(
        rss_kib=int(values["VmRSS"].split()[0]),
        threads=int(values["Threads"]),
        fds=sum(kinds.values()),
        fd_kinds=kinds,
    )


def _fd_kind(target: str) -> str:
    if target.startswith(("socket:", "pipe:")):
        return target.split(":", 1)[0]
    if target.startswith("anon_inode:"):
        return target
    for suffix in ("-wal", "-shm", ".db", ".log", ".lock"):
        if target.endswith(suffix):
            return "file" + suffix
    return "file"


class Server:
    """``greenroom serve`` in a subprocess, configured by a TOML file in ``workdir``."""

    def __init__(self, workdir: Path, cfg: SoakConfig) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.cfg = cfg
        self.proc: subprocess.Popen[str] | None = None
        self.base = ""

    def config_toml(self) -> str:
        c = self.cfg
        return f"""
data_dir = "{self.data_dir}"
[server]
host = "127.0.0.1"
port = 0
max_wait_s = 5.0
shutdown_grace_s = 1.0
heartbeat_s = {c.heartbeat_s}
[store]
kind = "sqlite"
read_pool_size = {c.read_pool_size}
read_idle_s = {c.read_idle_s}
[logging]
level = "info"
format = "json"
max_bytes = {c.log_max_bytes}
backup_count = 2
[limits]
max_live_sessions = {c.max_live_sessions}
session_idle_s = {c.session_idle_s}
max_running_tasks = 16
max_queued_tasks = 200
task_timeout_s = 10.0
[agents.slow]
kind = "echo"
delay_s = {c.slow_delay_s}
[agents.forever]
kind = "python"
target = "tests.actors.agents:forever"
[agents.boom]
kind = "python"
target = "tests.actors.agents:boom"
"""

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "soak.toml"
        config.write_text(self.config_toml())
        env = {k: v for k, v in os.environ.items() if not k.startswith("GREENROOM_")}
        with (self.workdir / "stderr.log").open("w") as stderr:  # the child keeps its copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "greenroom.cli", "serve", "--config", str(config)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        assert self.proc.stdout is not None
        # The one line the server prints: "greenroom serving on http://127.0.0.1:PORT".
        # readline blocks until it comes or the process dies (EOF); nothing else is running.
        line = self.proc.stdout.readline()
        if "serving on" not in line:
            self.kill()
            raise RuntimeError(f"greenroom serve did not start: {line!r}\n{self.stderr_tail()}")
        self.base = line.rsplit(" ", 1)[-1].strip()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def metrics(self) -> Metrics:
        return proc_metrics(self.pid)

    def terminate(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then the exit status (None when it did not exit in time: killed)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def stderr_tail(self, lines: int = 20) -> str:
        path = self.workdir / "stderr.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def log_errors(self) -> list[dict[str, Any]]:
        """Every error-level line of the server's log files (rotated ones included)."""
        found: list[dict[str, Any]] = []
        for path in sorted(self.data_dir.glob("greenroom.log*")):
            with path.open(errors="replace") as handle:
                for line in handle:
                    if '"error"' not in line:
                        continue
                    with contextlib.suppress(ValueError):
                        record = json.loads(line)
                        if record.get("level") in ("error", "critical"):
                            found.append(record)
        return found


# --- tallies --------------------------------------------------------------------------


@dataclass
class Tally:
    """Everything the clients saw."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_op: Counter[str] = field(default_factory=Counter)
    five_xx: list[str] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    anomaly_count: int = 0
    client_errors: Counter[str] = field(default_factory=Counter)
    client_error_examples: list[str] = field(default_factory=list)
    fake_requests: int = 0
    fake_404: int = 0
    bad_requests: int = 0
    rejected_429: int = 0
    sse_streams: int = 0
    sse_resumed: int = 0
    sse_events: int = 0
    sse_aborted: int = 0
    idempotent_replays: int = 0
    cancels: int = 0
    acks: int = 0

    @property
    def load_requests(self) -> int:
        """Requests of the load itself (warm-up bursts and final verification left out)."""
        return self.requests - self.by_op["verify"] - self.by_op["warmup"]

    @property
    def fake_share(self) -> float:
        return self.fake_requests / self.load_requests if self.load_requests else 0.0

    def anomaly(self, text: str) -> None:
        self.anomaly_count += 1
        if len(self.anomalies) < 50:
            self.anomalies.append(text)


@dataclass
class Sample:
    """One trajectory point."""

    t: float
    phase: str
    rss_mib: float
    threads: int
    fds: int
    sessions: int
    tasks: int
    live_sessions: int
    requests: int
    five_xx: int

    def line(self) -> str:
        return (
            f"[soak] t={self.t:6.0f}s {self.phase:<7} rss={self.rss_mib:7.1f} MiB "
            f"threads={self.threads:3d} fds={self.fds:4d} "
            f"actors(session={self.sessions:3d} task={self.tasks:3d}) "
            f"requests={self.requests:7d} 5xx={self.five_xx}"
        )


@dataclass
class Report:
    """The figures of one run and what its checks found."""

    cfg: SoakConfig
    cold: Metrics | None = None
    baseline: Metrics | None = None
    end: Metrics | None = None
    end_stats: dict[str, Any] = field(default_factory=dict)
    quiet_at_end: bool = False
    quiet_detail: str = ""
    samples: list[Sample] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    sessions_created: int = 0
    tasks_accepted: int = 0
    task_statuses: Counter[str] = field(default_factory=Counter)
    result_problems: list[str] = field(default_factory=list)
    result_problem_count: int = 0
    drained: bool = False
    exit_code: int | None = None
    log_errors: list[dict[str, Any]] = field(default_factory=list)
    load_s: float = 0.0
    total_s: float = 0.0

    def result_problem(self, text: str) -> None:
        self.result_problem_count += 1
        if len(self.result_problems) < 50:
            self.result_problems.append(text)

    @property
    def rss_peak_mib(self) -> float:
        return max([s.rss_mib for s in self.samples], default=0.0)

    def rss_trend(self) -> tuple[float, float, float]:
        """Over the load phase: peak RSS of the first half, of the second half (MiB), and
        the least-squares slope of the second half (MiB per minute)."""
        load = [s for s in self.samples if s.phase == "load"]
        if len(load) < 4:
            return 0.0, 0.0, 0.0
        first, second = load[: len(load) // 2], load[len(load) // 2 :]
        slope = statistics.linear_regression([s.t for s in second], [s.rss_mib for s in second])
        return (
            max(s.rss_mib for s in first),
            max(s.rss_mib for s in second),
            slope.slope * 60.0,
        )

    def levels_off(self) -> bool | None:
        """Whether RSS levelled off during the load; None for runs too short to say."""
        if self.load_s < self.cfg.level_off_min_s:
            return None
        first, second, slope = self.rss_trend()
        return second - first <= self.cfg.level_growth_mib and slope <= self.cfg.level_slope_mib_min

    def failures(self) -> list[str]:
        """Every check that did not hold, one line each (empty: the run passed)."""
        return self._traffic_failures() + self._result_failures() + self._resource_failures()

    def _traffic_failures(self) -> list[str]:
        c, t = self.cfg, self.tally
        out: list[str] = []
        if t.five_xx:
            out.append(f"{len(t.five_xx)} responses >= 500: {t.five_xx[:5]}")
        if t.anomaly_count:
            out.append(f"{t.anomaly_count} unexpected responses: {t.anomalies[:10]}")
        if t.client_errors:
            out.append(f"client-side errors {dict(t.client_errors)}: {t.client_error_examples[:5]}")
        if t.fake_requests != t.fake_404:
            out.append(f"{t.fake_requests} unknown-session requests, only {t.fake_404} got 404")
        if abs(t.fake_share - c.fake_share) > 0.02:
            out.append(f"unknown-session share {t.fake_share:.3f}, expected {c.fake_share}")
        if t.load_requests < 5 * c.seconds or self.tasks_accepted < c.seconds:
            out.append(f"too little load: {t.load_requests} requests, {self.tasks_accepted} tasks")
        return out

    def _result_failures(self) -> list[str]:
        out: list[str] = []
        if not self.drained:
            out.append("tasks still running or queued at the drain deadline")
        if self.result_problem_count:
            out.append(f"{self.result_problem_count} result problems: {self.result_problems[:10]}")
        if self.exit_code != 0:
            out.append(f"greenroom serve exited {self.exit_code} after SIGTERM (expected 0)")
        if self.log_errors:
            events = Counter(str(r.get("event")) for r in self.log_errors)
            out.append(f"{len(self.log_errors)} error lines in the server log: {dict(events)}")
        return out

    def _resource_failures(self) -> list[str]:
        c = self.cfg
        out: list[str] = []
        if not self.quiet_at_end:
            out.append(f"not back to quiet by the deadline: {self.quiet_detail}")
        b, e = self.baseline, self.end
        if b is None or e is None:
            return [*out, "no baseline or end metrics"]
        if e.threads > b.threads + c.thread_margin:
            out.append(f"threads {b.threads} -> {e.threads} (margin {c.thread_margin})")
        if e.fds > b.fds + c.fd_margin:
            out.append(
                f"fds {b.fds} -> {e.fds} (margin {c.fd_margin}): "
                f"{dict(b.fd_kinds)} -> {dict(e.fd_kinds)}"
            )
        if e.rss_mib > b.rss_mib + c.rss_margin_mib:
            out.append(
                f"RSS {b.rss_mib:.1f} -> {e.rss_mib:.1f} MiB (bound +{c.rss_margin_mib} MiB)"
            )
        if self.levels_off() is False:
            first, second, slope = self.rss_trend()
            out.append(
                f"RSS did not level off: peak {first:.1f} MiB in the first half of the load, "
                f"{second:.1f} MiB in the second, slope {slope:+.2f} MiB/min"
            )
        return out

    def summary(self) -> str:
        t = self.tally
        lines = [
            f"[soak] load {self.load_s:.0f} s, whole run {self.total_s:.0f} s, "
            f"seed {self.cfg.seed}",
            f"[soak] load requests {t.load_requests} (unknown-session {t.fake_requests} = "
            f"{t.fake_share:.1%}, malformed {t.bad_requests}, "
            f"429 {t.rejected_429}), statuses {dict(sorted(t.statuses.items()))}",
            f"[soak] sessions created {self.sessions_created}, tasks accepted "
            f"{self.tasks_accepted} {dict(self.task_statuses)}, cancels {t.cancels}, "
            f"acks {t.acks}, idempotent replays {t.idempotent_replays}",
            f"[soak] SSE streams {t.sse_streams} (resumed {t.sse_resumed}, aborted "
            f"{t.sse_aborted}), events read {t.sse_events}",
            f"[soak] 5xx {len(t.five_xx)}, unexpected {t.anomaly_count}, client errors "
            f"{sum(t.client_errors.values())}, result problems {self.result_problem_count}",
        ]
        if self.cold and self.baseline and self.end:
            first, second, slope = self.rss_trend()
            lines += [
                f"[soak] RSS cold {self.cold.rss_mib:.1f} MiB, baseline "
                f"{self.baseline.rss_mib:.1f}, peak {self.rss_peak_mib:.1f}, end "
                f"{self.end.rss_mib:.1f} (bound baseline + {self.cfg.rss_margin_mib:.0f})",
                f"[soak] RSS peak first half of load {first:.1f} MiB, second half "
                f"{second:.1f} MiB, second-half slope {slope:+.2f} MiB/min; levels off: "
                f"{_VERDICT[self.levels_off()]}",
                f"[soak] threads cold {self.cold.threads}, baseline {self.baseline.threads}, "
                f"peak {max((s.threads for s in self.samples), default=0)}, end "
                f"{self.end.threads}",
                f"[soak] fds cold {self.cold.fds}, baseline {self.baseline.fds}, peak "
                f"{max((s.fds for s in self.samples), default=0)}, end {self.end.fds} "
                f"{dict(self.end.fd_kinds)}",
            ]
        lines.append(f"[soak] end stats {json.dumps(self.end_stats, sort_keys=True)}")
        lines.append(f"[soak] server exit status after SIGTERM: {self.exit_code}")
        return "\n".join(lines)


_VERDICT = {True: "yes", False: "NO", None: "run too short to say"}

# --- the clients ----------------------------------------------------------------------


@dataclass
class SessionState:
    """What the clients know about one real session."""

    sid: str
    tasks: dict[str, str] = field(default_factory=dict)  # task id -> what we started
    seen_seq: int = 0  # highest result seq read
    acked: int = 0
    last_event_id: int | None = None


Op = Callable[["Load", aiohttp.ClientSession, random.Random], Awaitable[None]]


class Load:
    """The mixed load: shared state of every client, the operations, the final checks."""

    def __init__(self, base: str, cfg: SoakConfig, tally: Tally) -> None:
        self.base = base
        self.cfg = cfg
        self.tally = tally
        self.sessions: dict[str, SessionState] = {}
        self.pool: list[str] = []
        self.sse_open = 0
        self.deadline = 0.0

    # -- the request helper

    async def call(
        self,
        http: aiohttp.ClientSession,
        op: str,
        method: str,
        path: str,
        expect: frozenset[int] | set[int],
        *,
        wait_s: float = 0.0,
        code: str | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        """One request; counts it, and records any status outside ``expect`` (or an
        error body whose ``code`` differs) as an anomaly. Returns (status, JSON or None);
        status 0 when the request failed on the client side."""
        timeout = aiohttp.ClientTimeout(total=wait_s + 30.0)
        try:
            async with http.request(method, self.base + path, timeout=timeout, **kwargs) as r:
                raw = await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._client_error(op, method, path, exc)
            return 0, None
        body: Any = None
        with contextlib.suppress(ValueError):
            body = json.loads(raw) if raw else None
        self.count(op, method, path, status=status, raw=raw, expect=expect)
        if code is not None and status in expect and status >= 400:
            got = (body or {}).get("error", {}).get("code") if isinstance(body, dict) else None
            if got != code:
                self.tally.anomaly(f"{method} {path}: error code {got!r}, expected {code!r}")
        return status, body

    def count(
        self, op: str, method: str, path: str, *, status: int, raw: bytes, expect: Any
    ) -> None:
        t = self.tally
        t.requests += 1
        t.by_op[op] += 1
        t.statuses[status] += 1
        if status >= 500:
            t.five_xx.append(f"{method} {path} -> {status}: {raw[:200]!r}")
        if status not in expect:
            t.anomaly(
                f"{op}: {method} {path} -> {status} (expected {sorted(expect)}): {raw[:200]!r}"
            )

    def _client_error(self, op: str, method: str, path: str, exc: BaseException) -> None:
        t = self.tally
        t.client_errors[type(exc).__name__] += 1
        if len(t.client_error_examples) < 20:
            t.client_error_examples.append(f"{op}: {method} {path}: {type(exc).__name__} {exc}")

    # -- sessions

    async def new_session(self, http: aiohttp.ClientSession, rng: random.Random) -> str | None:
        body: dict[str, Any] = {}
        if rng.random() < 0.3:
            body["metadata"] = {"n": rng.randrange(1000)}
        if rng.random() < 0.2:
            body["agent"] = rng.choice(["echo", "slow"])
        status, data = await self.call(http, "create", "POST", "/v1/sessions", {201}, json=body)
        if status != 201:
            return None
        sid: str = data["id"]
        self.sessions[sid] = SessionState(sid)
        self.pool.append(sid)
        if len(self.pool) > self.cfg.pool:
            self.pool.pop(0)  # out of play: left for the idle sweep
        return sid

    async def session(self, http: aiohttp.ClientSession, rng: random.Random) -> str | None:
        if not self.pool:
            return await self.new_session(http, rng)
        return rng.choice(self.pool)

    # -- tasks

    async def start_task(
        self,
        http: aiohttp.ClientSession,
        rng: random.Random,
        sid: str,
        what: str,
        body: dict[str, Any],
    ) -> str | None:
        headers: dict[str, str] = {}
        if rng.random() < 0.3:
            headers["Idempotency-Key"] = f"k-{uuid.uuid4().hex}"
        path = f"/v1/sessions/{sid}/tasks"
        status, data = await self.call(
            http, "task_" + what, "POST", path, {202, 429}, json=body, headers=headers
        )
        if status == 429:
            self.tally.rejected_429 += 1
        if status != 202:
            return None
        tid: str = data["id"]
        self.sessions[sid].tasks[tid] = what
        if headers and rng.random() < 0.3:  # a retry with the same key: the same task
            self.tally.idempotent_replays += 1
            status, again = await self.call(
                http, "task_replay", "POST", path, {202}, json=body, headers=headers
            )
            if status == 202 and again.get("id") != tid:
                self.tally.anomaly(f"idempotent retry of {tid} returned {again.get('id')}")
        return tid

    async def op_create(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        await self.new_session(http, rng)

    async def op_fast(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        sid = await self.session(http, rng)
        if sid:
            kind = rng.choice(["background", "side"])
            await self.start_task(http, rng, sid, "fast", {"prompt": "quick one", "kind": kind})

    async def op_slow(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        sid = await self.session(http, rng)
        if sid:
            await self.start_task(http, rng, sid, "slow", {"prompt": "slow one", "agent": "slow"})

    async def op_timeout(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        sid = await self.session(http, rng)
        if sid:
            body = {"prompt": "never", "agent": "forever", "timeout_s": rng.uniform(0.2, 1.0)}
            await self.start_task(http, rng, sid, "timeout", body)

    async def op_boom(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        sid = await self.session(http, rng)
        if sid:
            await self.start_task(http, rng, sid, "boom", {"prompt": "fail", "agent": "boom"})

    async def op_cancel_new(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        """Start a task that would run for 8 s, maybe long-poll it briefly, cancel it."""
        sid = await self.session(http, rng)
        if not sid:
            return
        body = {"prompt": "cancel me", "agent": "forever", "timeout_s": 8.0}
        tid = await self.start_task(http, rng, sid, "cancel", body)
        if tid is None:
            return
        if rng.random() < 0.5:
            wait = rng.choice([0.0, 0.1, 0.3])
            await self.call(
                http, "task_wait", "GET", f"/v1/sessions/{sid}/tasks/{tid}?wait={wait}", {200},
                wait_s=wait,
            )  # fmt: skip
        await self.cancel(http, sid, tid, twice=rng.random() < 0.2)

    async def op_cancel_any(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        sid = await self.session(http, rng)
        if sid and self.sessions[sid].tasks:
            tid = rng.choice(list(self.sessions[sid].tasks))
            await self.cancel(http, sid, tid, twice=False)

    async def cancel(self, http: aiohttp.ClientSession, sid: str, tid: str, twice: bool) -> None:
        path = f"/v1/sessions/{sid}/tasks/{tid}/cancel"
        first: str | None = None
        for _ in range(2 if twice else 1):
            self.tally.cancels += 1
            status, data = await self.call(http, "cancel", "POST", path, {200})
            if status != 200:
                return
            ended = data.get("status")
            if ended not in TERMINAL:
                self.tally.anomaly(f"cancel of {tid} returned status {ended!r}")
            if first is not None and ended != first:
                self.tally.anomaly(f"second cancel of {tid}: {ended!r}, first said {first!r}")
            first = ended

    async def op_poll_task(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        sid = await self.session(http, rng)
        if sid and self.sessions[sid].tasks:
            tid = rng.choice(list(self.sessions[sid].tasks))
            wait = rng.choice([0.0, 0.5, 1.0, 2.0])
            path = f"/v1/sessions/{sid}/tasks/{tid}?wait={wait}"
            status, data = await self.call(http, "task_wait", "GET", path, {200}, wait_s=wait)
            if status == 200 and data.get("id") != tid:
                self.tally.anomaly(f"GET task {tid} returned {data.get('id')}")

    async def op_results(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        sid = await self.session(http, rng)
        if not sid:
            return
        state = self.sessions[sid]
        after = state.seen_seq if rng.random() < 0.8 else 0
        wait = rng.choice([0.0, 0.5, 1.0, 2.0])
        path = f"/v1/sessions/{sid}/results?after={after}&wait={wait}&limit={rng.choice([5, 100])}"
        status, data = await self.call(http, "results", "GET", path, {200}, wait_s=wait)
        if status != 200:
            return
        seqs = [r["seq"] for r in data["results"]]
        if seqs != sorted(set(seqs)) or (seqs and seqs[0] <= after):
            self.tally.anomaly(f"results of {sid} after {after}: seqs {seqs}")
        if seqs:
            state.seen_seq = max(state.seen_seq, seqs[-1])

    async def op_ack(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        sid = await self.session(http, rng)
        if not sid:
            return
        state = self.sessions[sid]
        if state.seen_seq <= state.acked:
            await self.op_results(http, rng)
            return
        up_to = rng.randint(state.acked + 1, state.seen_seq)
        self.tally.acks += 1
        path = f"/v1/sessions/{sid}/results/ack"
        status, data = await self.call(http, "ack", "POST", path, {200}, json={"up_to": up_to})
        if status == 200:
            if data.get("acked_up_to", -1) < up_to:
                self.tally.anomaly(f"ack {up_to} of {sid} answered {data}")
            state.acked = max(state.acked, up_to)

    async def op_read(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        sid = await self.session(http, rng)
        if sid:
            tail = rng.choice(["", "/tasks", "/messages"])
            await self.call(http, "read", "GET", f"/v1/sessions/{sid}{tail}", {200})

    async def op_turn(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        sid = await self.session(http, rng)
        if sid:
            body = {"content": "hello there"}
            await self.call(
                http, "turn", "POST", f"/v1/sessions/{sid}/messages", {202, 409}, json=body
            )

    # -- SSE

    async def op_sse(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        """Open the event stream (resuming with Last-Event-ID), read for a moment, then
        drop the connection abruptly; ids must rise and follow the resume point."""
        sid = await self.session(http, rng)
        if not sid:
            return
        if self.sse_open >= self.cfg.max_sse:
            await self.op_results(http, rng)
            return
        state = self.sessions[sid]
        headers: dict[str, str] = {}
        resume = state.last_event_id if rng.random() < 0.8 else None
        if resume is not None:
            headers["Last-Event-ID"] = str(resume)
            self.tally.sse_resumed += 1
        path = f"/v1/sessions/{sid}/events"
        self.sse_open += 1
        self.tally.sse_streams += 1
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=30)
        try:
            response = await http.get(self.base + path, headers=headers, timeout=timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.sse_open -= 1
            self._client_error("sse", "GET", path, exc)
            return
        try:
            if response.status != 200:
                raw = await response.read()
                self.count("sse", "GET", path, status=response.status, raw=raw, expect={200})
                return
            self.count("sse", "GET", path, status=200, raw=b"", expect={200})
            await self._read_stream(response, state, resume, rng.uniform(0.05, 1.5))
        finally:
            self.sse_open -= 1
            if rng.random() < 0.5:  # abort: no FIN handshake, the server sees a dead socket
                self.tally.sse_aborted += 1
                connection = response.connection
                if connection is not None and connection.transport is not None:
                    connection.transport.abort()
            response.close()

    async def _read_stream(
        self, response: aiohttp.ClientResponse, state: SessionState, resume: int | None, hold: float
    ) -> None:
        previous = resume
        try:
            async with asyncio.timeout(hold):
                async for frame in sse_frames(response):
                    kind = frame.get("event")
                    if kind is None:
                        continue
                    self.tally.sse_events += 1
                    if kind == "stream.gap":
                        previous = None
                    elif kind in ("reset", "shutdown"):
                        self.tally.anomaly(f"SSE of {state.sid}: unexpected event {kind!r}")
                        return
                    if "id" in frame:
                        seq = int(frame["id"])
                        if previous is not None and seq <= previous:
                            self.tally.anomaly(
                                f"SSE of {state.sid}: id {seq} after {previous} (resume {resume})"
                            )
                        previous = seq
                        state.last_event_id = max(seq, state.last_event_id or 0)
        except TimeoutError:
            pass  # held long enough: now drop it
        except aiohttp.ClientError as exc:
            self._client_error("sse", "GET", f"/v1/sessions/{state.sid}/events", exc)

    # -- malformed requests and unknown sessions

    async def op_bad(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        sid = await self.session(http, rng)
        if not sid:
            return
        self.tally.bad_requests += 1
        s = f"/v1/sessions/{sid}"
        tasks = list(self.sessions[sid].tasks)
        tid = rng.choice(tasks) if tasks else "tsk_" + "0" * 32
        raw = {"data": b'{"prompt": ', "headers": {"Content-Type": "application/json"}}
        no_agent = {"json": {"prompt": "x", "agent": "no-such-agent"}}
        cases: list[tuple[str, str, frozenset[int], str | None, dict[str, Any]]] = [
            ("POST", "/v1/sessions", _400, "malformed_json", {"data": b"{not json"}),
            ("POST", "/v1/sessions", _400, "wrong_type", {"json": {"agent": 5}}),
            ("POST", "/v1/sessions", _404, "agent_not_found", {"json": {"agent": "nope"}}),
            ("POST", f"{s}/tasks", _400, "malformed_json", raw),
            ("POST", f"{s}/tasks", _400, "wrong_type", {"json": {"prompt": 1}}),
            ("POST", f"{s}/tasks", _400, "unknown_field", {"json": {"prompt": "x", "z": 1}}),
            ("POST", f"{s}/tasks", _400, "missing_field", {"json": {}}),
            ("POST", f"{s}/tasks", _400, None, {"json": [1, 2]}),
            ("POST", f"{s}/tasks", _400, None, {"json": {"prompt": "x", "kind": "weird"}}),
            ("POST", f"{s}/tasks", _400, None, {"json": {"prompt": "x", "timeout_s": -1}}),
            ("POST", f"{s}/tasks", _404, "agent_not_found", no_agent),
            ("GET", f"{s}/results?wait=abc", _400, "bad_query", {}),
            ("GET", f"{s}/results?after=-1", _400, "bad_query", {}),
            ("GET", f"{s}/results?limit=0", _400, "bad_query", {}),
            ("GET", f"{s}/tasks/{tid}?wait=-5", _400, "bad_query", {}),
            ("GET", f"{s}/tasks/tsk_{uuid.uuid4().hex}?wait=0.2", _404, "task_not_found", {}),
            ("POST", f"{s}/tasks/tsk_{uuid.uuid4().hex}/cancel", _404, "task_not_found", {}),
            ("GET", f"{s}/events", _400, "bad_query", {"headers": {"Last-Event-ID": "x"}}),
            ("POST", f"{s}/results/ack", _400, None, {"json": {"up_to": -1}}),
            ("POST", f"{s}/results/ack", _400, "wrong_type", {"json": {"up_to": "x"}}),
            ("POST", f"{s}/results/ack", _409, "ack_beyond_last_seq", {"json": {"up_to": 10**9}}),
            ("POST", f"{s}/messages", _400, "wrong_type", {"json": {"content": 5}}),
            ("DELETE", s, frozenset({405}), "method_not_allowed", {}),
            ("GET", "/v1/nope", _404, "not_found", {}),
        ]  # fmt: skip
        method, path, expect, code, kwargs = rng.choice(cases)
        await self.call(http, "bad", method, path, expect, code=code, wait_s=0.2, **kwargs)

    async def fake_request(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        """A well-formed request naming a session that does not exist: must be a 404."""
        fake = rng.choice([f"ses_{uuid.uuid4().hex}", f"ses_{uuid.uuid4().hex[:8]}", "nope"])
        s = f"/v1/sessions/{fake}"
        t = f"tsk_{uuid.uuid4().hex}"
        cases: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", s, {}),
            ("GET", f"{s}/messages", {}),
            ("POST", f"{s}/messages", {"json": {"content": "hi"}}),
            ("GET", f"{s}/tasks", {}),
            ("POST", f"{s}/tasks", {"json": {"prompt": "x"}}),
            ("GET", f"{s}/tasks/{t}?wait=1", {}),
            ("POST", f"{s}/tasks/{t}/cancel", {}),
            ("GET", f"{s}/results?after=0&wait=1", {}),
            ("POST", f"{s}/results/ack", {"json": {"up_to": 1}}),
            ("GET", f"{s}/events", {"headers": {"Last-Event-ID": "3"}}),
        ]
        method, path, kwargs = rng.choice(cases)
        self.tally.fake_requests += 1
        status, _ = await self.call(
            http, "unknown", method, path, _404, code="session_not_found", wait_s=1.0, **kwargs
        )
        if status == 404:
            self.tally.fake_404 += 1

    # -- the loops

    OPS: tuple[tuple[Op, int], ...] = ()  # filled below the class

    async def worker(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        ops = [op for op, _ in Load.OPS]
        weights = [w for _, w in Load.OPS]
        for _ in range(self.cfg.max_ops_per_worker):
            if time.monotonic() >= self.deadline:
                return
            if self.tally.fake_requests < self.cfg.fake_share * (self.tally.load_requests + 1):
                await self.fake_request(http, rng)  # keeps the share of such requests at 30 %
            else:
                await rng.choices(ops, weights)[0](self, http, rng)

    async def run(self, seconds: float, seed: int) -> None:
        """Every client's workers until ``seconds`` pass (and each loop's count bound)."""
        self.deadline = time.monotonic() + seconds
        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32))
                )
                for _ in range(self.cfg.clients)
            ]
            await asyncio.gather(
                *(
                    self.worker(http, random.Random(seed * 1000 + c * 100 + w))
                    for c, http in enumerate(clients)
                    for w in range(self.cfg.workers)
                )
            )
        # Leaving the stack closed every client connection.

    # -- after the load: every accepted task, exactly once

    async def verify_results(self, http: aiohttp.ClientSession, report: Report) -> None:
        gate = asyncio.Semaphore(4)

        async def one(state: SessionState) -> None:
            async with gate:
                await self._verify_session(http, state, report)

        await asyncio.gather(*(one(s) for s in self.sessions.values() if s.tasks))

    async def _verify_session(
        self, http: aiohttp.ClientSession, state: SessionState, report: Report
    ) -> None:
        sid = state.sid
        status, listing = await self.call(http, "verify", "GET", f"/v1/sessions/{sid}/tasks", {200})
        if status != 200:
            report.result_problem(f"{sid}: task listing answered {status}")
            return
        listed = {t["id"]: t["status"] for t in listing["tasks"]}
        seen: Counter[str] = Counter()
        after, seqs = 0, []
        for _ in range(10_000):  # pages of 1000; bounded
            path = f"/v1/sessions/{sid}/results?after={after}&limit=1000"
            status, page = await self.call(http, "verify", "GET", path, {200})
            if status != 200:
                report.result_problem(f"{sid}: results answered {status}")
                return
            if not page["results"]:
                break
            for result in page["results"]:
                seen[result["task_id"]] += 1
                seqs.append(result["seq"])
                report.task_statuses[result["status"]] += 1
                if result["status"] not in TERMINAL:
                    report.result_problem(f"{sid}: result {result} is not terminal")
            after = page["next_after"]
        if seqs != sorted(set(seqs)):
            report.result_problem(f"{sid}: result seqs not unique and rising: {seqs}")
        for tid, what in state.tasks.items():
            if seen[tid] != 1:
                report.result_problem(f"{sid}: {what} task {tid} has {seen[tid]} results")
            if listed.get(tid) not in TERMINAL:
                report.result_problem(f"{sid}: {what} task {tid} listed as {listed.get(tid)}")
        for tid in set(seen) - set(state.tasks):
            report.result_problem(f"{sid}: result for task {tid} nobody was told was accepted")


_400 = frozenset({400})
_404 = frozenset({404})
_409 = frozenset({409})

Load.OPS = (
    (Load.op_create, 4),
    (Load.op_fast, 14),
    (Load.op_slow, 7),
    (Load.op_timeout, 4),
    (Load.op_boom, 3),
    (Load.op_cancel_new, 5),
    (Load.op_cancel_any, 2),
    (Load.op_poll_task, 8),
    (Load.op_results, 10),
    (Load.op_ack, 6),
    (Load.op_read, 6),
    (Load.op_turn, 4),
    (Load.op_sse, 7),
    (Load.op_bad, 10),
)


async def sse_frames(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, str]]:
    """SSE frames of a response: ``{"event", "id", "data"}`` or ``{"comment"}``."""
    current: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if current:
                yield current
            current = {}
        elif line.startswith(":"):
            current["comment"] = line[1:].strip()
        else:
            key, _, value = line.partition(": ")
            current[key] = value


# --- the scenario ---------------------------------------------------------------------


async def fetch_stats(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(base + "/v1/stats", timeout=aiohttp.ClientTimeout(total=30)) as r:
        r.raise_for_status()
        stats: dict[str, Any] = await r.json()
        return stats


def quiet(stats: dict[str, Any]) -> bool:
    """No session or task actor alive, no task anywhere, no pooled read connection, no
    completion or turn held as not yet recorded."""
    actors = stats["actors"]
    return (
        stats["live_sessions"] == 0
        and stats["passivating"] == 0
        and actors.get("session", 0) == 0
        and actors.get("task", 0) == 0
        and not any(stats["tasks"].values())
        and stats["store_read_connections"] == 0
        and stats["completions_unrecorded"] == 0
        and stats["turns_unrecorded"] == 0
    )


async def wait_until(
    probe: Callable[[], Awaitable[tuple[bool, str]]], timeout_s: float, poll_s: float = 0.25
) -> tuple[bool, str]:
    """Poll ``probe`` until it holds or ``timeout_s`` passes; returns (held, last detail).
    The pause between polls only paces the polling; the condition decides."""
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / poll_s) + 2):
        held, detail = await probe()
        if held or time.monotonic() >= deadline:
            return held, detail
        await asyncio.sleep(poll_s)
    return await probe()


class Scenario:
    """One run against a started server."""

    def __init__(self, server: Server, cfg: SoakConfig, report: Report, echo: bool) -> None:
        self.server = server
        self.cfg = cfg
        self.report = report
        self.echo = echo
        self.started = time.monotonic()
        self.phase = "warmup"

    def say(self, text: str) -> None:
        if self.echo:
            print(text, flush=True)

    async def sample(self, observer: aiohttp.ClientSession, load: Load) -> Sample:
        stats = await fetch_stats(observer, self.server.base)
        metrics = self.server.metrics()
        sample = Sample(
            t=time.monotonic() - self.started,
            phase=self.phase,
            rss_mib=metrics.rss_mib,
            threads=metrics.threads,
            fds=metrics.fds,
            sessions=stats["actors"].get("session", 0),
            tasks=stats["actors"].get("task", 0),
            live_sessions=stats["live_sessions"],
            requests=load.tally.requests,
            five_xx=len(load.tally.five_xx),
        )
        self.report.samples.append(sample)
        self.say(sample.line())
        return sample

    async def monitor(self, observer: aiohttp.ClientSession, load: Load) -> None:
        """A trajectory line every ``sample_s`` until cancelled (bounded by count too)."""
        for _ in range(100_000):
            await self.sample(observer, load)
            await asyncio.sleep(self.cfg.sample_s)

    async def settle(self, observer: aiohttp.ClientSession, baseline: Metrics | None) -> bool:
        """Wait until the server is quiet (and, given a baseline, threads and fds are back)."""
        cfg = self.cfg

        async def probe() -> tuple[bool, str]:
            stats = await fetch_stats(observer, self.server.base)
            metrics = self.server.metrics()
            held = quiet(stats)
            if baseline is not None:
                held = (
                    held
                    and metrics.threads <= baseline.threads + cfg.thread_margin
                    and metrics.fds <= baseline.fds + cfg.fd_margin
                )
            self.report.end_stats = stats
            detail = (
                f"stats {json.dumps(stats, sort_keys=True)}, threads {metrics.threads}, "
                f"fds {metrics.fds} {dict(metrics.fd_kinds)}"
            )
            return held, detail

        held, detail = await wait_until(probe, cfg.settle_s)
        self.report.quiet_detail = detail
        return held

    async def saturate(self, load: Load) -> None:
        """Bursts of concurrent session activations (each a store read on the loop's
        executor) until the thread count stops growing: the executor's threads are
        created lazily, and are then part of the baseline, not a leak."""
        path = "/v1/sessions/ses_{}"
        threads, unchanged = self.server.metrics().threads, 0
        async with aiohttp.ClientSession() as http:
            for _ in range(20):
                await asyncio.gather(
                    *(
                        load.call(http, "warmup", "GET", path.format(uuid.uuid4().hex), _404)
                        for _ in range(48)
                    )
                )
                now = self.server.metrics().threads
                unchanged = unchanged + 1 if now <= threads else 0
                threads = max(threads, now)
                if unchanged >= 3:
                    break

    async def run(self) -> None:
        cfg, report, server = self.cfg, self.report, self.server
        report.cold = server.metrics()
        tally = report.tally
        load = Load(server.base, cfg, tally)
        async with aiohttp.ClientSession() as observer:
            # Warm-up: lazy thread pools and connections exist before the baseline.
            await load.run(cfg.warmup_s, cfg.seed + 1)
            await self.saturate(load)
            if not await self.settle(observer, None):
                raise RuntimeError(f"not quiet after the warm-up: {report.quiet_detail}")
            report.baseline = server.metrics()
            self.say(
                f"[soak] baseline after warm-up: rss={report.baseline.rss_mib:.1f} MiB "
                f"threads={report.baseline.threads} fds={report.baseline.fds} "
                f"{dict(report.baseline.fd_kinds)} (cold: rss={report.cold.rss_mib:.1f} "
                f"threads={report.cold.threads} fds={report.cold.fds})"
            )
            self.started = time.monotonic()
            self.phase = "load"
            monitor = asyncio.create_task(self.monitor(observer, load))
            try:
                await load.run(cfg.seconds, cfg.seed)
                report.load_s = time.monotonic() - self.started
                self.phase = "drain"

                async def drained() -> tuple[bool, str]:
                    stats = await fetch_stats(observer, server.base)
                    idle = stats["actors"].get("task", 0) == 0 and not any(stats["tasks"].values())
                    return idle, json.dumps(stats)

                report.drained, _ = await wait_until(drained, cfg.settle_s)
                async with aiohttp.ClientSession() as checker:
                    await load.verify_results(checker, report)
                self.phase = "settle"
                report.quiet_at_end = await self.settle(observer, report.baseline)
            finally:
                monitor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await monitor
            report.end = server.metrics()
            self.phase = "end"
            await self.sample(observer, load)
        report.sessions_created = len(load.sessions)
        report.tasks_accepted = sum(len(s.tasks) for s in load.sessions.values())


def run_soak(cfg: SoakConfig, workdir: Path, echo: bool = True) -> Report:
    """Start a server in ``workdir``, run the scenario, stop the server; the report."""
    report = Report(cfg)
    server = Server(workdir, cfg)
    began = time.monotonic()
    server.start()
    try:
        scenario = Scenario(server, cfg, report, echo)
        if echo:
            print(f"[soak] greenroom serve pid {server.pid} on {server.base}", flush=True)
        asyncio.run(scenario.run())
        report.exit_code = server.terminate()
    finally:
        server.kill()
    report.log_errors = server.log_errors()
    report.total_s = time.monotonic() - began
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak.load", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0, help="load duration")
    parser.add_argument("--sample", type=float, default=10.0, help="trajectory period (s)")
    parser.add_argument("--seed", type=int, default=SoakConfig.seed)
    parser.add_argument("--workdir", help="data dir parent (default: a temporary dir)")
    args = parser.parse_args(argv)
    cfg = SoakConfig(seconds=args.seconds, sample_s=args.sample, seed=args.seed)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="greenroom-soak-") as tmp:
        report = run_soak(cfg, Path(args.workdir or tmp))
    print(report.summary(), flush=True)
    failures = report.failures()
    for line in failures:
        print(f"[soak] FAILED: {line}", flush=True)
    print("[soak] PASSED" if not failures else "[soak] FAILED", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
