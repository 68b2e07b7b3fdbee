"""The aiohttp application and the resources it owns.

One owner per resource: the Redis pool and the inbound router are created in a cleanup
context and closed in reverse order; handlers reach them through typed `AppKey`s. The
application itself never starts Redis: `server.serve` does that (embedded Redis) before
building the app, so tests can hand in any URL.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from redis.asyncio import Redis

from gateway.config import Settings, TelegramBot
from gateway.metrics import Metrics
from router.inbound import InboundRouter, Limits, Routes

log = logging.getLogger("gateway")


@dataclass
class State:
    """Per-process state the handlers share. `draining` flips on SIGTERM."""

    settings: Settings
    metrics: Metrics
    app_secret: bytes
    bots: dict[str, TelegramBot]
    draining: bool = False


STATE = web.AppKey("state", State)
REDIS = web.AppKey("redis", Redis)
ROUTER = web.AppKey("router", InboundRouter)


def routes_from(settings: Settings) -> Routes:
    assistants: dict[tuple[str, str], str] = {}
    wabas: dict[str, tuple[str, ...]] = {}
    if settings.whatsapp is not None:
        for number in settings.whatsapp.numbers:
            assistants[("whatsapp", number.phone_number_id)] = number.assistant
            if number.waba_id:
                wabas[number.waba_id] = (*wabas.get(number.waba_id, ()), number.phone_number_id)
    if settings.telegram is not None:
        for bot in settings.telegram.bots:
            assistants[("telegram", bot.bot_id)] = bot.assistant
    return Routes(assistants, wabas)


def limits_from(settings: Settings) -> Limits:
    r = settings.router
    return Limits(
        r.dedup_ttl_seconds,
        r.inbox_maxlen,
        r.history_maxlen,
        r.deadletter_maxlen,
        r.contact_map_ttl_seconds,
    )


def create_app(
    settings: Settings, redis_url: str, metrics: Metrics | None = None
) -> web.Application:
    from gateway import handlers

    app = web.Application(client_max_size=settings.server.max_body_bytes + 1)
    bots = {bot.bot_id: bot for bot in settings.telegram.bots} if settings.telegram else {}
    secret = settings.whatsapp.app_secret.encode() if settings.whatsapp else b""
    app[STATE] = State(settings, metrics or Metrics(), secret, bots)
    app.cleanup_ctx.append(_redis_ctx(redis_url))
    handlers.add_routes(app)
    return app


def _redis_ctx(url: str):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[STATE].settings
        redis = Redis.from_url(
            url,
            socket_timeout=settings.redis.timeout_seconds,
            socket_connect_timeout=settings.redis.timeout_seconds,
            max_connections=settings.redis.max_connections,
            health_check_interval=30,
        )
        app[REDIS] = redis
        app[ROUTER] = InboundRouter(redis, routes_from(settings), limits_from(settings))
        yield
        await redis.aclose()

    return ctx
