"""Upkeep of accounts whose owner's own app must stay alive (`Account.app_idle`: a WhatsApp
coexistence number is cut off once the Business app on the phone has been silent for about
14 days).

State, in the account's hash (`gw:acct:*`, router/keys.py):

    seen     unix s of the app's latest sign of life: set by publish.lua (`L`) with the
             event that shows it (an echo, a contact sync, the onboarding: `Routed.alive`),
             never moved back; or, when none was ever seen, by the first check (the clock
             starts when the gateway starts watching)
    warned   the `seen` whose stretch of silence was warned of

`AppUpkeep.check` runs with the account gauges (`Outbox.report_accounts`, every
`outbound.claim_idle_seconds` / 4) in every process that runs reply workers: it reports each
such account's silence (`app_idle`, the gauge `gateway_business_app_idle_seconds`) and, once
the silence reaches `warn_s`, publishes one `account` event `BUSINESS_APP_INACTIVE` to the
assistant's inbox. upkeep.lua publishes it only if `seen` has not moved and that stretch was
not warned of, so the warning is written once however many processes check; a new sign of
life starts a new stretch, which is warned of again if it too goes silent. A number already
disconnected (`disc`) is not warned of: its account event said more.

What the gateway cannot see: an owner who only opens the app and reads sends nothing, so the
silence measured is an upper bound of the app's real idleness.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Final

from adapters.account import Account, AppIdle
from adapters.schema import ENCODER, AccountEvent
from router import keys, scripts
from router.accounts import Directory
from router.client import RedisClient
from router.observer import OutboundObserver
from router.records import new_event_id
from router.scriptpipe import ScriptHost

log = logging.getLogger("gateway.upkeep")

INACTIVE: Final = "BUSINESS_APP_INACTIVE"
"""The `event` of the warning (an extension of CONTRACT §2.1's account events)."""
DAY_S: Final = 86400


@dataclass(frozen=True)
class Silence:
    """How long an account's app has been silent, against its rule."""

    idle_s: float
    """Since the last sign of life; never negative (a `seen` ahead of the clock is 0)."""
    left_s: float
    """Until the cut-off; 0 once it has passed."""
    due: bool
    """The silence has reached the warning threshold."""


def silence(seen_s: int, now_s: float, rule: AppIdle) -> Silence:
    """The silence of an app last seen at `seen_s`, judged at `now_s`."""
    idle = max(0.0, now_s - seen_s)
    return Silence(idle, max(0.0, rule.cutoff_s - idle), idle >= rule.warn_s)


def _days(seconds: float) -> float:
    """Whole tenths of a day, rounded down: never more idle, nor more time left, than true."""
    return math.floor(seconds * 10 / DAY_S) / 10


def warning_detail(seen_s: int, quiet: Silence, rule: AppIdle) -> dict[str, Any]:
    """The warning's `detail`: days idle and left (tenths, rounded down), the thresholds, and
    when the last sign of life was and the cut-off will be (unix s)."""
    return {
        "idle_days": _days(quiet.idle_s),
        "days_left": _days(quiet.left_s),
        "warn_days": rule.warn_s / DAY_S,
        "cutoff_days": rule.cutoff_s / DAY_S,
        "last_seen": seen_s,
        "cutoff_at": seen_s + rule.cutoff_s,
    }


@dataclass(frozen=True)
class Checked:
    """One account as a check found it."""

    account: Account
    seen_s: int
    silence: Silence
    warned: bool
    """This check published its warning."""


class AppUpkeep:
    """Measures the silence of the owner's app on every account that has an `app_idle`
    rule, and warns once per stretch."""

    def __init__(
        self,
        redis: RedisClient,
        host: ScriptHost,
        directory: Directory,
        observer: OutboundObserver,
        inbox_maxlen: int,
    ) -> None:
        self._redis = redis
        self._directory = directory
        self._observer = observer
        self._maxlen = inbox_maxlen
        self._warn = scripts.load(host, "upkeep")
        self._reported: set[tuple[str, str]] = set()
        """(channel, account) whose gauge this process set: dropped when the account goes."""

    def watched(self) -> list[Account]:
        """The configured accounts with an `app_idle` rule."""
        return [a for a in self._directory.accounts.values() if a.app_idle is not None]

    async def check(self, now_s: float | None = None) -> list[Checked]:
        """Each watched account's silence to the gauge, and its warning where due."""
        now = time.time() if now_s is None else now_s
        accounts = self.watched()
        rows = await self._states(accounts, int(now)) if accounts else []
        checked = []
        for a, (seen, warned, disc) in zip(accounts, rows, strict=True):
            assert a.app_idle is not None
            quiet = silence(seen, now, a.app_idle)
            due = quiet.due and warned != seen and disc is None
            published = due and await self._publish(a, seen, quiet, now)
            self._observer.app_idle(a.channel, a.account_id, quiet.idle_s)
            checked.append(Checked(a, seen, quiet, published))
        self._forget_gone({(a.channel, a.account_id) for a in accounts})
        return checked

    async def _states(
        self, accounts: list[Account], now_s: int
    ) -> list[tuple[int, int | None, bytes | None]]:
        """(seen, warned, disc) of each account, in one round trip; a `seen` never set
        starts now."""
        pipe = self._redis.pipeline(transaction=False)
        for a in accounts:
            key = _state_key(a)
            pipe.hsetnx(key, keys.SEEN, str(now_s))
            pipe.hmget(key, [keys.SEEN, keys.WARNED, "disc"])
        rows = (await pipe.execute())[1::2]
        return [(int(seen or now_s), _int(warned), disc) for seen, warned, disc in rows]

    async def _publish(self, a: Account, seen_s: int, quiet: Silence, now_s: float) -> bool:
        assert a.app_idle is not None
        event = AccountEvent(
            event_id=new_event_id(),
            channel=a.channel,  # type: ignore[arg-type]
            account_id=a.account_id,
            contact_id=None,
            assistant_id=a.assistant,
            timestamp=int(now_s),
            provider=a.provider,
            account_active=a.enabled,
            event=INACTIVE,
            detail=warning_detail(seen_s, quiet, a.app_idle),
        )
        inbox = keys.inbox(a.assistant)
        done = await self._warn(
            keys=[_state_key(a), inbox], args=[seen_s, self._maxlen, ENCODER.encode(event)]
        )
        if done:
            log.warning(
                "the owner's app on %s:%s has been silent for %.1f days: the provider cuts the "
                "number off in %.1f days unless the app is opened on its phone (%s event in %s)",
                a.channel,
                a.account_id,
                event.detail["idle_days"],
                event.detail["days_left"],
                INACTIVE,
                inbox,
                extra={"channel": a.channel, "account": a.account_id, "assistant": a.assistant},
            )
        return bool(done)

    def _forget_gone(self, current: set[tuple[str, str]]) -> None:
        """Drop the gauge of accounts no longer watched (a reload removed them)."""
        for channel, account_id in self._reported - current:
            self._observer.app_idle(channel, account_id, None)
        self._reported = current


def _state_key(a: Account) -> str:
    return keys.account_state(keys.inbox(a.assistant), a.channel, a.account_id)


def _int(value: bytes | None) -> int | None:
    return None if value is None else int(value)
