"""Every exception greenroom raises, in one place.

The tree::

    GreenroomError
    ├── ConfigError(GreenroomError, ValueError)          bad config key, type or value
    ├── NotFoundError(GreenroomError, LookupError)       404
    │   ├── SessionNotFoundError
    │   ├── TaskNotFoundError
    │   └── AgentNotFoundError
    ├── ConflictError(GreenroomError, RuntimeError)      409
    │   ├── TurnInProgressError                          a turn is already running
    │   ├── AckBeyondLastSeqError                        ack past the session's last seq
    │   ├── ResumeBeyondLastSeqError                     resume after a seq not yet reached
    │   └── IdempotencyKeyReusedError                    same key, another request (422)
    ├── CapacityError(GreenroomError, RuntimeError)      a bound was reached (429)
    │   └── QueueFullError                               max_queued_tasks reached
    ├── ShuttingDownError(GreenroomError, RuntimeError)  intake is closed (503)
    ├── NotRunningError(GreenroomError, RuntimeError)    not started, or already stopped
    ├── StoreError(GreenroomError, OSError)              store unreadable/unwritable (503)
    ├── AgentError(GreenroomError, RuntimeError)         an agent call failed
    │   ├── UpstreamError                                the upstream answered badly
    │   └── RetriesExhaustedError                        every retry failed
    └── TaskTimeoutError(GreenroomError, TimeoutError)   task.wait() ran out of time

Bad arguments raise the builtin ``ValueError``/``TypeError`` naming the parameter.
"""

from __future__ import annotations


class GreenroomError(Exception):
    """The root of every greenroom error.

    Attributes:
        code: a stable snake_case code, used as the HTTP error code.
    """

    code = "greenroom_error"


class ConfigError(GreenroomError, ValueError):
    """A configuration key is unknown, has the wrong type or a bad value."""

    code = "config_error"


class NotFoundError(GreenroomError, LookupError):
    """Something addressed by id does not exist."""

    code = "not_found"


class SessionNotFoundError(NotFoundError):
    """No session has this id."""

    code = "session_not_found"


class TaskNotFoundError(NotFoundError):
    """No task of this session has this id."""

    code = "task_not_found"


class AgentNotFoundError(NotFoundError):
    """No agent is registered or configured under this name."""

    code = "agent_not_found"


class ConflictError(GreenroomError, RuntimeError):
    """The request conflicts with the current state."""

    code = "conflict"


class TurnInProgressError(ConflictError):
    """A foreground turn is already running in this session."""

    code = "turn_in_progress"


class AckBeyondLastSeqError(ConflictError):
    """An acknowledgement past the session's last seq: well-formed, but not yet true."""

    code = "ack_beyond_last_seq"


class ResumeBeyondLastSeqError(ConflictError):
    """Events were asked for after a seq the session has not reached (``Last-Event-ID``)."""

    code = "resume_beyond_last_seq"


class IdempotencyKeyReusedError(ConflictError):
    """An ``Idempotency-Key`` already names a task started with a different request.

    Retrying with the same key must send the same request; the first task is not
    returned in silence for a different one.
    """

    code = "idempotency_key_reused"


class CapacityError(GreenroomError, RuntimeError):
    """A configured bound was reached; retry later.

    Attributes:
        retry_after_s: a hint for the caller, in seconds.
    """

    code = "capacity"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QueueFullError(CapacityError):
    """``max_queued_tasks`` tasks are already waiting to run."""

    code = "queue_full"


class ShuttingDownError(GreenroomError, RuntimeError):
    """The orchestrator is stopping and takes no new work."""

    code = "shutting_down"


class NotRunningError(GreenroomError, RuntimeError):
    """The orchestrator is not running: never started, or already stopped.

    Attributes:
        state: the orchestrator's lifecycle state when the call was made.
    """

    code = "not_running"

    def __init__(self, message: str, state: str = "") -> None:
        super().__init__(message)
        self.state = state


class StoreError(GreenroomError, OSError):
    """The store could not be read or written (locked, read-only, disk full)."""

    code = "store_unavailable"


class StoreInDoubtError(StoreError):
    """A write's outcome is unknown (the connection broke during it): the writer must
    reload the session from the store before it writes again."""

    code = "store_unavailable"


class LeaseLostError(StoreInDoubtError):
    """A write was refused: another node has claimed the session since (fencing)."""

    code = "lease_lost"


class OwnedElsewhereError(GreenroomError):
    """The session is live on another node; the request belongs there.

    Attributes:
        node_id: the owning node.
        url: its advertised URL (where a request is forwarded).
    """

    code = "owned_elsewhere"

    def __init__(self, message: str, node_id: str = "", url: str = "") -> None:
        super().__init__(message)
        self.node_id = node_id
        self.url = url


class AgentError(GreenroomError, RuntimeError):
    """An agent call failed."""

    code = "agent_error"


class UpstreamError(AgentError):
    """The upstream model server answered with an error or a broken stream.

    Attributes:
        status: the HTTP status, when there was one.
        retryable: whether a retry may succeed.
        retry_after_s: the server's ``Retry-After``, when it sent one.
        cause: what went wrong, from a short fixed list (a metrics label): ``http_429``
            (``http_`` and the status), ``connection``, ``timeout``, ``malformed``,
            ``truncated``, or ``upstream``.
    """

    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
        cause: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.cause = cause or (f"http_{status}" if status is not None else "upstream")


class RetriesExhaustedError(AgentError):
    """Every attempt of an agent call failed; the last error is the cause."""

    code = "retries_exhausted"


class TaskTimeoutError(GreenroomError, TimeoutError):
    """``Task.wait`` ran out of time. The task itself keeps running."""

    code = "wait_timeout"
