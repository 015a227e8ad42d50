"""Browser tests of the console: Python Playwright driving Debian's Chromium against a
real greenroom server on 127.0.0.1.

Playwright's own browser download is not used: the tests launch ``chromium`` from
PATH (``.ci/run`` installs it). Without it they skip with one line, except under
``CI=true``, where a missing browser is a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from aiohttp.test_utils import TestServer

from greenroom import Orchestrator
from greenroom.http import create_app
from tests.http.conftest import settings_for

if TYPE_CHECKING:
    from playwright.async_api import Browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
"""Screenshots the browser tests leave for a person to look at (gitignored)."""

ServerFactory = Callable[..., Awaitable[tuple[str, Orchestrator]]]


def _missing(what: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true: the browser tests must run; .ci/run installs it)")
    pytest.skip(f"browser tests skipped: {what}")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless Debian Chromium, driven by Playwright."""
    executable = shutil.which("chromium")
    if executable is None:
        _missing("no chromium on PATH (apt-get install -y chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[dev]')")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def console_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Start an orchestrator and its app on a loopback port; returns the base URL."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> tuple[str, Orchestrator]:
            orch = Orchestrator(settings_for(tmp_path, **overrides))
            await stack.enter_async_context(orch)
            server = TestServer(create_app(orch), host="127.0.0.1")
            await stack.enter_async_context(server)
            return str(server.make_url("")).rstrip("/"), orch

        yield start


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
