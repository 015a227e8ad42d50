"""The directory: which incarnation of each session is live, and passivation.

Two ways in, both on the loop's thread:

* :meth:`DirectoryActor.route` is the direct route. Whoever runs on the loop (an HTTP
  handler, the embedded API, a task actor) calls it; it looks the session up and puts
  the message straight into the live actor's mailbox — no hop through the directory's
  own mailbox. A session that is asleep is activated on the spot.
* The directory's mailbox takes the lifecycle messages: ``Passivated``,
  ``PassivateRefused`` and ``SessionGone`` from sessions, ``Sweep`` and ``PassivateAll``
  from the orchestrator. Each lifecycle message names the incarnation (``generation``)
  it is about; one about an incarnation that is no longer the live one is stale and
  ignored, so a late message can never remove a newer actor's entry.

Passivation is a handshake: the directory sends ``Passivate`` and, until the session
answers, buffers that session's messages; if it stopped, the buffer goes to a fresh
incarnation, else back to the same actor. No message is dropped because its session
was asleep, and two incarnations never serve one session.

Failure policy: a handler error in the directory is logged (``actor_crashed``) and the
directory goes on. Its table is the only record of the live actors; stopping it would
orphan every one of them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pykka

from greenroom.actors import bridge
from greenroom.actors import messages as m
from greenroom.actors.dispatch import LoopActor, log_crash
from greenroom.actors.session import SessionActor
from greenroom.errors import ShuttingDownError
from greenroom.logs import get_logger
from greenroom.models import SessionInfo, SessionRecord, Write

if TYPE_CHECKING:
    from greenroom.actors.runtime import Runtime

log = get_logger()


@dataclass(slots=True)
class _Entry:
    sid: str
    ref: Any
    generation: int
    last_used: float
    passivating: bool = False
    buffer: list[Any] = field(default_factory=list)


class DirectoryActor(LoopActor):
    """Owns the live-session table; one per orchestrator."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime.loop)
        runtime.started(self, "directory")
        self.runtime = runtime
        self.live: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self.generations = 0
        self.drain: tuple[bridge.Reply, set[str]] | None = None  # PassivateAll in progress
        self.closed = False  # set once shutdown has passivated every session
        self.in_flight = 0  # entries asked to passivate that have not answered yet
        self.stale = 0  # lifecycle messages ignored because they named an old incarnation
        self.warned_over_bound = False
        self.log = log.bind(actor="directory")

    # --- the direct route (loop thread) ---------------------------------------------

    def route(self, sid: str, message: Any) -> None:
        """Deliver ``message`` to session ``sid``, activating it if asleep."""
        node = self.runtime.node
        if node is not None and node.valid_until and not node.lease_ok:
            node.lapsed("no renewal within the lease")  # before serving anything stale
        entry = self.live.get(sid)
        activated = entry is None
        if entry is None:
            if self.closed:
                # Shutdown passivated every session: wake none. Whoever waits hears why.
                _fail(message, ShuttingDownError("greenroom is shutting down"))
                return
            entry = self._activate(sid, None)
        if entry.passivating:
            entry.buffer.append(message)
            return
        entry.last_used = time.monotonic()
        self.live.move_to_end(sid)
        try:
            entry.ref.tell(message)
        except pykka.ActorDeadError:
            # Stopped from outside without the handshake: forget it, use a new incarnation.
            self.log.warning("session_actor_died", session_id=sid, generation=entry.generation)
            del self.live[sid]
            self.route(sid, message)
            return
        if activated:
            # Deliver first, then make room: never pick the session just woken, or it
            # would be passivated before its message and woken again, forever.
            self._enforce_bound(keep=sid)

    def create(self, record: SessionRecord, reply: bridge.Reply, request_id: str | None) -> None:
        """Start the first incarnation of a new session; ``reply`` gets its info."""
        if self.closed:
            reply.fail(ShuttingDownError("greenroom is shutting down"))
            return
        if self.runtime.node is not None:
            self._create_unowned(record, reply, request_id)
            return
        self._activate(record.id, (record, reply, request_id))
        self._enforce_bound(keep=record.id)

    def _create_unowned(
        self, record: SessionRecord, reply: bridge.Reply, request_id: str | None
    ) -> None:
        """Cluster: store the session owned by no node. Its first request claims it on
        whichever node the load balancer hashes its id to, so it needs no forward."""

        def stored(error: BaseException | None) -> None:
            if error is not None:
                reply.fail(error)
                return
            reply.send(SessionInfo.new(record))
            self.log.info(
                "session_created", session_id=record.id, agent=record.agent, request_id=request_id
            )

        self.runtime.persist(Write(record.id, session=record), stored)

    def retire(self, sid: str, generation: int) -> None:
        """Forget incarnation ``generation`` now (it crashed); its buffer goes on."""
        entry = self._current(sid, generation)
        if entry is not None:
            self._forget(sid, entry)

    def passivate_all_now(self) -> None:
        """This node lost its lease: passivate every live session at once, busy or not.
        What arrives meanwhile is buffered and goes to a new incarnation, which must
        claim the session again first."""
        for entry in list(self.live.values()):
            self._passivate(entry, force=True)

    def stats(self) -> dict[str, int]:
        """Live sessions and ignored stale lifecycle messages."""
        return {
            "live_sessions": len(self.live),
            "passivating": self.in_flight,
            "stale_lifecycle_messages": self.stale,
        }

    def _activate(self, sid: str, create: Any) -> _Entry:
        self.generations += 1
        ref = SessionActor.start(self.runtime, sid, self.generations, create)
        entry = _Entry(sid, ref, self.generations, time.monotonic())
        self.live[sid] = entry
        return entry

    # --- the mailbox: lifecycle -----------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        try:
            self._receive(message)
        except Exception as exc:  # the failure policy: log, keep the table, go on
            log_crash(self.log, message, exc)
        return None

    def _receive(self, message: Any) -> None:
        if isinstance(message, m.Passivated):
            entry = self._current(message.session_id, message.generation)
            if entry is not None:
                self._forget(message.session_id, entry)
        elif isinstance(message, m.SessionGone):
            entry = self._current(message.session_id, message.generation)
            if entry is not None:
                entry.ref.stop(block=False)  # after it answered what it already holds
                self._forget(message.session_id, entry)
        elif isinstance(message, m.PassivateRefused):
            self._refused(message)
        elif isinstance(message, m.Sweep):
            self._sweep()
        elif isinstance(message, m.PassivateAll):
            self._passivate_all(message.reply)

        else:
            super().on_receive(message)

    def _current(self, sid: str, generation: int) -> _Entry | None:
        entry = self.live.get(sid)
        if entry is None or entry.generation != generation:
            self.stale += 1
            live = entry.generation if entry is not None else None
            self.log.debug(
                "stale_lifecycle_message", session_id=sid, generation=generation, live=live
            )
            return None
        return entry

    def _forget(self, sid: str, entry: _Entry) -> None:
        del self.live[sid]
        if entry.passivating:
            self.in_flight -= 1
        if self.drain is not None:
            self.drain[1].discard(sid)
            self._finish_drain()
        for buffered in entry.buffer:
            self.route(sid, buffered)

    def _refused(self, message: m.PassivateRefused) -> None:
        sid = message.session_id
        entry = self._current(sid, message.generation)
        if entry is None or (self.drain is not None and sid in self.drain[1]):
            return  # shutting down: a forced Passivate is already on its way
        entry.passivating = False
        self.in_flight -= 1
        buffered, entry.buffer = entry.buffer, []
        for queued in buffered:
            entry.ref.tell(queued)

    def _passivate(self, entry: _Entry, force: bool = False) -> None:
        if not entry.passivating:
            self.in_flight += 1
        entry.passivating = True
        try:
            entry.ref.tell(m.Passivate(entry.generation, force))
        except pykka.ActorDeadError:
            # Stopped without the handshake: as good as passivated.
            self.log.warning(
                "session_actor_died", session_id=entry.sid, generation=entry.generation
            )
            if self.live.get(entry.sid) is entry:
                self._forget(entry.sid, entry)

    def _sweep(self) -> None:
        idle_before = time.monotonic() - self.runtime.settings.limits.session_idle_s
        for entry in list(self.live.values()):
            if not entry.passivating and entry.last_used <= idle_before:
                self._passivate(entry)
        self._enforce_bound()

    def _enforce_bound(self, keep: str | None = None) -> None:
        bound = self.runtime.settings.limits.max_live_sessions
        excess = len(self.live) - self.in_flight - bound
        if excess <= 0:
            return
        asked = 0
        for sid, entry in self.live.items():  # least recently used first; stop when enough
            if asked >= excess:
                break
            if not entry.passivating and sid != keep:
                self._passivate(entry)
                asked += 1
        if asked == 0 and not self.warned_over_bound:
            self.warned_over_bound = True
            self.log.warning("live_sessions_over_bound", live=len(self.live), bound=bound)

    def _passivate_all(self, reply: bridge.Reply) -> None:
        self.drain = (reply, set(self.live))
        for entry in list(self.live.values()):
            self._passivate(entry, force=True)
        self._finish_drain()

    def _finish_drain(self) -> None:
        if self.drain is not None and not self.drain[1]:
            self.closed = True
            self.drain[0].send(None)
            self.drain = None

    def on_reaped(self) -> None:
        self.runtime.reaped(self)


def _fail(message: Any, error: BaseException) -> None:
    reply = getattr(message, "reply", None)
    if reply is not None:
        reply.fail(error)
