"""The public surface is exactly what ``__all__`` says (httpx does the same)."""

from __future__ import annotations

import re
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
        "files",
        "logread",
        "testing",
        "metrics",
        "cluster",
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
    lines = proc.stdout.splitlines()
    assert lines[0] == "turn: HELLO FROM GREENROOM "
    started = re.fullmatch(r"started (tsk_\w+) and (tsk_\w+) - .*", lines[1])
    assert started is not None, lines[1]
    job, side = started.groups()
    assert lines[2] == "turn: STILL HERE "
    # The side question ran on a copy of the history: both turn messages and itself
    # (the second turn came after it started). The background job saw only its prompt.
    assert lines[3] == "side question answered: 3 message(s) seen; last was 'what did I just say?'"
    assert (
        lines[4]
        == "background job completed -> 1 message(s) seen; last was 'summarise the quarter'"
    )
    results = [re.fullmatch(r"result seq=(\d+) task=(tsk_\w+) status=(\w+)", x) for x in lines[5:7]]
    assert all(results), lines[5:7]
    seqs = {m.group(2): (int(m.group(1)), m.group(3)) for m in results if m}
    assert set(seqs) == {job, side}
    assert {status for _, status in seqs.values()} == {"completed"}
    assert lines[7:] == [f"all results acknowledged up to {max(s for s, _ in seqs.values())}"]
