"""Redis ACL users: one per assistant that reaches only its own streams, and a
least-privilege one for the gateway itself (`gateway acl`, `redis.embedded_acl`).

    gw-gateway            keys `gw:*`; the commands the gateway and its operator tools run
                          (`GATEWAY_COMMANDS`). Redis checks the commands a Lua script calls
                          against the caller's ACL too, so the scripts' calls are in the list.
    gw-assistant-<name>   keys `gw:inbox:<name>`, `gw:history:<name>`, `gw:outbox:<name>`;
                          the commands `gateway_client.Backend` runs (`BACKEND_COMMANDS`):
                          consumer groups on its inbox and history, XADD to its outbox.

Both have no pub/sub channel and no other command: no DEL, no KEYS/SCAN, no admin command.
Key patterns are plain `~` (read and write) on every Redis version: a consumer group's reads
(XREADGROUP, XACK, XAUTOCLAIM) write the group's pending list, so an inbox needs write
permission anyway, and Redis 6.2 has no `%R~`/`%W~`. The one thing 7's read/write key
permissions could add, an outbox its assistant cannot read back, protects nothing from
anyone else, so both versions get the same rules; a backend writes only through XADD and
the stream commands listed, never DEL or XTRIM.

Versions differ in two commands: `CLIENT SETINFO` (7.2; redis-py sends it on connect and
ignores a refusal) cannot be named in a rule on 7.0 and 7.1, and `WAITAOF` (7.2; the
gateway's only with `redis.wait_aof`) not before 7.2, so the rules of those versions leave
them out (`rules_for`). 6.2 takes the rule for a subcommand it does not know.

Passwords are made with `secrets.token_urlsafe` on first need and kept, one file per user,
in `redis.acl_dir` (default `<redis.embedded_dir>/acl`; directory 700, files 600). Rules
name only their SHA-256 (`#<hex>`), so the `ACL SETUSER` lines can be printed and logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from gateway.config import Settings, channel_sections
from router import keys

GATEWAY_USER = "gw-gateway"
ASSISTANT_PREFIX = "gw-assistant-"

Version = tuple[int, int]
LATEST: Version = (7, 2)
"""The Redis version `gateway acl` writes rules for unless told (`--redis-version`)."""

CONNECTION_COMMANDS = (
    "auth",
    "hello",
    "ping",
    "select",
    "client|setname",
    "client|getname",
    "client|setinfo",
)
"""What a client sends on connecting (redis-py: HELLO/AUTH, CLIENT SETINFO, SELECT). QUIT
needs no rule (and 6.2 refuses one)."""
CLUSTER_COMMANDS = (
    "cluster|slots",
    "cluster|shards",
    "cluster|nodes",
    "command",
    "asking",
    "readonly",
    "readwrite",
)
"""What redis-py's cluster client sends to learn the slot map and key positions (COMMAND)
and to follow a slot being moved (ASKING); only with `redis.cluster: true`."""
BACKEND_COMMANDS = (
    "xadd",
    "xread",
    "xreadgroup",
    "xack",
    "xautoclaim",
    "xclaim",
    "xpending",
    "xgroup|create",
    "xgroup|createconsumer",
    "xgroup|delconsumer",
    "xinfo",
    "xrange",
    "xrevrange",
    "xlen",
)
"""An assistant backend's: `gateway_client.Backend` (inbox and history through consumer
groups, taking over a dead consumer's entries, `send`, `delivery`) and a look at its own
backlog (XLEN, XINFO, XPENDING), on its own three keys only."""
GATEWAY_COMMANDS = (
    *BACKEND_COMMANDS,
    "xdel",
    "xtrim",
    "xgroup|destroy",
    "get",
    "set",
    "del",
    "exists",
    "expire",
    "expireat",
    "pexpire",
    "ttl",
    "pttl",
    "type",
    "scan",
    "hget",
    "hmget",
    "hgetall",
    "hset",
    "hdel",
    "hexists",
    "hsetnx",
    "zadd",
    "zcard",
    "zcount",
    "zrange",
    "zrangebyscore",
    "zscore",
    "zrem",
    "zremrangebyscore",
    "multi",
    "exec",
    "discard",
    "eval",
    "evalsha",
    "script|load",
    "script|exists",
    "time",
    "info",
    "waitaof",
)
"""The gateway's: its streams (publishing, the outbox group, trimming, dead letters), the
state keys of router/keys.py, the Lua scripts of router/lua and what they call, INFO for
the memory report, TIME; SCAN and TYPE for `gateway inspect`."""

_REFUSED = {"client|setinfo": ((7, 0), (7, 2)), "waitaof": ((0, 0), (7, 2))}
"""Rules a range of versions refuses to parse: [from, until)."""


@dataclass(frozen=True)
class AclUser:
    """One ACL user: its name, whose it is (None: the gateway's), its key patterns and the
    commands it may run."""

    name: str
    assistant: str | None
    keys: tuple[str, ...]
    commands: tuple[str, ...]

    def rules(self, password: str) -> list[str]:
        """The `ACL SETUSER` rules, the password as its hash. `reset` first: applying them
        again (a changed config) leaves exactly these, nothing from before."""
        patterns = [f"~{k}" for k in self.keys]
        allowed = [f"+{c}" for c in self.commands]
        return ["reset", "on", f"#{password_hash(password)}", "resetchannels", *patterns,
                "-@all", *allowed]  # fmt: skip

    def setuser(self, password: str) -> list[str]:
        """The whole command, as arguments."""
        return ["ACL", "SETUSER", self.name, *self.rules(password)]


def assistant_user(assistant: str) -> str:
    return ASSISTANT_PREFIX + assistant


def assistants(settings: Settings) -> list[str]:
    """Every assistant a configured account names (enabled or not), sorted."""
    found = {
        account.assistant
        for section in channel_sections(settings).values()
        if section is not None
        for account in section.accounts()
    }
    return sorted(found)


def rules_for(commands: tuple[str, ...], version: Version) -> tuple[str, ...]:
    """`commands` without the ones `version` cannot name in a rule."""
    refused = {c for c, (start, end) in _REFUSED.items() if start <= version < end}
    return tuple(c for c in commands if c not in refused)


def users(settings: Settings, version: Version = LATEST) -> list[AclUser]:
    """The gateway's user, then one per assistant, for a Redis of `version`."""
    cluster = CLUSTER_COMMANDS if settings.redis.cluster else ()
    gateway = rules_for((*CONNECTION_COMMANDS, *cluster, *GATEWAY_COMMANDS), version)
    backend = rules_for((*CONNECTION_COMMANDS, *cluster, *BACKEND_COMMANDS), version)
    found = [AclUser(GATEWAY_USER, None, ("gw:*",), gateway)]
    for name in assistants(settings):
        streams = (keys.inbox(name), keys.history(name), keys.outbox(name))
        found.append(AclUser(assistant_user(name), name, streams, backend))
    return found


def parse_version(text: str) -> Version:
    """`7.0.15` or `7.2` as (7, 0) or (7, 2); ValueError if it is not one."""
    major, _, rest = text.strip().partition(".")
    minor = rest.partition(".")[0] or "0"
    if not (major.isdigit() and minor.isdigit()):
        raise ValueError(f"not a Redis version: {text!r} (expected e.g. 7.2 or 6.2.14)")
    return int(major), int(minor)


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def directory(settings: Settings) -> Path:
    """Where the users' passwords are kept: `redis.acl_dir`, or `acl` in the embedded dir."""
    if settings.redis.acl_dir is not None:
        return Path(settings.redis.acl_dir)
    return Path(settings.redis.embedded_dir) / "acl"


class Passwords:
    """One file per user, `<name>.pass` (mode 600) in a directory of mode 700: read if it is
    there, made on first need otherwise, so every run agrees with the last."""

    def __init__(self, where: Path) -> None:
        self.where = where

    def path(self, user: str) -> Path:
        return self.where / f"{user}.pass"

    def get(self, user: str) -> str:
        path = self.path(user)
        with contextlib.suppress(FileNotFoundError):
            kept = path.read_text(encoding="ascii").strip()
            if kept:
                return kept
        made = secrets.token_urlsafe(32)
        self.where.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.where.chmod(0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            os.fchmod(fd, 0o600)
            out.write(made + "\n")
        return made


def with_user(url: str, user: str, password: str) -> str:
    """`url` (redis://, rediss:// or unix://) logging in as `user` with `password` instead
    of whatever it named. It holds the password: hand it over, never log it."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    return urlunsplit((parts.scheme, auth + host, parts.path, parts.query, parts.fragment))
