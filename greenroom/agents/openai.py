"""An agent for any OpenAI-compatible ``/v1/chat/completions`` server, streaming over aiohttp.

Retries (429, 5xx, dropped connections, timeouts, truncated or malformed streams) use
exponential backoff with full jitter and honour ``Retry-After``. Only ``data: [DONE]``
ends a stream successfully: a stream that stops short is an error, never a half answer
reported as complete. ``stream`` retries only before its first chunk (the user already
saw the rest); ``complete`` may retry a stream that broke half-way, since nobody saw it.
The API key is read from the variable ``api_key_env`` names and never logged.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp

from greenroom.errors import ConfigError, RetriesExhaustedError, UpstreamError
from greenroom.logs import get_logger
from greenroom.settings import AgentSettings
from greenroom.typing import AgentContext, History

log = get_logger()
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAIAgent:
    """Streams chat completions from an OpenAI-compatible server.

    Args:
        name: the agent's configured name.
        settings: its ``[agents.NAME]`` table.
        env: where to read the key variable (default ``os.environ``).
        on_retry: called as ``on_retry(name, cause)`` before each retry (the metrics);
            ``cause`` is the failed attempt's ``UpstreamError.cause``.

    Raises:
        ConfigError: ``api_key_env`` names a variable that is not set.
    """

    def __init__(
        self,
        name: str,
        settings: AgentSettings,
        *,
        env: Mapping[str, str] | None = None,
        on_retry: Callable[[str, str], None] | None = None,
    ) -> None:
        import os

        self.name = name
        self.settings = settings
        self.on_retry = on_retry
        self._key: str | None = None
        if settings.api_key_env:
            source = os.environ if env is None else env
            if not source.get(settings.api_key_env):
                raise ConfigError(
                    f"agents.{name}.api_key_env: the variable {settings.api_key_env} is not set"
                )
            self._key = source[settings.api_key_env]
        self._session: aiohttp.ClientSession | None = None
        self.url = settings.base_url.rstrip("/") + "/chat/completions"

    def __repr__(self) -> str:
        return f"OpenAIAgent(name={self.name!r}, model={self.settings.model!r}, url={self.url!r})"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(
                total=None,
                sock_connect=self.settings.connect_timeout_s,
                sock_read=self.settings.read_timeout_s,
            )
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _body(self, history: History) -> dict[str, Any]:
        messages = list(history)
        if self.settings.system_prompt:
            messages.insert(0, {"role": "system", "content": self.settings.system_prompt})
        return {"model": self.settings.model, "messages": messages, "stream": True}

    async def stream(self, history: History, ctx: AgentContext) -> AsyncIterator[str]:
        """Yield the answer's chunks; retries only until the first chunk went out.

        Raises:
            UpstreamError: the stream broke after chunks were yielded, or a non-retryable
                status.
            RetriesExhaustedError: every attempt failed before the first chunk.
        """
        bound = log.bind(agent=self.name, **ctx.log_ids())
        attempt, started = 0, time.perf_counter()
        while True:
            yielded = 0
            try:
                async for chunk in self._attempt(history, bound, attempt):
                    yielded += len(chunk)
                    yield chunk
                bound.info(
                    "agent_call_completed",
                    attempts=attempt + 1,
                    chars=yielded,
                    duration_ms=_ms(started),
                )
                return
            except UpstreamError as exc:
                if yielded:
                    bound.warning(
                        "agent_call_failed",
                        error_type="UpstreamError",
                        reason=str(exc),
                        after_chars=yielded,
                    )
                    raise
                attempt = await self._backoff(exc, attempt, bound)

    async def complete(self, history: History, ctx: AgentContext) -> str:
        """The whole answer; a stream that broke half-way is retried from scratch.

        Raises:
            UpstreamError: a non-retryable status.
            RetriesExhaustedError: every attempt failed.
        """
        bound = log.bind(agent=self.name, **ctx.log_ids())
        attempt, started = 0, time.perf_counter()
        while True:
            try:
                parts = [chunk async for chunk in self._attempt(history, bound, attempt)]
            except UpstreamError as exc:
                attempt = await self._backoff(exc, attempt, bound)
                continue
            text = "".join(parts)
            bound.info(
                "agent_call_completed",
                attempts=attempt + 1,
                chars=len(text),
                duration_ms=_ms(started),
            )
            return text

    async def _backoff(self, exc: UpstreamError, attempt: int, bound: Any) -> int:
        """Sleep before the next attempt, or raise when none is left."""
        if not exc.retryable:
            bound.warning(
                "agent_call_failed", error_type="UpstreamError", reason=str(exc), status=exc.status
            )
            raise exc
        if attempt >= self.settings.max_retries:
            bound.warning(
                "agent_call_failed",
                error_type="RetriesExhaustedError",
                reason=str(exc),
                status=exc.status,
            )
            raise RetriesExhaustedError(
                f"agent {self.name!r}: {attempt + 1} attempts failed; last: {exc}"
            ) from exc
        ceiling = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2**attempt)
        delay = random.uniform(0, ceiling)
        if exc.retry_after_s is not None:
            delay = min(exc.retry_after_s, self.settings.backoff_max_s)
        bound.info(
            "agent_retry",
            attempt=attempt + 1,
            delay_s=round(delay, 3),
            reason=str(exc),
            status=exc.status,
            cause=exc.cause,
        )
        if self.on_retry is not None:
            self.on_retry(self.name, exc.cause)
        await asyncio.sleep(delay)
        return attempt + 1

    async def _attempt(self, history: History, bound: Any, attempt: int) -> AsyncIterator[str]:
        """One request: yields content chunks; UpstreamError on any failure."""
        headers = {"Accept": "text/event-stream"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        bound.info("agent_call_started", attempt=attempt + 1, model=self.settings.model)
        try:
            async with self._client().post(
                self.url, json=self._body(history), headers=headers
            ) as response:
                if response.status != 200:
                    raise await _status_error(response, self.url)
                async for chunk in _parse_stream(response):
                    yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            cause = "timeout" if isinstance(exc, TimeoutError) else "connection"
            raise UpstreamError(
                f"connection to {self.url} failed: {reason}", retryable=True, cause=cause
            ) from exc


async def _parse_stream(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """Content chunks of an SSE chat-completions stream; only ``[DONE]`` ends it well."""
    async for raw in response.content:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line or line.startswith(":") or not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            delta = json.loads(data)["choices"][0]["delta"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise UpstreamError(
                f"malformed stream data: {data[:80]!r}", retryable=True, cause="malformed"
            ) from None
        content = delta.get("content") if isinstance(delta, dict) else None
        if content:
            yield str(content)
    raise UpstreamError(
        "the stream ended without [DONE] (truncated)", retryable=True, cause="truncated"
    )


async def _status_error(response: aiohttp.ClientResponse, url: str) -> UpstreamError:
    message = f"HTTP {response.status} from {url}"
    try:
        body = await response.json(content_type=None)
        message += f": {body['error']['message']}"
    except Exception:  # a non-JSON error body: the status says enough
        pass
    return UpstreamError(
        message,
        status=response.status,
        retryable=response.status in _RETRY_STATUSES,
        retry_after_s=_retry_after(response.headers.get("Retry-After")),
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
