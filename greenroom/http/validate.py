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
    """The request's JSON object, checked field by field (``null`` = absent if optional).

    Raises:
        BadRequestError: not JSON, not an object, unknown or missing fields, wrong types.
        web.HTTPRequestEntityTooLarge: over ``max_body_bytes`` (413).
    """
    raw = await request.read()  # aiohttp stops reading past client_max_size (413)
    limit = request.app[SETTINGS].limits.max_body_bytes
    if len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))
    if not raw.strip():
        if allow_empty:
            return {}
        raise BadRequestError("request body: expected a JSON object")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadRequestError(f"request body: malformed JSON ({exc})", "malformed_json") from None
    if not isinstance(data, dict):
        raise BadRequestError(f"request body: expected a JSON object, got {_json_type(data)}")
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
    """``value`` if it has type ``kind`` (a float field takes integers, as JSON does)."""
    if isinstance(value, float) and kind is int and value.is_integer():
        return int(value)  # JSON Schema: 3.0 is an integer
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise BadRequestError(f"{name}: {value} is out of range", "wrong_type") from None
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
    cap: bool = True,
) -> float:
    """A numeric query parameter within bounds.

    Args:
        request: the request.
        name: the parameter.
        default: the value when the parameter is absent or empty.
        integer: accept integers only.
        minimum: the smallest value accepted.
        maximum: the largest value: larger ones are lowered to it (``cap``) or refused.
        cap: lower values above ``maximum`` instead of refusing them.

    Raises:
        BadRequestError: not a number, below ``minimum``, or above ``maximum``
            without ``cap``.
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
    if maximum is not None and value > maximum:
        if not cap:
            raise BadRequestError(f"{name}: must be <= {maximum}, got {raw!r}", "bad_query")
        return maximum
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


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
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), type(value).__name__)
