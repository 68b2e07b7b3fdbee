"""The aiohttp application and the resources it owns.

One owner per resource, each created in a cleanup context and closed in reverse order:
the Redis client (a pool on one node, or a cluster client) and the inbound router on it,
the HTTP client session for the provider APIs, and the reply workers (a named background
task, stopped and awaited on shutdown so in-flight sends finish). Handlers reach them
through typed `AppKey`s (gateway.state). The application never starts Redis: `gateway
serve` does that (embedded Redis) before building the app, so tests can hand in any URL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster

from gateway import handlers
from gateway.config import Settings
from gateway.metrics import Metrics
from gateway.redis_memory import MemoryWatch
from gateway.state import MEMORY, OFFLOAD, OUTBOX, REDIS, ROUTER, SCRIPTS, STATE, State
from router.accounts import Account, Directory
from router.client import RedisClient, scripts_of
from router.inbound import InboundRouter, Limits
from router.offload import Offload
from router.outbound import OutboundSettings, Outbox
from router.scriptpipe import ScriptHost, ScriptPipe, supports

log = logging.getLogger("gateway")


def directory_from(settings: Settings) -> Directory:
    accounts: dict[tuple[str, str], Account] = {}
    wabas: dict[str, tuple[str, ...]] = {}
    for n in settings.whatsapp.numbers if settings.whatsapp else []:
        accounts[("whatsapp", n.phone_number_id)] = Account(
            "whatsapp",
            n.phone_number_id,
            n.assistant,
            n.access_token,
            n.enabled,
            float(n.effective_mps),
            n.display_phone_number,
            n.mode,
        )
        if n.waba_id:
            wabas[n.waba_id] = (*wabas.get(n.waba_id, ()), n.phone_number_id)
    for bot in settings.telegram.bots if settings.telegram else []:
        accounts[("telegram", bot.bot_id)] = Account(
            "telegram", bot.bot_id, bot.assistant, bot.token, bot.enabled
        )
    return Directory(accounts, wabas)


def limits_from(settings: Settings) -> Limits:
    r = settings.router
    return Limits(
        dedup_ttl_seconds=r.dedup_ttl_seconds,
        inbox_maxlen=r.inbox_maxlen,
        history_maxlen=r.history_maxlen,
        deadletter_maxlen=r.deadletter_maxlen,
        contact_map_ttl_seconds=r.contact_map_ttl_seconds,
        conversation_ttl_seconds=r.conversation_ttl_seconds,
        publish_chunk_events=r.publish_chunk_events,
        human_takeover_seconds=settings.policy.human_takeover_seconds,
        limiter_guard_ms=settings.policy.limiter_guard_ms,
    )


def create_app(
    settings: Settings, redis_url: str, metrics: Metrics | None = None, *, restarted: bool = False
) -> web.Application:
    app = web.Application(client_max_size=settings.server.max_body_bytes + 1)
    bots = {bot.bot_id: bot for bot in settings.telegram.bots} if settings.telegram else {}
    secret = settings.whatsapp.app_secret.encode() if settings.whatsapp else b""
    directory = directory_from(settings)
    app[STATE] = State(settings, metrics or Metrics(), secret, bots, directory, restarted=restarted)
    app.cleanup_ctx.append(_redis_ctx(redis_url))
    app.cleanup_ctx.append(_outbox_ctx)
    handlers.add_routes(app)
    return app


def _redis_client(settings: Settings, url: str) -> RedisClient:
    """A pool on one node, or a cluster client seeded by `url` (it learns the other nodes
    and the slot map from that one)."""
    timeout = settings.redis.timeout_seconds
    if settings.redis.cluster:
        # No connection cap here: redis-py's cluster client fails a command at once when a
        # node's connections are all busy (it cannot make it wait as the pool below does),
        # and one assistant's traffic all goes to one node. Connections stay bounded by the
        # process's own concurrency (requests in flight, outbound.concurrency).
        return RedisCluster.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30
        )
    # A blocking pool: past max_connections a caller waits (up to the timeout) for a
    # free connection instead of failing, so bursts queue rather than error.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=settings.redis.max_connections,
        timeout=settings.redis.timeout_seconds,
        socket_timeout=settings.redis.timeout_seconds,
        socket_connect_timeout=settings.redis.timeout_seconds,
        health_check_interval=30,
    )
    return Redis(connection_pool=pool)


def _script_host(settings: Settings, url: str, redis: RedisClient) -> ScriptHost:
    """Script calls (one per webhook, a few per send) go through the lean pipelining
    client when it can speak to this Redis: one node, no TLS. A cluster's go through
    redis-py's cluster client, to the node of each call's slot."""
    if supports(url) and not settings.redis.cluster:
        return ScriptPipe(url, settings.redis.timeout_seconds)
    return scripts_of(redis)


async def offload_router(settings: Settings, url: str) -> InboundRouter:
    """The inbound router of the large-webhook child process (router/offload.py)."""
    redis = _redis_client(settings, url)
    host = _script_host(settings, url, redis)
    return InboundRouter(redis, directory_from(settings), limits_from(settings), host)


def _redis_ctx(url: str):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[STATE].settings
        redis = _redis_client(settings, url)
        app[REDIS] = redis
        app[SCRIPTS] = host = _script_host(settings, url, redis)
        app[ROUTER] = InboundRouter(redis, app[STATE].directory, limits_from(settings), host)
        app[OFFLOAD] = offload = Offload(functools.partial(offload_router, settings, url))
        app[MEMORY] = memory = MemoryWatch(
            redis, settings.redis.memory_warn_ratio, app[STATE].metrics.redis_memory
        )
        yield
        await memory.aclose()
        await asyncio.to_thread(offload.close)
        if isinstance(host, ScriptPipe):
            await host.aclose()
        await redis.aclose()

    return ctx


def outbound_from(settings: Settings) -> OutboundSettings:
    out, retry, policy, r = (
        settings.outbound,
        settings.outbound.retry,
        settings.policy,
        settings.router,
    )
    return OutboundSettings(
        concurrency=out.concurrency,
        claim_idle_ms=int(out.claim_idle_seconds * 1000),
        dead_consumer_ms=int(out.dead_consumer_seconds * 1000),
        max_deliveries=out.max_deliveries,
        request_timeout_s=out.request_timeout_seconds,
        max_attempts=retry.max_attempts,
        backoff_base_s=retry.base_seconds,
        backoff_max_s=retry.max_seconds,
        backoff_jitter=retry.jitter,
        pair_backoff_base_s=retry.pair_base_seconds,
        send_wait_max_s=policy.send_wait_max_seconds,
        country_block_s=policy.country_block_seconds,
        dedup_ttl_s=r.dedup_ttl_seconds,
        inbox_maxlen=r.inbox_maxlen,
        deadletter_maxlen=r.deadletter_maxlen,
        conversation_ttl_s=r.conversation_ttl_seconds,
        guard_ms=policy.limiter_guard_ms,
        trim_interval_s=out.trim_interval_seconds,
    )


def api_bases(settings: Settings) -> dict[str, str]:
    return {
        "whatsapp": settings.whatsapp.api_base.rstrip("/") if settings.whatsapp else "",
        "telegram": settings.telegram.api_base.rstrip("/") if settings.telegram else "",
    }


async def _outbox_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    settings = state.settings
    directory = state.directory
    timeout = aiohttp.ClientTimeout(total=settings.outbound.request_timeout_seconds)
    # One connection per in-flight send: a request that queued for a pooled connection
    # (aiohttp's default is 100) would leave later than its rate-limit slot said, and
    # bunch up with the next ones at the provider.
    connector = aiohttp.TCPConnector(limit=settings.outbound.concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(
        timeout=timeout, raise_for_status=False, connector=connector
    ) as session:
        outbox = Outbox(
            app[REDIS],
            session,
            directory,
            api_bases(settings),
            dataclasses.replace(outbound_from(settings), forget_halts=not state.restarted),
            state.metrics,
            app[SCRIPTS],
        )
        app[OUTBOX] = outbox
        task: asyncio.Task[None] | None = None
        if settings.outbound.enabled:
            task = asyncio.create_task(outbox.run(), name="outbox-workers")
        yield
        await outbox.stop(settings.server.shutdown_timeout_seconds)
        if task is not None:
            await task
