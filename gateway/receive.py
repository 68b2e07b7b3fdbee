"""The inbound seam: one webhook in (`Webhook`), one outcome out (`Reply`), the same for the
fast path (gateway/fasthttp.py) and the aiohttp routes (gateway/handlers.py).

Both server paths read a request their own way and then make the same calls to the one
`Inbound` of the process (`gateway.state.INBOUND`):

    answer = inbound.refused(channel, key, headers)   # from the head alone; None: go on
    reply = inbound.receive(Webhook(channel, key, headers, body))
    if reply.future is None: reply.answer()            # answered already (401)
    else: reply.answer() once reply.future is done     # a callback, or `await settle(reply)`
    # answer() is None only when the journal took the webhook over: then wait on
    # reply.future (the journal's, now) and ask again

`receive` checks authenticity on the raw bytes (a receiver may find a body authentic and
still refuse it, raising `ParseError`: it is then dead-lettered whole with its reason, as
Meta's `wrong_app`), parses (`CHANNELS[channel].parse`), hands
the events to the router (`InboundRouter.start`, which gives back one `Publishing`), and
`Reply.answer` turns what the router did into the answer and the metrics (the router counts,
this module names the labels through `gateway.metrics`). 200 only once every event is in its
stream; a body we cannot understand under a valid signature is dead-lettered and still
answered 200, so the platform stops retrying; a Redis failure is 503, so it retries. Error
answers carry no detail: the detail goes to the log and the metrics.

A provider that never redelivers (`Channel.redelivers` false: Twilio) would lose the webhook
to that 503, so when Redis cannot take one of its webhooks it goes to the process's journal
(gateway/journal.py) and is answered 200 once it is on disk, 503 only if the journal cannot
keep it either: `Reply.answer` then hands the reply to the journal (None: wait on its
`future` again), so a webhook Redis takes costs nothing more than any other's. The journal
gives it back to `Inbound.replay` once Redis answers. Each such
webhook counts in `gateway_journal_webhooks_total` as `kept`, `refused` (the 503) and, once
out of the journal, `replayed`; the journal reports the bytes it holds to
`gateway_journal_bytes` itself (`Journal.report_to`).

The usual webhook's `Reply` waits on the router's one script call, already sent, so neither
path makes a task or coroutine for it; a large body (offloaded to a child process) or a
malformed one waits on a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from adapters import CHANNELS, Answer, Receiver
from adapters.schema import ParseError
from gateway.journal import Journal, JournalError, Record
from gateway.metrics import Metrics
from router.inbound import InboundRouter, Publishing
from router.offload import ClientsFactory, Malformed, Offload, parse_webhook
from router.outcome import RouterUnavailable, Tally

log = logging.getLogger("gateway.http")

TOO_LARGE: Answer = (413, "body too large")
UNAVAILABLE: Answer = (503, "temporarily unavailable")


class Webhook(NamedTuple):
    """One webhook as a server path read it."""

    channel: str
    key: str | None
    """The account segment of its path (`Webhook.keyed` channels), else None."""
    headers: Mapping[str, str]
    """The headers its channel reads (`Webhook.headers`), those present."""
    body: bytes


class Reply:
    """What became of one webhook: `answer()` gives the HTTP answer, metrics counted, at once
    when `future` is None, else once `future` is done."""

    __slots__ = (
        "_answer",
        "_channel",
        "_inbound",
        "_publish_started",
        "_publishing",
        "_record",
        "_started",
        "future",
    )

    def __init__(
        self,
        inbound: Inbound,
        channel: str,
        answer: Answer | None = None,
        future: asyncio.Future[Any] | None = None,
        publishing: Publishing | None = None,
        started: float = 0.0,
        publish_started: float = 0.0,
        record: Record | None = None,
    ) -> None:
        self._inbound = inbound
        self._channel = channel
        self._answer = answer
        self.future = future
        """What the answer waits for: the router's publish, a task whose result it is, or
        (once the publish failed) the journal's answer."""
        self._publishing = publishing
        self._started = started
        self._publish_started = publish_started
        self._record = record
        """The webhook as the journal keeps it, if Redis does not take it (a provider that
        never redelivers); None: a Redis failure is answered 503."""

    def answer(self) -> Answer | None:
        """The answer, once `future` is done; None when Redis did not take the webhook and
        the journal is keeping it instead: `future` is then the journal's, and this is asked
        again once that is done."""
        publishing = self._publishing
        if publishing is None:
            if self._answer is not None:
                return self._answer
            assert self.future is not None
            answer: Answer = self.future.result()  # a task's (offloaded, malformed), the journal's
            return answer
        try:
            tally = publishing.tally()
        except RouterUnavailable as exc:
            if self._record is None:
                return self._inbound.unavailable(self._channel, exc)
            self._publishing = None
            self.future = self._inbound.keep(self._record, exc)
            return None
        return self._inbound.published(self._channel, tally, self._started, self._publish_started)


