"""The load: clients talking to the cluster through HAProxy, recording what they saw.

Each session has one client loop (start a task with an idempotency key, long-poll it,
read and sometimes acknowledge results) and one SSE reader (resumes with
``Last-Event-ID`` after any disconnect). A start is retried with the same key on a 5xx,
a 429 or no answer, so a 2xx is what acknowledges a task. Every loop is bounded in
count and in time; every request has a timeout; the only pauses are the backoff
between retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.cluster.history import (
    TERMINAL,
    FinalRead,
    Request,
    ResultEntry,
    SessionHistory,
    SseConnection,
    SseFrame,
)
from tests.cluster.nodes import NODE_HEADER
from tests.soak.load import sse_frames

_RETRY = frozenset({0, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class LoadConfig:
    """The knobs of the load."""

    sessions: int = 9
    seconds: float = 60.0
    max_tasks_per_session: int = 150
    agent: str = "slow"
    request_timeout_s: float = 6.0  # a paused node holds a request until this passes
    poll_wait_s: float = 2.0  # ?wait= of the task long-poll
    sse_read_timeout_s: float = 4.0  # > 3 heartbeats: a silent stream is a dead one
    start_grace_s: float = 15.0  # a start may keep retrying this long past the load
    max_sse_connects: int = 1000


class Probe:
    """Resolves with the first 2xx answer, for one of ``sids``, to a request sent at or
    after ``t0`` (and, given ``ops``, of one of those operations)."""

    def __init__(self, sids: set[str], t0: float, ops: frozenset[str] | None = None) -> None:
        self.sids, self.t0, self.ops = sids, t0, ops
        self.first: asyncio.Future[Request] = asyncio.get_running_loop().create_future()

    def observe(self, request: Request) -> None:
        if (
            not self.first.done()
            and request.ok
            and request.sid in self.sids
            and request.sent >= self.t0
            and (self.ops is None or request.op in self.ops)
        ):
            self.first.set_result(request)


class Backoff:
    """Exponential pauses between retries: 50 ms doubling up to 1 s, reset on success."""

    def __init__(self) -> None:
        self.next_s = 0.05

    async def wait(self) -> None:
        await asyncio.sleep(self.next_s)
        self.next_s = min(self.next_s * 2, 1.0)

    def reset(self) -> None:
        self.next_s = 0.05


class Load:
    """Every client of one run, their histories and the log of every request."""

    def __init__(self, base: str, cfg: LoadConfig, seed: int) -> None:
        self.base = base
        self.cfg = cfg
        self.rng = random.Random(seed)
        self.histories: dict[str, SessionHistory] = {}
        self.requests: list[Request] = []
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.last_node: dict[str, str] = {}
        self.probes: list[Probe] = []
        self.readers: list[asyncio.Task[None]] = []
        self.http: aiohttp.ClientSession | None = None
        self.deadline = 0.0  # of the client loops (run_clients)

    # -- requests

    async def call(
        self, sid: str | None, op: str, method: str, path: str, wait_s: float = 0.0, **kw: Any
    ) -> tuple[Request, Any]:
        """One request through the proxy, recorded and shown to the probes; returns it
        with its JSON body (None if it had none). Status 0: no answer."""
        assert self.http is not None
        timeout = aiohttp.ClientTimeout(total=self.cfg.request_timeout_s + wait_s)
        sent = time.monotonic()
        status, node, body = 0, None, None
        try:
            async with self.http.request(method, self.base + path, timeout=timeout, **kw) as r:
                raw = await r.read()
                status, node = r.status, r.headers.get(NODE_HEADER)
            with contextlib.suppress(ValueError):
                body = json.loads(raw) if raw else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors[type(exc).__name__] += 1
        request = Request(sid, op, sent, time.monotonic(), status, node)
        self.requests.append(request)
        self.statuses[status] += 1
        if sid is not None and node is not None and request.ok:
            self.last_node[sid] = node
        for probe in self.probes:
            probe.observe(request)
        return request, body

    def probe(self, sids: set[str], t0: float, ops: frozenset[str] | None = None) -> Probe:
        """Watch for the first 2xx for ``sids`` sent at or after ``t0``."""
        probe = Probe(sids, t0, ops)
        self.probes.append(probe)
        return probe

    def _unexpected(self, history: SessionHistory, what: str, request: Request, body: Any) -> None:
        history.unexpected.append(f"{history.sid}: {what} answered {request.status}: {body}")

    # -- sessions

    async def create_sessions(self, deadline_s: float = 30.0) -> None:
        """Create ``cfg.sessions`` sessions through the proxy (retrying failures)."""
        backoff, deadline = Backoff(), time.monotonic() + deadline_s
        for number in range(self.cfg.sessions):
            body = {"metadata": {"jepsen": number}}
            while True:
                request, data = await self.call(None, "create", "POST", "/v1/sessions", json=body)
                if request.status == 201:
                    self.histories[data["id"]] = SessionHistory(data["id"])
                    break
                if request.status not in _RETRY or time.monotonic() > deadline:
                    raise RuntimeError(f"POST /v1/sessions answered {request.status}: {data}")
                await backoff.wait()

    async def start_task(
        self, history: SessionHistory, key: str, body: dict[str, Any]
    ) -> str | None:
        """Start a task, retrying with the same key until a 2xx (the ack) or the grace
        after the load runs out; the task id, or None."""
        path = f"/v1/sessions/{history.sid}/tasks"
        backoff = Backoff()
        deadline = self.deadline + self.cfg.start_grace_s
        for _ in range(10_000):
            request, data = await self.call(
                history.sid, "start", "POST", path, json=body, headers={"Idempotency-Key": key}
            )
            if request.ok:
                history.acks.setdefault(key, []).append(data["id"])
                return str(data["id"])
            if request.status not in _RETRY:
                self._unexpected(history, f"POST tasks (key {key})", request, data)
                break
            if time.monotonic() > deadline:
                break
            await backoff.wait()
        if key not in history.acks:
            history.unacked.add(key)
        return None

    async def session_loop(self, history: SessionHistory, rng: random.Random) -> None:
        """Start, long-poll, read and acknowledge until the load's deadline."""
        sid, cfg = history.sid, self.cfg
        backoff = Backoff()
        for number in range(cfg.max_tasks_per_session):
            if time.monotonic() >= self.deadline:
                return
            body: dict[str, Any] = {"prompt": f"job {number} of {sid}", "agent": cfg.agent}
            body["max_attempts"] = rng.choice([1, 3])
            tid = await self.start_task(history, f"{sid}-{number}", body)
            if tid is not None:
                path = f"/v1/sessions/{sid}/tasks/{tid}?wait={cfg.poll_wait_s}"
                request, data = await self.call(sid, "poll", "GET", path, cfg.poll_wait_s)
                self._check_read(history, "GET task", request, data)
            path = f"/v1/sessions/{sid}/results?after={history.results_seen}"
            request, data = await self.call(sid, "results", "GET", path)
            self._check_read(history, "GET results", request, data)
            if request.ok and data["results"]:
                history.results_seen = max(r["seq"] for r in data["results"])
            if history.results_seen > history.acked_up_to and rng.random() < 0.3:
                up_to = history.results_seen
                path = f"/v1/sessions/{sid}/results/ack"
                request, data = await self.call(sid, "ack", "POST", path, json={"up_to": up_to})
                self._check_read(history, f"POST ack {up_to}", request, data)
                if request.ok:
                    history.acked_up_to = up_to
            if request.ok:
                backoff.reset()
            else:
                await backoff.wait()

    def _check_read(self, history: SessionHistory, what: str, request: Request, body: Any) -> None:
        if not request.ok and request.status not in _RETRY:
            self._unexpected(history, what, request, body)

    async def run_clients(self, seconds: float) -> None:
        """Every session's client loop, until ``seconds`` pass (then starts still being
        retried get ``start_grace_s`` more)."""
        self.deadline = time.monotonic() + seconds
        await asyncio.gather(
            *(
                self.session_loop(history, random.Random(self.rng.random()))
                for history in self.histories.values()
            )
        )

    # -- event streams

    def start_readers(self) -> None:
        """One SSE reader per session, until :meth:`stop_readers`."""
        for history in self.histories.values():
            self.readers.append(asyncio.create_task(self.sse_reader(history)))

    async def stop_readers(self) -> None:
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        self.readers.clear()

    async def sse_reader(self, history: SessionHistory) -> None:
        """Read the session's stream; after any disconnect, resume with
        ``Last-Event-ID`` (the last seq seen; 0 at first: everything)."""
        assert self.http is not None
        cfg, backoff = self.cfg, Backoff()
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=cfg.request_timeout_s, sock_read=cfg.sse_read_timeout_s
        )
        path = f"{self.base}/v1/sessions/{history.sid}/events"
        for _ in range(cfg.max_sse_connects):
            resume = max((c.last_seq for c in history.sse), default=0)
            conn = SseConnection(resume=resume, opened=time.monotonic())
            history.sse.append(conn)
            try:
                headers = {"Last-Event-ID": str(resume)}
                async with self.http.get(path, headers=headers, timeout=timeout) as response:
                    conn.status = response.status
                    conn.node = response.headers.get(NODE_HEADER)
                    if response.status != 200:
                        conn.end = f"status {response.status}: {(await response.read())[:200]!r}"
                        if response.status not in _RETRY:
                            history.unexpected.append(f"{history.sid}: SSE {conn.end}")
                    else:
                        conn.end = await self._read_frames(response, conn)
                        if conn.frames:
                            backoff.reset()
            except asyncio.CancelledError:
                conn.end = conn.end or "stopped"
                raise
            except (aiohttp.ClientError, TimeoutError) as exc:
                conn.end = f"error {type(exc).__name__}"
            await backoff.wait()

    async def _read_frames(self, response: aiohttp.ClientResponse, conn: SseConnection) -> str:
        async for frame in sse_frames(response):
            kind = frame.get("event")
            if kind is None:
                continue  # a comment: heartbeat or "connected"
            if kind in ("reset", "shutdown"):
                return kind
            data = json.loads(frame.get("data", "{}"))
            if "id" in frame:
                conn.frames.append(SseFrame(int(frame["id"]), kind, data))
            elif kind.startswith("stream."):
                conn.frames.append(SseFrame(None, kind, data))
        return "eof"

    # -- after the load

    async def get_json(self, sid: str, path: str, deadline: float) -> Any:
        """GET with retries on failures until ``deadline``; the JSON body.

        Raises:
            RuntimeError: no 2xx by the deadline, or an answer no failure explains.
        """
        backoff = Backoff()
        for _ in range(10_000):
            request, data = await self.call(sid, "check", "GET", path)
            if request.ok:
                return data
            if request.status not in _RETRY or time.monotonic() > deadline:
                raise RuntimeError(f"GET {path} answered {request.status}: {data}")
            await backoff.wait()
        raise RuntimeError(f"GET {path}: no answer")

    async def unfinished(self, deadline: float) -> dict[str, dict[str, str]]:
        """Acknowledged tasks not yet terminal, by session: ``{sid: {tid: status}}``."""
        out: dict[str, dict[str, str]] = {}
        for sid, history in self.histories.items():
            listing = await self.get_json(sid, f"/v1/sessions/{sid}/tasks", deadline)
            statuses = {t["id"]: t["status"] for t in listing["tasks"]}
            left = {t: statuses.get(t, "unknown") for t in history.acked_tasks}
            left = {t: s for t, s in left.items() if s not in TERMINAL}
            if left:
                out[sid] = left
        return out

    async def lagging_readers(self, deadline: float) -> dict[str, tuple[int, int]]:
        """Sessions whose reader has not yet seen the last seq: ``{sid: (seen, last)}``."""
        out: dict[str, tuple[int, int]] = {}
        for sid, history in self.histories.items():
            info = await self.get_json(sid, f"/v1/sessions/{sid}", deadline)
            seen = max((c.last_seq for c in history.sse), default=0)
            if seen < info["last_seq"]:
                out[sid] = (seen, info["last_seq"])
        return out

    async def final_read(self, sid: str, deadline: float) -> FinalRead:
        """The session's tasks, all its results (every page) and its last seq."""
        listing = await self.get_json(sid, f"/v1/sessions/{sid}/tasks", deadline)
        final = FinalRead(statuses={t["id"]: t["status"] for t in listing["tasks"]})
        after = 0
        for _ in range(1000):
            page = await self.get_json(
                sid, f"/v1/sessions/{sid}/results?after={after}&limit=1000", deadline
            )
            final.results += [
                ResultEntry(r["seq"], r["task_id"], r["status"]) for r in page["results"]
            ]
            if not page["has_more"]:
                break
            after = page["next_after"]
        final.last_seq = (await self.get_json(sid, f"/v1/sessions/{sid}", deadline))["last_seq"]
        return final
