"""The openai agent against a real local fake OpenAI-compatible server."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from greenroom.agents.openai import OpenAIAgent
from greenroom.errors import ConfigError, RetriesExhaustedError, UpstreamError
from greenroom.settings import AgentSettings
from greenroom.testing import FakeOpenAI
from greenroom.typing import AgentContext

CTX = AgentContext(session_id="ses_test", task_id="tsk_test")
HISTORY = [{"role": "user", "content": "hello there general kenobi"}]
KEY = "sk-test-very-secret-key"


def make_agent(base_url: str, **overrides: object) -> OpenAIAgent:
    settings = AgentSettings(
        kind="openai",
        base_url=base_url,
        model="fake-1",
        api_key_env="FAKE_KEY",
        backoff_base_s=0.01,
        backoff_max_s=0.5,
        max_retries=3,
        read_timeout_s=5,
    )
    for key, value in overrides.items():
        object.__setattr__(settings, key, value)
    return OpenAIAgent("gpt", settings, env={"FAKE_KEY": KEY})


async def test_stream_yields_chunks_that_join_to_the_answer() -> None:
    async with FakeOpenAI(chunk_chars=5) as fake:
        agent = make_agent(fake.base_url)
        chunks = [c async for c in agent.stream(HISTORY, CTX)]
        await agent.aclose()
    assert len(chunks) > 1
    assert "".join(chunks) == "hello there general kenobi"
    assert fake.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    assert fake.requests[0].body["messages"] == HISTORY
    assert fake.requests[0].body["stream"] is True


async def test_429_with_retry_after_is_honoured_then_succeeds() -> None:
    async with FakeOpenAI(retry_after_s=0.2) as fake:
        fake.script(["429", "ok"])
        agent = make_agent(fake.base_url)
        assert await agent.complete(HISTORY, CTX) == "hello there general kenobi"
        await agent.aclose()
    assert len(fake.requests) == 2
    assert fake.requests[1].at - fake.requests[0].at >= 0.19


async def test_server_errors_are_retried_until_success() -> None:
    async with FakeOpenAI() as fake:
        fake.script(["500", "503", "ok"])
        agent = make_agent(fake.base_url)
        assert await agent.complete(HISTORY, CTX) == "hello there general kenobi"
        await agent.aclose()
    assert len(fake.requests) == 3


async def test_retries_exhausted_raises_with_the_last_upstream_error_as_cause() -> None:
    async with FakeOpenAI() as fake:
        fake.script(["500"] * 4)
        agent = make_agent(fake.base_url)
        with pytest.raises(RetriesExhaustedError, match="4 attempts") as info:
            await agent.complete(HISTORY, CTX)
        await agent.aclose()
    assert isinstance(info.value.__cause__, UpstreamError)
    assert info.value.__cause__.status == 500


async def test_truncated_stream_fails_a_turn_that_already_streamed() -> None:
    async with FakeOpenAI(chunk_chars=3) as fake:
        fake.script(["truncate"])
        agent = make_agent(fake.base_url)
        got: list[str] = []
        with pytest.raises(UpstreamError, match="truncated"):
            async for chunk in agent.stream(HISTORY, CTX):
                got.append(chunk)
        await agent.aclose()
    assert got  # a half answer went out, and then an error, never a quiet end
    assert len(fake.requests) == 1


async def test_truncated_and_malformed_streams_are_retried_for_background_work() -> None:
    async with FakeOpenAI() as fake:
        fake.script(["truncate", "malformed", "drop", "ok"])
        agent = make_agent(fake.base_url)
        assert await agent.complete(HISTORY, CTX) == "hello there general kenobi"
        await agent.aclose()
    assert len(fake.requests) == 4


async def test_stream_retries_while_nothing_was_yielded() -> None:
    async with FakeOpenAI() as fake:
        fake.script(["429", "500"])
        agent = make_agent(fake.base_url)
        assert "".join([c async for c in agent.stream(HISTORY, CTX)]) == HISTORY[0]["content"]
        await agent.aclose()


async def test_client_errors_are_not_retried() -> None:
    async with FakeOpenAI() as fake:
        fake.script(["error400"])
        agent = make_agent(fake.base_url)
        with pytest.raises(UpstreamError, match="bad model name") as info:
            await agent.complete(HISTORY, CTX)
        await agent.aclose()
    assert info.value.status == 400
    assert f"HTTP 400 from {fake.base_url}" in str(info.value)  # names the URL that failed
    assert len(fake.requests) == 1


async def test_empty_answer_is_an_empty_string() -> None:
    async with FakeOpenAI() as fake:
        fake.script(["empty"])
        agent = make_agent(fake.base_url)
        assert await agent.complete(HISTORY, CTX) == ""
        await agent.aclose()


async def test_unreachable_server_exhausts_retries() -> None:
    async with FakeOpenAI() as fake:
        url = fake.base_url
    agent = make_agent(url, max_retries=1)  # the server is gone: connection refused
    with pytest.raises(RetriesExhaustedError, match=r"connection to .* failed") as info:
        await agent.complete(HISTORY, CTX)
    await agent.aclose()
    assert url in str(info.value)


def test_missing_key_variable_is_a_config_error_naming_the_variable() -> None:
    settings = AgentSettings(kind="openai", api_key_env="NOT_SET_ANYWHERE")
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        OpenAIAgent("gpt", settings, env={})


async def test_the_api_key_never_appears_in_logs_or_repr() -> None:
    async with FakeOpenAI() as fake:
        fake.script(["500", "ok"])
        agent = make_agent(fake.base_url)
        with capture_logs() as logs:
            await agent.complete(HISTORY, CTX)
        await agent.aclose()
    assert KEY not in repr(agent)
    assert KEY not in repr(logs)
    events = [entry["event"] for entry in logs]
    assert "agent_retry" in events and "agent_call_completed" in events
    assert all(entry.get("task_id") == "tsk_test" for entry in logs)
