"""Outbound: commands from `gw:outbox` → policy → provider → one `delivery` event each.

Delivery semantics, step by step (every step is safe to repeat):

1. Workers of every gateway process read `gw:outbox` in the consumer group `gateway`. An
   entry stays pending until its delivery event is published; a process that dies leaves
   its entries pending, and another takes them over with XAUTOCLAIM after
   `claim_idle_ms`. Live workers re-claim their own in-flight entries (XCLAIM) on a
   heartbeat so slow sends are not stolen. An entry delivered more than `max_deliveries`
   times goes to `gw:deadletter`.
2. Exactly once per `command_id`: `claim.lua` creates the command's record. A second copy
   of the command (the backend sent it twice, or two workers hold copies) waits for the
   first and then gets one more delivery with the original result and `duplicate: true`.
   A record left in `sending` by a dead worker may have been sent: it is never sent again
   and ends `failed/provider_error`.
3. `policy.lua` decides atomically, in the conversation's assistant slot: account halted
   or disconnected, human takeover, opt-out, 24-hour window, cross-country, then reserves
   the slots of the number's (or bot's) and the pair's (or chat's) rate limiters, which are
   shared by all processes. The worker sleeps until its slot; `presend.lua` re-checks the
   pause and marks the record `sending` just before the HTTP request.
4. The adapter classifies the answer; retryable answers are retried with capped, jittered
   backoff (each attempt takes a new slot), permanent ones end the command.
5. `finish.lua` records the result and publishes the delivery event together; only then
   is the entry acknowledged (XACK).

An entry that cannot be handled never blocks the others (`Outbox._handle`): undecodable ones
(not JSON, nested too deep to decode) are dead-lettered `invalid_command`, and any other
exception ends the entry as `internal_error` (`Outbox._give_up`). Redis failures and
shutdown leave it pending, to be tried again. Acknowledged entries are trimmed
(`Outbox.trim`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import os
import random
import time
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import aiohttp
import msgspec
from redis.exceptions import ResponseError

from adapters import CHANNELS, Channel, HttpRequest, countries
from adapters.schema import (
    COMMAND_DECODER,
    COMMAND_TYPES,
    CONTROL_TYPES,
    ENCODER,
    Command,
    DeliveryEvent,
    InvalidCommand,
    SendResult,
)
from router import keys
from router.accounts import Account, Directory
from router.client import REDIS_ERRORS, RedisClient, scripts_of
from router.records import DeadLetter, new_event_id
from router.scriptpipe import ScriptHost

log = logging.getLogger("gateway.outbound")

_LUA = Path(__file__).parent / "lua"
_WAIT_UNTIL: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "wait_until", default=None
)
"""When the command being handled stops waiting for a slot (monotonic time, per task)."""


class OutboundObserver(Protocol):
    """What the outbound path reports, for metrics (implemented by the gateway)."""

    def delivered(self, channel: str, ctype: str, outcome: str, reason: str | None) -> None: ...
    def provider_error(self, channel: str, code: int | None) -> None: ...
    def waited(self, channel: str, seconds: float) -> None: ...
    def deadlettered(self, reason: str) -> None: ...
    def halted(self, channel: str, account_id: str, code: str) -> None: ...
    def queue(self, length: int, pending: int, oldest_pending_s: float) -> None: ...
    def late(self, channel: str) -> None: ...
    def connected(self, channel: str, account_id: str, connected: bool) -> None: ...
    def trimmed(self, count: int) -> None: ...


@dataclass(frozen=True)
class OutboundSettings:
    concurrency: int = 256
    read_count: int = 64
    block_ms: int = 1000
    claim_idle_ms: int = 120_000
    dead_consumer_ms: int = 3_600_000
    max_deliveries: int = 5
    request_timeout_s: float = 10.0
    max_attempts: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    backoff_jitter: float = 0.2
    pair_backoff_base_s: float = 4.0
    send_wait_max_s: float = 60.0
    country_block_s: int = 604800
    dedup_ttl_s: int = 48 * 3600
    inbox_maxlen: int = 1_000_000
    deadletter_maxlen: int = 100_000
    conversation_ttl_s: int = 400 * 86400
    guard_ms: float = 50.0
    duplicate_poll_s: float = 0.25
    trim_interval_s: float = 10.0
    """How often acknowledged entries are trimmed from gw:outbox."""
    forget_halts: bool = True
    """Clear credential halts at start: true when the gateway (re)starts, which is how an
    operator says "fixed"; false for a worker process restarted after a crash, which fixes
    nothing."""


class Slot(NamedTuple):
    """A reserved send slot: how long to sleep, (for typing/read) the message to mark, and
    the conversation's route (`Channel.request`)."""

    wait_s: float
    last_inbound: str | None
    at_us: int
    """The slot in Redis time (µs since the epoch)."""
    route: str | None = None


