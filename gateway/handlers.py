"""HTTP endpoints of CONTRACT.md §1, as aiohttp routes.

One webhook route serves every registered channel (`adapters.CHANNELS`), driven by the
channel's `Webhook` (path, handshake, headers): 413 on a declared size over the limit, what
the head refuses, then the body, handed to the process's `Inbound` (gateway/receive.py),
exactly as the fast path (gateway/fasthttp.py) hands it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from aiohttp import HttpVersion11, web

from adapters import CHANNELS
from adapters.channel import QUERY
from gateway.receive import Webhook, settle
from gateway.state import INBOUND, MEMORY, OUTBOX, REDIS, SCRIPTS, STATE
from router.client import REDIS_ERRORS
from router.scriptpipe import ScriptPipe

Handler = Callable[[web.Request], Awaitable[web.Response]]
INCOMPLETE = (400, "incomplete body")


def add_routes(app: web.Application) -> None:
    """Every registered channel's webhook route (and its GET handshake), then the probes."""
    add = app.router
    for channel in CHANNELS.values():
        hook = channel.webhook
        path = f"{hook.path}/{{key}}" if hook.keyed else hook.path
        if hook.handshake:
            add.add_get(path, _handshake_route(channel.name), expect_handler=expect_continue)
        webhook = _webhook_route(channel.name, hook.headers)
        add.add_post(path, webhook, expect_handler=expect_continue)
    add.add_get("/healthz", healthz, expect_handler=expect_continue)
    add.add_get("/readyz", readyz, expect_handler=expect_continue)
    if app[STATE].settings.server.admin_port is None:  # else only on the admin port (admin.py)
        add.add_get("/metrics", metrics, expect_handler=expect_continue)


async def expect_continue(request: web.Request) -> None:
    """The `Expect` header, as aiohttp's default answers it (`100 Continue` before the
    body on HTTP/1.1, 417 for any other expectation), except that a client gone before its
    `100 Continue` is written is not an error: aiohttp logged "Error handling request" with
    a traceback for each (found by benchmarks/fuzz.py). Reading its body then finds it gone.
    Every route of the gateway's servers has it (`expect_handler=`)."""
    if request.version != HttpVersion11:
        return
    expect = request.headers.get("Expect", "")
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
    with contextlib.suppress(ConnectionResetError):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # as aiohttp's: the answer's size leaves it out


def _plain(status: int, text: str) -> web.Response:
    """An answer's text as its body: `text/xml` for an XML document (Twilio's TwiML),
    `text/plain` for the rest (`Webhook.ok`)."""
    if text.startswith("<?xml"):
        return web.Response(status=status, text=text, content_type="text/xml")
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
    inbound = request.app[INBOUND]
    length = request.content_length
    # The one Content-Length check of this path: a body over the limit is answered 413
    # first, signed or not, as CONTRACT §1 says; one that grows past it while read
    # (chunked) is refused by aiohttp's client_max_size (gateway.app).
    if length is not None and length > request.app[STATE].settings.server.max_body_bytes:
        return _plain(*inbound.too_large(channel))
    key = request.match_info.get("key")
    headers = {name: value for name in wanted if (value := request.headers.get(name)) is not None}
    if QUERY in wanted and (query := request.rel_url.raw_query_string):
        headers[QUERY] = query  # the pseudo-header: no request header has this name
    refused = inbound.refused(channel, key, headers)
    if refused is not None:
        return _plain(*refused)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:  # never buffered whole
        return _plain(*inbound.too_large(channel))
    except ConnectionResetError:
        # The client left before its body was whole: nothing to publish and nobody to
        # answer (aiohttp drops this answer). Raised on, aiohttp would log a traceback at
        # ERROR for each such client.
        return _plain(*INCOMPLETE)
    return _plain(*await settle(inbound.receive(Webhook(channel, key, headers, body))))


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
    """PING answered within `timeout_s`: on the webhooks' own connection when they go through
    the lean script client, whose timeout does not take this process's stalls for Redis's
    (router/scriptpipe.py: a gateway kept off the CPU for a few seconds was reported unready
    with Redis fine); else (a cluster, TLS) through redis-py."""
    host = request.app[SCRIPTS]
    ping: Callable[[], Awaitable[object]] = request.app[REDIS].ping
    try:
        if isinstance(host, ScriptPipe):
            await host.execute("PING")  # its watchdog bounds the wait
        else:
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
