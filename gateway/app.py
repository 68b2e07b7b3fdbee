"""The aiohttp application and the resources it owns.

One owner per resource, each created in a cleanup context and closed in reverse order:
the journal (gateway/journal.py: webhooks of providers that never redeliver, kept on disk
while Redis is down; closed last, once nothing appends to it), the Redis client (a pool on
one node, or a cluster client) and the inbound router on it, the journal's replay (a named
background task, replaying at start and whenever Redis answers again, stopped before Redis
closes), the HTTP client session for the provider APIs, and the reply workers (a named
background task, stopped and awaited on shutdown so in-flight sends finish), and with a
`notifications:` section the escalation notices (router/notifications.py: the writer of echo
takeovers, a named task) and the notifier (router/notifier.py: its own HTTP session and a
named task where reply workers run), stopped after the reply workers, and the media
endpoint's HTTP client for provider downloads (gateway/media.py). Handlers reach
them through typed `AppKey`s (gateway.state). The application never starts Redis: `gateway
serve` does that (embedded Redis) before building the app, so tests can hand in any URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError, ResponseError

from adapters import CHANNELS
from adapters.notice import targets
from gateway import handlers, media
from gateway.config import Settings, channel_sections
from gateway.journal import Journal
from gateway.metrics import Metrics
from gateway.receive import Inbound
from gateway.redis_memory import MemoryWatch
from gateway.state import INBOUND, MEMORY, OUTBOX, REDIS, REDIS_URL, SCRIPTS, STATE, State
from gateway.subscriptions import SubscriptionCheck
from router.accounts import Account, Directory
from router.client import RedisClient, scripts_of
from router.inbound import InboundRouter
from router.memory import release_every, release_function
from router.notifications import Notices
from router.notifier import Notifier
from router.offload import Offload
from router.outbound import Outbox
from router.scriptpipe import ScriptHost, ScriptPipe, supports

log = logging.getLogger("gateway")

JOURNAL = web.AppKey[Journal | None]("journal")
"""The process's journal; None when no configured channel needs one and none is on disk."""
NOTICES = web.AppKey[Notices | None]("notices")
"""Escalation notices; None without a `notifications:` section."""
NOTIFIER = web.AppKey[Notifier | None]("notifier")
_WORKER_NAME = re.compile(r"worker-(\d+)")


def directory_from(settings: Settings) -> Directory:
    """Every configured channel's accounts (and account groups: WhatsApp's WABAs)."""
    accounts: dict[tuple[str, str], Account] = {}
    groups: dict[str, tuple[str, ...]] = {}
    for section in channel_sections(settings).values():
        if section is None:
            continue
        accounts.update({(a.channel, a.account_id): a for a in section.accounts()})
        groups.update(section.groups())
    return Directory(accounts, groups)


def create_app(
    settings: Settings, redis_url: str, metrics: Metrics | None = None, *, restarted: bool = False
) -> web.Application:
    app = web.Application(client_max_size=settings.server.max_body_bytes + 1)
    # Every registered channel's checks, each bound to its section (None: not configured,
    # and its webhooks are refused 404), so the handlers hold no per-channel state.
    receivers = {
        name: CHANNELS[name].receiver(section)
        for name, section in channel_sections(settings).items()
    }
    directory = directory_from(settings)
    app[STATE] = State(settings, metrics or Metrics(), receivers, directory, restarted=restarted)
    app[REDIS_URL] = redis_url
    app.cleanup_ctx.append(_journal_ctx)
    app.cleanup_ctx.append(_redis_ctx(redis_url))
    app.cleanup_ctx.append(_replay_ctx)
    app.cleanup_ctx.append(_notices_ctx)
    app.cleanup_ctx.append(_outbox_ctx)
    app.cleanup_ctx.append(_subscriptions_ctx)
    app.cleanup_ctx.append(_memory_ctx)
    app.cleanup_ctx.append(media.session_ctx)
    handlers.add_routes(app)
    media.add_routes(app)
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
    redis-py's cluster client, to the node of each call's slot. With `redis.wait_aof` each
    batch of calls waits for its fsync (WAITAOF, half the Redis timeout at most)."""
    if supports(url) and not settings.redis.cluster:
        return ScriptPipe(url, settings.redis.timeout_seconds, wait_aof_ms(settings))
    return scripts_of(redis)


def wait_aof_ms(settings: Settings) -> int | None:
    """How long a batch of script calls waits for WAITAOF; None without `redis.wait_aof`."""
    return _wait_aof_timeout_ms(settings) if settings.redis.wait_aof else None


def _wait_aof_timeout_ms(settings: Settings) -> int:
    """Half of `redis.timeout_seconds`, so WAITAOF answers before the connection's timeout."""
    return max(1, int(settings.redis.timeout_seconds * 500))