class Result(msgspec.Struct, frozen=True):
    """What a command came to; stored once, repeated for duplicates."""

    outcome: str
    reason: str | None = None
    provider_code: int | None = None
    message_id: str | None = None


_RESULT = msgspec.json.Decoder(Result)


@dataclass(frozen=True)
class _Target:
    """Where a command goes: its account, contact and the keys of its assistant's slot.

    `contact_id` and `conversation_id` are the ones the assistant knows; `address` is where
    messages go now, which differs after the contact changed its number (then the state of
    the new number's conversation, window and pause included, is the one that counts)."""

    account: Account
    contact_id: str
    conversation_id: str
    inbox: str
    address: str = ""
    adapter: Channel = field(init=False, repr=False, compare=False)
    """The account's channel (the registry's entry for `account.channel`)."""

    def __post_init__(self) -> None:
        if not self.address:
            object.__setattr__(self, "address", self.contact_id)
        object.__setattr__(self, "adapter", CHANNELS[self.account.channel])

    @property
    def channel(self) -> str:
        return self.account.channel

    def key(self, name: str) -> str:
        a = self.account
        match name:
            case "conv":
                return keys.conversation(self.inbox, f"{a.channel}:{a.account_id}:{self.address}")
            case "acct":
                return keys.account_state(self.inbox, a.channel, a.account_id)
            case "lim1":
                return keys.limiter(self.inbox, a.channel, a.account_id)
            case "lim2":
                return keys.limiter(self.inbox, a.channel, a.account_id, self.address)
            case "log":
                return keys.dispatch_log(self.inbox, a.channel, a.account_id)
        raise KeyError(name)


class _Claim(NamedTuple):
    """A command record this worker owns while it handles the command."""

    key: str
    owner: str
    target: _Target
    command_id: str
    ctype: str


class _Lost(Exception):
    """Another worker took the command over; this copy stops without acknowledging."""


