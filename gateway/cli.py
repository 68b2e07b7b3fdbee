"""`gateway serve`, `gateway check-config`, `gateway reload` (the running gateway reads its
config again: SIGHUP, see gateway/reload.py), and the operator's tools on the same config
and Redis: `gateway inspect` (streams, dead letters, accounts, one conversation), `gateway
deadletters list | show | replay | drop`, `gateway accounts clear-halt | sync` (sync: a
coexistence number's app contacts and history, asked of the provider) and `gateway webhooks
set | show | delete | verify` (provider calls only, no Redis), `gateway acl` (the Redis ACL
users, printed or applied: gateway/acl_tool.py). `gateway secrets keygen |
encrypt | decrypt-check | reencrypt` seals config values (gateway/sealed_tool.py). `gateway
demo` runs the whole loop on this machine (gateway_demo/run.py).

A bad config, or a port that cannot be listened on, exits with status 2 and one line naming
the key; it never prints a traceback. `serve` exits 0 after a drain, 1 if worker processes
could not be kept running or did not drain (see gateway.supervisor). The operator's tools exit
0 when done, 1 when nothing matched (no dead letter, no halted account, an account not
subscribed) or a replay or provider call failed, 2 on a usage or config error or when Redis
does not answer (they never start an embedded Redis: `gateway serve` must be running).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp

from gateway import accounts_tool, acl_tool, logs, sealed_tool, webhooks_tool
from gateway import deadletter_tool as dl
from gateway.app import check_wait_aof
from gateway.config import ConfigError, Settings
from gateway.embedded import EmbeddedRedisError
from gateway.inspection import inspect, render
from gateway.listen import ListenError, check_ports_free
from gateway.ops import NOTHING, OK, USAGE, ToolError, connect, id_ranges, parse_age
from gateway.reload import ConfigSource
from gateway.server import run_process, running_redis
from gateway.supervisor import Supervisor
from router import marks
from router.accounts import Account
from router.client import REDIS_ERRORS, RedisClient, scripts_of

audit = logging.getLogger("gateway.audit")


def _common(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--config", required=True, help="path to config.yaml")
    cmd.add_argument("--env-file", help="KEY=value lines for ${VAR}s; the environment wins")


def _tools(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    raw = argparse.RawDescriptionHelpFormatter
    text = "show streams, dead letters by reason, accounts, and optionally one conversation"
    cmd = sub.add_parser(
        "inspect",
        help=text,
        description=f"{text}. Reads the Redis of the running gateway (redis.url, or the "
        "embedded Redis `gateway serve` started); writes nothing. Exit 0, or 2 on a usage or "
        "config error or when Redis does not answer.",
    )
    _common(cmd)
    cmd.add_argument(
        "--conversation",
        metavar="CHANNEL:ACCOUNT:CONTACT",
        help="also show one conversation: window, pause and why, opt-out, last inbound "
        "message, country block, limiter keys",
    )
    cmd.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    text = "list, show, replay or drop the dead letters in gw:deadletter"
    dead = sub.add_parser(
        "deadletters", help=text, description=f"{text}.\n\n{dl.__doc__}", formatter_class=raw
    )
    actions = dead.add_subparsers(dest="action", required=True)
    for name, about in (
        ("list", "one line per matching dead letter (exit 1 when none matches)"),
        ("show", "every matching dead letter in full, its body decoded"),
        (
            "replay",
            "publish matching webhook bodies through parse, dedup and publish (deleting each "
            "letter once all of it is published; one that fails again stays) and re-queue "
            "dead-lettered commands to gw:outbox; exit 1 when nothing matched or any failed",
        ),
        ("drop", "delete the matching dead letters (needs --yes)"),
    ):
        act = actions.add_parser(name, help=about, description=about)
        _common(act)
        act.add_argument(
            "--reason", action="append", default=[], help="only this reason (repeatable)"
        )
        act.add_argument(
            "--channel", action="append", default=[], help="only this channel (repeatable)"
        )
        act.add_argument(
            "--since", metavar="AGE", help="received at most AGE ago (90s, 15m, 2h, 7d)"
        )
        act.add_argument("--until", metavar="AGE", help="received at least AGE ago")
        act.add_argument(
            "--id",
            action="append",
            default=[],
            metavar="IDS",
            help="stream ids or ranges FIRST..LAST (either end optional), comma-separated, "
            "repeatable",
        )
        act.add_argument("--json", action="store_true", help="JSON output, for scripts")
        if name == "drop":
            act.add_argument("--yes", action="store_true", help="really delete them")
    text = "set, show, delete or verify the webhook subscriptions of the configured accounts"
    hooks = sub.add_parser(
        "webhooks", help=text, description=webhooks_tool.__doc__, formatter_class=raw
    )
    hook_actions = hooks.add_subparsers(dest="action", required=True)
    for name, about in (
        ("set", "register each account's webhook with its provider at server.public_url"),
        ("show", "what each provider has now: URL, subscribed, pending, last error"),
        ("delete", "unsubscribe each account (needs --yes)"),
        ("verify", "fetch the platforms' GET handshake through server.public_url, and check "
                   "that the others deliver to it"),
    ):  # fmt: skip
        act = hook_actions.add_parser(name, help=about, description=about)
        _common(act)
        _account_option(act, "only this configured account (repeatable); default: all")
        act.add_argument("--json", action="store_true", help="JSON output, for scripts")
        if name in ("set", "delete"):
            act.add_argument(
                "--drop-pending",
                action="store_true",
                help="drop the updates the provider keeps for delivery, where it keeps them",
            )
        if name == "delete":
            act.add_argument("--yes", action="store_true", help="really unsubscribe")
    text = "move the dedup marks of an older gateway (gw:dd:*) into the bucketed model"
    dedup = sub.add_parser(
        "dedup",
        help=text,
        description=f"{text} (gw:mk:*; README 'Dedup identity'). Run once after upgrading from "
        "a gateway that kept one key per mark: until then, an event received before the "
        "upgrade and delivered again is published again. Safe to repeat and to run while "
        "gateways serve. Exit 0, or 2 on a usage or config error or when Redis does not "
        "answer.",
    )
    dedup_actions = dedup.add_subparsers(dest="action", required=True)
    migrate = dedup_actions.add_parser("migrate", help=text)
    _common(migrate)
    migrate.add_argument("--json", action="store_true", help="JSON output, for scripts")
    text = "clear a halted number's or bot's halt, so it sends again without a restart"
    accounts = sub.add_parser(
        "accounts",
        help=f"{text}; or ask for a coexistence number's app contacts and history (sync)",
        description=accounts_tool.__doc__,
        formatter_class=raw,
    )
    account_actions = accounts.add_subparsers(dest="action", required=True)
    clear = account_actions.add_parser(
        "clear-halt",
        help=text,
        description=f"{text}; exit 1 when none of the accounts was halted",
    )
    _common(clear)
    which = clear.add_mutually_exclusive_group(required=True)
    _account_option(
        which,
        "this configured account: its channel and id, as `gateway inspect` lists them (repeatable)",
    )
    which.add_argument("--all", action="store_true", help="every configured account")
    clear.add_argument("--json", action="store_true", help="JSON output, for scripts")
    text = "ask the provider for the contacts and chat history of a number's own app"
    sync = account_actions.add_parser(
        "sync",
        help=text,
        description=f"{text} (coexistence numbers; each kind once per onboarding, within 24 h "
        "of it). Records each answer for `gateway inspect`. Exit 0 when every request was "
        "accepted or had been made before, 1 when one failed, came too late, or no account "
        "has such data, 2 on a usage or config error or when Redis does not answer.",
    )
    _common(sync)
    _account_option(sync, "only this configured account (repeatable); default: every enabled "
                          "account that has app data to sync")  # fmt: skip
    sync.add_argument("--contacts", action="store_true", help="the contacts only")
    sync.add_argument("--history", action="store_true", help="the chat history only")
    sync.add_argument("--json", action="store_true", help="JSON output, for scripts")


async def _migrate_marks(args: argparse.Namespace, settings: Settings, redis: RedisClient) -> int:
    """`dedup migrate`: one line (or a JSON document), one audit line."""
    done = await marks.migrate(redis, scripts_of(redis), settings.router)
    fields = dataclasses.asdict(done)
    audit.warning(
        "dedup migrate: %d marks moved into gw:mk:*, %d gone meanwhile, %d unreadable keys "
        "left, in %.1f s",
        done.moved,
        done.gone,
        done.unreadable,
        done.seconds,
    )
    if args.json:
        print(json.dumps(fields))
    else:
        print(
            f"{done.moved} marks moved, {done.gone} gone meanwhile, {done.unreadable} "
            f"unreadable keys left as they are ({done.seconds:.1f} s)"
        )
    return OK


def _account_option(
    parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup, text: str
) -> None:
    parser.add_argument(
        "--account", action="append", default=[], metavar="CHANNEL:ACCOUNT", help=text
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run the gateway in the foreground"),
        ("check-config", "validate a config file and exit"),
        ("reload", "check the config, then have the running gateway read it again (SIGHUP "
                   "to the pid in server.pid_file)"),
    ):  # fmt: skip
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--config", required=True, help="path to config.yaml")
        cmd.add_argument("--env-file", help="KEY=value lines for ${VAR}s; the environment wins")
        if name == "serve":
            cmd.add_argument(
                "--workers",
                type=int,
                help="worker processes sharing the port (SO_REUSEPORT); overrides server.workers",
            )
    _tools(sub)
    acl_tool.add_parser(sub)
    sealed_tool.add_parser(sub)
    sub.add_parser(
        "demo",
        help="the whole loop on this machine: the gateway, an embedded Redis, stand-in "
        "provider APIs and the example assistant, with signed webhooks, told as it happens",
        description="Starts everything in a temporary directory, posts a few signed webhooks, "
        "prints each hop (webhook, inbox event, command, provider request, delivery, status) "
        "and stops everything. Exit 0 when every step happened as told, 1 when one did not.",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="text lines, or one JSON object per line (overrides server.log_format)",
    )
    return parser


def _source(args: argparse.Namespace) -> ConfigSource:
    """The config file, env file and command-line overrides: read at start and at a reload."""
    return ConfigSource(args.config, args.env_file, getattr(args, "workers", None), args.log_format)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure(args.log_level.upper(), args.log_format or "text")
    if args.command == "demo":
        from gateway_demo.run import main as demo

        return demo()
    if args.command == "secrets":  # keygen and encrypt need no config
        return sealed_tool.run(args)
    try:
        settings = _source(args).load()
        logs.configure(args.log_level.upper(), settings.server.log_format)
        logs.REDACT.add(logs.secret_values(settings))
        if args.command == "check-config":
            print(f"{args.config}: ok")
            return 0
        if args.command == "webhooks":
            return _webhooks(args, settings)
        if args.command == "acl":
            return acl_tool.run(args, settings)
        if args.command in ("inspect", "deadletters", "accounts", "dedup"):
            return asyncio.run(_tool(args, settings))
        if args.command == "reload":
            return _reload(settings)
        return _serve(settings, _source(args))
    except ConfigError as exc:
        print(f"gateway: config error: {exc}", file=sys.stderr)
        return 2
    except (EmbeddedRedisError, ToolError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2


async def _tool(args: argparse.Namespace, settings: Settings) -> int:
    """`inspect`, `deadletters` or `accounts`, on the running gateway's Redis."""
    filters = _filters(args) if args.command == "deadletters" else None
    chosen = _accounts(args, settings) if args.command == "accounts" else None
    redis = await connect(settings)
    try:
        if args.command == "dedup":
            return await _migrate_marks(args, settings, redis)
        if chosen is not None and args.action == "sync":
            return await _sync(args, settings, redis, chosen)
        if chosen is not None:
            cleared = await accounts_tool.clear_halts(redis, chosen)
            print(
                json.dumps(accounts_tool.document(cleared)) if args.json
                else accounts_tool.render(cleared)
            )  # fmt: skip
            return OK if any(c.halt for c in cleared) else NOTHING
        if filters is None:
            print(render(await inspect(redis, settings, args.conversation), args.json))
            return OK
        return await _deadletters(args, settings, redis, filters)
    except REDIS_ERRORS as exc:
        raise ToolError(f"Redis failed: {type(exc).__name__}: {exc}") from None
    finally:
        await redis.aclose()


