"""The ledger: one record per `command_id` (`gw:cmd:{inbox}:<id>`), so each command is sent at
most once and answered exactly once (CONTRACT §2.2).

The record's states (field `s`) and who moves it:

    (none) --claim--> waiting              `claim.lua`: new, owned by this worker (lease `l`)
    waiting --claim--> waiting             `claim.lua`: takeover, the owner's lease ran out
                                           before any send started
    waiting --presend--> sending           `presend.lua` (pacing): the request goes out now
    sending --unsend / waiting()--> waiting
                                           the worker gave its slot back, or the provider
                                           answered with an error (nothing was sent)
    sending --claim--> (orphan)            the owner died mid-send: it may have been sent, so
                                           it is never sent again and ends failed
    waiting | sending --finish--> done     `finish.lua`: result `r` and delivery together
    waiting | sending --abandon--> done    `abandon.lua`: an unexpected error; only while
                                           still ours and not done, so never answered twice
    done --claim--> done                   a repeated command_id: its delivery is published
                                           again with the original result and duplicate: true

A live owner renews its lease on the heartbeat (`renew.lua`); a claim of a record held by a
live owner answers `busy`, and the caller polls until the record ends. `Lost` is raised
where a step finds the record owned by another worker: that copy stops without answering.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Literal, NamedTuple

import msgspec

from adapters.schema import ENCODER, DeliveryEvent
from router import keys, scripts
from router.client import REDIS_ERRORS, RedisClient
from router.observer import OutboundObserver
from router.records import new_event_id
from router.scriptpipe import ScriptHost
from router.settings import OutboundSettings, RouterSettings
from router.target import Target

DUPLICATE_POLL_S = 0.25
"""How often a repeated command_id looks whether its first copy has ended."""


class Result(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a command came to; stored once (its fields that are set), repeated for
    duplicates."""

    outcome: str
    reason: str | None = None
    provider_code: int | None = None
    message_id: str | None = None
    detail: str | None = None
    """Why it failed, in words: the provider's error text, a network error, a timeout
    (never a token); None otherwise."""
    provider_title: str | None = None
    """The provider's own words (issue #17), as the delivery event carries them."""
    provider_detail: str | None = None
    fbtrace_id: str | None = None
    description: str | None = None


_RESULT = msgspec.json.Decoder(Result)
UNSENT = Result("failed", "provider_error", detail="not sent: given up on before a send")
"""The end of a command that is given up on without (another) send."""


class Lost(Exception):
    """Another worker took the command over; this copy stops without acknowledging."""


class Claim(NamedTuple):
    """A command record this worker owns while it handles the command."""

    key: str
    owner: str
    target: Target
    command_id: str
    ctype: str
    last_inbound: str | None = None
    """The conversation's last inbound message id (typing/read mark it), as claimed."""
    route: str | None = None
    """The conversation's route (`Channel.request`), as claimed."""


class Claimed(NamedTuple):
    """What `Ledger.claim` found: `new`/`takeover` (`claim` is ours), `orphan` (ours, but
    it may have been sent), or `done` (`result` holds the original, or None when this entry
    is the one that ended it)."""

    state: Literal["new", "takeover", "orphan", "done"]
    claim: Claim
    result: Result | None = None


