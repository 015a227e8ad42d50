"""Test helpers shipped for greenroom users: a fake OpenAI-compatible server."""

from greenroom.testing.fake_openai import FakeOpenAI

__all__ = ["FakeOpenAI"]
