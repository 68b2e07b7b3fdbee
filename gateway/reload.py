"""Reload without a restart: SIGHUP (or `gateway reload`) makes a running gateway read its
config again.

What changes at once: the channel sections. Accounts added, removed, enabled or disabled;
access and bot tokens (a send already under way finishes with the token it began with; an
account whose token changed forgets a halt, the new token being the fix); `mps` and the other
per-account settings; API bases; webhook secrets (app secrets, verify tokens, bot secret
tokens, Twilio's auth token and signing keys). A secret that changed keeps verifying beside
the new one for `server.secret_overlap_seconds`, so a rotation at the platform and in the
config need not happen at the same instant.

What needs a restart: the `server`, `redis`, `router`, `policy` and `outbound` sections (ports,
workers, Redis, limits the running objects were built with). A reload that changes them says
so (WARNING, naming each) and keeps the running values.

A config that does not load or check is refused with the same one-line error `check-config`
prints (logged at ERROR), and the running config stays. With `--workers`, the supervisor
checks the config first and then signals every worker, each of which reads it itself.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from adapters import CHANNELS, Answer, Receiver
from gateway import logs
from gateway.app import JOURNAL, api_bases, directory_from, offload_router
from gateway.config import (
    ConfigError,
    Settings,
    channel_sections,
    load,
    read_env_file,
    with_log_format,
    with_workers,
)
from gateway.state import INBOUND, OUTBOX, REDIS_URL, STATE
from router.accounts import Account

log = logging.getLogger("gateway.reload")
audit = logging.getLogger("gateway.audit")

RESTART_ONLY = ("server", "redis", "router", "policy", "outbound", "notifications")
"""Config sections the running objects were built with: changed, they wait for a restart."""


@dataclass(frozen=True)
class ConfigSource:
    """Where the running config came from, to read it again: the file, the env file (read
    again too; the process environment is the one it started with), and the command line's
    overrides."""

    path: str
    env_file: str | None = None
    workers: int | None = None
    log_format: str | None = None

    def load(self) -> Settings:
        """The config as it is now; `ConfigError` naming the key when it is not valid."""
        env = dict(os.environ)
        if self.env_file:
            env = {**read_env_file(self.env_file), **env}
        settings = load(self.path, env)
        if self.workers is not None:
            settings = with_workers(settings, self.workers)
        if self.log_format is not None:
            settings = with_log_format(settings, self.log_format)
        return settings


class Overlap:
    """A channel's new webhook checks, with its previous ones still accepted until
    `until` (monotonic seconds): a secret rotation's overlap."""

    __slots__ = ("_new", "_old", "_until")

    def __init__(self, new: Receiver, old: Receiver, until: float) -> None:
        self._new, self._old, self._until = new, old, until

    def _old_still(self) -> bool:
        return time.monotonic() < self._until

    def refuse(self, key: str | None, headers: Mapping[str, str]) -> Answer | None:
        answer = self._new.refuse(key, headers)
        if answer is None or not self._old_still():
            return answer
        return answer if self._old.refuse(key, headers) is not None else None

    def verify(self, key: str | None, headers: Mapping[str, str], body: bytes) -> bool:
        if self._new.verify(key, headers, body):
            return True
        return self._old_still() and self._old.verify(key, headers, body)

    def handshake(self, query: Mapping[str, str]) -> Answer:
        answer = self._new.handshake(query)
        if answer[0] == 200 or not self._old_still():
            return answer
        old = self._old.handshake(query)
        return old if old[0] == 200 else answer


async def reload(app: web.Application, source: ConfigSource) -> bool:
    """Apply the config as it is now to this process's app; False when it was refused."""
    try:
        new = source.load()
    except ConfigError as exc:
        log.error("reload refused, the running config stays: config error: %s", exc)
        return False
    state = app[STATE]
    old = state.settings
    waiting = [name for name in RESTART_ONLY if getattr(old, name) != getattr(new, name)]
    if waiting:
        log.warning(
            "reload: %s changed, which takes effect at the next restart; running with the "
            "values it started with",
            ", ".join(waiting),
        )
    applied = msgspec.structs.replace(new, **{name: getattr(old, name) for name in RESTART_ONLY})
    if app[JOURNAL] is None and any(
        section is not None and not CHANNELS[name].redelivers
        for name, section in channel_sections(applied).items()
    ):
        log.warning(
            "reload: a provider that never redelivers (its webhooks kept in the on-disk journal "
            "while Redis is down) is configured now; its journal starts at the next restart, "
            "until then such webhooks are answered 503 while Redis cannot take them"
        )
    before = dict(state.directory.accounts)
    _receivers(state.receivers, old, applied)
    state.directory.update_from(directory_from(applied))
    state.settings = applied
    logs.REDACT.add(logs.secret_values(applied))
    app[INBOUND].accounts_changed(functools.partial(offload_router, applied, app[REDIS_URL]))
    await app[OUTBOX].accounts_changed(before, api_bases(applied))
    _report(before, state.directory.accounts)
    return True


def _receivers(receivers: dict[str, Receiver], old: Settings, new: Settings) -> None:
    """Each channel's checks from its new section; where the section changed, the old checks
    keep answering too for `server.secret_overlap_seconds`."""
    overlap_s = old.server.secret_overlap_seconds
    old_sections, new_sections = channel_sections(old), channel_sections(new)
    for name, section in new_sections.items():
        previous = old_sections.get(name)
        if section == previous:
            continue
        receiver = CHANNELS[name].receiver(section)
        if previous is not None and overlap_s > 0:
            receiver = Overlap(receiver, receivers[name], time.monotonic() + overlap_s)
        receivers[name] = receiver


def _report(
    before: Mapping[tuple[str, str], Account], after: Mapping[tuple[str, str], Account]
) -> None:
    """One audit line: what the reload changed, account by account."""

    def names(keys: Any) -> str:
        return ", ".join(f"{c}:{a}" for c, a in sorted(keys)) or "none"

    added = after.keys() - before.keys()
    removed = before.keys() - after.keys()
    both = before.keys() & after.keys()
    enabled = {k for k in both if after[k].enabled and not before[k].enabled}
    disabled = {k for k in both if before[k].enabled and not after[k].enabled}
    rotated = {k for k in both if after[k].token != before[k].token}
    changed = {k for k in both if after[k] != before[k]} - enabled - disabled - rotated
    audit.warning(
        "reload: %d accounts; added %s; removed %s; enabled %s; disabled %s; token changed %s; "
        "other settings changed %s",
        len(after),
        names(added),
        names(removed),
        names(enabled),
        names(disabled),
        names(rotated),
        names(changed),
    )
