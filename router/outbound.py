"""Outbound: commands from the outboxes → policy → provider → one `delivery` event each.

`Outbox` is the reply workers of one process, four owners behind one typed decode of each
entry:

    router.consumer  Consumer  reads, reclaims, heartbeats, orders, dead-letters, trims
    router.ledger    Ledger    the command record: claim → (sending) → done, exactly once
    router.pacing    Pacing    policy.lua, presend.lua, hold.lua, unsend.lua
    router.sender    Sender    build once → send → classify → apply, with retries

around what they share: `router.entry` (the one typed decode of an entry, and the dead
letters of CONTRACT §2.2), `router.target` (where a command goes: account, channel, keys) and
`router.observer` (what they report, for metrics). `Outbox` wires them and runs one command:
claim → execute (control, or send) → finish.

Delivery semantics: each entry is acknowledged only after its command's delivery event is
published (or it was dead-lettered); each `command_id` is sent at most once and answered
exactly once (a repeat gets the original result, `duplicate: true`); a command cut off
mid-send is never sent again and ends `failed/provider_error`. See each module for its part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping

import aiohttp

from adapters.schema import CONTROL_TYPES, Command
from router import keys
from router.accounts import Account, Directory
from router.client import REDIS_ERRORS, RedisClient, scripts_of
from router.consumer import Consumer
from router.entry import Job
from router.ledger import UNSENT, Claim, Ledger, Result
from router.notifications import Notices
from router.observer import OutboundObserver
from router.pacing import Pacing
from router.scriptpipe import ScriptHost
from router.sender import Sender
from router.settings import OutboundSettings, PolicySettings, RouterSettings
from router.upkeep import AppUpkeep

log = logging.getLogger("gateway.outbound")

__all__ = ["OutboundObserver", "Outbox", "Result"]


class Outbox:
    """The reply workers of one process. `run()` until `stop()`; tests use `drain()`."""

    def __init__(
        self,
        redis: RedisClient,
        session: aiohttp.ClientSession,
        directory: Directory,
        api_bases: dict[str, str],
        settings: tuple[OutboundSettings, PolicySettings, RouterSettings],
        observer: OutboundObserver,
        scripts: ScriptHost | None = None,
        *,
        forget_halts: bool = True,
        consumer: str | None = None,
        notices: Notices | None = None,
    ) -> None:
        """`settings`: the config's `outbound`, `policy` and `router` sections; `scripts`
        runs the Lua scripts (default: `redis` itself); `forget_halts`: clear credential
        halts at start (true when the gateway (re)starts, which is how an operator says
        "fixed"; false for a worker process restarted after a crash, which fixes nothing);
        `consumer`: this process's name in the group (default: host, pid and a nonce);
        `notices`: told of every command that ended `sent` (escalation notices)."""
        outbound, policy, router = settings
        host = scripts or scripts_of(redis)
        name = consumer or f"{os.uname().nodename}-{os.getpid()}-{os.urandom(3).hex()}"
        self.observer = observer
        self.notices = notices
        self._redis = redis
        self._directory = directory
        self._forget_halts = forget_halts
        self._claim_idle_s = outbound.claim_idle_seconds
        self._api_bases = api_bases
        self._conversation_ttl_s = router.conversation_ttl_seconds
        self.ledger = Ledger(redis, host, outbound, router, observer)
        self.pacing = Pacing(host, policy, outbound, observer)
        self.sender = Sender(
            redis, session, api_bases, self.pacing, self.ledger, (outbound, policy), observer
        )
        self.consumer = Consumer(
            redis, host, directory, self.ledger, settings, observer, name, self._run
        )
        self.upkeep = AppUpkeep(redis, host, directory, observer, router.inbox_maxlen)

    # --- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        """Start (waiting for Redis), then read until `stop`; meanwhile keep the account
        gauges as Redis has them (`_report_accounts`)."""
        while not await self.start():
            await self.consumer.pause(1.0)
            if self.consumer.stopping.is_set():
                return
        await asyncio.gather(self.consumer.run(), self._report_accounts_loop())

    async def _report_accounts_loop(self) -> None:
        interval = max(self._claim_idle_s / 4, 0.05)
        while not self.consumer.stopping.is_set():
            with contextlib.suppress(*REDIS_ERRORS):
                await self.report_accounts()
            await self.consumer.pause(interval)

    async def report_accounts(self) -> None:
        """Each configured account's halt and disconnect as Redis holds them, to the gauges
        (every `outbound.claim_idle_seconds` / 4 while running): what another process (a
        worker, another instance, `gateway accounts clear-halt`) changed shows here too, not
        only what this process saw happen. Then the silence of owners' own apps, with its
        warning (router/upkeep.py)."""
        for (channel, account_id), (halt, disc) in (await self._states()).items():
            self.observer.halted(channel, account_id, halt)
            self.observer.connected(channel, account_id, disc is None)
        await self.upkeep.check()  # the silence of owners' own apps (coexistence)

    async def start(self) -> bool:
        """Create the consumer group and forget credential halts (`forget_halts`): a restart
        is how an operator says "fixed". A number re-enabled in config (disabled at the previous
        start) also forgets a disconnect (CONTRACT §3). False while Redis is unreachable."""
        try:
            await self.consumer.ensure_group()
            await self.consumer.forget_dead_consumers()
            for account in self._directory.accounts.values():
                await self._start_account(account)
        except REDIS_ERRORS as exc:
            log.warning("outbox workers wait for redis: %s", exc)
            return False
        return True

    async def accounts_changed(
        self, before: Mapping[tuple[str, str], Account], api_bases: Mapping[str, str]
    ) -> None:
        """The directory changed (a reload; `before`: its accounts until then). New sends use
        the new accounts, tokens and API bases (one in flight finishes with what it began
        with); an account whose token changed forgets its halt (the new token is the fix);
        enabled and disabled accounts are recorded as at start."""
        self._api_bases.clear()
        self._api_bases.update(api_bases)
        accounts = list(self._directory.accounts.values())
        self.consumer.deadletters.secrets = [a.token for a in accounts if a.token]
        await self.consumer.streams_changed()
        for a in accounts:
            old = before.get((a.channel, a.account_id))
            rotated = old is not None and old.token != a.token
            await self._start_account(a, forget_halt=rotated)

    async def _start_account(self, a: Account, *, forget_halt: bool | None = None) -> None:
        key = keys.account_state(keys.inbox(a.assistant), a.channel, a.account_id)
        if self._forget_halts if forget_halt is None else forget_halt:
            await self._redis.hdel(key, "halt")  # type: ignore[misc]
        was = await self._redis.hget(key, "enabled")  # type: ignore[misc]
        if a.enabled and was == b"0":
            await self._redis.hdel(key, "disc")  # type: ignore[misc]
        await self._redis.hset(key, "enabled", str(int(a.enabled)))  # type: ignore[misc]
        disconnected = await self._redis.hexists(key, "disc")  # type: ignore[misc]
        self.observer.connected(a.channel, a.account_id, not disconnected)

    async def stop(self, timeout_s: float) -> None:
        """Stop reading; let in-flight commands finish (they are reclaimed if cut off)."""
        await self.consumer.stop(timeout_s)

    async def drain(self, timeout_s: float = 30.0) -> int:
        """Handle everything in the outbox now and wait for it (tests, benchmarks)."""
        return await self.consumer.drain(timeout_s)

    async def ensure_group(self) -> None:
        await self.consumer.ensure_group()

    async def trim(self) -> int:
        """Delete the gw:outbox entries every consumer group has finished with."""
        return await self.consumer.trim()

    async def account_problems(self) -> dict[str, dict[str, str]]:
        """Numbers and bots that cannot send: `halted` (provider code) or `disconnected`
        (the account event), keyed `channel:account_id`, for readiness detail."""
        problems: dict[str, dict[str, str]] = {}
        for (channel, account_id), row in (await self._states()).items():
            pairs = zip(("halted", "disconnected"), row, strict=True)
            found = {name: v for name, v in pairs if v is not None}
            if found:
                problems[f"{channel}:{account_id}"] = found
        return problems

    async def _states(self) -> dict[tuple[str, str], tuple[str | None, str | None]]:
        """(channel, account id) → (halt, disc) of every configured account, in one round
        trip."""
        accounts = list(self._directory.accounts.values())
        pipe = self._redis.pipeline(transaction=False)
        for a in accounts:
            key = keys.account_state(keys.inbox(a.assistant), a.channel, a.account_id)
            pipe.hmget(key, ["halt", "disc"])
        rows = await pipe.execute()
        return {
            (a.channel, a.account_id): (
                row[0].decode() if row[0] else None,
                row[1].decode() if row[1] else None,
            )
            for a, row in zip(accounts, rows, strict=True)
        }

    # --- one command -----------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        """Claim the command, then run it, repeat its result, or (given up on after too
        many deliveries, or cut off mid-send) end it as failed without sending."""
        usable = job.usable
        owner = f"{self.consumer.name}/{job.entry_id}"
        claimed = await self.ledger.claim(
            job.entry_id, owner, usable.target, usable.command_id, usable.ctype
        )
        if claimed.state == "done":
            if claimed.result is not None:
                await self.ledger.repeat(claimed.claim, claimed.result)
            return
        if claimed.state == "orphan" or job.give_up:
            why = "cut off mid-send" if claimed.state == "orphan" else "too many deliveries"
            log.warning(
                "command %s ends unsent (%s)",
                usable.command_id,
                why,
                extra={"command_id": usable.command_id, **usable.target.log_fields},
            )
            result = UNSENT
        elif usable.refusal is not None:
            log.warning(
                "command %s refused: %s",
                usable.command_id,
                usable.refusal,
                extra={"command_id": usable.command_id, **usable.target.log_fields},
            )
            result = Result("rejected", "invalid_command", detail=usable.refusal)
        else:
            result = await self._execute(claimed.claim, usable.command, job.wait_until)
        if result.outcome == "failed":
            target = usable.target
            log.warning(
                "command %s to %s failed: %s, provider code %s: %s",
                usable.command_id,
                target.conversation_id,
                result.reason,
                result.provider_code,
                result.detail,
                extra={"command_id": usable.command_id, "reason": result.reason,
                       **target.log_fields},
            )  # fmt: skip
        await self.ledger.finish(claimed.claim, result)
        if result.outcome == "sent" and usable.command is not None and self.notices:
            await self.notices.after_command(usable.target, usable.command)

    async def _execute(self, claim: Claim, command: Command | None, wait_until: float) -> Result:
        if command is None:
            log.info(
                "command %s is invalid: not a valid command",
                claim.command_id,
                extra={"command_id": claim.command_id, **claim.target.log_fields},
            )
            return Result("rejected", "invalid_command")
        if not claim.target.account.enabled:
            return Result("rejected", "account_inactive")
        if command.type in CONTROL_TYPES:
            ended = await self.sender.control(claim, command)
            if ended is not None:
                return ended
            await self._control(claim, command)
            return Result("sent")
        return await self.sender.send(claim, command, wait_until)

    async def _control(self, claim: Claim, command: Command) -> None:
        """handoff pauses the AI for the conversation, handback resumes it (after the
        channel's own call, if it makes one: `Sender.control`); escalate changes nothing
        here (its notice is written once it is finished)."""
        if command.type == "escalate":
            return
        conv = claim.target.key("conv")
        if command.type == "handoff":
            await self._redis.hset(conv, "h", "1")  # type: ignore[misc]
        else:
            await self._redis.hdel(conv, "h", "p", "q")  # type: ignore[misc]
        await self._redis.expire(conv, self._conversation_ttl_s)