def _webhooks(args: argparse.Namespace, settings: Settings) -> int:
    """`webhooks set | show | delete | verify`: provider calls only, no Redis."""
    if args.action == "delete" and not args.yes:
        print("gateway: webhooks delete: add --yes to unsubscribe", file=sys.stderr)
        return USAGE
    try:
        rows = asyncio.run(
            webhooks_tool.execute(
                settings, args.action, args.account, getattr(args, "drop_pending", False)
            )
        )
    except ValueError as exc:
        raise ToolError(f"webhooks {args.action}: {exc}") from None
    good = webhooks_tool.all_good(rows, args.action)
    if args.json:
        print(json.dumps(webhooks_tool.document(rows, args.action), indent=2))
    else:
        print(webhooks_tool.render(rows, args.action))
    webhooks_tool.audit(rows, args.action)
    return OK if good else NOTHING


async def _sync(
    args: argparse.Namespace, settings: Settings, redis: RedisClient, named: list[Account]
) -> int:
    """`accounts sync`: the named accounts, or every one with app data to sync."""
    async with aiohttp.ClientSession() as session:
        tool = accounts_tool.AppSync(settings, redis, session)
        accounts = named if args.account else tool.syncable(named)
        if not accounts:
            print("gateway: accounts sync: no enabled account has app data to sync (a "
                  "coexistence number)", file=sys.stderr)  # fmt: skip
            return NOTHING
        rows = await tool.run(accounts, accounts_tool.sync_kinds(args.contacts, args.history))
    accounts_tool.sync_audit(rows)
    print(json.dumps(accounts_tool.sync_document(rows), indent=2) if args.json
          else accounts_tool.sync_render(rows))  # fmt: skip
    return OK if all(r.done for r in rows) else NOTHING


