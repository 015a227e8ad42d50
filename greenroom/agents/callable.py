"""Agents written as plain Python callables (``register_agent`` and ``kind = "python"``)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from greenroom.agents.base import BaseAgent
from greenroom.errors import AgentError, ConfigError
from greenroom.typing import AgentCallable, AgentContext, History


async def in_daemon_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking ``fn(*args)`` in a daemon thread of its own and await its result.

    Not the loop's default executor: ``asyncio.run`` joins that executor's threads at
    the end, so a sync agent still running (its task cancelled or interrupted) would
    hold the program open until it returned. A daemon thread is left behind instead;
    its late answer is dropped.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():  # the caller was cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def run() -> None:
        try:
            value, error = fn(*args), None
        except BaseException as exc:  # handed to the awaiting coroutine
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=run, name="greenroom-sync-agent", daemon=True).start()
    return await future


class CallableAgent(BaseAgent):
    """Wraps a callable taking the history and returning a ``str`` (or an awaitable of
    one), or an async generator of ``str`` chunks. A plain synchronous function runs in
    a daemon thread so it can neither block the event loop nor hold the process open.

    Raises:
        TypeError: ``fn`` is not callable.
    """

    def __init__(self, name: str, fn: AgentCallable) -> None:
        if not callable(fn):
            raise TypeError(f"agent {name!r}: expected a callable, got {type(fn).__name__}")
        self.name = name
        self.fn = fn
        call = getattr(fn, "__call__", None)  # noqa: B004  (objects with async __call__)
        self._is_async_gen = inspect.isasyncgenfunction(fn) or inspect.isasyncgenfunction(call)
        self._is_coroutine = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)

    async def stream(self, history: History, ctx: AgentContext) -> AsyncIterator[str]:
        copy = [dict(m) for m in history]  # the callable may mutate its argument
        if self._is_async_gen:
            async for chunk in self.fn(copy):  # type: ignore[union-attr]
                yield _checked(self.name, chunk)
            return
        if self._is_coroutine:
            result: Any = await self.fn(copy)  # type: ignore[misc]
        else:
            result = await in_daemon_thread(self.fn, copy)
            if inspect.isawaitable(result):
                result = await result
        if hasattr(result, "__aiter__"):
            async for chunk in result:
                yield _checked(self.name, chunk)
            return
        yield _checked(self.name, result)


def _checked(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise AgentError(f"agent {name!r} produced {type(value).__name__}, expected str")
    return value


def load_target(target: str) -> AgentCallable:
    """Import ``"module:callable"``.

    Raises:
        ConfigError: the target is malformed, the module or attribute is missing, or
            it is not callable.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"target {target!r}: expected 'module:callable'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"target {target!r}: cannot import {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(f"target {target!r}: {module_name!r} has no attribute {attr!r}")
    if not callable(obj):
        raise ConfigError(f"target {target!r}: {attr!r} is not callable")
    fn: AgentCallable = obj
    return fn
