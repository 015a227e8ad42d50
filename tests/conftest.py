"""Fixtures shared by every test: a running orchestrator, and a clean slate after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pykka
import pytest
import structlog
from blockbuster import blockbuster_ctx

from greenroom import Orchestrator
from greenroom.settings import LimitsSettings, Settings, StoreSettings


@pytest.fixture(autouse=True)
def _no_actor_left_running() -> Iterator[None]:
    """Teardown leaves nothing running: a leaked actor thread would hang the process."""
    yield
    leaked = pykka.ActorRegistry.get_all()
    if leaked:
        pykka.ActorRegistry.stop_all(block=True, timeout=5)
        pytest.fail(f"{len(leaked)} actors were left running: {leaked[:5]}")


@pytest.fixture(autouse=True)
def _no_blocking_calls_on_the_loop() -> Iterator[None]:
    """Blockbuster on every test: a blocking call from greenroom code on a running event
    loop raises (including a contended ``threading.Lock.acquire``, a blocking ask)."""
    with blockbuster_ctx(["greenroom"]):
        yield


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def make_settings(tmp_path: Path, **limits: float) -> Settings:
    """Memory-store settings with a private data dir and the given limits."""
    return Settings(
        data_dir=str(tmp_path / "data"),
        store=StoreSettings(kind="memory"),
        limits=LimitsSettings(**limits),  # type: ignore[arg-type]
    )


@pytest.fixture
async def orch(tmp_path: Path) -> AsyncIterator[Orchestrator]:
    async with Orchestrator(make_settings(tmp_path)) as orchestrator:
        yield orchestrator
