"""The ``greenroom`` command: ``serve``, ``trace``, ``doctor``, ``config``, ``cluster``.

User mistakes (bad config, a data dir in use, a store that cannot open) print one
clear line on stderr and exit 2; they never end in a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict
from typing import Any

from greenroom.errors import GreenroomError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="greenroom", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API (default 127.0.0.1:8765)")
    serve.add_argument("--config", help="TOML file (default: $GREENROOM_CONFIG or built-ins)")
    serve.add_argument("--host", help="bind address (non-loopback needs a token)")
    serve.add_argument("--port", type=int, help="TCP port (0 picks a free one)")
    show = sub.add_parser("config", help="print the effective configuration as JSON")
    show.add_argument("--config", help="TOML file")
    cluster = sub.add_parser("cluster", help="the nodes sharing a PostgreSQL store")
    cluster.add_argument("action", choices=["status"], help="status: nodes and their sessions")
    cluster.add_argument("--config", help="TOML file")
    cluster.add_argument("--json", action="store_true", help="print JSON, not a table")
    sub.add_parser(
        "trace", help="follow one request, session or task id through a log", add_help=False
    )
    sub.add_parser(
        "doctor", help="scan a log for lost tasks, unread results, slow handlers", add_help=False
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``greenroom`` console script; returns the exit code."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # `greenroom doctor --json | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] in ("trace", "doctor"):
        return _log_tool(args_in[0], args_in[1:])
    args = _parser().parse_args(args_in)
    commands = {"serve": _serve, "cluster": _cluster_status, "config": _print_config}
    try:
        return commands[args.command](args)
    except GreenroomError as exc:
        print(f"greenroom: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a busy port, an address not on this host: one line
        print(f"greenroom: error: {exc.strerror or exc}", file=sys.stderr)
        return 2


def _print_config(args: argparse.Namespace) -> int:
    print(json.dumps(_masked(asdict(_settings(args))), indent=2, sort_keys=True))
    return 0


def _masked(config: dict[str, Any]) -> dict[str, Any]:
    """The configuration with secrets (the server token, agents' api keys) masked."""
    from greenroom.logs import redact

    out: dict[str, Any] = {}
    for key, value in config.items():
        out[key] = _masked(value) if isinstance(value, dict) else value
    redact(None, "", out)
    return out


def _log_tool(name: str, argv: list[str]) -> int:
    if name == "trace":
        from greenroom.trace import trace_main

        return trace_main(argv)
    from greenroom.doctor import doctor_main

    return doctor_main(argv)


def _settings(args: argparse.Namespace) -> Any:
    from greenroom.config import load_settings

    server: dict[str, Any] = {}
    if getattr(args, "host", None):
        server["host"] = args.host
    if getattr(args, "port", None) is not None:
        server["port"] = args.port
    return load_settings(args.config, overrides={"server": server} if server else None)


def _serve(args: argparse.Namespace) -> int:
    from greenroom.http.server import serve
    from greenroom.logs import configure_logging

    settings = _settings(args)
    if settings.logging.path is None:
        # A server always keeps a log file, so `greenroom trace` and `doctor` have one.
        from dataclasses import replace
        from pathlib import Path

        log_path = str(Path(settings.data_dir) / "greenroom.log")
        settings = replace(settings, logging=replace(settings.logging, path=log_path))
    configure_logging(settings.logging)
    asyncio.run(serve(settings))
    return 0


def _cluster_status(args: argparse.Namespace) -> int:
    """``greenroom cluster status``: every node, whether its lease is live, its sessions."""
    from greenroom.errors import ConfigError

    settings = _settings(args)
    if settings.store.kind != "postgres" or not settings.store.dsn:
        raise ConfigError(
            "cluster status needs store.kind = 'postgres' and store.dsn "
            "(e.g. GREENROOM_STORE__KIND=postgres GREENROOM_STORE__DSN=postgresql://...)"
        )
    from greenroom.store.postgres import PostgresStore

    store = PostgresStore(settings.store.dsn, pool_size=1)
    try:
        store.open()
        nodes = store.cluster_status()
        unowned = store.count_sessions() - sum(n["sessions"] for n in nodes)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"nodes": nodes, "unowned_sessions": unowned}, indent=2))
        return 0
    rows = [("NODE", "URL", "STATE", "LEASE LEFT", "SESSIONS")]
    for n in nodes:
        state = "alive" if n["alive"] else "expired"
        rows.append(
            (n["node_id"], n["url"], state, f"{n['lease_left_s']:.1f} s", str(n["sessions"]))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    print(
        f"{len(nodes)} nodes, {sum(n['alive'] for n in nodes)} alive; "
        f"{unowned} session(s) owned by no node (asleep; claimed on their next request)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
