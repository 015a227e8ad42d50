"""Configuration: layering, env variables, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenroom.config import load_settings
from greenroom.errors import ConfigError
from greenroom.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_config_file_is_exactly_the_built_in_defaults() -> None:
    assert load_settings(ROOT / "config" / "greenroom.toml", env={}) == Settings()


def test_each_layer_overrides_the_one_before(tmp_path: Path) -> None:
    file = tmp_path / "g.toml"
    file.write_text('data_dir = "from-file"\n[server]\nport = 9001\nhost = "127.0.0.2"\n')
    settings = load_settings(
        file,
        overrides={"server": {"port": 9002}},
        env={
            "GREENROOM_SERVER__HOST": "127.0.0.3",
            "GREENROOM_LIMITS__MAX_RUNNING_TASKS": "7",
            "GREENROOM_LOGGING__LOG_CONTENT": "yes",
            "GREENROOM_TOKEN": "t0k",
        },
    )
    assert settings.data_dir == "from-file"
    assert settings.server.port == 9002
    assert settings.server.host == "127.0.0.3"
    assert settings.server.token == "t0k"
    assert settings.limits.max_running_tasks == 7
    assert settings.logging.log_content is True


def test_config_env_variable_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "g.toml"
    file.write_text('default_agent = "mine"\n[agents.mine]\nkind = "echo"\ndelay_s = 0.5\n')
    settings = load_settings(env={"GREENROOM_CONFIG": str(file)})
    assert settings.default_agent == "mine"
    assert settings.agents["mine"].delay_s == 0.5
    assert "echo" in settings.agents  # the built-in agent stays


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"server": {"prot": 1}}, r"server\.prot: unknown key \(known: host, port"),
        ({"limits": {"max_running_tasks": "ten"}}, r"limits\.max_running_tasks: expected an int"),
        ({"limits": {"max_running_tasks": True}}, "expected an integer"),
        ({"limits": {"task_timeout_s": -1}}, r"limits\.task_timeout_s: must be > 0"),
        ({"server": {"port": 70000}}, r"server\.port: must be between 0 and 65535"),
        (
            {"store": {"kind": "oracle"}},
            r"store\.kind: must be one of 'memory', 'sqlite', 'postgres'",
        ),
        ({"logging": {"format": "xml"}}, r"logging\.format: must be one of"),
        ({"agents": {"mine": {"kind": "python"}}}, r"agents\.mine\.target"),
        ({"agents": {"mine": {"kind": "grpc"}}}, r"agents\.mine\.kind: must be one of"),
        ({"agents": {"mine": {"delay": 1}}}, r"agents\.mine: expected a table with a 'kind'"),
        ({"colour": "blue"}, "colour: unknown key"),
        ({"server": {"token": ""}}, r"server\.token: must not be empty"),
    ],
)
def test_mistakes_are_config_errors_naming_the_key(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(overrides=overrides, env={})


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nport = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_settings(bad, env={})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GREENROOM_SERVER__PORT": "eighty"}, "GREENROOM_SERVER__PORT: cannot parse"),
        ({"GREENROOM_SERVR__PORT": "1"}, "unknown greenroom environment variable"),
        ({"GREENROOM_SERVER__NOPE": "1"}, r"server\.nope is not a configuration key"),
        ({"GREENROOM_AGENTS__X": "1"}, "agents cannot be set from the environment"),
        ({"GREENROOM_LOGGING__LOG_CONTENT": "maybe"}, "cannot parse 'maybe' as bool"),
    ],
)
def test_bad_environment_variables_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)
