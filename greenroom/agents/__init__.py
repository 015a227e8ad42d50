"""Agent backends: echo (the embedded default), openai-compatible, Python callables."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from greenroom.agents.base import BaseAgent
from greenroom.agents.callable import CallableAgent, load_target
from greenroom.agents.echo import EchoAgent
from greenroom.errors import ConfigError
from greenroom.settings import AgentSettings
from greenroom.typing import Agent

__all__ = ["BaseAgent", "CallableAgent", "EchoAgent", "build_agent"]


def build_agent(
    name: str,
    settings: AgentSettings,
    *,
    env: Mapping[str, str] | None = None,
    on_retry: Callable[[str, str], None] | None = None,
) -> Agent:
    """Build the agent a ``[agents.NAME]`` table describes.

    ``on_retry(agent_name, cause)`` hears of each retry of an agent that retries
    (``openai``), for the metrics.

    Raises:
        ConfigError: unknown kind, missing target, or the openai key variable is unset.
    """
    if settings.kind == "echo":
        return EchoAgent(name, delay_s=settings.delay_s, chunk_chars=settings.chunk_chars)
    if settings.kind == "python":
        if not settings.target:
            raise ConfigError(f"agents.{name}.target: required for kind = 'python'")
        return CallableAgent(name, load_target(settings.target))
    if settings.kind == "openai":
        from greenroom.agents.openai import OpenAIAgent

        agent: Agent = OpenAIAgent(name, settings, env=env, on_retry=on_retry)
        return agent
    raise ConfigError(f"agents.{name}.kind: must be one of 'echo', 'openai', 'python'")
