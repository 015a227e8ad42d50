"""Structured logs: quiet as a library, JSON lines to a rotated file for ``greenroom serve``.

Where greenroom's events go (decided at each call, so a host may change its mind):

1. after :func:`configure_logging` (``greenroom serve`` calls it; a host may too):
   greenroom's own structlog pipeline — JSON lines to a rotated file and the console.
   It is a private logger: structlog's global configuration is never touched;
2. otherwise, when the host configured structlog: the host's structlog configuration;
3. otherwise: the standard library logger ``"greenroom"``, which has only a
   ``NullHandler`` — silent unless the host configures ``logging``.

Every line carries ``event``, ``ts`` (ISO 8601, UTC) and ``level``, plus whichever
correlation ids apply (``request_id``, ``session_id``, ``task_id``, ``turn_id``) and
``actor``/``msg`` for actor messages. Secrets are redacted by key name; prompt and
answer text is logged only with ``log_content = true`` (see :func:`content_fields`).

A log call on the event loop or an actor thread only runs structlog's processors and
puts the event on a queue; one writer thread renders and writes lines in batches,
flushing once per batch and tracking the file size itself for rotation. Logging never
does I/O on the caller's thread.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog

from greenroom.settings import LoggingSettings

_SECRET_PARTS = ("token", "api_key", "apikey", "authorization", "password", "secret", "dsn")
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_BATCH_MAX = 1000
_lock = threading.Lock()
_writers: list[_Writer] = []  # the one running writer; a list so no `global` is needed
_own: list[Any] = []  # greenroom's own structlog logger, once configure_logging ran
_stdlib = logging.getLogger("greenroom")
_stdlib.addHandler(logging.NullHandler())  # a library adds no handler that prints
_secret_keys: dict[str, bool] = {}  # key name -> is it a secret (cached: keys repeat)


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: replace the value of any secret-looking key."""
    for key in event:
        secret = _secret_keys.get(key)
        if secret is None:
            secret = _secret_keys[key] = any(p in key.lower() for p in _SECRET_PARTS)
        if secret and event[key] is not None:
            event[key] = "[redacted]"
    return event


def content_fields(text: str, log_content: bool, key: str = "content") -> dict[str, Any]:
    """``{key: text}`` when content logging is on, else ``{key + "_chars": len(text)}``."""
    return {key: text} if log_content else {f"{key}_chars": len(text)}


# An event (level, unix time, name, fields), a flush marker, or stop.
_Item = tuple[str, float, str, dict[str, Any]] | threading.Event | None


