"""Prometheus metrics of one orchestrator, in a registry of its own.

Every :class:`~greenroom.Orchestrator` keeps its metrics in its own
``prometheus_client.CollectorRegistry``, never in the library's global ``REGISTRY``: two
orchestrators in one process do not collide, a program that embeds greenroom finds its
own registry untouched, and each node of several exports only its own figures
(``GET /metrics``). With ``server.metrics = false`` the orchestrator gets
:class:`Metrics`, whose every hook does nothing.

The core calls one hook per event, each on the event loop, so no metric lock is ever
contended. Store writes are the richest hook: a write that records a task queued,
started or ended counts it, and the moment its outcome reaches the loop gives the store
write latency and, for an ended task, the completion latency (the task's end until its
completion is recorded and published). The other values (tasks queued and running,
live and passivated sessions) are read when scraped.

Label values are bounded: agent names, task statuses, route templates, methods, status
codes, retry causes; never a session or task id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

# Imported with the module, not on first use: the first import of prometheus_client
# reads /proc for its global process collector, which must not happen on the event loop.
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from greenroom.logs import get_logger
from greenroom.models import TaskStatus, Write

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from greenroom.actors.runtime import Runtime
    from greenroom.settings import Settings

log = get_logger()
Done = Callable[[BaseException | None], None]

_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_HTTP_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_TASK_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"
"""The ``route`` label of a request that matched no route (a 404 or 405 by path)."""


class Metrics:
    """No metrics (``server.metrics = false``): every hook returns at once.

    :class:`PrometheusMetrics` is the real one; the core calls the same hooks on both.
    """

    enabled = False
    registry: CollectorRegistry | None = None

    def store_write(self, write: Write, done: Done) -> Done:
        """The ``done`` callback to hand the store for ``write`` (here: ``done`` itself)."""
        return done

    def http_request(self, route: str, method: str, status: int | str, duration_s: float) -> None:
        """A request ended: ``route`` is its template (``/v1/sessions/{sid}``)."""

    def agent_retry(self, agent: str, cause: str) -> None:
        """An agent is about to retry an upstream call that failed for ``cause``."""

    def sse_opened(self) -> None:
        """An SSE subscriber connected."""

    def sse_closed(self) -> None:
        """An SSE subscriber left."""

    async def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The metrics in the text format ``accept`` asks for, and its content type.

        Raises:
            LookupError: metrics are off.
        """
        raise LookupError("metrics are off (server.metrics = false)")


NO_METRICS = Metrics()
"""The shared do-nothing instance (a runtime built without an orchestrator uses it)."""


