"""The inbound seam: one webhook in (`Webhook`), one outcome out (`Reply`), the same for the
fast path (gateway/fasthttp.py) and the aiohttp routes (gateway/handlers.py).

Both server paths read a request their own way and then make the same calls to the one
`Inbound` of the process (`gateway.state.INBOUND`):

    answer = inbound.refused(channel, key, headers)   # from the head alone; None: go on
    reply = inbound.receive(Webhook(channel, key, headers, body))
    if reply.future is None: reply.answer()            # answered already (401)
    else: reply.answer() once reply.future is done     # a callback, or `await settle(reply)`

`receive` checks authenticity on the raw bytes, parses (`CHANNELS[channel].parse`), hands
the events to the router (`InboundRouter.start`, which gives back one `Publishing`), and
`Reply.answer` turns what the router did into the answer and the metrics (the router counts,
this module names the labels through `gateway.metrics`). 200 only once every event is in its
stream; a body we cannot understand under a valid signature is dead-lettered and still
answered 200, so the platform stops retrying; a Redis failure is 503, so it retries. Error
answers carry no detail: the detail goes to the log and the metrics.

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
from gateway.metrics import Metrics
from router.inbound import InboundRouter, Publishing
from router.offload import Malformed, Offload, parse_webhook
from router.outcome import RouterUnavailable, Tally

log = logging.getLogger("gateway.http")

TOO_LARGE: Answer = (413, "body too large")


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
    ) -> None:
        self._inbound = inbound
        self._channel = channel
        self._answer = answer
        self.future = future
        """What the answer waits for: the router's publish, or a task whose result it is."""
        self._publishing = publishing
        self._started = started
        self._publish_started = publish_started

    def answer(self) -> Answer:
        publishing = self._publishing
        if publishing is None:
            if self._answer is not None:
                return self._answer
            assert self.future is not None
            answer: Answer = self.future.result()  # a task's: offloaded or malformed
            return answer
        try:
            tally = publishing.tally()
        except RouterUnavailable as exc:
            return self._inbound.unavailable(self._channel, exc)
        return self._inbound.published(self._channel, tally, self._started, self._publish_started)


async def settle(reply: Reply) -> Answer:
    """A reply's answer, awaited (the aiohttp routes; the fast path adds a callback)."""
    if reply.future is not None:
        # Whatever the future raised, `answer()` raises or answers it (503 for Redis).
        with contextlib.suppress(Exception):
            await reply.future
    return reply.answer()


class Inbound:
    """Receives this process's webhooks: checks, parse, publish, answer, metrics."""

    __slots__ = ("_metrics", "_offload", "_offload_bytes", "_receivers", "_router", "_tasks")

    def __init__(
        self,
        metrics: Metrics,
        receivers: dict[str, Receiver],
        router: InboundRouter,
        offload: Offload,
        offload_bytes: int,
    ) -> None:
        """`receivers`: channel name → its checks (`State.receivers`); `offload_bytes`:
        `server.offload_bytes`, the body size from which `offload` publishes it."""
        self._metrics = metrics
        self._receivers = receivers
        self._offload_bytes = offload_bytes
        self._router = router
        self._offload = offload
        self._tasks: set[asyncio.Task[Answer]] = set()

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
        if not self._receivers[channel].verify(key, headers, body):
            # Signed with the secret of the channel the body belongs to, if it is another's
            # (Meta: one app, one callback URL for all three channels)?
            other = CHANNELS[channel].foreign(body)
            receiver = self._receivers.get(other) if other is not None else None
            if other is None or receiver is None or not receiver.verify(None, headers, body):
                self._metrics.signature_failures.labels(channel).inc()
                return Reply(self, channel, self.counted(channel, 401, "bad signature"))
            channel, key = other, None
        received_at = int(time.time())
        started = time.perf_counter()
        if len(body) > self._offload_bytes:
            # A multi-megabyte body (history sync) is decoded and published by a child
            # process, so live webhooks keep this event loop (router/offload.py).
            return self._task(channel, self._offloaded(webhook, received_at, started))
        try:
            channel, parsed = parse_webhook(channel, body, received_at, key)
        except ParseError as exc:
            malformed = self._malformed(channel, body, received_at, str(exc), exc.reason)
            return self._task(channel, malformed)
        publish_started = time.perf_counter()
        publishing = self._router.start(channel, parsed, body, received_at)
        return Reply(self, channel, None, publishing.future, publishing, started, publish_started)

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
            return self.unavailable(channel, exc)
        if isinstance(outcome, Malformed):
            return await self._malformed(channel, body, received_at, outcome.detail, outcome.reason)
        channel, tally = outcome
        return self.published(channel, tally, started, started)

    async def _malformed(
        self, channel: str, body: bytes, received_at: int, detail: str, reason: str
    ) -> Answer:
        """A body we cannot understand under a valid signature (`malformed_body`), or whose
        `object` no channel handles (`unhandled_object`): dead-lettered whole, answered 200."""
        try:
            await self._router.deadletter(reason, channel, received_at, detail[:500], body)
        except RouterUnavailable as exc:
            return self.unavailable(channel, exc)
        self._metrics.deadletters.labels(channel, reason).inc()
        log.warning("dead-lettered a %s body (%s): %s", channel, reason, detail[:200])
        return self.counted(channel, 200, "OK")

    def published(
        self, channel: str, outcome: Tally, started: float, publish_started: float
    ) -> Answer:
        done = time.perf_counter()
        self._metrics.timed(channel, done - publish_started, done - started)
        self._metrics.tallied(channel, outcome)
        return self.counted(channel, 200, "OK")

    def unavailable(self, channel: str, exc: RouterUnavailable) -> Answer:
        self._metrics.redis_errors.labels("publish").inc()
        log.error("redis unavailable, answering 503 so %s retries: %s", channel, exc)
        return self.counted(channel, 503, "temporarily unavailable")

    def counted(self, channel: str, status: int, text: str) -> Answer:
        self._metrics.answered(channel, status)
        return status, text