def _accounts(args: argparse.Namespace, settings: Settings) -> list[Account]:
    try:
        return accounts_tool.select(accounts_tool.accounts_of(settings), args.account)
    except ValueError as exc:
        raise ToolError(f"accounts {args.action}: {exc}") from None


def _filters(args: argparse.Namespace) -> dl.Filters:
    try:
        return dl.Filters(
            reasons=frozenset(args.reason),
            channels=frozenset(args.channel),
            since_s=parse_age(args.since) if args.since else None,
            until_s=parse_age(args.until) if args.until else None,
            ids=tuple(id_ranges(args.id)),
        )
    except ValueError as exc:
        raise ToolError(f"deadletters {args.action}: {exc}") from None


async def _deadletters(
    args: argparse.Namespace, settings: Settings, redis: RedisClient, filters: dl.Filters
) -> int:
    now_s = time.time()
    entries = await dl.matching(redis, filters, now_s)
    if args.action == "drop" and not args.yes:
        print(
            f"gateway: deadletters drop: {len(entries)} dead letters match; add --yes to "
            "delete them",
            file=sys.stderr,
        )
        return USAGE
    if not entries:
        if args.json:
            print(dl.dumps([] if args.action in ("list", "show") else {"matched": 0}))
        else:
            print("no dead letter matches", file=sys.stderr)
        return NOTHING
    if args.action == "list":
        docs = [e.summary(now_s) for e in entries]
        print(dl.dumps(docs) if args.json else dl.list_text(entries, now_s))
        return OK
    if args.action == "show":
        shown = [dl.show_document(e, now_s) for e in entries]
        print(dl.dumps(shown) if args.json else "\n\n".join(dl.show_text(d) for d in shown))
        return OK
    if args.action == "drop":
        deleted = await dl.drop(redis, entries, filters)
        print(json.dumps({"matched": len(entries), "deleted": deleted}) if args.json
              else f"deleted {deleted} of {len(entries)} matching dead letters")  # fmt: skip
        return OK
    report = await dl.Replayer(redis, settings).replay(entries)
    dl.audit_replay(report, filters)
    print(dl.dumps(dl.replay_document(report)) if args.json else dl.replay_text(report))
    return NOTHING if report.failed else OK


