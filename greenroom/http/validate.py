"""Parsing request bodies and query strings strictly, with errors naming the field."""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web

from greenroom.http.errors import BadRequestError
from greenroom.http.keys import SETTINGS


async def json_body(
    request: web.Request,
    *,
    required: dict[str, type | tuple[type, ...]],
    optional: dict[str, type | tuple[type, ...]],
    allow_empty: bool = False,
) -> dict[str, Any]:
    """The request's JSON object, checked field by field.

    Raises:
        BadRequestError: not JSON, not an object, unknown or missing fields, wrong types.
        web.HTTPRequestEntityTooLarge: over ``max_body_bytes`` (413).
    """
    raw = await request.read()
    limit = request.app[SETTINGS].limits.max_body_bytes
    if len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))
    if not raw.strip():
        if allow_empty:
            return {}
        raise BadRequestError("request body: expected a JSON object")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"request body: malformed JSON ({exc})", "malformed_json") from None
    if not isinstance(data, dict):
        raise BadRequestError(f"request body: expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        raise BadRequestError(f"unknown field(s): {', '.join(unknown)}", "unknown_field")
    for name, kind in {**required, **optional}.items():
        if name in data:
            if data[name] is not None or name in required:
                data[name] = _checked(name, kind, data[name])
        elif name in required:
            raise BadRequestError(f"{name}: required", "missing_field")
    return data


def _checked(name: str, kind: type | tuple[type, ...], value: Any) -> Any:
    if isinstance(value, float) and kind is int and value.is_integer():
        return int(value)  # JSON Schema: 3.0 is an integer
    if isinstance(value, bool) and bool not in _as_tuple(kind):
        raise BadRequestError(f"{name}: expected {_names(kind)}, got boolean", "wrong_type")
    if not isinstance(value, kind):
        raise BadRequestError(
            f"{name}: expected {_names(kind)}, got {_json_type(value)}", "wrong_type"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequestError(f"{name}: must be a finite number", "wrong_type")
    return value


def query_number(
    request: web.Request,
    name: str,
    default: float,
    *,
    integer: bool = False,
    minimum: float = 0,
    maximum: float | None = None,
) -> float:
    """A numeric query parameter within bounds (capped at ``maximum`` when given).

    Raises:
        BadRequestError: not a number, or below ``minimum``.
    """
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise BadRequestError(f"{name}: expected {kind}, got {raw!r}", "bad_query") from None
    if not math.isfinite(value) or value < minimum:
        raise BadRequestError(f"{name}: must be >= {minimum}, got {raw!r}", "bad_query")
    return min(value, maximum) if maximum is not None else value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        dict: "an object",
        bool: "a boolean",
    }
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in _as_tuple(kind)))


def _json_type(value: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        dict: "an object",
        list: "an array",
    }.get(type(value), type(value).__name__)
