"""What the benchmarks share: results, progress, resource readings, a server process."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    name: str
    value: float
    unit: str
    baseline: float | None
    ratio: float | None
    goal: str
    met: bool
    notes: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def progress(message: str) -> None:
    """Long runs show progress (stderr, so the table on stdout stays clean)."""
    print(f"  … {message}", file=sys.stderr, flush=True)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB: ``VmHWM``, not ``ru_maxrss``.

    Linux carries ``ru_maxrss`` across exec, and ``subprocess`` starts children with
    vfork, so a child's ``ru_maxrss`` starts at its parent's peak; ``VmHWM`` belongs to
    the process's own address space.
    """
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """Current resident memory, MiB."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def threads() -> int:
    """OS threads of this process now (native ones too, not only Python's)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return threading.active_count()


class ThreadSampler:
    """Samples this process's OS thread count every ``interval_s`` on a thread of its own,
    so a busy event loop cannot hide a peak. ``peak`` leaves the sampler itself out.
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-thread-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, threads() - 1)
            self.samples += 1
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_process(
    args: list[str], env: dict[str, str] | None = None, ready_text: str = "serving on"
) -> subprocess.Popen[str]:
    """Start a server process and wait (bounded) for its ready line on stdout."""
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if ready_text in line:
            return proc
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"{args} did not start")


def stop_process(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
