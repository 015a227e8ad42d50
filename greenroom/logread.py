"""Reading greenroom's JSON-lines logs: the current file and its rotated backups."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

DEFAULT_LOG = ".greenroom/greenroom.log"
ID_FIELDS = ("request_id", "session_id", "task_id", "turn_id")


@dataclass
class LogStats:
    """What reading skipped: lines that were not JSON objects (a crash cuts the last one)."""

    lines: int = 0
    garbled: int = 0


def log_files(path: Path) -> list[Path]:
    """``path`` and its rotated backups, oldest first (``.5`` … ``.1``, then ``path``)."""
    backups = sorted(
        path.parent.glob(path.name + ".*"),
        key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0,
        reverse=True,
    )
    return [p for p in backups if p.suffix[1:].isdigit()] + ([path] if path.exists() else [])


def read_lines(path: Path, stats: LogStats | None = None) -> Iterator[dict[str, Any]]:
    """Every JSON object line of the log, in file order; garbled lines are counted, skipped."""
    stats = stats if stats is not None else LogStats()
    for file in log_files(path):
        with file.open("r", encoding="utf-8", errors="replace") as handle:
            for raw in handle:
                stats.lines += 1
                try:
                    line = json.loads(raw)
                except ValueError:
                    stats.garbled += 1
                    continue
                if isinstance(line, dict) and "event" in line:
                    yield line
                else:
                    stats.garbled += 1


def timestamp(line: dict[str, Any]) -> float:
    """The line's ``ts`` as epoch seconds (0 when missing or unreadable)."""
    raw = line.get("ts")
    if not isinstance(raw, str):
        return 0.0
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def clock(line: dict[str, Any]) -> str:
    """``HH:MM:SS.mmm`` of the line's timestamp."""
    raw = str(line.get("ts", ""))
    return raw[11:23] if len(raw) >= 23 else raw
