"""Processes the cluster tests start, and how they end: only ours, only by pid.

Every process is started with ``setpriv --pdeathsig`` where setpriv exists, so a test run
that dies without its teardown (a SIGKILL) takes its PostgreSQL, HAProxy and nodes with
it. The kernel sends that signal when the *thread* that forked the child exits: start
processes from the main thread (the thread of ``asyncio.run``), never from a worker
thread such as ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NoReturn

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]


def in_ci() -> bool:
    """Whether this run is CI (``CI=true``), where a missing tool is a failure."""
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip the test with one line naming what is missing; under ``CI=true``, fail it:
    a skip there would look green while testing nothing."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: this test must run; .ci/run installs it)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def spawn(
    argv: list[str],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
    death_signal: str = "KILL",
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log_path``.

    Args:
        argv: the command.
        log_path: where its output goes (a file, never a pipe nobody reads).
        env: its environment (default: ours).
        user: run as this user (we must be root); its pid is still the command's own.
        death_signal: what the child gets when this process dies without stopping it.

    Returns:
        The process; ``pid`` is the command's pid (setpriv execs it).
    """
    prefix: list[str] = []
    setpriv = shutil.which("setpriv")
    if user is not None:
        if setpriv is None:
            raise RuntimeError(f"running {argv[0]} as {user} needs setpriv (util-linux)")
        prefix = [setpriv, f"--reuid={user}", f"--regid={user}", "--init-groups"]
    elif setpriv is not None:
        prefix = [setpriv]
    if prefix:
        prefix += [f"--pdeathsig={death_signal}", "--"]
    with log_path.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            prefix + argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def signal_process(proc: subprocess.Popen[bytes], signum: int) -> None:
    """Send ``signum`` to a process we started, if it has not exited."""
    if proc.poll() is None:
        os.kill(proc.pid, signum)


def end_process(proc: subprocess.Popen[bytes], signum: int, timeout_s: float) -> int:
    """Send ``signum`` (SIGCONT too: a stopped process cannot act on it), wait for the
    exit; SIGKILL when it does not come within ``timeout_s``. Returns the exit status."""
    signal_process(proc, signum)
    signal_process(proc, signal.SIGCONT)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        signal_process(proc, signal.SIGKILL)
        return proc.wait(timeout=30)


async def end_process_async(proc: subprocess.Popen[bytes], signum: int, timeout_s: float) -> int:
    """:func:`end_process` without blocking the event loop while the process winds down."""
    signal_process(proc, signum)
    signal_process(proc, signal.SIGCONT)
    try:
        await poll_until(_exited(proc), timeout_s, f"pid {proc.pid} to exit", poll_s=0.02)
    except TimeoutError:
        signal_process(proc, signal.SIGKILL)
        await poll_until(_exited(proc), 30, f"pid {proc.pid} to exit after SIGKILL", poll_s=0.02)
    return proc.returncode


def _exited(proc: subprocess.Popen[bytes]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return proc.poll() is not None

    return probe


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file (empty if there is none)."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def poll_until(
    probe: Callable[[], Awaitable[bool]], timeout_s: float, what: str, poll_s: float = 0.1
) -> float:
    """Await ``probe`` until it returns True; the seconds it took.

    The pause between probes only paces the polling: the condition decides.

    Raises:
        TimeoutError: ``timeout_s`` passed first (the message names ``what``).
    """
    began = time.monotonic()
    deadline = began + timeout_s
    for _ in range(int(timeout_s / poll_s) + 2):
        if await probe():
            return time.monotonic() - began
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(poll_s)
    raise TimeoutError(f"{what}: not within {timeout_s} s")


async def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """Whether GET ``url`` answers 200 within ``timeout_s``."""
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response,
        ):
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False
