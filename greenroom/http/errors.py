"""The one place where errors become HTTP responses: ``{"error": {"code", "message"}}``.

Domain errors map to statuses by class; aiohttp's own HTTP errors (404 route, 405,
413) keep their status but get the JSON body; anything unexpected is logged with its
request id and answered with a generic 500 — never a traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from greenroom import errors as e
from greenroom.http.keys import ORCHESTRATOR, REQUEST_ID, SHUTDOWN
from greenroom.logs import get_logger

log = get_logger()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (e.NotFoundError, 404),
    (e.IdempotencyKeyReusedError, 422),
    (e.ConflictError, 409),
    (e.CapacityError, 429),
    (e.ShuttingDownError, 503),
    (e.NotRunningError, 503),
    (e.StoreError, 503),
    (e.OwnedElsewhereError, 503),
    (e.ConfigError, 400),
    (ValueError, 400),
    (TypeError, 400),
)
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


class BadRequestError(ValueError):
    """A request the API cannot take: malformed JSON, wrong fields or types."""

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


def shutting_down(app: web.Application) -> bool:
    """Whether shutdown began: the server's flag is set or the orchestrator stopped."""
    return app[SHUTDOWN].is_set() or not app[ORCHESTRATOR].running


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The JSON error body every failure uses."""
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every exception as a JSON error with the right status."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, code, _http_message(request, exc), headers)
    except Exception as exc:
        return _domain_error(request, exc)


def _http_message(request: web.Request, exc: web.HTTPException) -> str:
    where = f"{request.method} {request.path}"
    if exc.status == 404:
        return f"no such route: {where}"
    if exc.status == 405:
        return f"method not allowed: {where} (allowed: {exc.headers.get('Allow', 'none')})"
    if exc.status == 413:
        return f"request body too large: {exc.text or exc.reason}"
    return exc.reason or _HTTP_CODES.get(exc.status, "http_error")


def _domain_error(request: web.Request, exc: Exception) -> web.Response:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            code = getattr(exc, "code", None) or _HTTP_CODES.get(status, "error")
            if isinstance(exc, ValueError | TypeError) and not isinstance(exc, e.GreenroomError):
                code = getattr(exc, "code", "bad_request")
            headers = None
            if isinstance(exc, e.CapacityError):
                headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))}
            elif isinstance(exc, e.OwnedElsewhereError | e.StoreInDoubtError):
                headers = {"Retry-After": "1"}  # ownership is moving: a retry finds it
            return error_response(status, code, str(exc), headers)
    log.error(
        "request_failed",
        actor="http",
        request_id=request.get(REQUEST_ID),
        error_type=type(exc).__name__,
        error=str(exc),
        exc_info=exc,
    )
    return error_response(
        500,
        "internal_error",
        "an unexpected error occurred; see the server log for this request id",
    )
