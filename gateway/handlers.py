"""HTTP endpoints of CONTRACT.md §1.

One webhook handler serves every registered channel (`adapters.CHANNELS`), driven by the
channel's `Webhook` (path, handshake, headers) and its `Receiver` (the checks, bound to its
config section): size limit, what the head refuses, authenticity on the raw bytes, parse,
publish, answer. 200 is sent only once every event of the body is in its stream; a body we
cannot understand under a valid signature is dead-lettered and still answered 200, so the
platform stops retrying; a Redis failure is answered 503, so it retries. Error answers carry
no detail: the detail goes to the log and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from aiohttp import web

from adapters import CHANNELS, Answer
from adapters.schema import ParseError
from gateway.state import MEMORY, OFFLOAD, OUTBOX, REDIS, ROUTER, STATE, State
from router.client import REDIS_ERRORS
from router.inbound import Flight, Report, RouterUnavailable, Tally
from router.offload import Malformed, parse_webhook

log = logging.getLogger("gateway.http")

# `Answer` (status, plain text) is the same for the aiohttp routes and the fast path
# (gateway/fasthttp.py), which both call the functions below.
Handler = Callable[[web.Request], Awaitable[web.Response]]


def add_routes(app: web.Application) -> None:
    """Every registered channel's webhook route (and its GET handshake), then the probes."""
    for channel in CHANNELS.values():
        hook = channel.webhook
        path = f"{hook.path}/{{key}}" if hook.keyed else hook.path
        if hook.handshake:
            app.router.add_get(path, _handshake_route(channel.name))
        app.router.add_post(path, _webhook_route(channel.name, hook.headers))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if app[STATE].settings.server.admin_port is None:  # else only on the admin port (admin.py)
        app.router.add_get("/metrics", metrics)


def _plain(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text)


def _handshake_route(channel: str) -> Handler:
    async def handshake(request: web.Request) -> web.Response:
        """The provider's subscription handshake (Meta's `hub.challenge`)."""
        return _plain(*request.app[STATE].receivers[channel].handshake(request.query))

    return handshake


def _webhook_route(channel: str, wanted: tuple[str, ...]) -> Handler:
    async def webhook(request: web.Request) -> web.Response:
        return await webhook_post(request, channel, wanted)

    return webhook


async def webhook_post(request: web.Request, channel: str, wanted: tuple[str, ...]) -> web.Response:
    """One webhook POST: 413 on a declared size over the limit, then what the head alone
    refuses (before the body is read: aiohttp then discards it, lingering), then the body."""
    state = request.app[STATE]
    length = request.content_length
    # The one Content-Length check of this path: a body over the limit is answered 413
    # first, signed or not, as CONTRACT §1 says; one that grows past it while read
    # (chunked) is refused by aiohttp's client_max_size (gateway.app).
    if length is not None and length > state.settings.server.max_body_bytes:
        return _plain(*_counted(state, channel, 413, "body too large"))
    key = request.match_info.get("key")
    headers = {name: value for name in wanted if (value := request.headers.get(name)) is not None}
    refused = refusal(state, channel, key, headers)
    if refused is not None:
        return _plain(*refused)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:  # never buffered whole
        return _plain(*_counted(state, channel, 413, "body too large"))
    return _plain(*await settle(start(request.app, channel, key, headers, body)))


class Pending:
    """A webhook whose one script call is in flight (the router's `Flight`), with no task or
    coroutine of its own: `future` completes when Redis answers, and `answer()` then gives
    the reply, metrics counted. The fast path waits for it with a callback."""

    __slots__ = ("_channel", "_flight", "_publish_started", "_started", "_state", "future")

    def __init__(
        self, flight: Flight, state: State, channel: str, started: float, publish_started: float
    ) -> None:
        self.future = flight.future
        self._flight = flight
        self._state = state
        self._channel = channel
        self._started = started
        self._publish_started = publish_started

    def answer(self) -> Answer:
        try:
            tally = self._flight.tally()
        except RouterUnavailable as exc:
            return _unavailable(self._state, self._channel, exc)
        return _published(self._state, self._channel, tally, self._started, self._publish_started)


Started = Answer | Pending | Coroutine[Any, Any, Answer]
"""A webhook once its handling has begun: answered already, one script call in flight, or
the coroutine that finishes it (offloaded, malformed, or needing more than one call)."""


def start(
    app: web.Application,
    channel: str,
    key: str | None,
    headers: Mapping[str, str],
    body: bytes,
) -> Started:
    """Everything after the body is read: authenticity, parse, publish, metrics, the answer.
    `key`: the account segment of the webhook's path; `headers`: those the channel reads."""
    state = app[STATE]
    if not state.receivers[channel].verify(key, headers, body):
        state.metrics.signature_failures.labels(channel).inc()
        return _counted(state, channel, 401, "bad signature")
    return _start(app, channel, body, int(time.time()), key)


async def settle(started: Started) -> Answer:
    """The answer of a started webhook, awaited (the aiohttp routes)."""
    if isinstance(started, tuple):
        return started
    if isinstance(started, Pending):
        with contextlib.suppress(*REDIS_ERRORS):  # answer() turns it into a 503
            await started.future
        return started.answer()
    return await started


