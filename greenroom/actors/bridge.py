"""The pykka ↔ asyncio bridge: the only place where actor threads meet the event loop.

``await pykka_future`` (and ``Future.get()``) blocks the loop's thread, and
``asyncio.to_thread(future.get)`` holds an executor thread per pending ask. Instead,
the loop side sends a message carrying a :class:`Reply` — the loop plus an asyncio
future — and the actor answers with ``loop.call_soon_threadsafe``. Sending is a
``SimpleQueue.put`` (see :class:`LoopSafeActor`), which never takes a Python lock, so
the loop never waits on an actor thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pykka
import pykka.messages

T = TypeVar("T")


class LoopSafeActor(pykka.ThreadingActor):
    """A ``ThreadingActor`` whose inbox is a ``queue.SimpleQueue``.

    pykka's default ``queue.Queue`` takes a ``threading.Lock`` on every ``put``; a
    contended put from the event loop would block it. ``SimpleQueue.put`` is lock-free
    from Python's point of view and never blocks.
    """

    @staticmethod
    def _create_actor_inbox() -> Any:
        return queue.SimpleQueue()


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    # Runs on the loop. The waiter may have been cancelled (timeout, client gone).
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


@dataclass(frozen=True, slots=True)
class Reply:
    """Where an actor sends its one answer to a request from the loop."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]

    def send(self, value: Any) -> None:
        """Resolve the waiting future with ``value`` (from any thread)."""
        self._post(value, None)

    def fail(self, error: BaseException) -> None:
        """Resolve the waiting future with ``error`` raised (from any thread)."""
        self._post(None, error)

    def _post(self, value: Any, error: BaseException | None) -> None:
        # A closed loop raises RuntimeError: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_settle, self.future, value, error)


def new_reply() -> Reply:
    """A fresh Reply bound to the running loop.

    Raises:
        RuntimeError: no event loop is running in this thread.
    """
    loop = asyncio.get_running_loop()
    return Reply(loop, loop.create_future())


async def ask(
    ref: Any,
    build: Callable[[Reply], Any],
    *,
    on_dead: Callable[[], BaseException] | None = None,
) -> Any:
    """Send ``build(reply)`` to the actor ``ref`` and await its answer on the loop.

    Args:
        ref: a pykka ``ActorRef``.
        build: makes the message from the Reply the actor must answer through.
        on_dead: makes the error raised when the actor is not running.

    Raises:
        Whatever error the actor answers with; ``on_dead()`` (default
        ``RuntimeError``) when the actor is not alive.
    """
    reply = new_reply()
    try:
        ref.tell(build(reply))
    except pykka.ActorDeadError as exc:
        raise (on_dead() if on_dead else RuntimeError("actor is not running")) from exc
    return await reply.future


def tell(ref: Any, message: Any) -> bool:
    """Send without waiting; False when the actor is already dead."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        return False
    return True


def stop(ref: Any) -> None:
    """Ask an actor to stop after the messages already in its inbox; no-op if dead."""
    tell(ref, pykka.messages._ActorStop())


def post_to_queue(sub_loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> bool:
    """Run ``fn(*args)`` on ``sub_loop`` from an actor thread; False if the loop is closed."""
    try:
        sub_loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        return False
    return True