class _QueueLogger:
    """greenroom's own logger: a log call puts one tuple on the writer's queue.

    Everything else — the timestamp's ISO form, dropping empty fields, redacting
    secrets, JSON — happens on the writer thread, so a line costs the caller (the event
    loop, most often) a level check and a ``SimpleQueue.put``, which takes no Python
    lock and never blocks.
    """

    def __init__(self, sink: queue.SimpleQueue[_Item], level: int) -> None:
        self._sink = sink
        self._level = level

    def _put(self, level: int, name: str, event: str, fields: dict[str, Any]) -> None:
        if level < self._level:
            return
        exc_info = fields.pop("exc_info", None)
        if exc_info:  # the traceback belongs to this thread: format it here
            fields["exception"] = _format_exception(exc_info)
        self._sink.put((name, time.time(), event, fields))

    def debug(self, event: str, **fields: Any) -> None:
        self._put(10, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._put(20, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._put(30, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._put(40, "error", event, fields)


def _format_exception(exc_info: Any) -> str:
    if isinstance(exc_info, BaseException):
        parts = traceback.format_exception(type(exc_info), exc_info, exc_info.__traceback__)
    elif isinstance(exc_info, tuple):
        parts = traceback.format_exception(*exc_info)
    else:
        parts = traceback.format_exception(*sys.exc_info())
    return "".join(parts).rstrip()


def _render_event(item: tuple[str, float, str, dict[str, Any]]) -> dict[str, Any]:
    """The JSON object of one line: fields, then event, level, ts (ISO 8601, UTC)."""
    level, when, name, fields = item
    event = {k: v for k, v in fields.items() if v is not None}
    redact(None, "", event)
    event["event"] = name
    event["level"] = level
    event["ts"] = _iso(when)
    return event


_second: list[Any] = [None, ""]  # the writer thread's cache: (whole second, its ISO prefix)


def _iso(when: float) -> str:
    """ISO 8601 UTC with microseconds; the date and time of day formatted once a second
    (formatting every line's timestamp in full was a measurable share of the writer)."""
    whole = int(when)
    if _second[0] != whole:
        _second[0], _second[1] = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    micros = min(int((when - whole) * 1_000_000), 999_999)
    return f"{_second[1]}.{micros:06d}Z"


class _Writer(threading.Thread):
    """Renders and writes queued events: JSON lines to the file, JSON or readable to the
    console; rotates the file by size."""

    def __init__(
        self, settings: LoggingSettings, stream: TextIO, readable: bool, console_level: int
    ) -> None:
        super().__init__(name="greenroom-log-writer", daemon=True)
        self.queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self.settings = settings
        self.stream = stream
        self.console_level = console_level
        self.render = structlog.dev.ConsoleRenderer(colors=stream.isatty()) if readable else None
        self.file: TextIO | None = None
        self.size = 0
        if settings.path:
            from greenroom.files import open_private, private_dir

            # No warning from here: the log pipeline is not running yet; the store warns.
            private_dir(Path(settings.path).parent, warn=False)
            self.file = open_private(Path(settings.path))
            self.size = self.file.tell()

    def run(self) -> None:
        while True:
            first = self.queue.get()
            batch = [first]
            while len(batch) < _BATCH_MAX:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is None for item in batch)
            self._write([_render_event(item) for item in batch if isinstance(item, tuple)])
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()  # flush_logging: everything before the marker is written
            if stop:
                self._close()
                return

    def _write(self, events: list[dict[str, Any]]) -> None:
        console: list[str] = []
        lines: list[str] = []
        for event in events:
            line = json.dumps(event, default=str, separators=(",", ":"))
            lines.append(line)
            if _LEVELS.get(str(event.get("level")), 20) >= self.console_level:
                console.append(str(self.render(None, "", dict(event))) if self.render else line)
        try:
            if console:
                self.stream.write("\n".join(console) + "\n")
                self.stream.flush()
            if self.file is not None:
                for line in lines:
                    self._to_file(line + "\n")
                self.file.flush()
        except (OSError, ValueError):
            pass  # a broken console or full disk must not take the process down

    def _to_file(self, text: str) -> None:
        assert self.file is not None
        if self.size + len(text) > self.settings.max_bytes and self.size > 0:
            self._rotate()
        self.file.write(text)
        self.size += len(text)

    def _rotate(self) -> None:
        assert self.file is not None and self.settings.path
        self.file.close()
        base = self.settings.path
        for n in range(self.settings.backup_count - 1, 0, -1):
            if os.path.exists(f"{base}.{n}"):
                os.replace(f"{base}.{n}", f"{base}.{n + 1}")
        if self.settings.backup_count > 0:
            os.replace(base, f"{base}.1")
        else:
            os.truncate(base, 0)
        from greenroom.files import open_private

        self.file = open_private(Path(base))
        self.size = 0

    def _close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def configure_logging(settings: LoggingSettings, *, stream: TextIO | None = None) -> None:
    """Configure structlog for the process (again on a second call).

    Args:
        settings: the ``[logging]`` section.
        stream: console output (default ``sys.stderr``).
    """
    stream = sys.stderr if stream is None else stream
    level = _LEVELS[settings.level]
    readable = settings.format == "console" or (
        settings.format == "auto" and getattr(stream, "isatty", lambda: False)()
    )
    # With a log file, a console that is not a terminal shows warnings only: the file
    # already has every line, and repeating them as JSON doubles the cost for nothing.
    console_level = level if (readable or not settings.path) else max(level, _LEVELS["warning"])
    with _lock:
        _stop_writer()
        writer = _Writer(settings, stream, readable, console_level)
        writer.start()
        _writers.append(writer)
        _own.append(_QueueLogger(writer.queue, level))


def _stop_writer() -> None:
    for writer in _writers:
        writer.queue.put(None)  # writes what is queued, then closes the file
        writer.join(timeout=10)
    _writers.clear()
    _own.clear()


@atexit.register
def flush_logging() -> None:
    """Block until every line logged so far is written (at exit, before reading a log)."""
    with _lock:
        for writer in _writers:
            marker = threading.Event()
            writer.queue.put(marker)
            marker.wait(10.0)


def reset_logging() -> None:
    """Stop greenroom's own pipeline and close its log file (quiet again)."""
    with _lock:
        _stop_writer()


class Logger:
    """What greenroom's modules log through; see the module docstring for where it goes.

    Args:
        context: fields put on every line (``bind`` adds more).
    """

    __slots__ = ("_context",)

    def __init__(self, context: dict[str, Any] | None = None) -> None:
        self._context = context or {}

    def bind(self, **fields: Any) -> Logger:
        """A logger that adds ``fields`` to every line."""
        return Logger({**self._context, **fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, "error", event, fields)

    def _emit(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        if _own:
            target = _own[0]
        elif structlog.is_configured():
            target = structlog.get_logger("greenroom")
        elif _stdlib.isEnabledFor(level):
            _to_stdlib(level, event, {**self._context, **fields})
            return
        else:
            return  # nobody listens: the cheapest path, taken by a quiet embedded run
        getattr(target, method)(event, **({**self._context, **fields} if self._context else fields))


def _to_stdlib(level: int, event: str, fields: dict[str, Any]) -> None:
    exc_info = fields.pop("exc_info", None)
    shown = {k: v for k, v in fields.items() if v is not None}
    redact(None, "", shown)
    text = " ".join(f"{k}={v}" for k, v in shown.items())
    _stdlib.log(
        level,
        "%s %s",
        event,
        text,
        exc_info=exc_info,
        extra={"greenroom_event": event, "greenroom_fields": shown},
    )


def get_logger(**context: Any) -> Logger:
    """greenroom's logger, with ``context`` on every line."""
    return Logger(context)