def refusal(
    state: State, channel: str, key: str | None, headers: Mapping[str, str]
) -> Answer | None:
    """What the channel refuses from the head alone (`Receiver.refuse`), counted; a 401 is
    also a signature failure. None: read the body."""
    answer = state.receivers[channel].refuse(key, headers)
    return refused(state, channel, answer) if answer is not None else None


def refused(state: State, channel: str, answer: Answer) -> Answer:
    """A refusal from the head, counted (a 401 also as a signature failure)."""
    status, text = answer
    if status == 401:
        state.metrics.signature_failures.labels(channel).inc()
    return _counted(state, channel, status, text)


def _start(
    app: web.Application, channel: str, body: bytes, received_at: int, key: str | None
) -> Started:
    state = app[STATE]
    started = time.perf_counter()
    if len(body) > state.settings.server.offload_bytes:
        # A multi-megabyte body (history sync) is decoded and published by a child process,
        # so live webhooks keep this event loop (router/offload.py).
        return _offloaded(app, channel, body, received_at, key, started)
    try:
        parsed = parse_webhook(channel, body, received_at, key)
    except ParseError as exc:
        return _malformed(app, channel, body, received_at, str(exc))
    publish_started = time.perf_counter()
    publishing = app[ROUTER].start(channel, parsed, body, received_at)
    if isinstance(publishing, Flight):
        return Pending(publishing, state, channel, started, publish_started)
    return _publishing(state, channel, publishing, started, publish_started)


async def _publishing(
    state: State,
    channel: str,
    publishing: Awaitable[Report],
    started: float,
    publish_started: float,
) -> Answer:
    try:
        report = await publishing
    except RouterUnavailable as exc:
        return _unavailable(state, channel, exc)
    return _published(state, channel, report.tally(), started, publish_started)


async def _offloaded(
    app: web.Application,
    channel: str,
    body: bytes,
    received_at: int,
    key: str | None,
    started: float,
) -> Answer:
    state = app[STATE]
    try:
        outcome = await app[OFFLOAD].publish(channel, body, received_at, key)
    except RouterUnavailable as exc:
        return _unavailable(state, channel, exc)
    if isinstance(outcome, Malformed):
        return await _malformed(app, channel, body, received_at, outcome.detail)
    return _published(state, channel, outcome, started, started)


async def _malformed(
    app: web.Application, channel: str, body: bytes, received_at: int, detail: str
) -> Answer:
    """A body we cannot understand under a valid signature: dead-lettered, answered 200."""
    state = app[STATE]
    try:
        await app[ROUTER].deadletter("malformed_body", channel, received_at, detail[:500], body)
    except RouterUnavailable as exc:
        return _unavailable(state, channel, exc)
    state.metrics.deadletters.labels(channel, "malformed_body").inc()
    log.warning("dead-lettered a %s body: %s", channel, detail[:200])
    return _counted(state, channel, 200, "OK")


def _published(
    state: State, channel: str, outcome: Tally, started: float, publish_started: float
) -> Answer:
    done = time.perf_counter()
    state.metrics.timed(channel, done - publish_started, done - started)
    state.metrics.tallied(channel, outcome)
    return _counted(state, channel, 200, "OK")


def _unavailable(state: State, channel: str, exc: RouterUnavailable) -> Answer:
    state.metrics.redis_errors.labels("publish").inc()
    log.error("redis unavailable, answering 503 so %s retries: %s", channel, exc)
    return _counted(state, channel, 503, "temporarily unavailable")


def _counted(state: State, channel: str, status: int, text: str) -> Answer:
    state.metrics.answered(channel, status)
    return status, text


async def healthz(request: web.Request) -> web.Response:
    return _plain(200, "ok")


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.draining:
        return web.json_response({"ready": False, "draining": True, "redis": None}, status=503)
    redis_ok = await _ping(request, state.settings.redis.timeout_seconds)
    body: dict[str, object] = {
        "ready": redis_ok,
        "draining": False,
        "redis": "ok" if redis_ok else "unavailable",
    }
    if redis_ok:
        # Halted or disconnected numbers do not make the instance unready (webhooks are
        # still taken), but operators see them here and in gateway_account_halted.
        with contextlib.suppress(*REDIS_ERRORS):  # TimeoutError is an OSError
            async with asyncio.timeout(state.settings.redis.timeout_seconds):
                body["accounts"] = await request.app[OUTBOX].account_problems()
        # Likewise Redis memory near maxmemory: reported, never a reason to be unready.
        with contextlib.suppress(*REDIS_ERRORS):
            async with asyncio.timeout(state.settings.redis.timeout_seconds):
                body["redis_memory"] = await request.app[MEMORY].status()
    return web.json_response(body, status=200 if redis_ok else 503)


async def _ping(request: web.Request, timeout_s: float) -> bool:
    ping: Callable[[], Awaitable[object]] = request.app[REDIS].ping
    try:
        async with asyncio.timeout(timeout_s):
            await ping()
    except REDIS_ERRORS:  # TimeoutError is an OSError
        request.app[STATE].metrics.redis_errors.labels("ping").inc()
        return False
    return True


async def metrics(request: web.Request) -> web.Response:
    request.app[MEMORY].refresh_soon()  # the gauges show the previous reading meanwhile
    data = request.app[STATE].metrics.exposition()
    return web.Response(body=data, headers={"Content-Type": "text/plain; version=0.0.4"})
