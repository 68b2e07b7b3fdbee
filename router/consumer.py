"""The consumer: reads the outboxes in the group `gateway` and runs each entry once, in order.

The outboxes: the shared `gw:outbox`, and `gw:outbox:<assistant>` for every configured
assistant (one reader task each: a Redis Cluster cannot read streams of several slots in one
call). A command in an assistant's own outbox is sent only if its conversation belongs to
that assistant (`router.entry`); with `outbound.shared_outbox: false` every command in
`gw:outbox` is dead-lettered (`invalid_command`). An assistant added by a reload gets its
outbox read from then on; one removed stays read until the process restarts.

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

import msgspec

from router import keys, scripts
from router.accounts import Directory
from router.client import REDIS_ERRORS, RedisClient
from router.entry import Job, Unusable, Usable, decode
from router.ledger import Ledger, Lost
from router.observer import OutboundObserver
from router.outboxes import Outboxes
from router.outboxes import ref as reference
from router.records import DeadLetter
from router.scriptpipe import ScriptHost
from router.settings import OutboundSettings, PolicySettings, RouterSettings

log = logging.getLogger("gateway.outbound")

READ_COUNT = 64
"""Entries asked for per read (fewer when fewer slots are free)."""
BLOCK_MS = 1000
"""How long one blocking read waits for new entries."""
SHARED_OFF = (
    "gw:outbox is off (outbound.shared_outbox: false): commands go to gw:outbox:<assistant>"
)


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
        self._inflight: dict[str, asyncio.Task[None]] = {}
        """In-flight entries by reference (`_ref`)."""
        self.outboxes = Outboxes(redis, directory, scripts.load(host, "trim"))
        self._readers: dict[str, asyncio.Task[None]] = {}
        secrets = [a.token for a in directory.accounts.values() if a.token]
        self.deadletters = DeadLetters(redis, self._router.deadletter_maxlen, secrets, observer)
        self._order = Order()
        self.stopping = asyncio.Event()

    # --- the groups --------------------------------------------------------------------

    @property
    def streams(self) -> dict[str, str | None]:
        return self.outboxes.streams

    async def streams_changed(self) -> None:
        """The directory changed (a reload): read the outboxes of assistants it added."""
        new = self.outboxes.add()
        await self.outboxes.ensure_group(new)
        if self._readers and not self.stopping.is_set():
            for stream in new:
                self._start_reader(stream)

    async def ensure_group(self) -> None:
        await self.outboxes.ensure_group()

    async def forget_dead_consumers(self) -> None:
        await self.outboxes.forget_dead_consumers(self.name, self._out.dead_consumer_seconds * 1000)

    # --- running -----------------------------------------------------------------------

    async def run(self) -> None:
        """The read, reclaim, heartbeat and trim loops, until `stop`."""
        log.info("reply workers reading %s as consumer %s", ", ".join(self.streams), self.name)
        loops = [self._reclaim_loop(), self._heartbeat_loop(), self._trim_loop()]
        tasks = [asyncio.create_task(loop, name=f"outbox-{i}") for i, loop in enumerate(loops)]
        for stream in self.streams:
            self._start_reader(stream)
        try:
            await self.stopping.wait()
        finally:
            tasks += self._readers.values()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start_reader(self, stream: str) -> None:
        if stream not in self._readers:
            task = asyncio.create_task(self._read_loop(stream), name=f"read-{stream}")
            self._readers[stream] = task

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

    async def _read_loop(self, stream: str) -> None:
        while not self.stopping.is_set():
            try:
                await self._read(stream, block=True)
            except REDIS_ERRORS as exc:
                log.warning("reading %s failed, retrying: %s", stream, exc)
                await self.pause(1.0)

    async def read(self, block: bool) -> list[tuple[str, dict[bytes, bytes]]]:
        """One read of every outbox (tests, `drain`): the entries started."""
        found = []
        for stream in list(self.streams):
            found += await self._read(stream, block)
        return found

    async def _read(self, stream: str, block: bool) -> list[tuple[str, dict[bytes, bytes]]]:
        """One XREADGROUP for as many entries as slots are free; each starts at once."""
        free = self._out.concurrency - len(self._inflight)
        if free <= 0:
            await asyncio.sleep(0.01)
            return []
        reply = await self._redis.xreadgroup(
            keys.OUTBOX_GROUP,
            self.name,
            {stream: ">"},
            count=min(free, READ_COUNT),
            block=BLOCK_MS if block else None,
        )
        entries = [(_id(i), f) for _name, items in reply or [] for i, f in items]
        for entry_id, fields in entries:
            self._spawn(stream, entry_id, fields, 1)
        return entries

    def _spawn(
        self, stream: str, entry_id: str, fields: dict[bytes, bytes], deliveries: int
    ) -> None:
        ref = reference(stream, entry_id)
        if ref in self._inflight:
            return
        handling = self._handle(stream, entry_id, fields.get(b"command"), deliveries)
        self._inflight[ref] = asyncio.create_task(handling, name=f"command-{ref}")

    async def _reclaim_loop(self) -> None:
        """Take over entries whose consumer died, and report the queue's depth."""
        interval = max(self._out.claim_idle_seconds / 4, 0.05)
        while not self.stopping.is_set():
            with contextlib.suppress(*REDIS_ERRORS):
                await self.reclaim()
                await self._report_queue()
            await self.pause(interval)

    async def reclaim(self) -> None:
        """Take over the entries idle longer than `claim_idle_seconds`, and start them."""
        idle_ms = int(self._out.claim_idle_seconds * 1000)
        for found in await self.outboxes.take_over(self.name, idle_ms):
            self._spawn(found.stream, found.entry_id, found.fields, found.deliveries)

    async def _report_queue(self) -> None:
        self._observer.queue(*await self.outboxes.depth())

    async def _heartbeat_loop(self) -> None:
        """Keep our in-flight entries and command leases from looking abandoned."""
        interval = max(self._out.claim_idle_seconds / 3, 0.05)
        while not self.stopping.is_set():
            await self.pause(interval)
            with contextlib.suppress(*REDIS_ERRORS):
                await self.outboxes.keep(self.name, list(self._inflight))
                await self._ledger.renew()

    async def _trim_loop(self) -> None:
        while not self.stopping.is_set():
            await self.pause(self._out.trim_interval_seconds)
            try:
                await self.trim()
            except REDIS_ERRORS as exc:
                log.warning("trimming the outboxes failed, retrying later: %s", exc)

    async def trim(self) -> int:
        """Delete the outbox entries that every consumer group (ours and any other, e.g. an
        operator's tool) has acknowledged, and report how many (`trim.lua` says which)."""
        deleted = await self.outboxes.trim()
        if deleted:
            self._observer.trimmed(deleted)
        return deleted

    # --- one entry ---------------------------------------------------------------------

    async def _handle(self, stream: str, entry_id: str, raw: bytes | None, deliveries: int) -> None:
        # The wait budget counts from when the command was read: time spent behind earlier
        # commands of the same conversation is time spent waiting for a slot too.
        wait_until = time.monotonic() + self._wait_max_s
        ref = reference(stream, entry_id)
        # A cancellation (shutdown) is not caught: the entry stays pending for redelivery.
        try:
            writer = self.streams.get(stream)
            if writer is None and not self._out.shared_outbox:
                decoded: Usable | Unusable = Unusable("invalid_command", SHARED_OFF)
            else:
                decoded = decode(raw, self._directory, writer)
            async with self._order.of(_conversation(decoded)):
                await self._dispatch(ref, raw or b"", decoded, deliveries, wait_until)
            await self._redis.xack(stream, keys.OUTBOX_GROUP, entry_id)
        except Lost:
            log.info("command of entry %s was taken over by another worker", ref)
        except REDIS_ERRORS as exc:
            _redis_failed(ref, exc)
        except Exception as exc:
            await self._give_up(stream, entry_id, raw, exc)
        finally:
            self._inflight.pop(ref, None)
            self._ledger.release(ref)

    async def _dispatch(
        self,
        ref: str,
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
        await self._handler(Job(ref, raw, decoded, give_up, wait_until))

    async def _give_up(self, stream: str, entry_id: str, raw: bytes | None, exc: Exception) -> None:
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
        ref = reference(stream, entry_id)
        try:
            answered = await self._ledger.abandon(ref)
            await self.deadletters.write("internal_error", raw, detail, logged=True)
            await self._redis.xack(stream, keys.OUTBOX_GROUP, entry_id)
        except REDIS_ERRORS as redis_exc:
            log.error("unexpected error on outbox entry %s:\n%s", ref, trace.rstrip())
            _redis_failed(ref, redis_exc)
            return
        log.error(
            "unexpected error on outbox entry %s; dead-lettered (internal_error)%s:\n%s",
            ref,
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