class PrometheusMetrics(Metrics):
    """The metrics of one orchestrator, in their own ``CollectorRegistry``.

    Args:
        runtime: returns the orchestrator's runtime while it runs, else None (the values
            read at scrape time are then zero).
    """

    enabled = True

    def __init__(self, runtime: Callable[[], Runtime | None]) -> None:
        self._runtime = runtime
        self._stored_sessions = 0  # refreshed from the store before each scrape
        registry = self.registry = self._registry = CollectorRegistry(auto_describe=True)
        self.tasks_queued = Counter(
            "greenroom_tasks_queued",
            "Tasks that entered the queue: new ones, and running ones queued again after a "
            "restart.",
            ["agent"],
            registry=registry,
        )
        self.tasks_started = Counter(
            "greenroom_tasks_started",
            "Task attempts that began running.",
            ["agent"],
            registry=registry,
        )
        self.tasks_ended = Counter(
            "greenroom_tasks_ended",
            "Tasks whose one completion was recorded, by terminal status.",
            ["agent", "status"],
            registry=registry,
        )
        self.completion_latency = Histogram(
            "greenroom_completion_latency_seconds",
            "From a task's end (finished_at: the agent's answer, error, timeout or cancel) "
            "until its completion is stored and published to subscribers and waiters.",
            registry=registry,
            buckets=_LATENCY_BUCKETS_S,
        )
        self.task_duration = Histogram(
            "greenroom_task_duration_seconds",
            "From a task's start to its end (tasks that started).",
            ["agent", "status"],
            registry=registry,
            buckets=_TASK_BUCKETS_S,
        )
        self.store_write_latency = Histogram(
            "greenroom_store_write_seconds",
            "From handing a write to the store until its outcome is back on the loop.",
            registry=registry,
            buckets=_LATENCY_BUCKETS_S,
        )
        self.store_write_errors = Counter(
            "greenroom_store_write_errors",
            "Store writes that failed (each is retried or refused, never lost silently).",
            registry=registry,
        )
        self.http_duration = Histogram(
            "greenroom_http_request_duration_seconds",
            "HTTP requests by route template; an SSE stream counts once it ends.",
            ["method", "route", "code"],
            registry=registry,
            buckets=_HTTP_BUCKETS_S,
        )
        self.sse_subscribers = Gauge(
            "greenroom_sse_subscribers", "Open SSE event streams.", registry=registry
        )
        self.agent_retries = Counter(
            "greenroom_agent_retries",
            "Upstream agent calls retried, by cause (http_429, http_503, connection, ...).",
            ["agent", "cause"],
            registry=registry,
        )
        registry.register(_Live(self))
        # labels() takes a lock and checks its arguments: keep the children per request
        # shape (bounded, since every label value is).
        self._http_children: dict[tuple[str, str, int | str], Any] = {}

    # --- hooks --------------------------------------------------------------------------

    def store_write(self, write: Write, done: Done) -> Done:
        started = time.perf_counter()

        def finished(error: BaseException | None) -> None:
            self.store_write_latency.observe(time.perf_counter() - started)
            done(error)  # the session records and publishes what the write made durable
            if error is not None:
                self.store_write_errors.inc()
            elif write.tasks:
                self._tasks_written(write)

        return finished

    def _tasks_written(self, write: Write) -> None:
        wall = time.time()
        for task in write.tasks:
            status = task.status
            if status is TaskStatus.QUEUED:
                self.tasks_queued.labels(task.agent).inc()
            elif status is TaskStatus.RUNNING:
                self.tasks_started.labels(task.agent).inc()
            else:
                self.tasks_ended.labels(task.agent, status.value).inc()
                if task.finished_at is not None:
                    self.completion_latency.observe(max(0.0, wall - task.finished_at))
                    if task.started_at is not None:
                        duration_s = max(0.0, task.finished_at - task.started_at)
                        self.task_duration.labels(task.agent, status.value).observe(duration_s)

    def http_request(self, route: str, method: str, status: int | str, duration_s: float) -> None:
        key = (method, route, status)
        child = self._http_children.get(key)
        if child is None:
            method = method if method in _METHODS else "other"
            child = self.http_duration.labels(method, route, str(status))
            self._http_children[key] = child
        child.observe(duration_s)

    def agent_retry(self, agent: str, cause: str) -> None:
        self.agent_retries.labels(agent, cause).inc()

    def sse_opened(self) -> None:
        self.sse_subscribers.inc()

    def sse_closed(self) -> None:
        self.sse_subscribers.dec()

    async def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        runtime = self._runtime()
        if runtime is not None:
            store = runtime.store
            try:
                self._stored_sessions = await runtime.read_now(store.count_sessions)
            except Exception as exc:  # a store fault: keep the last count, still answer
                log.warning("metrics_session_count_failed", actor="metrics", error=str(exc))
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self._registry), content_type

    def live_values(self) -> tuple[dict[str, int], dict[str, int]]:
        """Tasks by state (running, queued) and sessions by state (live, passivated)."""
        runtime = self._runtime()
        if runtime is None:
            return {"running": 0, "queued": 0}, {"live": 0, "passivated": 0}
        counts = runtime.scheduler.counts()
        live = runtime.directory.stats()["live_sessions"]
        tasks = {"running": counts["running"], "queued": counts["queued"] + counts["reserved"]}
        return tasks, {"live": live, "passivated": max(0, self._stored_sessions - live)}


class _Live:
    """Values read when scraped: tasks queued and running, sessions live and passivated."""

    def __init__(self, metrics: PrometheusMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterator[Metric]:
        yield from self._families(None)

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self.metrics.live_values())

    def _families(self, values: tuple[dict[str, int], dict[str, int]] | None) -> Iterator[Metric]:
        tasks = GaugeMetricFamily(
            "greenroom_tasks", "Tasks now running or queued.", labels=["state"]
        )
        sessions = GaugeMetricFamily(
            "greenroom_sessions",
            "Sessions with a live actor, and stored sessions that are passivated (asleep).",
            labels=["state"],
        )
        if values is not None:
            for state, value in values[0].items():
                tasks.add_metric([state], value)
            for state, value in values[1].items():
                sessions.add_metric([state], value)
        yield tasks
        yield sessions
        yield from self._cluster(values is not None)

    def _cluster(self, with_values: bool) -> Iterator[Metric]:
        """Several nodes: this node's lease and its traffic with the others (no samples
        on a single node)."""
        lease = GaugeMetricFamily(
            "greenroom_node_lease_ok", "1 while this node holds a valid lease, else 0."
        )
        forwarded = CounterMetricFamily(
            "greenroom_forwarded_requests",
            "Requests this node forwarded to the node that owns their session.",
        )
        lost = CounterMetricFamily(
            "greenroom_leases_lost",
            "Times this node's lease lapsed and it let go of every session.",
        )
        orphans = CounterMetricFamily(
            "greenroom_orphan_sessions_activated",
            "Sessions of a dead node (with queued or running tasks) this node took over.",
        )
        runtime = self.metrics._runtime() if with_values else None
        node = runtime.node if runtime is not None else None
        if node is not None:
            lease.add_metric([], 1 if node.lease_ok else 0)
            forwarded.add_metric([], node.forwarded)
            lost.add_metric([], node.leases_lost)
            orphans.add_metric([], node.activated_orphans)
        yield from (lease, forwarded, lost, orphans)


def metrics_for(settings: Settings, runtime: Callable[[], Runtime | None]) -> Metrics:
    """:class:`PrometheusMetrics` when ``server.metrics`` is on, else the no-op one."""
    return PrometheusMetrics(runtime) if settings.server.metrics else NO_METRICS
