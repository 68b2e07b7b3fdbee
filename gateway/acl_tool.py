"""`gateway acl`: the Redis ACL users of gateway/acl.py, printed, or applied to the Redis.

    gateway acl --config F                  the `ACL SETUSER` lines, one per user (pipe them
                                            into redis-cli, or read them); passwords as
                                            `#<sha256>`, never in clear
    gateway acl --config F --apply          run them on the configured Redis (every node of a
                                            cluster, masters and replicas), check each with
                                            ACL GETUSER, try ACL SAVE, and report
    gateway acl --config F --url support    the URL a backend of `support` connects with
                                            (`--url gateway`: the gateway's own), password
                                            included: the one output that shows one

Users: `gw-gateway` (keys gw:*, the gateway's commands) and `gw-assistant-<name>` per
configured assistant (its inbox and history, consumer groups on them, XADD to its own outbox
`gw:outbox:<name>`). Passwords are made on first need and kept in `redis.acl_dir` (default
`<redis.embedded_dir>/acl`), one mode-600 file per user, so every run prints the same lines.

`--apply` logs in as the config's Redis user (`redis.url`, or for the embedded Redis its
password default user): one allowed to run ACL. The rules follow each node's version
(`INFO server`); printed lines are for `--redis-version` (default 7.2; give 7.0 for a 7.0 or
7.1 server, which cannot name CLIENT SETINFO). Users set with ACL SETUSER live until that
Redis restarts unless it keeps an ACL file (`aclfile`: then ACL SAVE, which `--apply` tries,
writes them there) or they are in its config. Exit 0 when every user is set and checked on
every node, 1 when one is not, 2 on a usage or config error or when Redis does not answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ResponseError

from gateway import acl
from gateway.config import Settings
from gateway.embedded import EmbeddedRedis
from gateway.ops import NOTHING, OK, ToolError, connect, table
from router.client import REDIS_ERRORS, RedisClient


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    text = "print or apply the Redis ACL users: one per assistant, one for the gateway"
    cmd = sub.add_parser(
        "acl", help=text, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cmd.add_argument("--config", required=True, help="path to config.yaml")
    cmd.add_argument("--env-file", help="KEY=value lines for ${VAR}s; the environment wins")
    cmd.add_argument(
        "--apply", action="store_true", help="set the users on the configured Redis (each node)"
    )
    cmd.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    cmd.add_argument(
        "--url",
        metavar="NAME",
        help="print the Redis URL, password included, of this assistant's user (or `gateway`)",
    )
    cmd.add_argument(
        "--redis-version",
        default=".".join(map(str, acl.LATEST)),
        metavar="X.Y",
        help="the Redis version the printed lines are for (default %(default)s)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`gateway acl`; the exit status. `ToolError` (exit 2) on a usage or Redis problem."""
    try:
        version = acl.parse_version(args.redis_version)
    except ValueError as exc:
        raise ToolError(f"acl --redis-version: {exc}") from None
    passwords = acl.Passwords(acl.directory(settings))
    if args.url is not None:
        print(user_url(settings, passwords, args.url))
        return OK
    if not args.apply:
        users = acl.users(settings, version)
        if args.json:
            print(json.dumps(document(users, passwords), indent=2))
        else:
            print("\n".join(" ".join(u.setuser(passwords.get(u.name))) for u in users))
            print(f"passwords: {passwords.where}/<user>.pass", file=sys.stderr)
        return OK
    nodes = asyncio.run(apply(settings, passwords))
    if args.json:
        print(json.dumps({"nodes": [n.document() for n in nodes]}, indent=2))
    else:
        print(render(nodes))
    return OK if all(n.ok for n in nodes) else NOTHING


def document(users: list[acl.AclUser], passwords: acl.Passwords) -> dict[str, Any]:
    """The users as data: name, assistant, keys, commands, where the password is, and the
    `ACL SETUSER` arguments (the password as its hash)."""
    return {
        "password_dir": str(passwords.where),
        "users": [
            {
                "name": u.name,
                "assistant": u.assistant,
                "keys": list(u.keys),
                "channels": [],
                "commands": list(u.commands),
                "password_file": str(passwords.path(u.name)),
                "setuser": u.setuser(passwords.get(u.name)),
            }
            for u in users
        ],
    }