async def settle(reply: Reply) -> Answer:
    """A reply's answer, awaited (the aiohttp routes; the fast path adds a callback)."""
    while True:
        if reply.future is not None:
            # Whatever the future raised, `answer()` raises or answers it (503 for Redis).
            with contextlib.suppress(Exception):
                await reply.future
        answer = reply.answer()
        if answer is not None:
            return answer


class Inbound:
    """Receives this process's webhooks: checks, parse, publish, answer, metrics."""

    __slots__ = (
        "_journal",
        "_kept",
        "_metrics",
        "_offload",
        "_offload_bytes",
        "_ok",
        "_receivers",
        "_router",
        "_tasks",
    )

    def __init__(
        self,
        metrics: Metrics,
        receivers: dict[str, Receiver],
        router: InboundRouter,
        offload: Offload,
        offload_bytes: int,
        journal: Journal | None = None,
    ) -> None:
        """`receivers`: channel name → its checks (`State.receivers`); `offload_bytes`:
        `server.offload_bytes`, the body size from which `offload` publishes it; `journal`:
        where the webhooks of providers that never redeliver go while Redis is down (None:
        they are answered 503 like the others)."""
        self._journal = journal
        if journal is not None:
            journal.report_to(metrics.journal_bytes.set)
        kept = [name for name, adapter in CHANNELS.items() if not adapter.redelivers]
        self._kept = frozenset(kept if journal is not None else ())
        """The adapters whose webhooks go to the journal when Redis cannot take them."""
        self._metrics = metrics
        self._receivers = receivers
        self._ok = {name: adapter.webhook.ok for name, adapter in CHANNELS.items()}
        """Adapter → its webhooks' 200 body (Twilio's: an empty TwiML document)."""
        self._offload_bytes = offload_bytes
        self._router = router
        self._offload = offload
        self._tasks: set[asyncio.Task[Answer]] = set()

    def accounts_changed(self, offload: ClientsFactory) -> None:
        """A reload: the router forgets what it worked out per account, and large bodies go
        to a child built from the new config by `offload`. (The receivers are the state's
        dict, which the reload updates in place.)"""
        self._router.accounts_changed()
        self._offload.renew(offload)

    def refused(self, channel: str, key: str | None, headers: Mapping[str, str]) -> Answer | None:
        """What the channel refuses from the head alone (`Receiver.refuse`), counted (a 401
        also as a signature failure); None: read the body."""
        answer = self._receivers[channel].refuse(key, headers)
        if answer is None:
            return None
        if answer[0] == 401:
            self._metrics.signature_failures.labels(channel).inc()
        return self.counted(channel, *answer)

    def too_large(self, channel: str) -> Answer:
        """A body over `server.max_body_bytes`, counted."""
        return self.counted(channel, *TOO_LARGE)

    def receive(self, webhook: Webhook) -> Reply:
        """Everything after the body is read: authenticity, parse, publish, the answer."""
        channel, key, headers, body = webhook
        try:
            if not self._receivers[channel].verify(key, headers, body):
                # Signed with the secret of the channel the body belongs to, if it is another's
                # (Meta: one app, one callback URL for all three channels)?
                other = CHANNELS[channel].foreign(body)
                receiver = self._receivers.get(other) if other is not None else None
                if other is None or receiver is None or not receiver.verify(None, headers, body):
                    self._metrics.signature_failures.labels(channel).inc()
                    return Reply(self, channel, self.counted(channel, 401, "bad signature"))
                channel, key = other, None
        except ParseError as exc:
            # Authentic, but not to be published (Meta: signed by an app that does not own
            # every account the body names): dead-lettered whole, answered 200.
            refused = self._malformed(channel, key, body, int(time.time()), str(exc), exc.reason)
            return self._task(channel, refused)
        received_at = int(time.time())
        started = time.perf_counter()
        if len(body) > self._offload_bytes:
            # A multi-megabyte body (history sync) is decoded and published by a child
            # process, so live webhooks keep this event loop (router/offload.py).
            return self._task(channel, self._offloaded(webhook, received_at, started))
        try:
            channel, parsed = parse_webhook(channel, body, received_at, key)
        except ParseError as exc:
            malformed = self._malformed(channel, key, body, received_at, str(exc), exc.reason)
            return self._task(channel, malformed)
        publish_started = time.perf_counter()
        publishing = self._router.start(channel, parsed, body, received_at, key)
        record = Record(channel, key, received_at, body) if channel in self._kept else None
        return Reply(
            self, channel, None, publishing.future, publishing, started, publish_started, record
        )

    def _task(self, channel: str, answering: Any) -> Reply:
        task: asyncio.Task[Answer] = asyncio.get_running_loop().create_task(answering)
        self._tasks.add(task)  # held until done, whoever waits for it
        task.add_done_callback(self._tasks.discard)
        return Reply(self, channel, None, task)

    async def _offloaded(self, webhook: Webhook, received_at: int, started: float) -> Answer:
        channel, key, _, body = webhook
        try:
            outcome = await self._offload.publish(channel, body, received_at, key)
        except RouterUnavailable as exc:
            return await self._unavailable(Record(channel, key, received_at, body), exc)
        if isinstance(outcome, Malformed):
            detail, reason = outcome.detail, outcome.reason
            return await self._malformed(channel, key, body, received_at, detail, reason)
        channel, tally = outcome
        return self.published(channel, tally, started, started)

    async def _malformed(
        self,
        channel: str,
        key: str | None,
        body: bytes,
        received_at: int,
        detail: str,
        reason: str,
    ) -> Answer:
        """A body we cannot understand under a valid signature (`malformed_body`), or whose
        `object` no channel handles (`unhandled_object`): dead-lettered whole, answered 200.
        (Journaled like any webhook if Redis cannot take the dead letter: its replay parses
        it again and dead-letters it then.)"""
        try:
            await self._deadletter(channel, key, body, received_at, detail, reason)
        except RouterUnavailable as exc:
            return await self._unavailable(Record(channel, key, received_at, body), exc)
        return self.counted(channel, 200, self._ok[channel])

    async def _deadletter(
        self,
        channel: str,
        key: str | None,
        body: bytes,
        received_at: int,
        detail: str,
        reason: str,
    ) -> None:
        await self._router.deadletter(reason, channel, received_at, detail[:500], body, key=key)
        self._metrics.deadletters.labels(channel, reason).inc()
        log.warning(
            "dead-lettered a %s body (%s): %s",
            channel,
            reason,
            detail[:200],
            extra={"channel": channel, "reason": reason},
        )

    def published(
        self, channel: str, outcome: Tally, started: float, publish_started: float
    ) -> Answer:
        done = time.perf_counter()
        self._metrics.timed(channel, done - publish_started, done - started)
        self._metrics.tallied(channel, outcome)
        return self.counted(channel, 200, self._ok[channel])

    def unavailable(self, channel: str, exc: RouterUnavailable) -> Answer:
        self._metrics.redis_errors.labels("publish").inc()
        log.error(
            "redis unavailable, answering 503 so %s retries: %s",
            channel,
            exc,
            extra={"channel": channel},
        )
        return self.counted(channel, *UNAVAILABLE)

    async def _unavailable(self, record: Record, exc: RouterUnavailable) -> Answer:
        """Redis did not take a webhook (a task's path): 503, or the journal's answer."""
        if record.channel not in self._kept:
            return self.unavailable(record.channel, exc)
        return await self.keep(record, exc)

    def keep(self, record: Record, cause: BaseException | None) -> asyncio.Future[Answer]:
        """Redis did not take a webhook whose provider never redelivers: into the journal
        with it. The future gets the answer: 200 once it is on disk, 503 if it cannot be
        kept."""
        into: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._metrics.redis_errors.labels("publish").inc()
        journal = self._journal
        assert journal is not None
        try:
            appended = journal.append(record)
        except JournalError as exc:
            into.set_result(self._lost(record, exc))
            return into

        def written(done: asyncio.Future[None]) -> None:
            error = JournalError("cancelled") if done.cancelled() else done.exception()
            _resolve(into, self._lost(record, error) if error else self._journaled(record, cause))

        appended.add_done_callback(written)
        return into

    def _journaled(self, record: Record, cause: BaseException | None) -> Answer:
        assert self._journal is not None
        self._metrics.journal_webhooks.labels(record.channel, "kept").inc()
        log.warning(
            "redis unavailable (%s): a %s webhook is in the journal (%d bytes kept), answered 200",
            cause,
            record.channel,
            self._journal.size,
            extra={"channel": record.channel},
        )
        return self.counted(record.channel, 200, self._ok[record.channel])

    def _lost(self, record: Record, exc: BaseException) -> Answer:
        self._metrics.journal_webhooks.labels(record.channel, "refused").inc()
        log.critical(
            "redis unavailable and the journal cannot keep a %s webhook either (%s): answered "
            "503, which %s does not redeliver, so it is lost (its Fallback URL, if one is set, "
            "gets it)",
            record.channel,
            exc,
            record.channel,
            extra={"channel": record.channel},
        )
        return self.counted(record.channel, *UNAVAILABLE)

    async def replay(self, record: Record) -> None:
        """A journaled webhook, published now as it would have been when it came in (as of
        its own `received_at`), through the same parse and publish; the dedup marks make it
        a no-op if it was published already. A body that does not parse (any more) is
        dead-lettered. Raises `RouterUnavailable` while Redis cannot take it. (Published on
        this event loop whatever its size: a journaled provider's bodies are small.) Counted
        `replayed` under the adapter it was journaled by, dead-lettered or not: it has left
        the journal."""
        channel, received_at, body = record.channel, record.received_at, record.body
        try:
            if channel not in CHANNELS:
                raise ParseError(f"journaled for the adapter {channel!r}, which is not registered")
            channel, parsed = parse_webhook(channel, body, received_at, record.key)
        except ParseError as exc:
            await self._deadletter(channel, record.key, body, received_at, str(exc), exc.reason)
        else:
            tally = await self._router.publish(channel, parsed, body, received_at, record.key)
            self._metrics.tallied(channel, tally)
        self._metrics.journal_webhooks.labels(record.channel, "replayed").inc()

    def counted(self, channel: str, status: int, text: str) -> Answer:
        self._metrics.answered(channel, status)
        return status, text


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    """Set a result the server path may have stopped waiting for (a cancelled handler)."""
    if not future.done():
        future.set_result(result)