async def check_wait_aof(settings: Settings, url: str) -> str | None:
    """With `redis.wait_aof`, whether this Redis can confirm fsyncs without stalling: None if
    so (or if it does not answer now: then every webhook is answered 503 until it does),
    else why not: it refuses WAITAOF (before 7.2, or no append-only file), or it says
    `appendfsync` is not `always` (under everysec a WAITAOF waits for Redis's next
    background fsync: 80 calls/s on one connection in our measurement, benchmarks/README.md,
    "Faults"). When CONFIG GET is not allowed, a warning says what it needs."""
    if not settings.redis.wait_aof:
        return None
    if not supports(url):
        return "needs a Redis over redis:// or unix://"
    pipe = ScriptPipe(url, settings.redis.timeout_seconds)
    try:
        await pipe.execute("WAITAOF", 1, 0, _wait_aof_timeout_ms(settings))
        reply = await pipe.execute("CONFIG", "GET", "appendfsync")
    except ResponseError as exc:
        if "WAITAOF" in str(exc).upper() or "appendonly" in str(exc):
            return (
                f"this Redis refuses WAITAOF ({exc}); it needs Redis or Valkey >= 7.2 with "
                "`appendonly yes` and `appendfsync always`"
            )
        log.warning(
            "redis.wait_aof: cannot read this Redis's appendfsync (%s); it must be `always`, "
            "or every webhook waits for the next background fsync (benchmarks/README.md)",
            exc,
        )
        return None
    except (RedisError, OSError) as exc:
        log.warning("redis.wait_aof: could not check WAITAOF now (%s)", exc)
        return None
    finally:
        await pipe.aclose()
    values = [v.decode() if isinstance(v, bytes) else str(v) for v in reply or []]
    if len(values) == 2 and values[1] != "always":
        return (
            f"this Redis has `appendfsync {values[1]}`: each WAITAOF would wait for its next "
            "background fsync (webhooks slow to a crawl, then 503); set `appendfsync always` "
            "on it (WAITAOF then answers at once)"
        )
    return None


async def offload_router(settings: Settings, url: str) -> InboundRouter:
    """The inbound router of the large-webhook child process (router/offload.py)."""
    redis = _redis_client(settings, url)
    host = _script_host(settings, url, redis)
    excerpts = settings.notifications is not None
    return InboundRouter(
        redis, directory_from(settings), settings.router, settings.policy, host, excerpts=excerpts
    )


def _redis_ctx(url: str):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        state = app[STATE]
        settings = state.settings
        redis = _redis_client(settings, url)
        app[REDIS] = redis
        app[SCRIPTS] = host = _script_host(settings, url, redis)
        section = settings.notifications
        router = InboundRouter(
            redis,
            state.directory,
            settings.router,
            settings.policy,
            host,
            excerpts=section is not None,
        )
        release = settings.server.memory_release_seconds > 0
        offload = Offload(functools.partial(offload_router, settings, url), release=release)
        app[NOTICES] = notices = None
        if section is not None:
            notices = Notices(
                redis, state.directory, section, settings.policy, state.metrics.outbound
            )
            router.takeovers = offload.takeovers = notices.takeovers
            app[NOTICES] = notices
        app[INBOUND] = Inbound(
            state.metrics,
            state.receivers,
            router,
            offload,
            settings.server.offload_bytes,
            app[JOURNAL],
        )
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


async def _journal_ctx(app: web.Application) -> AsyncIterator[None]:
    app[JOURNAL] = journal = journal_of(app[STATE].settings)
    yield
    if journal is not None:
        await journal.aclose()


