"""The session actor: a thin shell that carries out what :class:`SessionCore` decides.

It loads the session from the store when (re-)activated (off the loop, mailbox paused
until the snapshot arrives), feeds each message to the core, carries out the effects
in order, and logs every message it handles with its correlation ids (invariant 7).
While an effect's outcome is awaited (a write, a read) the mailbox is paused: the next
message is handled only after the change is durable and everyone concerned was told.

Failure policy: an error meant for the caller (bad input, not found, capacity) is
answered through the message's reply. Anything else is a bug: the reply fails, the
actor logs ``actor_crashed`` and retires — the directory forgets this incarnation and
the next message activates a fresh one from the store, which holds the truth.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from greenroom.actors import bridge
from greenroom.actors import effects as fx
from greenroom.actors import messages as m
from greenroom.actors.dispatch import LoopActor, log_crash
from greenroom.actors.scheduler import TaskSpec
from greenroom.actors.session_core import _HANDLERS, STORE_RETRY_S, SessionCore
from greenroom.errors import (
    GreenroomError,
    OwnedElsewhereError,
    SessionNotFoundError,
    ShuttingDownError,
    StoreError,
    StoreInDoubtError,
)
from greenroom.logs import get_logger
from greenroom.models import ErrorInfo, SessionRecord, SessionSnapshot, TaskStatus, Write, now

if TYPE_CHECKING:
    from greenroom.actors.runtime import Runtime

log = get_logger()

_QUIET = (GreenroomError, LookupError, ValueError, TypeError)  # the caller's concern


class SessionActor(LoopActor):
    """One incarnation of a live session. Started and passivated by the directory.

    Args:
        runtime: the shared runtime.
        session_id: the session.
        generation: this incarnation's number; every lifecycle message names it.
        create: for a new session, the record to store and the reply awaiting it.
    """

    def __init__(
        self,
        runtime: Runtime,
        session_id: str,
        generation: int,
        create: tuple[SessionRecord, bridge.Reply, str | None] | None = None,
    ) -> None:
        super().__init__(runtime.loop)
        runtime.started(self, "session")
        self.runtime = runtime
        self.session_id = session_id
        self.generation = generation
        self.create = create
        self.fence: int | None = None  # the lease generation this incarnation claimed (cluster)
        self.core: SessionCore | None = None
        self.unavailable: BaseException | None = None  # missing session or store failure
        self.retired = False
        self.request_id: str | None = None  # of the message whose step is under way
        self.log = log.bind(actor="session", session_id=session_id)

    # --- activation -----------------------------------------------------------------

    def on_start(self) -> None:
        self.pause()
        rt = self.runtime
        if self.create is not None:
            record = self.create[0]
            rt.persist(Write(record.id, session=record), self._created)
            return
        depth = rt.settings.limits.replay_events
        sid = self.session_id
        node = rt.node
        if node is None:
            rt.read(lambda: rt.store.load_session(sid, recent_events=depth), self._loaded)
        elif not node.lease_ok:
            self._loaded(StoreError(f"node {node.node_id} has no valid lease; retry shortly"))
        else:
            claim = node.store.claim_and_load
            rt.read(lambda: claim(sid, node.node_id, recent_events=depth), self._claimed)

    def _claimed(self, outcome: Any) -> None:
        """Cluster: this node now owns the session under generation ``outcome[0]``."""
        if not isinstance(outcome, tuple):
            self._loaded(outcome)
            return
        self.fence, snapshot = outcome
        self._loaded(snapshot)
        runtime = self.runtime
        for task in snapshot.tasks:
            if task.status.terminal or runtime.scheduler.holds(task.id):
                continue
            ended = runtime.unrecorded.get(task.id)
            if ended is not None:
                # It ended here, but the last incarnation could not store that (a write
                # of unknown outcome, a lapsed lease): record it now, not "interrupted".
                self.actor_ref.tell(ended)
            else:
                # Orphaned by a node that died (or by this one before a restart).
                self.actor_ref.tell(m.Recover(task.id))

    def _created(self, error: BaseException | None) -> None:
        assert self.create is not None
        record, reply, request_id = self.create
        self.create = None
        if error is not None:
            reply.fail(error)
            self._unavailable(error)
        else:
            self.core = self._core(SessionSnapshot(record, [], [], 0, 0, []))
            reply.send(self.core.info())
            self.log.info("session_created", agent=record.agent, request_id=request_id)
        self.resume()

    def _loaded(self, outcome: Any) -> None:
        if isinstance(outcome, BaseException):
            self._unavailable(outcome)
        elif outcome is None:
            self._unavailable(SessionNotFoundError(f"no session {self.session_id!r}"))
        else:
            self.core = self._core(outcome)
            self.log.info(
                "session_activated",
                tasks=len(outcome.tasks),
                last_seq=outcome.last_seq,
                generation=self.fence,
            )
        self.resume()

    def _core(self, snapshot: SessionSnapshot) -> SessionCore:
        settings = self.runtime.settings
        core = SessionCore(
            snapshot,
            settings.limits,
            self.runtime.agents.keys(),
            log_content=settings.logging.log_content,
        )
        core.resume_turn(self.runtime.turns_unrecorded)
        return core

    def _unavailable(self, error: BaseException) -> None:
        self.unavailable = error
        self.runtime.directory.actor_ref.tell(m.SessionGone(self.session_id, self.generation))

    # --- messages -------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        started = time.perf_counter()
        self.request_id = getattr(message, "request_id", None)
        if isinstance(message, m.Passivate):
            self._passivate(message)
        elif self.retired:
            self.runtime.route(self.session_id, message)  # to the next incarnation
        elif type(message) not in _HANDLERS:
            return super().on_receive(message)  # a warning, never a silent drop
        elif self.core is None:
            self._unserved(message)
        elif not self.runtime.taking_work and isinstance(message, m.StartTask | m.StartTurn):
            message.reply.fail(ShuttingDownError("greenroom is shutting down; no new work"))
        else:
            self._step(lambda core: core.handle(message, now()), message)
        self.log.info(
            "actor_message",
            msg=type(message).__name__,
            request_id=self.request_id,
            task_id=_task_id(message),
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return None

    def _unserved(self, message: Any) -> None:
        """This incarnation could not load its session: answer, or keep the news."""
        error = self.unavailable or SessionNotFoundError(self.session_id)
        reply = getattr(message, "reply", None)
        if reply is not None:
            reply.fail(error)
        elif isinstance(error, OwnedElsewhereError):
            # Another node owns the session now and has recovered its tasks: a late
            # completion from here is not applied (the lease fences it anyway).
            self.log.warning("message_for_session_owned_elsewhere", msg=type(message).__name__)
            self._forget_completion(message)
        elif isinstance(error, StoreError):
            # A completion or a turn's end must not be lost to a store fault at
            # activation: send it again later, to whichever incarnation is live then.
            self.log.error("message_store_retry", msg=type(message).__name__, error=str(error))
            self.runtime.call_later(STORE_RETRY_S, self.session_id, message)
        else:
            self.log.warning("message_for_missing_session", msg=type(message).__name__)
            self._forget_completion(message)

    def _forget_completion(self, message: Any) -> None:
        if isinstance(message, m.TaskCompleted):
            self.runtime.unrecorded.pop(message.task.id, None)
        elif isinstance(message, m.TurnDone):
            self.runtime.turns_unrecorded.discard(message.turn_id)

    def _step(self, decide: Any, message: Any) -> None:
        core = self.core
        assert core is not None
        try:
            self._run(decide(core))
        except Exception as exc:
            self._crashed(message, exc)

    def _crashed(self, message: Any, exc: Exception) -> None:
        reply = getattr(message, "reply", None)
        if reply is not None:
            reply.fail(exc)
        if isinstance(exc, _QUIET):
            return
        log_crash(self.log, message, exc)
        self._retire(exc)

    def _retire(self, error: BaseException) -> None:
        """End this incarnation now; the directory routes what comes next to a new one."""
        if isinstance(error, StoreInDoubtError):
            self.log.warning("session_reloading", error_type=type(error).__name__, error=str(error))
        core, self.core = self.core, None
        if core is not None:
            self._run(core.passivate(error))
        self.retired = True
        self.runtime.directory.retire(self.session_id, self.generation)
        self.resume()
        self.stop()

    def _run(self, effects: list[fx.Effect]) -> None:
        for effect in effects:
            handler = _EFFECTS[type(effect)]
            handler(self, effect)

    def _resolved(self, outcome: Any) -> None:
        """The outcome of the awaited effect, on the loop."""
        if self.core is None:  # retired meanwhile
            return
        self._step(lambda core: core.resolve(outcome, now()), None)
        if isinstance(outcome, StoreInDoubtError) and self.core is not None:
            # The write may have landed, or another node holds the session now: what
            # this incarnation has in memory can no longer be trusted. The next
            # message activates a fresh one from the store (claiming it again).
            self._retire(outcome)
        elif self.core is not None and self.core.pending is None:
            self.resume()

    # --- effects --------------------------------------------------------------------

    def _persist(self, effect: fx.Persist) -> None:
        self.pause()
        write = effect.write
        if self.fence is not None:
            write = replace(write, fence=self.fence)
        self.runtime.persist(write, self._resolved)

    def _load_events(self, effect: fx.LoadEvents) -> None:
        self.pause()
        store, sid = self.runtime.store, self.session_id

        def load() -> tuple[int | None, list[Any]]:
            return store.first_seq(sid), store.events_after(sid, effect.after, effect.limit)

        self.runtime.read(load, self._resolved)

    def _reserve(self, effect: fx.Reserve) -> None:
        try:
            self.runtime.scheduler.reserve(force=effect.force)
        except Exception as exc:
            self._resolved_now(exc)
        else:
            self._resolved_now(None)

    def _resolved_now(self, outcome: Any) -> None:
        core = self.core
        assert core is not None
        self._run(core.resolve(outcome, now()))

    def _release(self, effect: fx.Release) -> None:
        self.runtime.scheduler.release()

    def _submit(self, effect: fx.Submit) -> None:
        self.runtime.scheduler.submit(TaskSpec(effect.task, effect.history))

    def _stop_task(self, effect: fx.StopTask) -> None:
        scheduler = self.runtime.scheduler
        if scheduler.dequeue(effect.task_id):
            core = self.core
            assert core is not None
            cancelled = core.tasks[effect.task_id].evolve(
                status=TaskStatus.CANCELLED,
                finished_at=now(),
                error=ErrorInfo("Cancelled", "cancelled before it started"),
            )
            self.runtime.report(m.TaskCompleted(cancelled, effect.request_id))
            return
        ref = scheduler.actor_for(effect.task_id)
        if ref is not None:
            ref.tell(m.Cancel(effect.request_id))
        # Otherwise it has just ended: its completion is on its way and wakes the waiter.

    def _run_turn(self, effect: fx.RunTurn) -> None:
        self.runtime.run_turn(effect.agent, effect.history, effect.ctx)

    def _answer(self, effect: fx.Answer) -> None:
        effect.to.send(effect.value)

    def _refuse(self, effect: fx.Refuse) -> None:
        effect.to.fail(effect.error)

    def _publish(self, effect: fx.Publish) -> None:
        for sub in effect.subscribers:
            bridge.call_on_loop(sub.loop, sub.stream.deliver, effect.event)

    def _close_streams(self, effect: fx.CloseStreams) -> None:
        for sub in effect.subscribers:
            bridge.call_on_loop(sub.loop, sub.stream.close)

    def _later(self, effect: fx.Later) -> None:
        self.runtime.call_later(effect.delay_s, self.session_id, effect.message)

    def _recorded(self, effect: fx.Recorded) -> None:
        self.runtime.unrecorded.pop(effect.task_id, None)
        self.runtime.turns_unrecorded.discard(effect.task_id)

    def _log(self, effect: fx.Log) -> None:
        fields = effect.fields
        if "request_id" not in fields:
            fields = dict(fields, request_id=self.request_id)
        getattr(self.log, effect.level)(effect.event, **fields)

    # --- passivation ----------------------------------------------------------------

    def _passivate(self, message: m.Passivate) -> None:
        directory = self.runtime.directory.actor_ref
        if message.generation != self.generation or self.retired:
            return
        core = self.core
        if core is not None and not core.idle and not message.force:
            directory.tell(m.PassivateRefused(self.session_id, self.generation))
            return
        if core is not None:
            self._run(core.passivate(ShuttingDownError("the session is shutting down")))
            self.log.info("session_passivated", forced=message.force)
        if self.fence is not None and not message.force:
            # Idle: give the lease up so that whichever node the next request reaches
            # claims it at once (refused, harmlessly, if another node has claimed it
            # since). Never when forced (a lapsed lease, shutdown): this node's tasks of
            # the session may still run, and the database's expiry decides who may take
            # it over (shutdown leaves the cluster once every task here has ended).
            self.runtime.persist(Write(self.session_id, fence=self.fence, release=True), _ignore)
        self.core = None
        self.retired = True
        directory.tell(m.Passivated(self.session_id, self.generation))
        self.stop()

    def on_reaped(self) -> None:
        self.runtime.reaped(self)

    def on_undelivered(self, message: Any) -> None:
        # Left behind when this incarnation stopped: the next one takes it.
        self.runtime.route(self.session_id, message)


def _ignore(outcome: Any) -> None:
    pass


def _task_id(message: Any) -> str | None:
    if isinstance(message, m.TaskCompleted):
        return message.task.id
    return getattr(message, "task_id", None)


_EFFECTS: dict[type, Any] = {
    fx.Persist: SessionActor._persist,
    fx.LoadEvents: SessionActor._load_events,
    fx.Reserve: SessionActor._reserve,
    fx.Release: SessionActor._release,
    fx.Submit: SessionActor._submit,
    fx.StopTask: SessionActor._stop_task,
    fx.RunTurn: SessionActor._run_turn,
    fx.Answer: SessionActor._answer,
    fx.Refuse: SessionActor._refuse,
    fx.Publish: SessionActor._publish,
    fx.CloseStreams: SessionActor._close_streams,
    fx.Later: SessionActor._later,
    fx.Recorded: SessionActor._recorded,
    fx.Log: SessionActor._log,
}
