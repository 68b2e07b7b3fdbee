"""The notifier: delivers `gw:notifications` to the configured targets, and sends reminders.

Each gateway process (each worker) runs one `Notifier` as a named task. They share the
consumer group `notifier`, so each notice goes out once across all of them:

    XREADGROUP gw:notifications  ->  every target at once, each with its own retries
        -> XACK once every target delivered or gave up (a dead letter per target given up)

Delivery semantics: at least once. A process that dies mid-delivery leaves its entries
pending; another process takes them over (XAUTOCLAIM) after `CLAIM_IDLE_S` of silence and
delivers them to every target again (live processes reset their entries' idle time on a
heartbeat, so a long retry schedule is not taken over). Receivers drop repeats by
`notification_id`. A target that answers 2xx (the staff chat: `ok`) is done; a retryable
answer (5xx, 408, 425, 429, a network error, no answer in `request_timeout_seconds`) is
retried after `base_seconds × 2^(n-1)`, capped at `max_seconds`, ± `jitter` (or the
target's own `retry_after` when longer), up to `max_attempts`; a permanent one (another 4xx,
a wrong token) stops at once. Given up: one `gw:deadletter` entry (reason
`notification_failed`, `channel` null, `detail` naming the target without its secret,
`body_b64` the notice) and the entry is still acknowledged.

Nothing here is on the inbound path: webhooks only queue echoes for `Notices` (a bounded
queue, never awaited), so a stalled target delays nothing but its own notices (at most
`concurrency` notices are in delivery at once per process).

Reminders: every `reminder_after_seconds / 4` (between 0.5 and 30 s) `Notices.remind`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from base64 import b64encode
from typing import Final

import aiohttp
import msgspec

from adapters.notice import NOTICE_DECODER, Notice, NoticeTarget, NotificationSettings, TargetAnswer
from router import keys
from router.client import REDIS_ERRORS, RedisClient
from router.notifications import NoticeObserver, Notices
from router.records import DeadLetter

log = logging.getLogger("gateway.notifications")

CLAIM_IDLE_S: Final = 120.0
"""An entry pending this long on a silent consumer is taken over."""
READ_BLOCK_MS: Final = 1000
FAILED: Final = "notification_failed"


class Notifier:
    """Delivers notices; `run()` until `stop()`; tests use `drain()` and `Notices.remind`."""

    def __init__(
        self,
        redis: RedisClient,
        session: aiohttp.ClientSession,
        notices: Notices,
        targets: list[NoticeTarget],
        settings: NotificationSettings,
        observer: NoticeObserver,
        *,
        deadletter_maxlen: int = 100_000,
        consumer: str | None = None,
    ) -> None:
        self.name = consumer or f"{os.uname().nodename}-{os.getpid()}-{os.urandom(3).hex()}"
        self.notices = notices
        self.targets = targets
        self._redis = redis
        self._session = session
        self._settings = settings
        self._observer = observer
        self._letter_maxlen = deadletter_maxlen
        self._timeout = aiohttp.ClientTimeout(total=settings.request_timeout_seconds)
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self.stopping = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Create the group (waiting for Redis), then deliver and remind until `stop`."""
        while not self.stopping.is_set():
            try:
                await self.ensure_group()
                break
            except REDIS_ERRORS as exc:
                log.warning("notifier waits for redis: %s", exc)
                await self._pause(1.0)
        await asyncio.gather(self._read_loop(), self._remind_loop(), self._claim_loop())

    async def stop(self, timeout_s: float) -> None:
        """Stop reading; give deliveries in flight `timeout_s`, then cut them off (their
        entries stay pending and are taken over)."""
        self.stopping.set()
        tasks = list(self._inflight.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(
                keys.NOTIFICATIONS, keys.NOTIFIER_GROUP, "0", mkstream=True
            )
        except REDIS_ERRORS as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def drain(self, timeout_s: float = 30.0) -> int:
        """Deliver every notice in the stream now and wait for it (tests): how many."""
        await self.ensure_group()
        done = 0
        async with asyncio.timeout(timeout_s):
            while entries := await self._read(block_ms=None):
                await asyncio.gather(*(self._start(i, f) for i, f in entries))
                await asyncio.gather(*self._inflight.values())
                done += len(entries)
        return done

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    # --- reading -----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                entries = await self._read(block_ms=READ_BLOCK_MS)
            except REDIS_ERRORS as exc:
                log.warning("notifier cannot read gw:notifications: %s", exc)
                await self._pause(1.0)
                continue
            for entry_id, fields in entries:
                await self._start(entry_id, fields)

    async def _read(self, block_ms: int | None) -> list[tuple[str, dict[bytes, bytes]]]:
        free = max(1, self._settings.concurrency - len(self._inflight))
        found = await self._redis.xreadgroup(
            keys.NOTIFIER_GROUP, self.name, {keys.NOTIFICATIONS: ">"}, count=free, block=block_ms
        )
        return [(_id(i), f) for _, entries in found or [] for i, f in entries]

    async def _start(self, entry_id: str, fields: dict[bytes, bytes]) -> None:
        """One notice's delivery as a task (at most `concurrency` at once)."""
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(entry_id, fields), name=f"notice-{entry_id}")
        self._inflight[entry_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._inflight.pop(entry_id, None)
            self._slots.release()

        task.add_done_callback(done)

    async def _claim_loop(self) -> None:
        """Heartbeat this process's entries; take over a dead process's."""
        while not self.stopping.is_set():
            await self._pause(CLAIM_IDLE_S / 4)
            with contextlib.suppress(*REDIS_ERRORS):
                if self._inflight:
                    await self._redis.xclaim(
                        keys.NOTIFICATIONS, keys.NOTIFIER_GROUP, self.name, 0,
                        list(self._inflight), justid=True,
                    )  # fmt: skip
                _, claimed, *_ = await self._redis.xautoclaim(
                    keys.NOTIFICATIONS, keys.NOTIFIER_GROUP, self.name, int(CLAIM_IDLE_S * 1000),
                    count=self._settings.concurrency,
                )  # fmt: skip
                for entry_id, fields in claimed:
                    if fields and _id(entry_id) not in self._inflight:
                        await self._start(_id(entry_id), fields)

    async def _remind_loop(self) -> None:
        after_s = self._settings.reminder_after_seconds
        if not after_s:
            return
        interval = min(max(after_s / 4, 0.5), 30.0)
        while not self.stopping.is_set():
            try:
                await self.notices.remind()
            except REDIS_ERRORS as exc:
                log.warning("reminders wait for redis: %s", exc)
            await self._pause(interval)

    # --- one notice ------------------------------------------------------------------------

    async def _handle(self, entry_id: str, fields: dict[bytes, bytes]) -> None:
        raw = fields.get(b"event", b"")
        try:
            notice = NOTICE_DECODER.decode(raw)
        except msgspec.DecodeError as exc:
            await self._give_up(None, raw, f"not a notice: {exc}"[:300])
        else:
            await asyncio.gather(*(self._deliver(t, notice, raw) for t in self.targets))
        with contextlib.suppress(*REDIS_ERRORS):
            await self._redis.xack(keys.NOTIFICATIONS, keys.NOTIFIER_GROUP, entry_id)

    async def _deliver(self, target: NoticeTarget, notice: Notice, raw: bytes) -> None:
        """Retried as the answers allow; given up: a dead letter."""
        try:
            await self._attempts(target, notice, raw)
        except Exception as exc:  # a defect: given up, so the entry is still acknowledged
            log.exception("delivering a notice to %s failed", target.label)
            self._observer.notice_delivered(target.kind, False)
            await self._give_up(notice, raw, f"{target.label}: {type(exc).__name__}")

    async def _attempts(self, target: NoticeTarget, notice: Notice, raw: bytes) -> None:
        attempts = self._settings.max_attempts
        answer = TargetAnswer("retry", "not tried")
        for attempt in range(1, attempts + 1):
            answer = await self._post(target, notice, raw)
            if answer.verdict == "delivered":
                self._observer.notice_delivered(target.kind, True)
                return
            if answer.verdict == "failed" or attempt == attempts:
                break
            await asyncio.sleep(self.backoff(attempt, answer.retry_after_s))
        self._observer.notice_delivered(target.kind, False)
        detail = f"{target.label}: {answer.detail} after {attempt} attempt(s)"
        await self._give_up(notice, raw, detail)

    async def _post(self, target: NoticeTarget, notice: Notice, raw: bytes) -> TargetAnswer:
        request = target.request(notice, raw, int(time.time()))
        try:
            async with self._session.post(
                request.url, data=request.body, headers=request.headers, timeout=self._timeout
            ) as resp:
                return target.classify(resp.status, await resp.read())
        except TimeoutError:
            return TargetAnswer("retry", f"network: no answer within {self._timeout.total} s")
        except aiohttp.ClientError as exc:
            # The type only: a staff chat's URL holds its bot token, and some errors quote it.
            return TargetAnswer("retry", f"network: {type(exc).__name__}")

    def backoff(self, attempt: int, retry_after_s: float | None) -> float:
        s = self._settings
        delay = min(s.base_seconds * 2 ** (attempt - 1), s.max_seconds)
        delay *= 1 + random.uniform(-s.jitter, s.jitter)
        return float(max(delay, retry_after_s or 0.0))

    async def _give_up(self, notice: Notice | None, raw: bytes, detail: str) -> None:
        # No channel: the body is a notice, not a webhook `deadletters replay` could publish.
        letter = DeadLetter(1, FAILED, None, int(time.time()), detail, b64encode(raw).decode())
        log.warning(
            "notice %s (%s) not delivered: %s",
            notice.notification_id if notice is not None else "?",
            notice.reason if notice is not None else "?",
            detail,
            extra={"reason": FAILED},
        )
        try:
            await self._redis.xadd(
                keys.DEADLETTER,
                {"event": msgspec.json.encode(letter)},
                maxlen=self._letter_maxlen,
                approximate=True,
            )
        except REDIS_ERRORS as exc:
            log.error("the dead letter of a notice was not written either: %s", exc)
            return
        self._observer.deadlettered(FAILED)


def _id(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id