class Outbox:
    """The reply workers of one process. `run()` until `stop()`; tests use `drain()`."""

    def __init__(
        self,
        redis: RedisClient,
        session: aiohttp.ClientSession,
        directory: Directory,
        api_bases: dict[str, str],
        settings: OutboundSettings,
        observer: OutboundObserver,
        scripts: ScriptHost | None = None,
    ) -> None:
        """`scripts` runs the Lua scripts (default: `redis` itself)."""
        self._redis = redis
        self._session = session
        self._directory = directory
        self._api = api_bases
        self._s = settings
        self._observer = observer
        self.consumer = f"{os.uname().nodename}-{os.getpid()}-{os.urandom(3).hex()}"
        self._scripts = {
            n: (scripts or scripts_of(redis)).register_script((_LUA / f"{n}.lua").read_text())
            for n in (
                "claim",
                "policy",
                "presend",
                "finish",
                "renew",
                "hold",
                "unsend",
                "abandon",
                "trim",
            )
        }
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._owned: dict[str, _Claim] = {}  # by entry id
        self._secrets = [a.token for a in directory.accounts.values() if a.token]
        self._stopping = asyncio.Event()
        self._conversations: dict[str, tuple[asyncio.Lock, int]] = {}

    # --- lifecycle -------------------------------------------------------------------

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(keys.OUTBOX, keys.OUTBOX_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self) -> None:
        while not await self._start():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=1.0)
            if self._stopping.is_set():
                return
        log.info("reply workers reading gw:outbox as consumer %s", self.consumer)
        loops = [
            self._read_loop(),
            self._reclaim_loop(),
            self._heartbeat_loop(),
            self._trim_loop(),
        ]
        tasks = [asyncio.create_task(loop, name=f"outbox-{i}") for i, loop in enumerate(loops)]
        try:
            await self._stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _start(self) -> bool:
        """Create the consumer group and forget credential halts (`forget_halts`): a restart
        is how an operator says "fixed". A number re-enabled in config (disabled at the previous
        start) also forgets a disconnect (CONTRACT §3). False while Redis is unreachable."""
        try:
            await self.ensure_group()
            await self._forget_dead_consumers()
            for a in self._directory.accounts.values():
                key = keys.account_state(keys.inbox(a.assistant), a.channel, a.account_id)
                if self._s.forget_halts:
                    await self._redis.hdel(key, "halt")  # type: ignore[misc]
                was = await self._redis.hget(key, "enabled")  # type: ignore[misc]
                if a.enabled and was == b"0":
                    await self._redis.hdel(key, "disc")  # type: ignore[misc]
                await self._redis.hset(key, "enabled", str(int(a.enabled)))  # type: ignore[misc]
                disconnected = await self._redis.hexists(key, "disc")  # type: ignore[misc]
                self._observer.connected(a.channel, a.account_id, not disconnected)
        except REDIS_ERRORS as exc:
            log.warning("outbox workers wait for redis: %s", exc)
            return False
        return True

    async def _forget_dead_consumers(self) -> None:
        """Every process reads as a consumer of its own, so each restart leaves a name behind
        in the group. Names idle for `dead_consumer_ms` with nothing pending are removed: a
        live consumer is re-created by its next read, and one with pending entries keeps
        them until another process takes them over."""
        for consumer in await self._redis.xinfo_consumers(keys.OUTBOX, keys.OUTBOX_GROUP):
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            if consumer["pending"] or consumer["idle"] < self._s.dead_consumer_ms:
                continue
            if name != self.consumer:
                await self._redis.xgroup_delconsumer(keys.OUTBOX, keys.OUTBOX_GROUP, name)
                log.info("removed outbox consumer %s (idle, nothing pending)", name)

    async def account_problems(self) -> dict[str, dict[str, str]]:
        """Numbers and bots that cannot send: `halted` (provider code) or `disconnected`
        (the account event), keyed `channel:account_id`, for readiness detail."""
        accounts = list(self._directory.accounts.values())
        pipe = self._redis.pipeline(transaction=False)
        for a in accounts:
            pipe.hmget(
                keys.account_state(keys.inbox(a.assistant), a.channel, a.account_id),
                ["halt", "disc"],
            )
        rows = await pipe.execute()
        problems: dict[str, dict[str, str]] = {}
        for a, row in zip(accounts, rows, strict=True):
            pairs = zip(("halted", "disconnected"), row, strict=True)
            found = {name: v.decode() for name, v in pairs if v}
            if found:
                problems[f"{a.channel}:{a.account_id}"] = found
        return problems

    async def stop(self, timeout_s: float) -> None:
        """Stop reading; let in-flight commands finish (they are reclaimed if cut off)."""
        self._stopping.set()
        pending = list(self._inflight.values())
        if pending:
            _done, late = await asyncio.wait(pending, timeout=timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def drain(self, timeout_s: float = 30.0) -> int:
        """Process everything in the outbox now and wait for it (tests, benchmarks)."""
        await self.ensure_group()
        handled = 0
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            full = len(self._inflight) >= self._s.concurrency  # then nothing was asked for
            entries = await self._read(block=False)
            handled += len(entries)
            if not full and not entries and not self._inflight:
                return handled
            await asyncio.sleep(0.005 if not entries else 0)
        raise TimeoutError(f"outbox not drained in {timeout_s}s")

    # --- reading ---------------------------------------------------------------------

    async def _read_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._read(block=True)
            except REDIS_ERRORS as exc:
                log.warning("reading gw:outbox failed, retrying: %s", exc)
                await self._pause(1.0)

    async def _read(self, block: bool) -> list[tuple[str, dict[bytes, bytes]]]:
        free = self._s.concurrency - len(self._inflight)
        if free <= 0:
            await asyncio.sleep(0.01)
            return []
        reply = await self._redis.xreadgroup(
            keys.OUTBOX_GROUP,
            self.consumer,
            {keys.OUTBOX: ">"},
            count=min(free, self._s.read_count),
            block=self._s.block_ms if block else None,
        )
        entries = [(_id(i), f) for _name, items in reply or [] for i, f in items]
        for entry_id, fields in entries:
            self._spawn(entry_id, fields, 1)
        return entries

    def _spawn(self, entry_id: str, fields: dict[bytes, bytes], deliveries: int) -> None:
        if entry_id in self._inflight:
            return
        task = asyncio.create_task(
            self._handle(entry_id, fields.get(b"command"), deliveries), name=f"command-{entry_id}"
        )
        self._inflight[entry_id] = task

    async def _reclaim_loop(self) -> None:
        """Take over entries whose consumer died, and report the queue's depth."""
        interval = max(self._s.claim_idle_ms / 4000, 0.05)
        while not self._stopping.is_set():
            with contextlib.suppress(*REDIS_ERRORS):
                await self._reclaim()
                await self._report_queue()
            await self._pause(interval)

    async def _reclaim(self) -> None:
        reply = await self._redis.xautoclaim(
            keys.OUTBOX, keys.OUTBOX_GROUP, self.consumer, self._s.claim_idle_ms, "0-0", count=100
        )
        claimed = [(_id(i), f) for i, f in reply[1] if f is not None]
        for entry_id, fields in claimed:
            info = await self._redis.xpending_range(
                keys.OUTBOX, keys.OUTBOX_GROUP, min=entry_id, max=entry_id, count=1
            )
            count = int(info[0]["times_delivered"]) if info else 1
            log.warning("took over outbox entry %s (delivery %d)", entry_id, count)
            self._spawn(entry_id, fields, count)

    async def _report_queue(self) -> None:
        length = await self._redis.xlen(keys.OUTBOX)
        summary = await self._redis.xpending(keys.OUTBOX, keys.OUTBOX_GROUP)
        oldest = summary.get("min") if summary else None
        age = time.time() - int(_id(oldest).split("-")[0]) / 1000 if oldest else 0.0
        self._observer.queue(length, int(summary.get("pending", 0)) if summary else 0, age)

    async def _heartbeat_loop(self) -> None:
        """Keep our in-flight entries and command leases from looking abandoned."""
        interval = max(self._s.claim_idle_ms / 3000, 0.05)
        while not self._stopping.is_set():
            await self._pause(interval)
            ids: list[Any] = list(self._inflight)
            with contextlib.suppress(*REDIS_ERRORS):
                if ids:
                    await self._redis.xclaim(
                        keys.OUTBOX, keys.OUTBOX_GROUP, self.consumer, 0, ids, justid=True
                    )
                for claim in list(self._owned.values()):
                    await self._scripts["renew"](
                        keys=[claim.key], args=[claim.owner, self._lease_us()]
                    )

    async def _trim_loop(self) -> None:
        while not self._stopping.is_set():
            await self._pause(self._s.trim_interval_s)
            try:
                await self.trim()
            except REDIS_ERRORS as exc:
                log.warning("trimming gw:outbox failed, retrying later: %s", exc)

    async def trim(self) -> int:
        """Delete the gw:outbox entries that every consumer group (ours and any other, e.g. an
        operator's tool) has acknowledged, and report how many (`trim.lua` says which)."""
        deleted = int(await self._scripts["trim"](keys=[keys.OUTBOX], args=[]))
        if deleted:
            self._observer.trimmed(deleted)
        return deleted

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once on stop: redis-py can turn a cancellation inside a
        command into a connection error, so the loops must not rely on cancellation alone."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def _wait_budget_us(self) -> int:
        until = _WAIT_UNTIL.get()
        left = self._s.send_wait_max_s if until is None else until - time.monotonic()
        return int(max(0.0, left) * 1_000_000)

    def _lease_us(self) -> int:
        return self._s.claim_idle_ms * 1000

    # --- one command -----------------------------------------------------------------

    async def _handle(self, entry_id: str, raw: bytes | None, deliveries: int) -> None:
        # The wait budget counts from when the command was read: time spent behind earlier
        # commands of the same conversation is time spent waiting for a slot too.
        _WAIT_UNTIL.set(time.monotonic() + self._s.send_wait_max_s)
        # A cancellation (shutdown) is not caught: the entry stays pending for redelivery.
        try:
            obj = _json_object(raw)  # decoded once; the typed decode happens in _execute
            async with self._in_order(obj if isinstance(obj, dict) else None):
                await self._process(entry_id, raw, obj, deliveries)
            await self._redis.xack(keys.OUTBOX, keys.OUTBOX_GROUP, entry_id)
        except _Lost:
            log.info("command of entry %s was taken over by another worker", entry_id)
        except REDIS_ERRORS as exc:
            self._redis_failed(entry_id, exc)
        except Exception as exc:
            await self._give_up(entry_id, raw, exc)
        finally:
            self._inflight.pop(entry_id, None)
            self._owned.pop(entry_id, None)

    def _redis_failed(self, entry_id: str, exc: Exception) -> None:
        log.error(
            "redis failed while handling outbox entry %s; it stays pending: %s", entry_id, exc
        )

    async def _give_up(self, entry_id: str, raw: bytes | None, exc: Exception) -> None:
        """End an entry whose handling raised something unexpected (a bug, or input no rule
        foresaw): retrying would fail the same way, and while the entry is pending it holds
        a slot of `concurrency` and comes back after every restart.

        It goes to gw:deadletter as `internal_error` and is acknowledged. If this worker
        holds its command record, the command also ends `failed/provider_error` with a
        delivery (the backend hears back, and a repeated command_id gets the same answer):
        it is never sent (again), even if the error came after the provider was called,
        since the message may have gone out (as a worker cut off mid-send). A record that
        already ended (the error came after its delivery was published) is left as it is.
        A Redis failure meanwhile leaves the entry pending, to be tried again."""
        detail = self._redact(f"{type(exc).__name__}: {exc}")
        trace = self._redact("".join(traceback.format_exception(exc)))
        try:
            answered = await self._abandon(entry_id)
            await self._deadletter("internal_error", raw, detail, logged=True)
            await self._redis.xack(keys.OUTBOX, keys.OUTBOX_GROUP, entry_id)
        except REDIS_ERRORS as redis_exc:
            log.error("unexpected error on outbox entry %s:\n%s", entry_id, trace.rstrip())
            self._redis_failed(entry_id, redis_exc)
            return
        log.error(
            "unexpected error on outbox entry %s; dead-lettered (internal_error)%s:\n%s",
            entry_id,
            ", delivery failed/provider_error" if answered else "",
            trace.rstrip(),
        )

    async def _abandon(self, entry_id: str) -> bool:
        """End the command record this worker holds for the entry, if any and not ended."""
        claim = self._owned.get(entry_id)
        if claim is None:
            return False
        result = Result("failed", "provider_error")
        event = self._delivery(claim.target, claim.command_id, result, duplicate=False)
        args: list[bytes | int | str] = [
            claim.owner,
            msgspec.json.encode(result),
            ENCODER.encode(event),
            self._s.inbox_maxlen,
            self._s.dedup_ttl_s,
        ]
        ended = await self._scripts["abandon"](keys=[claim.key, claim.target.inbox], args=args)
        if not ended:
            return False
        self._observer.delivered(claim.target.channel, claim.ctype, "failed", "provider_error")
        return True

    def _redact(self, text: str) -> str:
        """Account tokens out (a token can be part of a provider's URL)."""
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text

    @contextlib.asynccontextmanager
    async def _in_order(self, obj: dict[str, Any] | None) -> AsyncIterator[None]:
        """Commands of one conversation run one after another, in outbox order.

        Tasks are created in entry order and take the conversation's lock first thing, and
        asyncio locks are FIFO, so a reply never overtakes the one written before it."""
        conversation = (obj or {}).get("conversation_id")
        if not isinstance(conversation, str):
            yield
            return
        lock, users = self._conversations.get(conversation, (asyncio.Lock(), 0))
        self._conversations[conversation] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._conversations[conversation]
            if users == 1:
                del self._conversations[conversation]
            else:
                self._conversations[conversation] = (lock, users - 1)

    async def _process(
        self, entry_id: str, raw: bytes | None, obj: dict[str, Any] | str, deliveries: int
    ) -> None:
        if isinstance(obj, str):
            await self._deadletter("invalid_command", raw, obj)
            return
        target = self._target(obj.get("conversation_id"))
        command_id = obj.get("command_id")
        if target is None:
            await self._deadletter("unknown_conversation", raw, "conversation_id not routable")
            return
        if not isinstance(command_id, str) or not command_id:
            await self._deadletter("invalid_command", raw, "command_id missing")
            return
        give_up = deliveries > self._s.max_deliveries
        if give_up:
            await self._deadletter("max_deliveries", raw, f"delivered {deliveries} times")
        ctype = obj.get("type")
        ctype = ctype if ctype in COMMAND_TYPES else "invalid"  # a closed set, for metrics
        await self._exactly_once(entry_id, target, command_id, raw or b"", ctype, give_up)

    async def _exactly_once(
        self,
        entry_id: str,
        target: _Target,
        command_id: str,
        raw: bytes,
        ctype: str,
        give_up: bool,
    ) -> None:
        """Claim the command, then run it, repeat its result, or (given up on after too
        many deliveries, or cut off mid-send) end it as failed without sending."""
        key = keys.command(target.inbox, command_id)
        owner = f"{self.consumer}/{entry_id}"
        while True:
            state, stored, first, address = await self._scripts["claim"](
                keys=[key, target.key("conv")],
                args=[entry_id, owner, self._lease_us(), self._s.dedup_ttl_s],
            )
            state = state.decode()
            if state != "busy":
                break
            await asyncio.sleep(self._s.duplicate_poll_s)
        if address:  # the contact changed its number: send to the new one
            target = dataclasses.replace(target, address=address.decode())
        if state == "done":
            if first.decode() != entry_id:
                result = _RESULT.decode(stored)
                await self._publish(target, command_id, result, duplicate=True)
            return
        self._owned[entry_id] = _Claim(key, owner, target, command_id, ctype)
        if state == "orphan" or give_up:
            result = Result("failed", "provider_error")
            log.warning(
                "command %s ends unsent (%s)",
                command_id,
                "cut off mid-send" if state == "orphan" else "too many deliveries",
            )
        else:
            result = await self._execute(target, command_id, raw, key, owner)
        await self._finish(target, command_id, ctype, result)

    async def _execute(
        self, target: _Target, command_id: str, raw: bytes, key: str, owner: str
    ) -> Result:
        try:
            command = COMMAND_DECODER.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
            log.info("command %s is invalid: %s", command_id, exc)
            return Result("rejected", "invalid_command")
        if not target.account.enabled:
            return Result("rejected", "account_inactive")
        if command.type in CONTROL_TYPES:
            await self._control(target, command)
            return Result("sent")
        try:
            return await self._send_with_retries(target, command, key, owner)
        except InvalidCommand as exc:
            log.info("command %s is invalid: %s", command_id, exc)
            return Result("rejected", "invalid_command")

    async def _control(self, target: _Target, command: Command) -> None:
        conv = target.key("conv")
        if command.type == "handoff":
            await self._redis.hset(conv, "h", "1")  # type: ignore[misc]
        else:
            await self._redis.hdel(conv, "h", "p")  # type: ignore[misc]
        await self._redis.expire(conv, self._s.conversation_ttl_s)

    # --- policy, pacing, sending ---------------------------------------------------------

    async def _send_with_retries(
        self, target: _Target, command: Command, key: str, owner: str
    ) -> Result:
        last: SendResult | None = None
        # Validate before taking a rate-limit slot (the real request is built after the
        # policy, which knows the last inbound message for typing/read).
        self._build(target, command, command.reply_to or "wamid.validation")
        for attempt in range(1, self._s.max_attempts + 1):
            decision = await self._policy(target, command, key, owner)
            if isinstance(decision, Result):
                return decision
            wait_s, last_inbound = decision.wait_s, decision.last_inbound
            self._observer.waited(target.channel, wait_s)
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            request = self._build(target, command, last_inbound, decision.route)
            verdict = await self._presend(target, command, key, owner)
            if verdict is not None:
                return verdict
            last = await self._call(target, request)
            outcome = await self._apply(target, last, attempt)
            if outcome is not None:
                return outcome
            # The provider answered with an error: nothing was sent, a takeover may resend.
            await self._redis.hset(key, "s", "waiting")  # type: ignore[misc]
            await asyncio.sleep(self._backoff(attempt, last))
        code = last.provider_code if last else None
        return Result("failed", "provider_error", code)

    async def _policy(
        self, target: _Target, command: Command, key: str, owner: str
    ) -> Result | Slot:
        account, adapter = target.account, target.adapter
        own = adapter.account_pace(account, self._s.guard_ms)
        recipient = adapter.recipient_pace(target.address, self._s.guard_ms)
        marketing = (
            command.template is not None
            and (command.template.category or "").lower() == "marketing"
        )
        cross = adapter.crosses_border(account, target.address)
        block = keys.country_block(
            target.inbox, account.account_id, countries.of_contact(target.address) or "??"
        )
        policy_keys = [
            target.key("conv"),
            target.key("acct"),
            block,
            target.key("lim1"),
            target.key("lim2"),
            key,
        ]
        while True:
            reply = await self._scripts["policy"](
                keys=policy_keys,
                args=[
                    int(adapter.window),
                    command.type,
                    command.author,
                    int(marketing or adapter.opt_out_ends_all),
                    "" if cross is None else int(cross),
                    keys.WINDOW_SECONDS,
                    self._wait_budget_us(),
                    own.interval_us,
                    own.tolerance_us,
                    recipient.interval_us,
                    recipient.tolerance_us,
                    int(adapter.paces_recipient(command.type)),
                    owner,
                    self._lease_us(),
                ],
            )
            if reply[0] != b"later":
                break
            # Only this contact's budget is spent: wait for it, then ask for both slots.
            await asyncio.sleep(int(reply[1]) / 1_000_000)
        verdict = reply[0].decode()
        if verdict == "reject":
            return Result("rejected", reply[1].decode())
        if verdict == "halt":
            return Result("failed", "provider_error", int(reply[1]))
        route = reply[4].decode() or None
        return Slot(int(reply[1]) / 1_000_000, reply[2].decode() or None, int(reply[3]), route)

    async def _presend(
        self, target: _Target, command: Command, key: str, owner: str
    ) -> Result | None:
        """The hard cap and the last policy check, right before the request is written.

        The dispatch log counts at most `mps` dispatches in any `1 s + guard/2` window (GCRA
        spaces them `(1 s + guard)/mps` apart, so exact spacing never trips it). A worker
        that resumes more than guard/2 after asking was delayed by its event loop: its
        request could bunch up with later ones at the provider, so it gives the slot back
        and asks again instead of sending late.
        """
        cap = max(1, int(target.account.mps))
        late_s = self._s.guard_ms / 2000
        window_us = 1_000_000 + int(self._s.guard_ms * 500)
        loop = asyncio.get_running_loop()
        log_keys = [target.key("conv"), target.key("acct"), key, target.key("log")]
        while True:
            asked = loop.time()
            reply = await self._scripts["presend"](
                keys=log_keys, args=[command.author, owner, self._lease_us(), cap, window_us]
            )
            if reply[0] == b"wait":
                await asyncio.sleep(int(reply[1]) / 1_000_000)
                continue
            if reply[0] != b"ok" or late_s == 0 or loop.time() - asked <= late_s:
                break  # (a zero guard asks for no lateness check)
            self._observer.late(target.channel)
            await self._scripts["unsend"](keys=[key, target.key("log")], args=[owner])
            await asyncio.sleep(late_s)
        verdict = reply[0].decode()
        if verdict == "lost":
            raise _Lost
        if verdict == "halt":
            return Result("failed", "provider_error", int(reply[1]))
        return Result("rejected", reply[1].decode()) if verdict == "reject" else None

    def _build(
        self,
        target: _Target,
        command: Command,
        last_inbound: str | None,
        route: str | None = None,
    ) -> HttpRequest:
        api_base = self._api[target.channel]
        return target.adapter.request(
            target.account, api_base, command, target.address, last_inbound, route
        )

    async def _call(self, target: _Target, request: HttpRequest) -> SendResult:
        timeout = aiohttp.ClientTimeout(total=self._s.request_timeout_s)
        try:
            async with self._session.post(
                request.url, json=request.body, headers=request.headers, timeout=timeout
            ) as resp:
                body = await resp.read()
                return target.adapter.classify(resp.status, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The URL may hold the account's token: log the exception's type only.
            return SendResult(verdict="retry", detail=f"network: {type(exc).__name__}")

    async def _apply(self, target: _Target, result: SendResult, attempt: int) -> Result | None:
        """Turn a classified answer into the command's end, or None to retry."""
        channel, code = target.channel, result.provider_code
        if result.verdict != "sent":
            self._observer.provider_error(channel, code)
        match result.verdict:
            case "sent":
                return Result("sent", None, None, result.message_id)
            case "retry" | "retry_recipient" if attempt < self._s.max_attempts:
                await self._back_off_target(target, result, attempt)
                return None
            case "retry" | "retry_recipient" | "failed":
                return Result("failed", "provider_error", code)
            case "opted_out":
                await self._redis.hset(target.key("conv"), "oo", str(code or 0))  # type: ignore[misc]
                return Result("failed", "opted_out", code)
            case "country_blocked":
                country = countries.of_contact(target.address) or "??"
                block = keys.country_block(target.inbox, target.account.account_id, country)
                await self._redis.set(block, str(code), ex=max(self._s.country_block_s, 1))
                return Result("failed", "cross_country", code)
            case "halt":
                await self._redis.hset(target.key("acct"), "halt", str(code or 0))  # type: ignore[misc]
                self._observer.halted(channel, target.account.account_id, str(code))
                log.error(
                    "%s account %s halted by provider error %s: %s",
                    channel,
                    target.account.account_id,
                    code,
                    result.detail,
                )
                return Result("failed", "provider_error", code)
        return Result("failed", "provider_error", code)

    async def _back_off_target(self, target: _Target, result: SendResult, attempt: int) -> None:
        """Push the recipient's (or chat's) limiter into the future the provider asked for."""
        if result.verdict == "retry_recipient":
            delay = self._s.pair_backoff_base_s**attempt
        elif result.retry_after_s:
            delay = result.retry_after_s
        else:
            return
        pace = target.adapter.recipient_pace(target.address, self._s.guard_ms)
        await self._scripts["hold"](
            keys=[target.key("lim2")], args=[int(delay * 1e6), pace.tolerance_us]
        )

    def _backoff(self, attempt: int, result: SendResult | None) -> float:
        if result is not None and result.verdict == "retry_recipient":
            return 0.0  # the pair limiter holds the next attempt back
        if result is not None and result.retry_after_s:
            return 0.0  # the chat limiter holds it back
        base = min(self._s.backoff_max_s, self._s.backoff_base_s * 2.0 ** (attempt - 1))
        return base * (1 + random.uniform(-self._s.backoff_jitter, self._s.backoff_jitter))

    # --- results ---------------------------------------------------------------------

    async def _finish(self, target: _Target, command_id: str, ctype: str, result: Result) -> None:
        event = self._delivery(target, command_id, result, duplicate=False)
        await self._record(target, command_id, msgspec.json.encode(result), event)
        self._observer.delivered(target.channel, ctype, result.outcome, result.reason)

    async def _publish(
        self, target: _Target, command_id: str, result: Result, duplicate: bool
    ) -> None:
        await self._record(
            target, command_id, b"", self._delivery(target, command_id, result, duplicate)
        )

    async def _record(
        self, target: _Target, command_id: str, result: bytes, event: DeliveryEvent
    ) -> None:
        """finish.lua, retried through a Redis hiccup: once a message went out, losing its
        result would turn it into a false failure when the entry is taken over."""
        args: list[bytes | int] = [
            result,
            ENCODER.encode(event),
            self._s.inbox_maxlen,
            self._s.dedup_ttl_s,
        ]
        record_keys = [keys.command(target.inbox, command_id), target.inbox]
        deadline = time.monotonic() + self._s.claim_idle_ms / 2000
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

    def _delivery(
        self, target: _Target, command_id: str, result: Result, duplicate: bool
    ) -> DeliveryEvent:
        return DeliveryEvent(
            event_id=new_event_id(),
            channel=target.channel,  # type: ignore[arg-type]
            account_id=target.account.account_id,
            contact_id=target.contact_id,
            conversation_id=target.conversation_id,
            assistant_id=target.account.assistant,
            timestamp=int(time.time()),
            command_id=command_id,
            outcome=result.outcome,  # type: ignore[arg-type]
            reason=result.reason,
            provider_code=result.provider_code,
            message_id=result.message_id,
            duplicate=duplicate,
        )

    async def _deadletter(
        self, reason: str, raw: bytes | None, detail: str, *, logged: bool = False
    ) -> None:
        """`logged`: the caller writes the log line itself."""
        if not logged:
            log.warning("outbox command dead-lettered (%s): %s", reason, detail)
        command = raw.decode("utf-8", "replace") if raw is not None else None
        letter = DeadLetter(1, reason, None, int(time.time()), detail, None, command)
        await self._redis.xadd(
            keys.DEADLETTER,
            {"event": msgspec.json.encode(letter)},
            maxlen=self._s.deadletter_maxlen,
            approximate=True,
        )
        self._observer.deadlettered(reason)

    def _target(self, conversation_id: Any) -> _Target | None:
        if not isinstance(conversation_id, str):
            return None
        channel, _, rest = conversation_id.partition(":")
        account_id, _, contact_id = rest.partition(":")
        account = self._directory.get(channel, account_id)
        if account is None or not contact_id or channel not in CHANNELS:
            return None
        return _Target(account, contact_id, conversation_id, keys.inbox(account.assistant))


def _json_object(raw: bytes | None) -> dict[str, Any] | str:
    """The entry's command as a JSON object, or why it is not one."""
    if raw is None:
        return "entry has no command field"
    try:
        obj = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        # RecursionError: nested deeper than msgspec decodes.
        return f"not JSON ({type(exc).__name__}: {exc})"
    return obj if isinstance(obj, dict) else "entry is not a JSON object"


def _id(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