def journal_of(settings: Settings) -> Journal | None:
    """The journal, when a configured channel's provider never redelivers (Twilio), or when
    one is on disk from an earlier run (it is replayed, whatever the config says now)."""
    directory = Path(settings.server.journal_dir)
    sections = channel_sections(settings).items()
    needed = any(s is not None and not CHANNELS[name].redelivers for name, s in sections)
    if not needed and not directory.is_dir():
        return None
    return Journal(directory, worker_index(), settings.server.journal_max_bytes)


def worker_index() -> int:
    """This worker's index (gateway.supervisor names each worker process `worker-<index>`),
    1 for a single process: the journal slot this process prefers."""
    found = _WORKER_NAME.fullmatch(multiprocessing.current_process().name)
    return int(found.group(1)) if found else 1


async def _replay_ctx(app: web.Application) -> AsyncIterator[None]:
    """The journal's replay: at start, then whenever Redis answers again."""
    journal = app[JOURNAL]
    task: asyncio.Task[None] | None = None
    if journal is not None:
        retry_max_s = app[STATE].settings.server.journal_retry_max_seconds
        replaying = journal.run(app[INBOUND].replay, retry_max_s)
        task = asyncio.create_task(replaying, name="journal-replay")
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _memory_ctx(app: web.Application) -> AsyncIterator[None]:
    """Freed memory back to the system every `server.memory_release_seconds` (router/memory.py)."""
    period_s = app[STATE].settings.server.memory_release_seconds
    release = release_function() if period_s else None
    task = None
    if release is not None:
        task = asyncio.create_task(release_every(release, period_s), name="memory-release")
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _subscriptions_ctx(app: web.Application) -> AsyncIterator[None]:
    """The scheduled subscription check (`server.subscription_check_seconds`), in worker 1
    only: the providers are asked once per period, not once per worker."""
    state = app[STATE]
    task: asyncio.Task[None] | None = None
    if state.settings.server.subscription_check_seconds and worker_index() == 1:
        check = SubscriptionCheck(
            lambda: state.settings, state.directory.accounts.values, state.metrics.subscribed
        )
        task = asyncio.create_task(check.run(), name="subscription-check")
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _notices_ctx(app: web.Application) -> AsyncIterator[None]:
    """Escalation notices: the writer of echo takeovers, and the notifier (where reply
    workers run: `outbound.enabled`). Stopped after the reply workers, whose last handoffs
    still write notices, and before Redis closes."""
    notices = app[NOTICES]
    section = app[STATE].settings.notifications
    app[NOTIFIER] = None
    if notices is None or section is None:
        yield
        return
    settings = app[STATE].settings
    writer = asyncio.create_task(notices.run(), name="notices-writer")
    async with aiohttp.ClientSession(raise_for_status=False) as session:
        notifier = Notifier(
            app[REDIS],
            session,
            notices,
            targets(section),
            section,
            app[STATE].metrics.outbound,
            deadletter_maxlen=settings.router.deadletter_maxlen,
        )
        app[NOTIFIER] = notifier
        task = None
        if settings.outbound.enabled:
            task = asyncio.create_task(notifier.run(), name="notifier")
        yield
        timeout_s = settings.server.shutdown_timeout_seconds
        await notices.flush(timeout_s)
        await notifier.stop(timeout_s)
        if task is not None:
            await task
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer


def api_bases(settings: Settings) -> dict[str, str]:
    """Channel name → its provider's base URL ("" for a channel not configured)."""
    return {
        name: section.api_base.rstrip("/") if section is not None else ""
        for name, section in channel_sections(settings).items()
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
            (settings.outbound, settings.policy, settings.router),
            state.metrics,
            app[SCRIPTS],
            forget_halts=not state.restarted,
            notices=app[NOTICES],
        )
        app[OUTBOX] = outbox
        task: asyncio.Task[None] | None = None
        if settings.outbound.enabled:
            task = asyncio.create_task(outbox.run(), name="outbox-workers")
        yield
        await outbox.stop(settings.server.shutdown_timeout_seconds)
        if task is not None:
            await task
