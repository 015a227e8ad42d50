"""Loading configuration: defaults < TOML file < overrides < ``GREENROOM_*`` variables.

Every key is checked against the typed dataclasses of :mod:`greenroom.settings`; a
mistake is a :class:`~greenroom.errors.ConfigError` naming the dotted key and the rule.

Environment variables: ``GREENROOM_<KEY>`` for top-level keys (``GREENROOM_DATA_DIR``),
``GREENROOM_<SECTION>__<KEY>`` for section keys (``GREENROOM_SERVER__PORT=9000``),
``GREENROOM_TOKEN`` for ``server.token``, and ``GREENROOM_CONFIG`` naming the file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from greenroom.errors import ConfigError
from greenroom.settings import AgentSettings, Settings

_SECTIONS = ("server", "store", "logging", "limits", "cluster")
_CHOICES: dict[str, tuple[str, ...]] = {
    "store.kind": ("memory", "sqlite", "postgres"),
    "store.synchronous": ("NORMAL", "FULL"),
    "logging.format": ("auto", "console", "json"),
    "logging.level": ("debug", "info", "warning", "error"),
    "agents.*.kind": ("echo", "openai", "python"),
}
_NON_NEGATIVE = {"agents.*.delay_s", "agents.*.max_retries", "agents.*.backoff_base_s"}
_PORTS = {"server.port", "server.metrics_port"}  # 0 allowed: a free port, or off
_ENV_IGNORED = {"GREENROOM_CONFIG", "GREENROOM_TOKEN"}


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build the effective settings.

    Args:
        path: a TOML file; default ``$GREENROOM_CONFIG``, else none.
        overrides: a nested dict shaped like the TOML file (embedded API, CLI flags).
        env: the environment to read ``GREENROOM_*`` from (default ``os.environ``).

    Raises:
        ConfigError: a missing or malformed file, an unknown key, a wrong type or value.
    """
    env = os.environ if env is None else env
    merged: dict[str, Any] = {}
    file = path if path is not None else env.get("GREENROOM_CONFIG")
    if file:
        _merge(merged, _read_toml(Path(file)))
    if overrides:
        _merge(merged, dict(overrides))
    _merge(merged, _from_env(env))
    return settings_from_mapping(merged)


def settings_from_mapping(data: Mapping[str, Any]) -> Settings:
    """Validate a nested dict against the settings schema, starting from the defaults.

    Raises:
        ConfigError: an unknown key, a wrong type or a bad value (named by dotted key).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"configuration: expected a table, got {type(data).__name__}")
    top: dict[str, Any] = {}
    defaults = Settings()
    for key, value in data.items():
        if key in _SECTIONS:
            section_cls = type(getattr(defaults, key))
            top[key] = _build(section_cls, value, key, base=getattr(defaults, key))
        elif key == "agents":
            top[key] = {**defaults.agents, **_agents(value)}
        else:
            top[key] = value
    settings: Settings = _build(Settings, top, "", base=defaults, nested_ok=True)
    return settings


def _build(
    cls: type[Any], data: Any, prefix: str, *, base: Any = None, nested_ok: bool = False
) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in hints:
            raise ConfigError(f"{dotted}: unknown key (known: {', '.join(known)})")
        if nested_ok and (key in _SECTIONS or key == "agents"):
            values[key] = value  # already built
            continue
        values[key] = _check(dotted, hints[key], value)
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{prefix or 'configuration'}: {exc}") from None


def _agents(data: Any) -> dict[str, AgentSettings]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"agents: expected a table of agents, got {type(data).__name__}")
    agents = {}
    for name, table in data.items():
        if isinstance(table, AgentSettings):
            agents[name] = table
            continue
        if not isinstance(table, Mapping) or "kind" not in table:
            raise ConfigError(f"agents.{name}: expected a table with a 'kind' key")
        agent = _build(AgentSettings, table, f"agents.{name}")
        if agent.kind == "python" and (not agent.target or ":" not in agent.target):
            raise ConfigError(f"agents.{name}.target: kind 'python' needs 'module:callable'")
        agents[name] = agent
    return agents


def _check(dotted: str, hint: Any, value: Any) -> Any:
    optional = _is_optional(hint)
    base = _base_type(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{dotted}: must not be empty")
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if base is bool and not isinstance(value, bool):
        raise ConfigError(f"{dotted}: expected true or false, got {value!r}")
    if base in (int, float) and (isinstance(value, bool) or not isinstance(value, base)):
        kind = "an integer" if base is int else "a number"
        raise ConfigError(f"{dotted}: expected {kind}, got {value!r}")
    if base is str and not isinstance(value, str):
        raise ConfigError(f"{dotted}: expected a string, got {value!r}")
    if base is str and not value.strip():
        # An empty server.token would silently turn authentication off.
        raise ConfigError(f"{dotted}: must not be empty (leave the key out instead)")
    _check_rules(dotted, value)
    return value


def _check_rules(dotted: str, value: Any) -> None:
    leaf = dotted.rsplit(".", maxsplit=1)[-1]
    pattern = f"agents.*.{leaf}" if dotted.startswith("agents.") else dotted
    choices = _CHOICES.get(pattern)
    if choices and value not in choices:
        raise ConfigError(
            f"{dotted}: must be one of {', '.join(map(repr, choices))}, got {value!r}"
        )
    if dotted in _PORTS:
        if not 0 <= value <= 65535:
            raise ConfigError(f"{dotted}: must be between 0 and 65535, got {value}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        floor_ok = value >= 0 if pattern in _NON_NEGATIVE else value > 0
        if not floor_ok:
            raise ConfigError(
                f"{dotted}: must be {'>= 0' if pattern in _NON_NEGATIVE else '> 0'}, got {value}"
            )


def _is_optional(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) and type(None) in hint.__args__


def _base_type(hint: Any) -> Any:
    if isinstance(hint, types.UnionType):
        return next(a for a in hint.__args__ if a is not type(None))
    return hint


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read: {exc.strerror}") from None


def _merge(into: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, Mapping):
            into[key] = {}
            _merge(into[key], value)
        else:
            into[key] = value


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    defaults = Settings()
    if env.get("GREENROOM_TOKEN"):
        out.setdefault("server", {})["token"] = env["GREENROOM_TOKEN"]
    for name, raw in env.items():
        if not name.startswith("GREENROOM_") or name in _ENV_IGNORED:
            continue
        section, sep, key = name[len("GREENROOM_") :].lower().partition("__")
        if section == "agents":
            raise ConfigError(
                f"{name}: agents cannot be set from the environment; use the config file"
            )
        if sep and section in _SECTIONS:
            hints = typing.get_type_hints(type(getattr(defaults, section)))
            target, dotted = out.setdefault(section, {}), f"{section}.{key}"
        elif not sep and section in ("default_agent", "data_dir"):
            hints, target, dotted, key = typing.get_type_hints(Settings), out, section, section
        else:
            raise ConfigError(f"{name}: unknown greenroom environment variable")
        if key not in hints:
            raise ConfigError(f"{name}: {dotted} is not a configuration key")
        target[key] = _parse_env(name, _base_type(hints[key]), raw)
    return out


def _parse_env(name: str, base: Any, raw: str) -> Any:
    try:
        if base is bool:
            lowered = raw.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return lowered in ("true", "1", "yes")
        if base in (int, float):
            return base(raw)
    except ValueError:
        raise ConfigError(f"{name}: cannot parse {raw!r} as {base.__name__}") from None
    return raw
