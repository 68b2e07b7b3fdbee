"""The consumer: reads `gw:outbox` in the group `gateway` and runs each entry once, in order.

Delivery semantics (every step is safe to repeat):

1. Every process reads as a consumer of its own (XREADGROUP). An entry stays pending until
   its handler returns (its delivery event is published then); a process that dies leaves
   its entries pending, and another takes them over (XAUTOCLAIM) after
   `claim_idle_seconds`. Live consumers re-claim their in-flight entries (XCLAIM) and renew
   their command leases (`Ledger.renew`) on a heartbeat, so slow sends are not stolen.
2. Each entry is decoded once, into the typed `Command`. Entries that cannot be handled go
   to `gw:deadletter` and are acknowledged (CONTRACT §2.2): no command field, not JSON or
   nested too deep, not an object, or no `command_id` → `invalid_command`; no routable
   `conversation_id` → `unknown_conversation`. Routable but invalid commands go to the
   handler with `command` None (they get a `rejected/invalid_command` delivery). An entry
   delivered more than `max_deliveries` times is dead-lettered and handed on as `give_up`.
3. Commands of one conversation are handled one after another, in outbox order.
4. At most `concurrency` entries are in flight. Any unexpected error ends the entry as
   `internal_error` (dead letter, the held record abandoned, XACK) so it never holds a slot
   forever; Redis failures and shutdown leave it pending, to be tried again.
5. Entries every consumer group has finished with are trimmed (`trim.lua`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from redis.exceptions import ResponseError

from router import keys, scripts
from router.accounts import Directory
from router.client import REDIS_ERRORS, RedisClient
from router.entry import Job, Unusable, Usable, decode
from router.ledger import Ledger, Lost
from router.observer import OutboundObserver
from router.records import DeadLetter
from router.scriptpipe import ScriptHost
from router.settings import OutboundSettings, PolicySettings, RouterSettings

log = logging.getLogger("gateway.outbound")

READ_COUNT = 64
"""Entries asked for per read (fewer when fewer slots are free)."""
BLOCK_MS = 1000
"""How long one blocking read waits for new entries."""


class Consumer:
    """The reading side of one process's reply workers."""

    def __init__(
        self,
        redis: RedisClient,
        host: ScriptHost,
        directory: Directory,
        ledger: Ledger,
        settings: tuple[OutboundSettings, PolicySettings, RouterSettings],
        observer: OutboundObserver,
        name: str,
        handler: Callable[[Job], Awaitable[None]],
    ) -> None:
        """`handler` runs each usable entry; `name`: this process's consumer in the group."""
        self._redis = redis
        self._directory = directory
        self._ledger = ledger
        self._out, policy, self._router = settings
        self._wait_max_s = policy.send_wait_max_seconds
        self._observer = observer
        self.name = name
        self._handler = handler
        self._trim = scripts.load(host, "trim")
        self._inflight: dict[str, asyncio.Task[None]] = {}
        secrets = [a.token for a in directory.accounts.values() if a.token]
        self.deadletters = DeadLetters(redis, self._router.deadletter_maxlen, secrets, observer)
        self._order = Order()
        self.stopping = asyncio.Event()

    # --- the group ---------------------------------------------------------------------

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(keys.OUTBOX, keys.OUTBOX_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def forget_dead_consumers(self) -> None:
        """Every process reads as a consumer of its own, so each restart leaves a name behind
        in the group. Names idle for `dead_consumer_seconds` with nothing pending are removed:
        a live consumer is re-created by its next read, and one with pending entries keeps
        them until another process takes them over."""
        idle_ms = self._out.dead_consumer_seconds * 1000
        for consumer in await self._redis.xinfo_consumers(keys.OUTBOX, keys.OUTBOX_GROUP):
            name = _id(consumer["name"])
            if consumer["pending"] or consumer["idle"] < idle_ms or name == self.name:
                continue
            await self._redis.xgroup_delconsumer(keys.OUTBOX, keys.OUTBOX_GROUP, name)
            log.info("removed outbox consumer %s (idle, nothing pending)", name)

    # --- running -----------------------------------------------------------------------

    async def run(self) -> None:
        """The read, reclaim, heartbeat and trim loops, until `stop`."""
        log.info("reply workers reading gw:outbox as consumer %s", self.name)
        loops = [self._read_loop(), self._reclaim_loop(), self._heartbeat_loop(), self._trim_loop()]
        tasks = [asyncio.create_task(loop, name=f"outbox-{i}") for i, loop in enumerate(loops)]
        try:
            await self.stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self, timeout_s: float) -> None:
        """Stop reading; let in-flight commands finish (they are reclaimed if cut off)."""
        self.stopping.set()
        pending = list(self._inflight.values())
        if pending:
            _done, late = await asyncio.wait(pending, timeout=timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def drain(self, timeout_s: float = 30.0) -> int:
        """Handle everything in the outbox now and wait for it (tests, benchmarks)."""
        await self.ensure_group()
        handled = 0
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            full = len(self._inflight) >= self._out.concurrency  # then nothing was asked for
            entries = await self.read(block=False)
            handled += len(entries)
            if not full and not entries and not self._inflight:
                return handled
            await asyncio.sleep(0.005 if not entries else 0)
        raise TimeoutError(f"outbox not drained in {timeout_s}s")

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake at once on stop: redis-py can turn a cancellation inside a
        command into a connection error, so the loops must not rely on cancellation alone."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    async def _read_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                await self.read(block=True)
            except REDIS_ERRORS as exc:
                log.warning("reading gw:outbox failed, retrying: %s", exc)
                await self.pause(1.0)

    async def read(self, block: bool) -> list[tuple[str, dict[bytes, bytes]]]:
        """One XREADGROUP for as many entries as slots are free; each starts at once."""
        free = self._out.concurrency - len(self._inflight)
        if free <= 0:
            await asyncio.sleep(0.01)
            return []
        reply = await self._redis.xreadgroup(
            keys.OUTBOX_GROUP,
            self.name,
            {keys.OUTBOX: ">"},
            count=min(free, READ_COUNT),
            block=BLOCK_MS if block else None,
        )
        entries = [(_id(i), f) for _name, items in reply or [] for i, f in items]
        for entry_id, fields in entries:
            self._spawn(entry_id, fields, 1)
        return entries

    def _spawn(self, entry_id: str, fields: dict[bytes, bytes], deliveries: int) -> None:
        if entry_id in self._inflight:
            return
        handling = self._handle(entry_id, fields.get(b"command"), deliveries)
        self._inflight[entry_id] = asyncio.create_task(handling, name=f"command-{entry_id}")

    async def _reclaim_loop(self) -> None:
        """Take over entries whose consumer died, and report the queue's depth."""
        interval = max(self._out.claim_idle_seconds / 4, 0.05)
        while not self.stopping.is_set():
            with contextlib.suppress(*REDIS_ERRORS):
                await self.reclaim()
                await self._report_queue()
            await self.pause(interval)

    async def reclaim(self) -> None:
        """XAUTOCLAIM the entries idle longer than `claim_idle_seconds`, and start them."""
        idle_ms = int(self._out.claim_idle_seconds * 1000)
        reply = await self._redis.xautoclaim(
            keys.OUTBOX, keys.OUTBOX_GROUP, self.name, idle_ms, "0-0", count=100
        )
        for entry_id, fields in [(_id(i), f) for i, f in reply[1] if f is not None]:
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
        interval = max(self._out.claim_idle_seconds / 3, 0.05)
        while not self.stopping.is_set():
            await self.pause(interval)
            ids: list[Any] = list(self._inflight)
            with contextlib.suppress(*REDIS_ERRORS):
                if ids:
                    await self._redis.xclaim(
                        keys.OUTBOX, keys.OUTBOX_GROUP, self.name, 0, ids, justid=True
                    )
                await self._ledger.renew()

    async def _trim_loop(self) -> None:
        while not self.stopping.is_set():
            await self.pause(self._out.trim_interval_seconds)
            try:
                await self.trim()
            except REDIS_ERRORS as exc:
                log.warning("trimming gw:outbox failed, retrying later: %s", exc)

    async def trim(self) -> int:
        """Delete the gw:outbox entries that every consumer group (ours and any other, e.g. an
        operator's tool) has acknowledged, and report how many (`trim.lua` says which)."""
        deleted = int(await self._trim(keys=[keys.OUTBOX], args=[]))
        if deleted:
            self._observer.trimmed(deleted)
        return deleted

    # --- one entry ---------------------------------------------------------------------

    async def _handle(self, entry_id: str, raw: bytes | None, deliveries: int) -> None:
        # The wait budget counts from when the command was read: time spent behind earlier
        # commands of the same conversation is time spent waiting for a slot too.
        wait_until = time.monotonic() + self._wait_max_s
        # A cancellation (shutdown) is not caught: the entry stays pending for redelivery.
        try:
            decoded = decode(raw, self._directory)
            async with self._order.of(_conversation(decoded)):
                await self._dispatch(entry_id, raw or b"", decoded, deliveries, wait_until)
            await self._redis.xack(keys.OUTBOX, keys.OUTBOX_GROUP, entry_id)
        except Lost:
            log.info("command of entry %s was taken over by another worker", entry_id)
        except REDIS_ERRORS as exc:
            _redis_failed(entry_id, exc)
        except Exception as exc:
            await self._give_up(entry_id, raw, exc)
        finally:
            self._inflight.pop(entry_id, None)
            self._ledger.release(entry_id)

    async def _dispatch(
        self,
        entry_id: str,
        raw: bytes,
        decoded: Usable | Unusable,
        deliveries: int,
        wait_until: float,
    ) -> None:
        if isinstance(decoded, Unusable):
            await self.deadletters.write(decoded.reason, raw, decoded.detail)
            return
        give_up = deliveries > self._out.max_deliveries
        if give_up:
            await self.deadletters.write("max_deliveries", raw, f"delivered {deliveries} times")
        await self._handler(Job(entry_id, raw, decoded, give_up, wait_until))

    async def _give_up(self, entry_id: str, raw: bytes | None, exc: Exception) -> None:
        """End an entry whose handling raised something unexpected (a bug, or input no rule
        foresaw): retrying would fail the same way, and while the entry is pending it holds
        a slot of `concurrency` and comes back after every restart.

        It goes to gw:deadletter as `internal_error` and is acknowledged. If this worker
        holds its command record, the command also ends `failed/provider_error` with a
        delivery (`Ledger.abandon`): it is never sent (again), even if the error came after
        the provider was called, since the message may have gone out. A record that already
        ended is left as it is. A Redis failure meanwhile leaves the entry pending."""
        detail = self.deadletters.redact(f"{type(exc).__name__}: {exc}")
        trace = self.deadletters.redact("".join(traceback.format_exception(exc)))
        try:
            answered = await self._ledger.abandon(entry_id)
            await self.deadletters.write("internal_error", raw, detail, logged=True)
            await self._redis.xack(keys.OUTBOX, keys.OUTBOX_GROUP, entry_id)
        except REDIS_ERRORS as redis_exc:
            log.error("unexpected error on outbox entry %s:\n%s", entry_id, trace.rstrip())
            _redis_failed(entry_id, redis_exc)
            return
        log.error(
            "unexpected error on outbox entry %s; dead-lettered (internal_error)%s:\n%s",
            entry_id,
            ", delivery failed/provider_error" if answered else "",
            trace.rstrip(),
        )


class DeadLetters:
    """gw:deadletter for outbox entries (CONTRACT §2.4), with account tokens redacted."""

    def __init__(
        self, redis: RedisClient, maxlen: int, secrets: list[str], observer: OutboundObserver
    ) -> None:
        self._redis = redis
        self._maxlen = maxlen
        self.secrets = secrets
        """The account tokens taken out of letters (a reload sets them anew)."""
        self._observer = observer

    def redact(self, text: str) -> str:
        """Account tokens out (a token can be part of a provider's URL)."""
        for secret in self.secrets:
            text = text.replace(secret, "<redacted>")
        return text

    async def write(
        self, reason: str, raw: bytes | None, detail: str, *, logged: bool = False
    ) -> None:
        """Write the entry to gw:deadletter (`logged`: the caller writes the log line)."""
        if not logged:
            log.warning(
                "outbox command dead-lettered (%s): %s", reason, detail, extra={"reason": reason}
            )
        command = raw.decode("utf-8", "replace") if raw is not None else None
        letter = DeadLetter(1, reason, None, int(time.time()), detail, None, command)
        await self._redis.xadd(
            keys.DEADLETTER,
            {"event": msgspec.json.encode(letter)},
            maxlen=self._maxlen,
            approximate=True,
        )
        self._observer.deadlettered(reason)


class Order:
    """Commands of one conversation run one after another, in outbox order.

    Tasks are created in entry order and take the conversation's lock first thing, and
    asyncio locks are FIFO, so a reply never overtakes the one written before it."""

    def __init__(self) -> None:
        self._conversations: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def of(self, conversation: str | None) -> AsyncIterator[None]:
        """Hold the conversation's turn (no turn to wait for without one)."""
        if conversation is None:
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


def _conversation(decoded: Usable | Unusable) -> str | None:
    return decoded.target.conversation_id if isinstance(decoded, Usable) else None


def _redis_failed(entry_id: str, exc: Exception) -> None:
    log.error("redis failed while handling outbox entry %s; it stays pending: %s", entry_id, exc)


def _id(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
