"""`gateway serve` and `gateway check-config`.

A bad config, or a port that cannot be listened on, exits with status 2 and one line naming
the key; it never prints a traceback. `serve` exits 0 after a drain, 1 if worker processes
could not be kept running or did not drain (see gateway.supervisor).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from gateway.config import ConfigError, Settings, load, read_env_file, with_workers
from gateway.embedded import EmbeddedRedisError
from gateway.listen import ListenError, check_ports_free
from gateway.server import run_process, running_redis
from gateway.supervisor import Supervisor


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run the gateway in the foreground"),
        ("check-config", "validate a config file and exit"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--config", required=True, help="path to config.yaml")
        cmd.add_argument("--env-file", help="KEY=value lines for ${VAR}s; the environment wins")
        if name == "serve":
            cmd.add_argument(
                "--workers",
                type=int,
                help="worker processes sharing the port (SO_REUSEPORT); overrides server.workers",
            )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    env = dict(os.environ)
    if args.env_file:
        env = {**read_env_file(args.env_file), **env}
    settings = load(args.config, env)
    if getattr(args, "workers", None) is not None:
        settings = with_workers(settings, args.workers)
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        settings = _settings(args)
        if args.command == "check-config":
            print(f"{args.config}: ok")
            return 0
        return _serve(settings)
    except ConfigError as exc:
        print(f"gateway: config error: {exc}", file=sys.stderr)
        return 2
    except EmbeddedRedisError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2


def _serve(settings: Settings) -> int:
    try:
        return serve(settings)
    except ListenError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2


def serve(settings: Settings) -> int:
    """Serve until SIGTERM or SIGINT, then drain; the exit status (0: drained). With
    `server.workers` > 1 this process becomes the supervisor of that many workers."""
    if settings.server.workers == 1:
        with running_redis(settings) as url:
            run_process(settings, url)
        return 0
    check_ports_free(settings.server)
    with running_redis(settings) as url:
        return Supervisor(settings, url).run()


if __name__ == "__main__":
    sys.exit(main())
