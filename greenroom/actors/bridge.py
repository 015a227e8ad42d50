"""How an actor answers a caller waiting on the asyncio loop.

``await pykka_future`` (and ``Future.get()``) would block the loop's thread. Instead,
a request carries a :class:`Reply` (the loop plus an asyncio future) and the actor
answers through it exactly once. Actors run on the same loop (see ``dispatch.py``), so
an answer from the loop's thread settles the future directly; from any other thread
it goes through ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


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
        if getattr(self.loop, "_thread_id", None) == threading.get_ident():
            _settle(self.future, value, error)
            return
        # A closed loop raises RuntimeError: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_settle, self.future, value, error)


class ReplyTo(Protocol):
    """Whatever an actor answers through: a :class:`Reply`, or a stand-in in tests."""

    def send(self, value: Any) -> None: ...

    def fail(self, error: BaseException) -> None: ...


def new_reply() -> Reply:
    """A fresh Reply bound to the running loop.

    Raises:
        RuntimeError: no event loop is running in this thread.
    """
    loop = asyncio.get_running_loop()
    return Reply(loop, loop.create_future())


def call_on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> bool:
    """Run ``fn(*args)`` on ``loop``: now when already on its thread; False if it is closed."""
    if getattr(loop, "_thread_id", None) == threading.get_ident():
        fn(*args)
        return True
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        return False
    return True