class Ledger:
    """The command records: claim, renew, waiting, finish, repeat, abandon."""

    def __init__(
        self,
        redis: RedisClient,
        host: ScriptHost,
        outbound: OutboundSettings,
        router: RouterSettings,
        observer: OutboundObserver,
    ) -> None:
        self._redis = redis
        self._router = router
        self._observer = observer
        self.lease_us = int(outbound.claim_idle_seconds * 1_000_000)
        self._retry_s = outbound.claim_idle_seconds / 2
        self.conversation_ttl_s = router.conversation_ttl_seconds
        """How long a conversation's state outlives its last write (a mark a provider's
        answer leaves renews it)."""
        self._scripts = {n: scripts.load(host, n) for n in ("claim", "renew", "finish", "abandon")}
        self.held: dict[str, Claim] = {}
        """The claims this worker holds, by outbox entry id."""

    async def claim(
        self, entry_id: str, owner: str, target: Target, command_id: str, ctype: str
    ) -> Claimed:
        """Take the record (waiting while another live worker holds it)."""
        key = keys.command(target.inbox, command_id)
        while True:
            state, stored, first, address, *rest = await self._scripts["claim"](
                keys=[key, target.key("conv")],
                args=[entry_id, owner, self.lease_us, self._router.dedup_ttl_seconds],
            )
            if state != b"busy":
                break
            await asyncio.sleep(DUPLICATE_POLL_S)
        if address:  # the contact changed its number: send to the new one
            target = dataclasses.replace(target, address=address.decode())
        if state == b"done":
            repeat = None if first.decode() == entry_id else _RESULT.decode(stored)
            return Claimed("done", Claim(key, owner, target, command_id, ctype), repeat)
        last, route = rest or (None, None)  # (an orphan's reply has no such fields)
        if address and state != b"orphan":  # the new number's conversation is the one read
            last, route = await self._redis.hmget(target.key("conv"), ["m", "bc"])  # type: ignore[misc]
        claim = Claim(key, owner, target, command_id, ctype, _text(last), _text(route))
        self.held[entry_id] = claim
        return Claimed(state.decode(), claim)

    def release(self, entry_id: str) -> None:
        self.held.pop(entry_id, None)

    async def renew(self) -> None:
        """Extend the lease of every claim held (the heartbeat)."""
        for claim in list(self.held.values()):
            await self._scripts["renew"](keys=[claim.key], args=[claim.owner, self.lease_us])

    async def waiting(self, claim: Claim) -> None:
        """sending → waiting: the provider answered with an error, so nothing was sent and a
        takeover may send it."""
        await self._redis.hset(claim.key, "s", "waiting")  # type: ignore[misc]

    async def finish(self, claim: Claim, result: Result) -> None:
        """→ done: record the result and publish the delivery event, atomically."""
        event = delivery(claim.target, claim.command_id, result, duplicate=False)
        await self._record(claim, msgspec.json.encode(result), event, self._marks(claim, result))
        self._observer.delivered(claim.target.channel, claim.ctype, result.outcome, result.reason)

    async def repeat(self, claim: Claim, result: Result) -> None:
        """A repeated command_id: its own delivery, with the original result."""
        await self._record(claim, b"", delivery(claim.target, claim.command_id, result, True))

    async def abandon(self, entry_id: str) -> bool:
        """End the record held for the entry as failed, if it is ours and not done yet."""
        claim = self.held.get(entry_id)
        if claim is None:
            return False
        event = delivery(claim.target, claim.command_id, UNSENT, duplicate=False)
        args: list[bytes | int | str] = [
            claim.owner,
            msgspec.json.encode(UNSENT),
            ENCODER.encode(event),
            self._router.inbox_maxlen,
            self._router.dedup_ttl_seconds,
        ]
        if not await self._scripts["abandon"](keys=[claim.key, claim.target.inbox], args=args):
            return False
        self._observer.delivered(claim.target.channel, claim.ctype, "failed", "provider_error")
        return True

    def _marks(self, claim: Claim, result: Result) -> tuple[str, list[str], bytes]:
        """What finish.lua keeps of a sent message beside its result: 'e' the dedup mark of
        the echo the provider will post of it (`Channel.echo_identity`: that echo is then not
        published), 's' its command_id under its message id (`statuses_name_command` false:
        publish.lua's T names the command in its statuses)."""
        if result.outcome != "sent" or not result.message_id:
            return "", [], b""
        target = claim.target
        adapter, account = target.adapter, target.account.account_id
        flags, field = "", b""
        found: list[str] = []
        identity = adapter.echo_identity(result.message_id)
        if identity is not None:
            flags += "e"
            router = self._router
            mark = keys.mark(
                target.inbox,
                target.channel,
                account,
                identity,
                router.dedup_ttl_seconds,
                router.dedup_shards,
                time.time(),
            )
            found += mark[:3]
            field = mark[3]
        if not adapter.statuses_name_command:
            flags += "s"
            found.append(keys.sent(target.inbox, target.channel, account, result.message_id))
        return flags, found, field

    async def _record(
        self,
        claim: Claim,
        result: bytes,
        event: DeliveryEvent,
        marks: tuple[str, list[str], bytes] = ("", [], b""),
    ) -> None:
        """finish.lua, retried through a Redis hiccup: once a message went out, losing its
        result would turn it into a false failure when the entry is taken over."""
        args = [result, ENCODER.encode(event), self._router.inbox_maxlen]
        args += (self._router.dedup_ttl_seconds, marks[0], claim.command_id, marks[2], claim.owner)
        record_keys = [claim.key, claim.target.inbox, *marks[1]]
        deadline = time.monotonic() + self._retry_s
        delay = 0.05
        while True:
            try:
                await self._scripts["finish"](keys=record_keys, args=args)
                return
            except REDIS_ERRORS:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)


def delivery(target: Target, command_id: str, result: Result, duplicate: bool) -> DeliveryEvent:
    return DeliveryEvent(
        event_id=new_event_id(),
        channel=target.channel,  # type: ignore[arg-type]
        account_id=target.account.account_id,
        contact_id=target.contact_id,
        conversation_id=target.conversation_id,
        assistant_id=target.account.assistant,
        timestamp=int(time.time()),
        provider=target.account.provider,
        command_id=command_id,
        outcome=result.outcome,  # type: ignore[arg-type]
        reason=result.reason,
        provider_code=result.provider_code,
        detail=result.detail,
        message_id=result.message_id,
        duplicate=duplicate,
        provider_title=result.provider_title,
        provider_detail=result.provider_detail,
        fbtrace_id=result.fbtrace_id,
        description=result.description,
    )


def _text(value: bytes | None) -> str | None:
    return value.decode() or None if value else None
