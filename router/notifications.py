"""Escalation notices: written to `gw:notifications`, never in the way of a webhook or a
command.

What writes one (`Notices`), each only after its cause is recorded:

    handoff, escalate   after the command's delivery (`sent`) is published: `after_command`
    echo takeover       after the webhook's events are published: the router hands the
                        published echoes to `takeovers` (synchronous, never waits), a bounded
                        queue; `run` (a named task) writes them. One notice per stretch of
                        echo pauses (takeover.lua), none under a handoff
    reminder            `remind`, called by the notifier: a paused conversation with no human
                        activity for `notifications.reminder_after_seconds` (remind.lua takes
                        it out of the paused set once across all processes)

A notice is a separate Redis call from the one that recorded its cause: on a Redis Cluster
`gw:notifications` is a slot of its own. So it is best effort: a Redis failure, or a process
that dies in between, loses the notice (logged and counted: `gateway_notifications_total`
with outcome `lost`), and the webhook or command is unaffected. The paused set (router/keys.py
`paused`) is kept only with reminders on: handoff adds the conversation, echoes and a human's
commands move its clock (ZADD GT), handback takes it out.

Notices quote the contact's latest message from its conversation (`x`, `t`, `m`: publish.lua
keeps the excerpt only when notifications are configured). The text is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Final, Protocol

from adapters.notice import (
    NOTICE_ENCODER,
    LastMessage,
    Notice,
    NotificationSettings,
    Reason,
    link,
)
from adapters.schema import Command, EchoEvent
from router import keys, scripts
from router.accounts import Directory
from router.client import REDIS_ERRORS, RedisClient, scripts_of
from router.records import new_event_id
from router.settings import PolicySettings
from router.target import Target

log = logging.getLogger("gateway.notifications")

QUEUE_MAX: Final = 10_000
"""Echo takeovers waiting to be written; past it they are dropped (and counted)."""
REMIND_BATCH: Final = 100
"""Due members read per assistant per scan."""


class NoticeObserver(Protocol):
    """What the notices report, for metrics (gateway/outbound_metrics.py)."""

    def notice_published(self, reason: str, ok: bool) -> None: ...
    def notice_delivered(self, target: str, ok: bool) -> None: ...
    def deadlettered(self, reason: str) -> None: ...


class Notices:
    """Writes escalation notices to gw:notifications and keeps the paused set."""

    def __init__(
        self,
        redis: RedisClient,
        directory: Directory,
        settings: NotificationSettings,
        policy: PolicySettings,
        observer: NoticeObserver,
    ) -> None:
        host = scripts_of(redis)
        self._redis = redis
        self._directory = directory
        self._observer = observer
        self._takeover = scripts.load(host, "takeover")
        self._remind = scripts.load(host, "remind")
        self._queue: asyncio.Queue[EchoEvent] = asyncio.Queue(QUEUE_MAX)
        self._takeover_s = policy.human_takeover_seconds
        self._remind_after_s = settings.reminder_after_seconds
        self._link = settings.link_template
        self._maxlen = settings.maxlen

    # --- echo takeovers: the inbound path's sink and the task that writes them -----------

    def takeovers(self, echoes: list[EchoEvent]) -> None:
        """Echoes a webhook published (`InboundRouter.takeovers`): queued, never awaited."""
        if self._takeover_s <= 0:
            return  # echoes pause nothing
        for echo in echoes:
            try:
                self._queue.put_nowait(echo)
            except asyncio.QueueFull:
                self._lost("echo_takeover", "too many takeovers waiting to be written")

    async def run(self) -> None:
        """Write queued takeovers until cancelled."""
        while True:
            echo = await self._queue.get()
            try:
                await self._echo(echo)
            except Exception:  # a defect must not stop the writer: the next echoes still go
                log.exception("an echo takeover's notice was not written")
                self._observer.notice_published("echo_takeover", False)
            finally:
                self._queue.task_done()

    async def flush(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) until every queued takeover is written."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout_s)

    async def _echo(self, echo: EchoEvent) -> None:
        conversation_id = echo.conversation_id
        assert conversation_id is not None
        inbox = keys.inbox(echo.assistant_id)
        start = min(echo.timestamp, int(time.time()))
        try:
            found = await self._takeover(
                keys=[keys.conversation(inbox, conversation_id), keys.paused(inbox)],
                args=[conversation_id, start, start + self._takeover_s, int(self._reminders)],
            )
        except REDIS_ERRORS as exc:
            self._lost("echo_takeover", f"redis: {exc}")
            return
        if found[0] == 1:
            where = (echo.channel, echo.account_id, echo.contact_id or "", echo.assistant_id)
            await self.publish(self.notice("echo_takeover", conversation_id, where, found[1:]))

    # --- commands ---------------------------------------------------------------------------

    async def after_command(self, target: Target, command: Command) -> None:
        """A command ended `sent` (its delivery is published): handoff and escalate notify;
        handoff starts a reminder's clock, a human's command moves it, handback ends it.
        Never raises: the command is done, whatever becomes of its notice."""
        try:
            await self._after_command(target, command)
        except Exception:
            log.exception("the notice of command %s was not written", command.command_id)
            if command.type in ("handoff", "escalate"):
                self._observer.notice_published(command.type, False)

    async def _after_command(self, target: Target, command: Command) -> None:
        try:
            await self._track(target, command)
        except REDIS_ERRORS as exc:
            log.warning("reminder clock of command %s not updated: %s", command.command_id, exc)
        if command.type not in ("handoff", "escalate"):
            return
        reason: Reason = "handoff" if command.type == "handoff" else "escalate"
        try:
            fields = await self._redis.hmget(target.key("conv"), ["x", "t", "m"])  # type: ignore[misc]
        except REDIS_ERRORS as exc:
            self._lost(reason, f"redis: {exc}")
            return
        account = target.account
        where = (account.channel, account.account_id, target.contact_id, account.assistant)
        notice = self.notice(
            reason, target.conversation_id, where, fields, command.command_id, command.text
        )
        await self.publish(notice)

    async def _track(self, target: Target, command: Command) -> None:
        if not self._reminders:
            return
        paused = keys.paused(target.inbox)
        member = target.conversation_id
        now = int(time.time())
        if command.type == "handoff":
            await self._redis.zadd(paused, {member: now}, gt=True)
        elif command.type == "handback":
            await self._redis.zrem(paused, member)
        elif command.author == "human":
            await self._redis.zadd(paused, {member: now}, xx=True, gt=True)

    # --- reminders --------------------------------------------------------------------------

    @property
    def _reminders(self) -> bool:
        return self._remind_after_s > 0

    async def remind(self, now: int | None = None) -> int:
        """Send the reminders that are due (at most `REMIND_BATCH` per assistant); how many."""
        if not self._reminders:
            return 0
        now = int(time.time()) if now is None else now
        sent = 0
        for assistant in sorted({a.assistant for a in self._directory.accounts.values()}):
            inbox = keys.inbox(assistant)
            due = await self._redis.zrangebyscore(
                keys.paused(inbox), "-inf", now - self._remind_after_s,
                start=0, num=REMIND_BATCH, withscores=True,
            )  # fmt: skip
            for member, score in due:
                sent += await self._remind_one(inbox, assistant, member.decode(), int(score), now)
        return sent

    async def _remind_one(
        self, inbox: str, assistant: str, conversation_id: str, since: int, now: int
    ) -> int:
        found = await self._remind(
            keys=[keys.paused(inbox), keys.conversation(inbox, conversation_id)],
            args=[conversation_id, since, now],
        )
        if found[0] != 1:
            return 0
        channel, _, rest = conversation_id.partition(":")
        account_id, _, contact_id = rest.partition(":")
        where = (channel, account_id, contact_id, assistant)
        notice = self.notice("reminder", conversation_id, where, found[1:], idle_since=since)
        await self.publish(notice)
        return 1

    # --- the notice -------------------------------------------------------------------------

    def notice(
        self,
        reason: Reason,
        conversation_id: str,
        where: tuple[str, str, str, str],
        last: list[Any],
        command_id: str | None = None,
        note: str | None = None,
        *,
        idle_since: int | None = None,
    ) -> Notice:
        """`where`: channel, account id, contact id, assistant id; `last`: the conversation's
        x, t, m as Redis holds them (bytes, '' or None where unknown)."""
        channel, account_id, contact_id, assistant_id = where
        text, at, message_id = (_text(v) for v in last)
        fields = {
            "conversation_id": conversation_id,
            "channel": channel,
            "account_id": account_id,
            "contact_id": contact_id,
            "assistant_id": assistant_id,
        }
        return Notice(
            notification_id=new_event_id(),
            reason=reason,
            conversation_id=conversation_id,
            channel=channel,
            account_id=account_id,
            assistant_id=assistant_id,
            last_customer_message=(
                LastMessage(text, int(at) if at else None, message_id)
                if text or at or message_id
                else None
            ),
            link=link(self._link, fields),
            created_at=int(time.time()),
            command_id=command_id,
            note=note,
            idle_since=idle_since,
        )

    async def publish(self, notice: Notice) -> bool:
        """XADD the notice to gw:notifications; False (logged, counted) if Redis failed."""
        try:
            await self._redis.xadd(
                keys.NOTIFICATIONS,
                {"event": NOTICE_ENCODER.encode(notice)},
                maxlen=self._maxlen,
                approximate=True,
            )
        except REDIS_ERRORS as exc:
            self._lost(notice.reason, f"redis: {exc}")
            return False
        self._observer.notice_published(notice.reason, True)
        return True

    def _lost(self, reason: str, why: str) -> None:
        self._observer.notice_published(reason, False)
        log.warning("an escalation notice (%s) was not written: %s", reason, why)


def _text(value: Any) -> str | None:
    if value is None or value in (b"", ""):
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
