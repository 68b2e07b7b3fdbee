"""HTTP endpoints of CONTRACT.md §1.

Every webhook handler follows the same order: size limit, signature on the raw bytes, parse,
publish, answer. 200 is sent only once every event of the body is in its stream; a body we
cannot understand under a valid signature is dead-lettered and still answered 200, so the
platform stops retrying; a Redis failure is answered 503, so it retries. Error answers carry
no detail: the detail goes to the log and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

from adapters import telegram, whatsapp
from adapters.schema import ParseError
from gateway.state import MEMORY, OFFLOAD, OUTBOX, REDIS, ROUTER, STATE, State
from router.client import REDIS_ERRORS
from router.inbound import Flight, Report, RouterUnavailable, Tally
from router.offload import Malformed, parse_webhook

log = logging.getLogger("gateway.http")

SIGNATURE_HEADER = "X-Hub-Signature-256"
TELEGRAM_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name


def add_routes(app: web.Application) -> None:
    app.router.add_get("/webhooks/whatsapp", whatsapp_verify)
    app.router.add_post("/webhooks/whatsapp", whatsapp_post)
    app.router.add_post("/webhooks/telegram/{bot_id}", telegram_post)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if app[STATE].settings.server.admin_port is None:  # else only on the admin port (admin.py)
        app.router.add_get("/metrics", metrics)


def _plain(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text)


async def whatsapp_verify(request: web.Request) -> web.Response:
    """Meta's subscription handshake (PLATFORM §1.1): echo `hub.challenge` for our token."""
    wa = request.app[STATE].settings.whatsapp
    if wa is None:
        return _plain(404, "whatsapp is not configured")
    query = request.query
    token = query.get("hub.verify_token", "")
    if query.get("hub.mode") != "subscribe" or not hmac.compare_digest(
        token.encode(), wa.verify_token.encode()
    ):
        return _plain(403, "verification failed")
    return _plain(200, query.get("hub.challenge", ""))


async def whatsapp_post(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if _declared_too_large(request, state):
        return _plain(*_counted(state, "whatsapp", 413, "body too large"))
    signature = request.headers.get(SIGNATURE_HEADER)
    refused = whatsapp_refusal(state, signature)
    if refused is not None:  # before the body is read: aiohttp discards it (lingering)
        return _plain(*refused)
    body = await _read_body(request, state)
    if body is None:
        return _plain(*_counted(state, "whatsapp", 413, "body too large"))
    return _plain(*await settle(start_whatsapp(request.app, signature, body)))


async def telegram_post(request: web.Request) -> web.Response:
    state = request.app[STATE]
    bot_id = request.match_info["bot_id"]
    if _declared_too_large(request, state):
        return _plain(*_counted(state, "telegram", 413, "body too large"))
    secret = request.headers.get(TELEGRAM_SECRET_HEADER)
    refused = telegram_refusal(state, bot_id, secret)
    if refused is not None:
        return _plain(*refused)
    body = await _read_body(request, state)
    if body is None:
        return _plain(*_counted(state, "telegram", 413, "body too large"))
    return _plain(*await settle(start_telegram(request.app, bot_id, secret, body)))


def _declared_too_large(request: web.Request, state: State) -> bool:
    """A Content-Length over the limit is answered 413 first, signed or not: the size is
    known from the head, and it is the answer the platforms (and CONTRACT §1) expect."""
    length = request.content_length
    return length is not None and length > state.settings.server.max_body_bytes


async def _read_body(request: web.Request, state: State) -> bytes | None:
    """The raw body, or None if it is too large (answer 413): refused on Content-Length
    before reading, and while reading (chunked bodies) as soon as it passes the limit, never
    buffered whole."""
    limit = state.settings.server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        return None
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None


Answer = tuple[int, str]
"""Status and plain-text body of a webhook answer: the same for the aiohttp routes and the
fast path (gateway/fasthttp.py), which both call the functions below."""


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


def start_whatsapp(app: web.Application, signature: str | None, body: bytes) -> Started:
    """Everything after the body is read: signature, parse, publish, metrics, the answer."""
    state = app[STATE]
    refused = whatsapp_refusal(state, signature)
    if refused is not None:
        return refused
    if not whatsapp.verify_signature(body, signature, state.app_secret):
        state.metrics.signature_failures.labels("whatsapp").inc()
        return _counted(state, "whatsapp", 401, "bad signature")
    return _start(app, "whatsapp", body, int(time.time()))


def start_telegram(app: web.Application, bot_id: str, secret: str | None, body: bytes) -> Started:
    """The same for one bot's update; `secret` is its X-Telegram-Bot-Api-Secret-Token."""
    state = app[STATE]
    refused = telegram_refusal(state, bot_id, secret)
    if refused is not None:
        return refused
    return _start(app, "telegram", body, int(time.time()), bot_id)


async def settle(started: Started) -> Answer:
    """The answer of a started webhook, awaited (the aiohttp routes)."""
    if isinstance(started, tuple):
        return started
    if isinstance(started, Pending):
        with contextlib.suppress(*REDIS_ERRORS):  # answer() turns it into a 503
            await started.future
        return started.answer()
    return await started


def whatsapp_refusal(state: State, signature: str | None) -> Answer | None:
    """What can be refused from the head alone, before an unauthenticated body is read:
    404 when WhatsApp is not configured, 401 (counted) when the signature header is missing
    or not `sha256=...` (verify_signature would refuse it too), else None."""
    if state.settings.whatsapp is None:
        return _counted(state, "whatsapp", 404, "whatsapp is not configured")
    if not signature or not signature.startswith("sha256="):
        state.metrics.signature_failures.labels("whatsapp").inc()
        return _counted(state, "whatsapp", 401, "bad signature")
    return None


def telegram_refusal(state: State, bot_id: str, secret: str | None) -> Answer | None:
    """404 for a bot we do not serve, 401 for a wrong secret token (counted), else None."""
    bot = state.bots.get(bot_id)
    if bot is None:
        return _counted(state, "telegram", 404, "unknown bot")
    if not telegram.verify_secret(secret, bot.secret_token):
        state.metrics.signature_failures.labels("telegram").inc()
        return _counted(state, "telegram", 401, "bad secret token")
    return None


def _start(
    app: web.Application, channel: str, body: bytes, received_at: int, bot_id: str | None = None
) -> Started:
    state = app[STATE]
    started = time.perf_counter()
    if len(body) > state.settings.server.offload_bytes:
        # A multi-megabyte body (history sync) is decoded and published by a child process,
        # so live webhooks keep this event loop (router/offload.py).
        return _offloaded(app, channel, body, received_at, bot_id, started)
    try:
        parsed = parse_webhook(channel, body, received_at, bot_id)
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
    bot_id: str | None,
    started: float,
) -> Answer:
    state = app[STATE]
    try:
        outcome = await app[OFFLOAD].publish(channel, body, received_at, bot_id)
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
