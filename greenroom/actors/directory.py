"""The directory: maps session ids to live session actors, and passivates idle ones.

Every message to a session goes through here (``Route``), so sessions are addressed
by id and never by a ref that can go stale. Passivation is a handshake: the directory
sends ``Passivate`` and, until the session answers, buffers that session's messages;
if it stopped, the buffer goes to a fresh activation, else back to the same actor.
No message is ever dropped because its session was asleep, and two actors never run
for one session.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import structlog

from greenroom.actors import bridge
from greenroom.actors import messages as m
from greenroom.actors.runtime import Runtime
from greenroom.actors.session import SessionActor
from greenroom.errors import ShuttingDownError

log = structlog.get_logger("greenroom")


@dataclass(slots=True)
class _Entry:
    ref: Any
    last_used: float
    passivating: bool = False
    buffer: list[Any] = field(default_factory=list)


class DirectoryActor(bridge.LoopSafeActor):
    """Owns the live-session table; one per orchestrator."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime
        self.live: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self.drain: tuple[Any, set[str]] | None = None  # PassivateAll's reply and pending ids
        self.log = log.bind(actor="directory")
        self.warned_over_bound = False
        self.closed = False  # set once shutdown has passivated every session

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, m.Route):
            self._route(message.session_id, message.message)
        elif isinstance(message, m.CreateSession):
            sid = message.record.id
            ref = self.runtime.started(SessionActor.start(self.runtime, sid, message))
            self.live[sid] = _Entry(ref, time.monotonic())
            self._enforce_bound(keep=sid)
        elif isinstance(message, m.Passivated | m.SessionGone):
            self._stopped(message)
        elif isinstance(message, m.PassivateRefused):
            self._refused(message.session_id)
        elif isinstance(message, m.Sweep):
            self._sweep()
        elif isinstance(message, m.PassivateAll):
            self._passivate_all(message.reply)
        elif isinstance(message, m.DirectoryStats):
            message.reply.send({"live_sessions": len(self.live)})
        return None

    def _route(self, sid: str, message: Any) -> None:
        entry = self.live.get(sid)
        activated = entry is None
        if entry is None and self.closed:
            # Shutdown passivated every session: wake none (a late retry, say). Work that
            # matters was routed before the drain; whoever waits gets a clear error.
            reply = getattr(message, "reply", None)
            if reply is not None:
                reply.fail(ShuttingDownError("greenroom is shutting down"))
            return
        if entry is None:
            entry = _Entry(
                self.runtime.started(SessionActor.start(self.runtime, sid)), time.monotonic()
            )
            self.live[sid] = entry
        if entry.passivating:
            entry.buffer.append(message)
            return
        entry.last_used = time.monotonic()
        self.live.move_to_end(sid)
        bridge.tell(entry.ref, message)
        if activated:
            # Deliver first, then make room: never pick the session just woken, or it
            # would be passivated before its message and woken again, forever.
            self._enforce_bound(keep=sid)

    def _stopped(self, message: m.Passivated | m.SessionGone) -> None:
        sid = message.session_id
        entry = self.live.get(sid)
        if entry is None:
            return
        if isinstance(message, m.SessionGone) and not entry.passivating:
            # Let it answer what it already has (not found / store error), then stop.
            entry.passivating = True
            bridge.tell(entry.ref, m.Passivate(force=True))
            return
        del self.live[sid]
        if self.drain is not None:
            self.drain[1].discard(sid)
            self._finish_drain()
        for buffered in entry.buffer:
            self._route(sid, buffered)

    def _refused(self, sid: str) -> None:
        entry = self.live.get(sid)
        if entry is None or (self.drain is not None and sid in self.drain[1]):
            return  # shutting down: a forced Passivate is already on its way
        entry.passivating = False
        buffered, entry.buffer = entry.buffer, []
        for message in buffered:
            bridge.tell(entry.ref, message)

    def _passivate(self, sid: str, entry: _Entry, force: bool = False) -> None:
        entry.passivating = True
        bridge.tell(entry.ref, m.Passivate(force=force))

    def _sweep(self) -> None:
        idle_before = time.monotonic() - self.runtime.settings.limits.session_idle_s
        for sid, entry in list(self.live.items()):
            if not entry.passivating and entry.last_used <= idle_before:
                self._passivate(sid, entry)
        self._enforce_bound()

    def _enforce_bound(self, keep: str | None = None) -> None:
        bound = self.runtime.settings.limits.max_live_sessions
        candidates = [(s, e) for s, e in self.live.items() if not e.passivating and s != keep]
        excess = len(self.live) - bound
        for sid, entry in candidates[: max(excess, 0)]:
            self._passivate(sid, entry)
        if excess > 0 and len(candidates) == 0 and not self.warned_over_bound:
            self.warned_over_bound = True
            self.log.warning("live_sessions_over_bound", live=len(self.live), bound=bound)

    def _passivate_all(self, reply: Any) -> None:
        self.drain = (reply, set(self.live))
        for sid, entry in list(self.live.items()):
            if not entry.passivating:
                self._passivate(sid, entry, force=True)
            else:
                bridge.tell(entry.ref, m.Passivate(force=True))
        self._finish_drain()

    def _finish_drain(self) -> None:
        if self.drain is not None and not self.drain[1]:
            self.closed = True
            self.drain[0].send(None)
            self.drain = None
