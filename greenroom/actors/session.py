"""The session actor: a thin pykka shell around :class:`SessionCore`.

It loads the session from the store when (re-)activated, dispatches each message to
the core, answers errors through the message's Reply, and logs every message it
handles with its correlation ids (invariant 7).
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from greenroom.actors import bridge
from greenroom.actors import messages as m
from greenroom.actors.runtime import Runtime
from greenroom.actors.session_core import SessionCore
from greenroom.errors import SessionNotFoundError, ShuttingDownError, StoreError
from greenroom.models import SessionSnapshot

log = structlog.get_logger("greenroom")

# Message type -> SessionCore method. One table instead of an if-chain.
_HANDLERS: dict[type, str] = {
    m.GetInfo: "info_message",
    m.StartTurn: "start_turn",
    m.TurnDelta: "turn_delta",
    m.TurnDone: "turn_done",
    m.GetMessages: "messages",
    m.StartTask: "start_task",
    m.TaskStarted: "task_started",
    m.TaskCompleted: "task_completed",
    m.GetTask: "get_task",
    m.ListTasks: "list_tasks",
    m.CancelTask: "cancel_task",
    m.GetResults: "get_results",
    m.Ack: "ack",
    m.Subscribe: "subscribe",
}


class SessionActor(bridge.LoopSafeActor):
    """One live session. Started by the directory; passivated by it when idle."""

    def __init__(
        self, runtime: Runtime, session_id: str, create: m.CreateSession | None = None
    ) -> None:
        super().__init__()
        self.runtime = runtime
        self.session_id = session_id
        self.create = create
        self.core: SessionCore | None = None
        self.unavailable: Exception | None = None  # missing session or store failure
        self.log = log.bind(actor="session", session_id=session_id)

    def on_start(self) -> None:
        try:
            self.core = self._activate()
        except Exception as exc:
            self.unavailable = exc
            if self.create is not None:
                self.create.reply.fail(exc)
            self.runtime.route(self.session_id, _Gone())

    def _activate(self) -> SessionCore:
        store, limits = self.runtime.store, self.runtime.settings.limits
        if self.create is not None:
            record = self.create.record
            store.commit(record.id, session=record)
            snapshot = SessionSnapshot(record, [], [], 0, 0, [])
            core = SessionCore(self.runtime, snapshot, self.actor_ref)
            self.create.reply.send(core.info())
            self.log.info("session_created", agent=record.agent, request_id=self.create.request_id)
            return core
        loaded = store.load_session(self.session_id, recent_events=limits.replay_events)
        if loaded is None:
            raise SessionNotFoundError(f"no session {self.session_id!r}")
        self.log.info("session_activated", tasks=len(loaded.tasks), last_seq=loaded.last_seq)
        return SessionCore(self.runtime, loaded, self.actor_ref)

    def on_receive(self, message: Any) -> Any:
        started = time.perf_counter()
        try:
            self._dispatch(message)
        except Exception as exc:
            reply = getattr(message, "reply", None)
            if reply is not None:
                reply.fail(exc)
            if not isinstance(exc, (LookupError, ValueError, TypeError, RuntimeError, StoreError)):
                self.log.error(
                    "actor_crashed",
                    msg=type(message).__name__,
                    error_type=type(exc).__name__,
                    error=str(exc),
                    exc_info=True,
                )
        self.log.info(
            "actor_message",
            msg=type(message).__name__,
            request_id=getattr(message, "request_id", None),
            task_id=_task_id(message),
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return None

    def _dispatch(self, message: Any) -> None:
        if isinstance(message, m.Passivate):
            self._passivate(message.force)
            return
        if isinstance(message, _Gone):
            bridge.tell(self.runtime.directory, m.SessionGone(self.session_id))
            return
        core = self.core
        if core is None:
            assert self.unavailable is not None
            raise self.unavailable
        if isinstance(message, m.DropWaiter):
            core.drop_waiter(message.waiter_id)
        elif isinstance(message, m.Unsubscribe):
            core.unsubscribe(message.subscriber_id)
        else:
            getattr(core, _HANDLERS[type(message)])(message)

    def _passivate(self, force: bool) -> None:
        core = self.core
        if core is not None and not core.idle and not force:
            bridge.tell(self.runtime.directory, m.PassivateRefused(self.session_id))
            return
        if core is not None:
            core.close_subscribers()
            for waiter in core.waiters.values():
                waiter.reply.fail(ShuttingDownError("the session is shutting down"))
            core.waiters.clear()
            self.log.info("session_passivated", forced=force)
        bridge.tell(self.runtime.directory, m.Passivated(self.session_id))
        bridge.stop(self.actor_ref)


class _Gone:
    """Self-addressed through the directory: this session could not be activated."""

    request_id = None


def _task_id(message: Any) -> str | None:
    if isinstance(message, m.TaskCompleted):
        return message.task.id
    return getattr(message, "task_id", None)
