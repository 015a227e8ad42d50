"""The embedded entry point: ``async with Orchestrator(config) as orch: ...``.

It builds the runtime (store, agents, scheduler, directory), recovers tasks a previous
process left unfinished, runs the periodic sweeps, and shuts everything down in order:
intake closed → turns get their grace period → tasks interrupted, each with its one
completion recorded → sessions passivated → actors stopped → store closed.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from greenroom.actors import bridge
from greenroom.actors import messages as m
from greenroom.actors.runtime import Runtime, State
from greenroom.agents import CallableAgent, build_agent
from greenroom.api import Session
from greenroom.errors import AgentNotFoundError, ConfigError, NotRunningError, ShuttingDownError
from greenroom.logs import get_logger
from greenroom.metrics import Metrics, metrics_for
from greenroom.models import SessionInfo, SessionRecord, SessionsPage, new_id, now
from greenroom.settings import Settings
from greenroom.store.lock import DataDirLock
from greenroom.typing import Agent, AgentCallable, Store

if TYPE_CHECKING:
    from greenroom.cluster import Node

log = get_logger()

ConfigLike = Settings | Mapping[str, Any] | str | os.PathLike[str] | None


def resolve_settings(config: ConfigLike) -> Settings:
    """Settings from a Settings, a nested dict, a TOML path, or None (the defaults).

    Raises:
        ConfigError: the configuration is invalid.
    """
    if isinstance(config, Settings):
        return config
    from greenroom.config import load_settings

    if config is None:
        return load_settings()
    if isinstance(config, Mapping):
        return load_settings(overrides=config)
    return load_settings(config)


class Orchestrator:
    """Runs sessions and their background tasks in this process.

    Its lifecycle is one :class:`~greenroom.actors.runtime.State`: ``new`` → ``starting``
    → ``running`` → ``closing`` → ``closed``. ``closed`` is final: make a new
    Orchestrator to run again.

    Args:
        config: a :class:`Settings`, a nested dict shaped like the TOML file, a path to
            a TOML file, or None for the defaults (plus ``GREENROOM_*`` variables).
        store: use this store instead of the one the settings name (tests, embedding).

    Raises:
        ConfigError: the configuration is invalid.
    """

    def __init__(self, config: ConfigLike = None, *, store: Store | None = None) -> None:
        self.settings = resolve_settings(config)
        self._store = store
        self._agents: dict[str, Agent] = {}
        self._runtime: Runtime | None = None
        self._state = State.NEW
        self._lock: DataDirLock | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}  # one live handle per periodic job
        self.metrics: Metrics = metrics_for(self.settings, lambda: self._runtime)
        """This orchestrator's Prometheus metrics, in a registry of its own."""
        for name, agent_settings in self.settings.agents.items():
            self._agents[name] = build_agent(
                name, agent_settings, on_retry=self.metrics.agent_retry
            )

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Orchestrator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def state(self) -> State:
        """Where the orchestrator is in its lifecycle."""
        return self._state

    @property
    def node(self) -> Node | None:
        """This process's cluster membership (PostgreSQL store, while running), else None."""
        runtime = self._runtime
        return runtime.node if runtime is not None else None

    @property
    def runtime(self) -> Runtime:
        """The runtime, while starting, running or closing.

        Raises:
            NotRunningError: the orchestrator is not started, or already stopped.
        """
        runtime = self._runtime
        if runtime is None:
            raise NotRunningError(_not_running(self._state), self._state.value)
        return runtime

    @property
    def running(self) -> bool:
        """Whether new work is accepted."""
        return self._state is State.RUNNING

    async def start(self) -> None:
        """Open the store, start the actors, recover unfinished tasks.

        A task the last process left queued is queued again; one it left running runs
        again if it has attempts left (``max_attempts``), else it ends ``interrupted``.

        Raises:
            RuntimeError: already started (or stopped: a stopped orchestrator is final).
            ConfigError: ``default_agent`` names no agent.
            StoreError: the store cannot be opened, or another process holds the data dir.
        """
        if self._state is not State.NEW:
            raise RuntimeError(f"the orchestrator cannot start: it is {self._state.value}")
        loop = asyncio.get_running_loop()
        if self.settings.default_agent not in self._agents:
            raise ConfigError(
                f"default_agent: {self.settings.default_agent!r} is not a "
                f"configured agent (known: {', '.join(sorted(self._agents))})"
            )
        self._state = State.STARTING
        try:
            store = await loop.run_in_executor(None, self._open_store)
        except BaseException:
            self._state = State.NEW
            raise
        runtime = self._runtime = Runtime(self.settings, store, loop, self._agents, self.metrics)
        if hasattr(store, "claim_and_load"):
            # Several nodes share the store: join the cluster. Unfinished tasks are
            # recovered by the node's orphan sweep, session by session, on whichever
            # node claims each session first.
            await self._join_cluster(runtime, store)
            unfinished = []
        else:
            unfinished = await loop.run_in_executor(None, store.unfinished_tasks)
        for task in unfinished:
            # Its session decides: queued again, run again (attempts left), or interrupted.
            log.info(
                "task_recovering",
                actor="orchestrator",
                task_id=task.id,
                session_id=task.session_id,
                was=task.status.value,
                attempt=task.attempt,
                max_attempts=task.max_attempts,
            )
            runtime.route(task.session_id, m.Recover(task.id))
        self._state = runtime.state = State.RUNNING
        self._schedule_sweep(runtime)
        if runtime.node is not None:
            runtime.node.start()
        log.info(
            "orchestrator_started",
            actor="orchestrator",
            store=type(store).__name__,
            recovered=len(unfinished),
            agents=sorted(self._agents),
        )

    async def _join_cluster(self, runtime: Runtime, store: Any) -> None:
        from greenroom.cluster import Node, node_identity

        node_id, url = node_identity(self.settings)
        node = Node(runtime, store, node_id, url, self.settings.cluster.lease_s)
        try:
            await runtime.loop.run_in_executor(None, node.join)
        except BaseException:
            runtime.directory.stop()
            await runtime.loop.run_in_executor(None, store.close)
            self._runtime = None
            self._state = State.NEW
            raise
        runtime.node = node

    def _open_store(self) -> Store:
        if self._store is not None:
            self._store.open()
            return self._store
        from greenroom.store import open_store

        if self.settings.store.kind == "sqlite":
            self._lock = DataDirLock(Path(self.settings.data_dir))
            self._lock.acquire()
        try:
            return open_store(self.settings)
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    def _schedule_sweep(self, runtime: Runtime) -> None:
        period_s = max(0.05, min(runtime.settings.limits.session_idle_s / 2, 5.0))

        trim = getattr(runtime.store, "trim_idle", None)  # idle read connections

        def tick() -> None:
            if runtime.taking_work:
                runtime.directory.actor_ref.tell(m.Sweep())
                if trim is not None:
                    runtime.read(trim, _ignore)
                self._timers["sweep"] = runtime.loop.call_later(period_s, tick)

        self._timers["sweep"] = runtime.loop.call_later(period_s, tick)
        self._schedule_prune(runtime)

    def _schedule_prune(self, runtime: Runtime) -> None:
        """Retention: prune acknowledged results older than ``retention_s``, off the loop."""
        retention_s = runtime.settings.limits.retention_s
        period_s = max(1.0, min(retention_s / 10, 3600.0))

        def pruned(outcome: Any) -> None:
            if isinstance(outcome, BaseException):  # a store fault: try again next period
                log.warning("prune_failed", actor="orchestrator", error=str(outcome))
            elif outcome:
                log.info("pruned", actor="orchestrator", rows=outcome)

        def tick() -> None:
            if runtime.taking_work:
                runtime.read(
                    lambda: runtime.store.prune(finished_before=now() - retention_s), pruned
                )
                self._timers["prune"] = runtime.loop.call_later(period_s, tick)

        self._timers["prune"] = runtime.loop.call_later(period_s, tick)

    async def stop(self) -> None:
        """Shut down in order; safe to call twice. Bounded by the configured grace.

        Intake closes, running turns get ``shutdown_grace_s`` to finish, queued tasks
        stay queued in the store for the next start, running tasks end ``interrupted``
        with their completion recorded (or, with attempts left, are kept for the next
        start), sessions are passivated, every actor stops, the store closes.
        """
        runtime = self._runtime
        if runtime is None or self._state is not State.RUNNING:
            return
        self._state = runtime.state = State.CLOSING
        for timer in self._timers.values():
            timer.cancel()
        if runtime.node is not None:
            runtime.node.stop_sweeping()
        grace_s = self.settings.server.shutdown_grace_s
        turns = set(runtime.active_turns)
        if turns:
            _, pending = await asyncio.wait(turns, timeout=grace_s)
            for turn in pending:
                turn.cancel()
            if pending:
                await asyncio.wait(pending, timeout=grace_s)
        await _interrupt_tasks(runtime, grace_s)
        reply = bridge.new_reply()
        runtime.directory.actor_ref.tell(m.PassivateAll(reply))
        try:
            await asyncio.wait_for(reply.future, grace_s + 5.0)
        except TimeoutError:
            log.error("shutdown_sessions_stuck", actor="orchestrator", **runtime.directory.stats())
        runtime.directory.stop()
        stuck = await runtime.wait_stopped(grace_s + 5.0)
        if stuck:
            log.error(
                "shutdown_actors_stuck", actor="orchestrator", count=stuck, **runtime.live_actors()
            )
        for agent in self._agents.values():
            await agent.aclose()
        loop = asyncio.get_running_loop()
        if runtime.node is not None:
            runtime.node.stop()
            try:  # the other nodes may take this node's sessions at once
                await loop.run_in_executor(None, runtime.node.leave)
            except Exception as exc:  # they will after the lease runs out
                log.warning("node_leave_failed", actor="orchestrator", error=str(exc))
        await loop.run_in_executor(None, runtime.store.close)
        if self._lock is not None:
            self._lock.release()
        self._runtime = None
        self._state = runtime.state = State.CLOSED
        log.info("orchestrator_stopped", actor="orchestrator")

    # --- agents and sessions ----------------------------------------------------------

    def register_agent(self, name: str, agent: AgentCallable | Agent) -> None:
        """Make ``agent`` available under ``name`` (replacing any agent of that name).

        ``agent`` is an :class:`~greenroom.typing.Agent`, or a callable taking the chat
        history and returning a ``str`` (or awaitable of one), or an async generator
        function yielding ``str`` chunks.

        Raises:
            ValueError: ``name`` is empty.
            TypeError: ``agent`` is neither an Agent nor callable.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError("name: must be a non-empty string")
        if isinstance(agent, Agent):
            self._agents[name] = agent
        else:
            self._agents[name] = CallableAgent(name, agent)

    async def create_session(
        self,
        agent: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> Session:
        """Create a session talking to ``agent`` (default: ``default_agent``).

        Raises:
            AgentNotFoundError: no such agent.
            TypeError: ``metadata`` is not a mapping.
            ShuttingDownError: the orchestrator is stopping.
            NotRunningError: the orchestrator is not started, or stopped.
            StoreError: the session could not be stored.
        """
        runtime = self._open_runtime()
        name = agent if agent is not None else self.settings.default_agent
        if name not in self._agents:
            raise AgentNotFoundError(
                f"unknown agent {name!r} (known: {', '.join(sorted(self._agents))})"
            )
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata: expected an object, got {type(metadata).__name__}")
        record = SessionRecord(new_id("ses"), name, now(), dict(metadata or {}))
        reply = bridge.new_reply()
        runtime.directory.create(record, reply, request_id)
        info: SessionInfo = await reply.future
        return Session(self, record.id, created=info)

    async def sessions(self, *, after: str | None = None, limit: int = 50) -> SessionsPage:
        """The sessions, newest first, one page at a time (a lost id can be found again).

        Args:
            after: ``next_after`` of the previous page.
            limit: sessions per page, 1 to 1000.

        Raises:
            ValueError: ``limit`` out of range or ``after`` not a string.
            NotRunningError: the orchestrator is not started, or stopped.
        """
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            raise ValueError(f"limit: must be between 1 and 1000, got {limit!r}")
        if after is not None and not isinstance(after, str):
            raise ValueError(f"after: expected a session id, got {after!r}")
        runtime = self.runtime
        found = await runtime.read_now(
            lambda: runtime.store.list_sessions(after=after, limit=limit + 1)
        )
        page = tuple(found[:limit])
        return SessionsPage(page, page[-1].id if page else after, len(found) > limit)

    def session(self, session_id: str) -> Session:
        """A handle on an existing session (calls raise SessionNotFoundError if it is not).

        Raises:
            NotRunningError: the orchestrator is not started, or stopped.
        """
        self.runtime  # noqa: B018  (raises when not running)
        return Session(self, session_id)

    async def check_store(self) -> None:
        """Check, off the loop, that the store can be read and written.

        Raises:
            StoreError: it cannot.
            NotRunningError: the orchestrator is not started, or stopped.
        """
        runtime = self.runtime
        await runtime.read_now(runtime.store.check)

    async def stats(self) -> dict[str, Any]:
        """Live sessions, live actors by kind, running and queued tasks, threads, and
        the store's open read connections.

        Raises:
            NotRunningError: the orchestrator is not started, or stopped.
        """
        runtime = self.runtime
        store = runtime.store
        readers = getattr(store, "read_connections", None)
        return {
            **runtime.directory.stats(),
            "actors": runtime.live_actors(),
            "tasks": runtime.scheduler.counts(),
            "threads": threading.active_count(),
            "store_read_connections": readers() if readers is not None else 0,
            "completions_unrecorded": len(runtime.unrecorded),
            "turns_unrecorded": len(runtime.turns_unrecorded),
            **({"cluster": runtime.node.stats()} if runtime.node is not None else {}),
        }

    def _open_runtime(self) -> Runtime:
        runtime = self.runtime
        if self._state is not State.RUNNING:
            raise ShuttingDownError("greenroom is shutting down; no new work is accepted")
        return runtime


def _ignore(outcome: Any) -> None:
    """A read whose outcome nobody needs."""


def _not_running(state: State) -> str:
    if state is State.NEW:
        return "the orchestrator is not started; use `async with` or start()"
    return f"the orchestrator is {state.value}; make a new one to run again"


async def _interrupt_tasks(runtime: Runtime, grace_s: float) -> None:
    """Shutdown: queued tasks stay queued in the store (the next start runs them);
    running ones end ``interrupted``, or, with attempts left, are kept for the next start."""
    queued, live = runtime.scheduler.close()
    for spec in queued:
        task = spec.task
        log.info(
            "task_kept_queued", actor="orchestrator", task_id=task.id, session_id=task.session_id
        )
    for ref in live:
        if ref.is_alive():
            ref.tell(m.Interrupt("shutdown"))
    if not await runtime.scheduler.wait_idle(grace_s + 5.0):
        log.error("shutdown_tasks_stuck", actor="orchestrator", **runtime.scheduler.counts())