def user_url(settings: Settings, passwords: acl.Passwords, name: str) -> str:
    """The URL of `name`'s user (an assistant, or `gateway`) on the config's Redis."""
    known = ["gateway", *acl.assistants(settings)]
    if name not in known:
        raise ToolError(f"acl --url: no assistant {name!r} (configured: {', '.join(known[1:])})")
    user = acl.GATEWAY_USER if name == "gateway" else acl.assistant_user(name)
    password = passwords.get(user)
    if settings.redis.url is not None:
        return acl.with_user(settings.redis.url, user, password)
    redis = settings.redis
    # Built, never started: only its address is used.
    server = EmbeddedRedis(
        redis.embedded_port,
        Path(redis.embedded_dir),
        tcp=redis.embedded_tcp,
        login=(user, password),
    )
    return server.url


@dataclass
class NodeResult:
    """What `--apply` did on one node: each user's error (None: set and checked)."""

    node: str
    version: str = "?"
    users: dict[str, str | None] = field(default_factory=dict)
    saved: str = "-"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(e is None for e in self.users.values())

    def document(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "version": self.version,
            "ok": self.ok,
            "error": self.error,
            "users": [{"name": n, "ok": e is None, "error": e} for n, e in self.users.items()],
            "saved": self.saved,
        }


async def apply(settings: Settings, passwords: acl.Passwords) -> list[NodeResult]:
    """Set every user on every node of the config's Redis and check it there."""
    redis = await connect(settings)
    try:
        if isinstance(redis, RedisCluster):
            return [await _apply_node(settings, passwords, redis, n) for n in redis.get_nodes()]
        pool = redis.connection_pool.connection_kwargs
        where = str(pool.get("path") or f"{pool.get('host')}:{pool.get('port')}")
        return [await _apply_node(settings, passwords, redis, None, where)]
    finally:
        await redis.aclose()


async def _apply_node(
    settings: Settings,
    passwords: acl.Passwords,
    redis: RedisClient,
    node: ClusterNode | None,
    where: str = "",
) -> NodeResult:
    on: dict[str, Any] = {} if node is None else {"target_nodes": node}
    result = NodeResult(node.name if node is not None else where)
    try:
        info = await redis.execute_command("INFO", "server", **on)
        result.version = str(info["redis_version"])
        for user in acl.users(settings, acl.parse_version(result.version)):
            result.users[user.name] = await _set(redis, on, user, passwords.get(user.name))
        result.saved = await _save(redis, on)
    except REDIS_ERRORS as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


async def _set(
    redis: RedisClient, on: dict[str, Any], user: acl.AclUser, password: str
) -> str | None:
    """Set `user`, then read it back: None when it holds what was set, else what differs."""
    try:
        await redis.execute_command(*user.setuser(password), **on)
    except ResponseError as exc:
        return f"ACL SETUSER refused: {exc}"
    found: dict[str, Any] = await redis.execute_command("ACL GETUSER", user.name, **on) or {}
    if "on" not in _texts(found.get("flags")):
        return "not enabled after ACL SETUSER"
    if acl.password_hash(password) not in _texts(found.get("passwords")):
        return "its password hash is not the one set"
    # 7: one string of `~pattern`s; 6.2: a list of bare patterns
    keys = [k.removeprefix("~") for k in " ".join(_texts(found.get("keys"))).split()]
    if sorted(keys) != sorted(user.keys):
        return f"key patterns are {' '.join(keys)}"
    return None


def _texts(value: Any) -> list[str]:
    """A field of ACL GETUSER as strings, whichever shape and type this version gives."""
    items = [value] if isinstance(value, str | bytes) else list(value or [])
    return [v.decode() if isinstance(v, bytes) else str(v) for v in items]


async def _save(redis: RedisClient, on: dict[str, Any]) -> str:
    """ACL SAVE where the node keeps an ACL file; otherwise say how long the users last."""
    try:
        await redis.execute_command("ACL", "SAVE", **on)
    except ResponseError as exc:
        if "not configured to use an ACL file" in str(exc):
            return "no aclfile: kept until this Redis restarts"
        return f"ACL SAVE failed: {exc}"
    return "saved to its aclfile"


def render(nodes: list[NodeResult]) -> str:
    rows = [
        [n.node, n.version, user, "ok" if error is None else f"FAILED: {error}", n.saved]
        for n in nodes
        for user, error in n.users.items()
    ]
    rows += [[n.node, n.version, "-", f"FAILED: {n.error}", "-"] for n in nodes if n.error]
    return table(["node", "redis", "user", "result", "persisted"], rows)
