"""The shape of greenroom's configuration: typed, frozen dataclasses.

The defaults here are the built-in defaults; ``config/greenroom.toml`` documents the
same values key by key (a test keeps the two identical). ``greenroom.config`` layers a
user file, embedded overrides and ``GREENROOM_*`` variables on top of these defaults and
validates every key against these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None  # bearer token for /v1; GREENROOM_TOKEN sets it too
    max_wait_s: float = 60.0  # cap on ?wait= long-polls
    shutdown_grace_s: float = 5.0  # how long running turns get on SIGTERM
    heartbeat_s: float = 15.0  # SSE heartbeat comment interval
    sse_queue_size: int = 1000  # per-subscriber buffer before it is reset
    metrics: bool = True  # Prometheus metrics (GET /metrics); false: none are kept
    metrics_port: int = 0  # also serve /metrics, without the token, on 127.0.0.1:PORT; 0: off


@dataclass(frozen=True, slots=True)
class StoreSettings:
    kind: str = "sqlite"  # "memory" | "sqlite" | "postgres"
    synchronous: str = "NORMAL"  # sqlite PRAGMA synchronous: "NORMAL" | "FULL"
    read_pool_size: int = 4  # sqlite read connections at most (reads beyond it wait)
    read_idle_s: float = 30.0  # a pooled read connection unused this long is closed
    dsn: str | None = None  # postgres: "postgresql://user@host:5432/db"
    pool_size: int = 8  # postgres read connections at most (the writer has its own)


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Several nodes over PostgreSQL (used when ``store.kind`` is "postgres")."""

    node_id: str | None = None  # default: "<hostname>-<port>"
    advertise_url: str | None = None  # how other nodes reach this one; default from host:port
    lease_s: float = 10.0  # a node silent this long loses its sessions to the others


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    path: str | None = None  # JSON lines file; None: stderr only
    format: str = "auto"  # "auto" | "console" | "json" (console output)
    level: str = "info"
    log_content: bool = False  # log prompt/answer text (else only lengths)
    max_bytes: int = 50 * 1024 * 1024  # rotate the log file at this size
    backup_count: int = 5


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    max_running_tasks: int = 64
    max_queued_tasks: int = 1000
    task_timeout_s: float = 600.0
    max_task_attempts: int = 10  # the largest max_attempts a task may ask for
    max_live_sessions: int = 10_000  # ~5 KiB each when idle; no thread each
    session_idle_s: float = 300.0
    max_body_bytes: int = 1024 * 1024
    max_prompt_chars: int = 200_000
    max_tasks_per_session: int = 10_000  # kept (unpruned) tasks; past it start_task is refused
    replay_events: int = 1000  # events kept in memory per session for SSE replay
    retention_s: float = 7 * 24 * 3600.0  # acknowledged results older than this are pruned


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """One named agent. ``kind`` picks the backend; the other keys belong to it."""

    kind: str  # "echo" | "openai" | "python"
    # echo
    delay_s: float = 0.0
    chunk_chars: int = 8
    # openai
    base_url: str = "http://127.0.0.1:11434/v1"
    model: str = "gpt-4o-mini"
    api_key_env: str | None = None
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    system_prompt: str | None = None
    # python
    target: str | None = None  # "module:callable"


def _default_agents() -> dict[str, AgentSettings]:
    return {"echo": AgentSettings(kind="echo")}


@dataclass(frozen=True, slots=True)
class Settings:
    default_agent: str = "echo"
    data_dir: str = ".greenroom"
    server: ServerSettings = field(default_factory=ServerSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    agents: dict[str, AgentSettings] = field(default_factory=_default_agents)

    def replace(self, **changes: Any) -> Settings:
        """A copy with top-level fields replaced."""
        return replace(self, **changes)