def _serve(settings: Settings, source: ConfigSource) -> int:
    try:
        return serve(settings, source)
    except ListenError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2


def serve(settings: Settings, source: ConfigSource | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then drain; the exit status (0: drained). With
    `server.workers` > 1 this process becomes the supervisor of that many workers. SIGHUP
    reads the config again from `source` (gateway/reload.py); until the process is ready
    for it, SIGHUP is ignored rather than killing it."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with _pid_file(settings.server.pid_file):
        if settings.server.workers == 1:
            with running_redis(settings) as url:
                _check_wait_aof(settings, url)
                run_process(settings, url, source)
            return 0
        check_ports_free(settings.server)
        with running_redis(settings) as url:
            _check_wait_aof(settings, url)
            return Supervisor(settings, url, source).run()


def _check_wait_aof(settings: Settings, url: str) -> None:
    """`redis.wait_aof` on a Redis that cannot confirm fsyncs at once (no WAITAOF, no
    append-only file, `appendfsync` not `always`): a config error, before serving."""
    if not settings.redis.wait_aof:
        return
    problem = asyncio.run(check_wait_aof(settings, url))
    if problem is not None:
        raise ConfigError(f"redis.wait_aof: {problem}")


@contextlib.contextmanager
def _pid_file(path: str | None) -> Iterator[None]:
    """This process's pid in `path` while it serves (`gateway reload` reads it)."""
    if path is None:
        yield
        return
    target = Path(path)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_text(f"{os.getpid()}\n")
    partial.replace(target)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            if int(target.read_text()) == os.getpid():
                target.unlink()


def _reload(settings: Settings) -> int:
    """`gateway reload`: the config is valid (else exit 2 with its error, checked here so
    the operator sees it at once); SIGHUP to the pid in `server.pid_file`."""
    path = settings.server.pid_file
    if path is None:
        raise ToolError(
            "reload: server.pid_file is not set; set it (and restart once), or send SIGHUP to "
            "the gateway's process yourself (the supervisor's, with --workers)"
        )
    try:
        pid = int(Path(path).read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        raise ToolError(f"reload: no running gateway in {path}: {exc}") from None
    print(f"config ok; SIGHUP sent to {pid}: the gateway logs what it changed (gateway.audit)")
    return OK


if __name__ == "__main__":
    sys.exit(main())
