"""greenroom: an actor-model orchestrator for AI agent sessions.

The embedded API::

    async with greenroom.Orchestrator(config=None) as orch:
        session = await orch.create_session()
        task = await session.start_task("summarise this", kind="background")
        done = await task.wait(timeout=30)
"""

from greenroom.agents import BaseAgent, CallableAgent, EchoAgent
from greenroom.api import Session, Subscription, Task
from greenroom.errors import (
    AckBeyondLastSeqError,
    AgentError,
    AgentNotFoundError,
    CapacityError,
    ConfigError,
    ConflictError,
    GreenroomError,
    IdempotencyKeyReusedError,
    LeaseLostError,
    NotFoundError,
    NotRunningError,
    OwnedElsewhereError,
    QueueFullError,
    RetriesExhaustedError,
    SessionNotFoundError,
    ShuttingDownError,
    StoreError,
    StoreInDoubtError,
    TaskNotFoundError,
    TaskTimeoutError,
    TurnInProgressError,
    UpstreamError,
)
from greenroom.models import (
    Completion,
    ErrorInfo,
    Event,
    EventsPage,
    Message,
    ResultsPage,
    SessionInfo,
    SessionsPage,
    TaskInfo,
    TaskStatus,
)
from greenroom.orchestrator import Orchestrator
from greenroom.settings import Settings
from greenroom.typing import Agent, AgentContext, History, Store

__version__ = "0.1.0"

__all__ = [
    "AckBeyondLastSeqError",
    "Agent",
    "AgentContext",
    "AgentError",
    "AgentNotFoundError",
    "BaseAgent",
    "CallableAgent",
    "CapacityError",
    "Completion",
    "ConfigError",
    "ConflictError",
    "EchoAgent",
    "ErrorInfo",
    "Event",
    "EventsPage",
    "GreenroomError",
    "History",
    "IdempotencyKeyReusedError",
    "LeaseLostError",
    "Message",
    "NotFoundError",
    "NotRunningError",
    "Orchestrator",
    "OwnedElsewhereError",
    "QueueFullError",
    "ResultsPage",
    "RetriesExhaustedError",
    "Session",
    "SessionInfo",
    "SessionNotFoundError",
    "SessionsPage",
    "Settings",
    "ShuttingDownError",
    "Store",
    "StoreError",
    "StoreInDoubtError",
    "Subscription",
    "Task",
    "TaskInfo",
    "TaskNotFoundError",
    "TaskStatus",
    "TaskTimeoutError",
    "TurnInProgressError",
    "UpstreamError",
    "__version__",
]
