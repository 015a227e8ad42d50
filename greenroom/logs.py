"""Structured logs: structlog configured once, JSON lines to a rotated file and the console.

Every line carries ``event``, ``ts`` (ISO 8601, UTC) and ``level``, plus whichever
correlation ids apply (``request_id``, ``session_id``, ``task_id``, ``turn_id``) and
``actor``/``msg`` for actor messages. Secrets are redacted by key name; prompt and
answer text is logged only with ``log_content = true`` (see :func:`content_fields`).
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog

from greenroom.settings import LoggingSettings

_SECRET_KEYS = ("token", "api_key", "apikey", "authorization", "password", "secret")
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_lock = threading.Lock()
_handlers: list[logging.Handler] = []
# The one listener thread writing log lines; a list so no `global` is needed.
_listener: list[logging.handlers.QueueListener] = []


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: replace the value of any secret-looking key."""
    for key in list(event):
        lowered = key.lower()
        if any(secret in lowered for secret in _SECRET_KEYS) and event[key] is not None:
            event[key] = "[redacted]"
    return event


def _drop_none(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in [k for k, v in event.items() if v is None]:
        del event[key]
    return event


def content_fields(text: str, log_content: bool, key: str = "content") -> dict[str, Any]:
    """``{key: text}`` when content logging is on, else ``{key + "_chars": len(text)}``."""
    return {key: text} if log_content else {f"{key}_chars": len(text)}


class _JSONLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = record.msg
        if isinstance(payload, dict):
            return json.dumps(payload, default=str, separators=(",", ":"))
        return json.dumps({"event": record.getMessage(), "level": record.levelname.lower()})


class _ConsoleFormatter(logging.Formatter):
    def __init__(self, colors: bool) -> None:
        super().__init__()
        self._render = structlog.dev.ConsoleRenderer(colors=colors)

    def format(self, record: logging.LogRecord) -> str:
        payload = record.msg
        if isinstance(payload, dict):
            return str(self._render(None, record.levelname.lower(), dict(payload)))
        return record.getMessage()


def configure_logging(settings: LoggingSettings, *, stream: TextIO | None = None) -> None:
    """Configure structlog for the process (again on a second call).

    Args:
        settings: the ``[logging]`` section.
        stream: console output (default ``sys.stderr``).
    """
    stream = sys.stderr if stream is None else stream
    with _lock:
        _close_handlers()
        root = logging.getLogger("greenroom.events")
        root.handlers.clear()
        root.propagate = False
        root.setLevel(_LEVELS[settings.level])
        console = logging.StreamHandler(stream)
        use_console = settings.format == "console" or (
            settings.format == "auto" and getattr(stream, "isatty", lambda: False)()
        )
        console.setFormatter(
            _ConsoleFormatter(colors=stream.isatty()) if use_console else _JSONLineFormatter()
        )
        if settings.path and not use_console:
            # The file already has every line; repeating it as JSON on a non-terminal
            # stderr doubles the logging cost for nothing. Warnings still show there.
            console.setLevel(logging.WARNING)
        _handlers.append(console)
        if settings.path:
            Path(settings.path).parent.mkdir(parents=True, exist_ok=True)
            file = logging.handlers.RotatingFileHandler(
                settings.path,
                maxBytes=settings.max_bytes,
                backupCount=settings.backup_count,
                encoding="utf-8",
            )
            file.setFormatter(_JSONLineFormatter())
            _handlers.append(file)
        # Handlers do their I/O on a listener thread: a log call on the event loop (or an
        # actor) only puts the record on a queue, so logging never blocks the loop.
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        _listener.append(logging.handlers.QueueListener(records, *_handlers))
        _listener[0].start()
        root.addHandler(_PassThroughQueueHandler(records))
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
                structlog.processors.format_exc_info,
                _drop_none,
                redact,
                _to_stdlib,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[settings.level]),
            logger_factory=lambda *args: root,
            cache_logger_on_first_use=False,
        )


def _to_stdlib(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    # Hand the event dict itself to the stdlib handlers, which render it once each.
    return (dict(event),), {}


class _PassThroughQueueHandler(logging.handlers.QueueHandler):
    """Queues the record untouched: our handlers render its event dict themselves."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def _close_handlers() -> None:
    for listener in _listener:
        listener.stop()  # drains what is queued first
    _listener.clear()
    for handler in _handlers:
        handler.close()
    _handlers.clear()


@atexit.register
def flush_logging() -> None:
    """Write out every queued log line (at exit, and before reading the log file)."""
    with _lock:
        for listener in _listener:
            listener.stop()
            listener.start()


def reset_logging() -> None:
    """Back to structlog's defaults; close log files (tests)."""
    with _lock:
        _close_handlers()
        logging.getLogger("greenroom.events").handlers.clear()
        structlog.reset_defaults()


def get_logger(name: str = "greenroom") -> Any:
    """A structlog logger; configuration applies whenever it is used."""
    return structlog.get_logger(name)
