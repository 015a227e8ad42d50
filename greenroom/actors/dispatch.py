"""Pykka actors without a thread each: their mailboxes drain on the asyncio loop.

pykka's :class:`pykka.Actor` leaves three hooks to a runtime: the inbox, the future and
the actor loop. :class:`LoopActor` fills them so that every actor of an orchestrator
runs on that orchestrator's event loop:

* the inbox is a ``deque``; a ``put`` from the loop's own thread schedules the actor's
  drain with ``loop.call_soon`` (no thread hand-off, no lock), a ``put`` from any other
  thread goes through ``loop.call_soon_threadsafe``;
* the drain handles at most :data:`BATCH` messages, then yields to the loop, so one
  busy actor cannot starve the others or the HTTP handlers;
* an actor may :meth:`~LoopActor.pause` its mailbox while an effect it started (a store
  write, a store read) is under way, and :meth:`~LoopActor.resume` it when the outcome
  arrives. Its next message is handled only then: one message at a time, as in pykka.

pykka's rules stay as they are: ``tell``/``ask`` through an ``ActorRef``, ``on_start``,
``on_stop`` and ``on_failure``, an exception in a ``tell``-ed message logged and the
actor stopped (after ``on_failure``), in an ``ask``-ed one returned to the caller.
Nothing here may block: every handler runs on the loop (invariant 4).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import sys
import threading
import uuid
from typing import Any, Self

import pykka
from pykka import ActorDeadError, messages

from greenroom.logs import get_logger

log = get_logger()

_URN_PREFIX = uuid.uuid4().urn[:-12]
_URNS = itertools.count(1)

BATCH = 64
"""Messages one actor handles before it lets the loop run something else."""


def log_crash(logger: Any, message: Any, exc: BaseException) -> None:
    """The one ``actor_crashed`` line of a handler error (``greenroom doctor`` reads it)."""
    logger.error(
        "actor_crashed",
        msg=type(message).__name__,
        error_type=type(exc).__name__,
        error=str(exc),
        exc_info=True,
    )


class LoopInbox:
    """A pykka inbox that wakes its actor on the loop instead of a waiting thread."""

    __slots__ = ("_actor", "_items", "_loop", "_loop_thread")

    def __init__(self) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._actor: LoopActor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def bind(self, actor: LoopActor, loop: asyncio.AbstractEventLoop, loop_thread: int) -> None:
        self._actor, self._loop, self._loop_thread = actor, loop, loop_thread

    def put(self, envelope: Any, /) -> None:
        self._items.append(envelope)
        actor, loop = self._actor, self._loop
        assert actor is not None and loop is not None, "LoopActor.__init__ was not called"
        if threading.get_ident() == self._loop_thread:
            actor._wake()
        else:
            # deque.append is atomic; the wake-up runs on the loop, where all state lives.
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody drains it any more
                loop.call_soon_threadsafe(actor._wake)

    def get(self) -> Any:
        return self._items.popleft()

    def empty(self) -> bool:
        return not self._items

    def __len__(self) -> int:
        return len(self._items)


class LoopActor(pykka.Actor):
    """A pykka actor whose messages are handled on an asyncio loop, one at a time.

    Subclasses pass the loop to ``super().__init__(loop)``; ``start()`` must be called
    on that loop's thread (the loop is running). Asks from the loop's own thread would
    block it: the loop side sends messages carrying a :class:`~greenroom.actors.bridge.
    Reply` instead, and other threads may use pykka's ``ask`` as usual.
    """

    _loop: asyncio.AbstractEventLoop
    _scheduled: bool
    _started: bool
    _paused: bool
    _reaped: bool

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # pykka's Actor.__init__, with a cheaper URN: unique in the process (a counter)
        # and across processes (a random prefix), without a uuid4 per actor.
        self.actor_urn = f"{_URN_PREFIX}{next(_URNS):012x}"
        self.actor_inbox = self._create_actor_inbox()
        self.actor_stopped = threading.Event()
        self._actor_ref = pykka.ActorRef(self)
        self._loop = loop
        self._scheduled = False
        self._started = False
        self._paused = False
        self._reaped = False
        inbox = self.actor_inbox
        assert isinstance(inbox, LoopInbox)
        loop_thread = getattr(loop, "_thread_id", None) or threading.get_ident()
        inbox.bind(self, loop, loop_thread)

    @classmethod
    def spawn(cls, *args: Any, **kwargs: Any) -> Self:
        """Start the actor like ``start()``, but return the actor itself (loop side only).

        For the few loop-side callers that call the actor's methods directly because
        they share its thread (the directory's routing table).
        """
        ref = cls.start(*args, **kwargs)
        actor = ref._actor_weakref()
        assert actor is not None
        return actor

    @staticmethod
    def _create_actor_inbox() -> LoopInbox:
        return LoopInbox()

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        # Only callers on other threads may block on it; the loop never asks this way.
        return pykka.ThreadingFuture()

    def _start_actor_loop(self) -> None:
        self._scheduled = True
        if getattr(self._loop, "_thread_id", None) == threading.get_ident():
            self._loop.call_soon(self._setup)
        else:  # started from another thread: hand the start-up to the loop safely
            self._loop.call_soon_threadsafe(self._setup)

    # --- the dispatcher -------------------------------------------------------------

    def _setup(self) -> None:
        self._started = True
        self._scheduled = False
        self._actor_loop_setup()  # on_start; a failure there stops the actor (pykka)
        if self.actor_stopped.is_set():
            self._teardown()
        else:
            self._wake()

    def _wake(self) -> None:
        """Make sure a drain is scheduled (loop thread only)."""
        if self._scheduled or not self._started or self._paused:
            return
        if self.actor_inbox.empty():
            return
        self._scheduled = True
        self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        inbox = self.actor_inbox
        for _ in range(BATCH):
            if self._paused or self.actor_stopped.is_set() or inbox.empty():
                break
            self._handle_envelope(inbox.get())
        if self.actor_stopped.is_set():
            self._teardown()
        else:
            self._wake()

    def _handle_envelope(self, envelope: Any) -> None:
        # pykka's _actor_loop_running, one envelope at a time.
        try:
            response = self._handle_receive(envelope.message)
            if envelope.reply_to is not None:
                envelope.reply_to.set(response)
        except Exception:
            if envelope.reply_to is not None:
                envelope.reply_to.set_exception()
            else:
                self._handle_failure(*sys.exc_info())
                try:
                    self.on_failure(*sys.exc_info())
                except Exception:
                    self._handle_failure(*sys.exc_info())

    def _teardown(self) -> None:
        """Answer what is left in the inbox of a stopped actor; report the stop once."""
        if not self._reaped:
            self._reaped = True
            self.on_reaped()
        inbox = self.actor_inbox
        while not inbox.empty():
            envelope = inbox.get()
            if envelope.reply_to is not None:
                if isinstance(envelope.message, messages._ActorStop):
                    envelope.reply_to.set(None)
                else:
                    dead = ActorDeadError(f"{self.actor_ref} stopped before handling the message")
                    envelope.reply_to.set_exception(exc_info=(ActorDeadError, dead, None))
            elif not isinstance(envelope.message, messages._ActorStop):
                self.on_undelivered(envelope.message)

    # --- for subclasses -------------------------------------------------------------

    def pause(self) -> None:
        """Handle no further message until :meth:`resume` (an effect is under way)."""
        self._paused = True

    def resume(self) -> None:
        """Handle messages again (loop thread only)."""
        if self._paused:
            self._paused = False
            if self.actor_stopped.is_set():
                self._teardown()
            else:
                self._wake()

    @property
    def paused(self) -> bool:
        """Whether the mailbox waits for an effect's outcome."""
        return self._paused

    def on_reaped(self) -> None:
        """Called once on the loop after the actor stopped, however it stopped."""

    def on_undelivered(self, message: Any) -> None:
        """A message was left in the inbox when the actor stopped.

        The default logs a warning; actors whose messages carry a reply fail it.
        """
        log.warning("undelivered_message", actor=type(self).__name__, msg=type(message).__name__)
        reply = getattr(message, "reply", None)
        if reply is not None:
            reply.fail(ActorDeadError(f"{self.actor_ref} stopped before handling the message"))

    def on_receive(self, message: Any) -> Any:
        """Unknown messages are a warning, as in pykka's default (never a silent drop)."""
        log.warning("unexpected_message", actor=type(self).__name__, msg=type(message).__name__)
        return None
