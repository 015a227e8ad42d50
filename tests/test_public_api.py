"""The public surface is exactly what ``__all__`` says (httpx does the same)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import greenroom

ROOT = Path(__file__).resolve().parent.parent


def test_all_lists_every_public_name_and_only_those() -> None:
    public = {name for name in dir(greenroom) if not name.startswith("_")}
    modules = {
        "actors",
        "agents",
        "api",
        "errors",
        "models",
        "orchestrator",
        "settings",
        "typing",
        "store",
        "config",
        "http",
        "logs",
        "cli",
        "trace",
        "doctor",
        "logread",
        "testing",
    }
    assert sorted(public - modules) == sorted(set(greenroom.__all__) - {"__version__"})
    for name in greenroom.__all__:
        assert hasattr(greenroom, name), name


def test_embedded_example_runs_end_to_end() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "embedded.py")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "side question answered" in proc.stdout
    assert "all results acknowledged" in proc.stdout
