"""Slow, oversized and odd clients on raw sockets (gateway/fasthttp.py): deadlines for the
head, the body and idle keep-alive, refusal from the head before the body is read, the
connection and buffer limits, header limits, Upgrade/CONNECT, and one log line for a
malformed request. Each on the fast path and on the connections aiohttp serves."""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp import web
from redis.asyncio import Redis

from gateway import fasthttp
from gateway import server as gateway_server
from gateway.app import create_app
from gateway.config import Settings
from gateway.fasthttp import GatewayRunner
from tests.conftest import BOT_1, BOT_SECRETS, GatewayTestServer
from tests.test_fasthttp import (
    _head,
    _port,
    _read_answer,
    _server,
    chunked,
    exchange,
    tg_post,
    wa_post,
)
from tests.test_fasthttp import get as get_request

pytestmark = pytest.mark.uvloop_too

SHORT = 0.4
"""The test-shortened head and body deadlines."""


@pytest.fixture(autouse=True)
def _fast_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fasthttp, "SWEEP_SECONDS", 0.05)


@pytest.fixture
async def servers(
    settings: Settings, redis: Redis, redis_url: str
) -> AsyncIterator[dict[bool, GatewayTestServer]]:
    """The fast path on (True) and off (False), both with SHORT head and body deadlines."""
    out = {}
    for fast in (True, False):
        out[fast] = await _server(
            settings, redis_url, fast_path=fast, head_timeout_seconds=SHORT,
            body_timeout_seconds=SHORT,
        )  # fmt: skip
    yield out
    for server in out.values():
        await server.close()


async def _closed_after(reader: asyncio.StreamReader, limit: float = 5.0) -> float:
    """Seconds until the server closes (or resets) the connection; fails after `limit`."""
    started = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(65536), limit) != b"":
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


async def _trickle(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    """Send `data` a byte at a time, `every` seconds apart, until the server closes."""
    for byte in data:
        if writer.is_closing():
            return
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every)


async def _slow(port: int, first: bytes, trickled: bytes) -> float:
    """Send `first` at once, then trickle the rest a byte per 0.1 s (well inside any idle
    limit per byte): seconds until the server cuts the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(first)
    trickling = asyncio.create_task(_trickle(writer, trickled, 0.1))
    try:
        return await _closed_after(reader)
    finally:
        trickling.cancel()
        writer.close()


async def test_a_head_sent_a_byte_at_a_time_is_cut_at_the_head_deadline(
    servers: dict[bool, GatewayTestServer],
) -> None:
    """On a new connection (fast path, and aiohttp alone), and on a connection aiohttp
    serves after a request it answered (the next head begins, then trickles)."""
    request = wa_post()
    for fast in (True, False):
        elapsed = await _slow(_port(servers[fast]), b"", request)
        assert SHORT * 0.8 < elapsed < SHORT + 1.0, fast
    elapsed = await _slow(_port(servers[True]), get_request("/healthz") + b"P", request[1:])
    assert SHORT * 0.8 < elapsed < SHORT + 1.0


async def test_a_body_sent_a_byte_at_a_time_is_cut_at_the_body_deadline(
    servers: dict[bool, GatewayTestServer],
) -> None:
    """A signed webhook's body (fast path and aiohttp), and a chunked one (aiohttp's)."""
    for fast, request in ((True, wa_post()), (False, wa_post()), (True, chunked(wa_post()))):
        head_end = request.index(b"\r\n\r\n") + 4
        first, rest = request[: head_end + 10], request[head_end + 10 :]
        elapsed = await _slow(_port(servers[fast]), first, rest)
        assert SHORT * 0.8 < elapsed < SHORT + 1.0, (fast, request[:40])


async def test_a_webhook_whose_head_refuses_it_is_answered_before_its_body_is_sent(
    servers: dict[bool, GatewayTestServer],
) -> None:
    """Only the head is sent: no signature header, a wrong Telegram secret, an unknown
    bot. The answer comes at once, on the fast path and aiohttp's."""
    cases = [
        (wa_post(signed=False), 401, b"bad signature"),
        (tg_post(secret="wrong"), 401, b"bad secret token"),
        (tg_post(bot="999"), 404, b"unknown bot"),
    ]
    for fast in (True, False):
        for request, status, text in cases:
            reader, writer = await asyncio.open_connection("127.0.0.1", _port(servers[fast]))
            writer.write(request[: request.index(b"\r\n\r\n") + 4])
            answer = await asyncio.wait_for(_read_answer(reader), 2)
            assert (answer.status, answer.body) == (status, text), (fast, request[:40])
            writer.close()


async def test_a_refused_body_is_discarded_and_the_connection_serves_the_next_request(
    servers: dict[bool, GatewayTestServer],
) -> None:
    """The body of a request refused from its head is read past, not kept: the next
    request on the connection is served (as aiohttp does after its lingering read)."""
    unsigned = wa_post(signed=False)
    cut = unsigned.index(b"\r\n\r\n") + 4
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(servers[True]))
    writer.write(unsigned[:cut])
    assert (await asyncio.wait_for(_read_answer(reader), 2)).status == 401
    writer.write(unsigned[cut:] + wa_post())
    assert (await asyncio.wait_for(_read_answer(reader), 5)).status == 200
    writer.close()


async def test_connections_over_the_limit_are_closed_at_once(
    settings: Settings, redis: Redis, redis_url: str
) -> None:
    server = await _server(settings, redis_url, max_connections=3)
    try:
        opened = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", _port(server))
            writer.write(get_request("/healthz"))  # one handed to aiohttp, counted too
            assert (await asyncio.wait_for(_read_answer(reader), 5)).status == 200
            opened.append((reader, writer))
        reader, writer = await asyncio.open_connection("127.0.0.1", _port(server))
        assert await _closed_after(reader) < 1.0
        writer.close()
        # The ones within the limit still work; one gone, a new one is taken.
        reader, writer = opened[0]
        writer.write(wa_post())
        assert (await asyncio.wait_for(_read_answer(reader), 5)).status == 200
        opened.pop()[1].close()
        await asyncio.sleep(0.1)
        answers, _ = await exchange(_port(server), wa_post(), 1)
        assert answers[0].status == 200
        for _, writer in opened:
            writer.close()
    finally:
        await server.close()


async def test_unfinished_bodies_over_the_buffer_limit_get_503_while_whole_webhooks_pass(
    settings: Settings, redis: Redis, redis_url: str
) -> None:
    """Two clients each send 600 KiB of a 2 MiB body (max_buffered_bytes 1 MiB): the one
    that passes the limit is answered 503 with Retry-After; a webhook that arrives whole
    is still served."""
    server = await _server(settings, redis_url, max_buffered_bytes=1024 * 1024)
    head = _head("POST", "/webhooks/whatsapp", {
        "X-Hub-Signature-256": "sha256=00", "Content-Length": str(2 * 1024 * 1024)})  # fmt: skip
    try:
        first = await asyncio.open_connection("127.0.0.1", _port(server))
        first[1].write(head + b"x" * 600 * 1024)
        await first[1].drain()
        await asyncio.sleep(0.2)
        second = await asyncio.open_connection("127.0.0.1", _port(server))
        second[1].write(head + b"x" * 600 * 1024)
        await second[1].drain()
        answer = await asyncio.wait_for(_read_answer(second[0]), 5)
        assert (answer.status, answer.headers.get("retry-after")) == (503, "1")
        answers, _ = await exchange(_port(server), wa_post(), 1)
        assert answers[0].status == 200
        for _, writer in (first, second):
            writer.close()
    finally:
        await server.close()


async def test_incomplete_heads_aiohttp_holds_count_against_the_buffer_limit(
    settings: Settings, redis: Redis, redis_url: str
) -> None:
    """A head over 8190 bytes goes to aiohttp, which keeps its lines until it is whole:
    two clients each send 600 KiB of one (75 headers of 8000 bytes, within aiohttp's
    limits) and stop. The one that passes max_buffered_bytes (1 MiB) is cut; a webhook
    still passes, and the first client's head, once finished, is answered."""
    server = await _server(settings, redis_url, max_buffered_bytes=1024 * 1024)
    lines = b"".join(b"X-%d: %s\r\n" % (i, b"a" * 8000) for i in range(75))
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + lines
    try:
        first = await asyncio.open_connection("127.0.0.1", _port(server))
        first[1].write(head)
        await first[1].drain()
        await asyncio.sleep(0.2)
        second = await asyncio.open_connection("127.0.0.1", _port(server))
        second[1].write(head)
        await second[1].drain()
        assert await _closed_after(second[0]) < 2.0
        answers, _ = await exchange(_port(server), wa_post(), 1)
        assert answers[0].status == 200
        first[1].write(b"\r\n")
        assert (await asyncio.wait_for(_read_answer(first[0]), 5)).status == 200
        for _, writer in (first, second):
            writer.close()
    finally:
        await server.close()


async def test_upgrade_and_connect_are_answered_by_aiohttp_without_an_error_logged(
    servers: dict[bool, GatewayTestServer], caplog: pytest.LogCaptureFixture
) -> None:
    upgrade = _head("GET", "/webhooks/whatsapp", {
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})  # fmt: skip
    post_upgrade = wa_post(extra={"Connection": "Upgrade", "Upgrade": "h2c"})
    connect = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    with caplog.at_level(logging.DEBUG):
        for request in (upgrade, post_upgrade, connect):
            seen = {}
            for fast in (True, False):
                answers, _ = await exchange(_port(servers[fast]), request, 1)
                seen[fast] = answers[0].status
            assert seen[True] == seen[False], (request[:30], seen)
            assert seen[True] != 200 or request is post_upgrade, seen
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_heads_over_aiohttps_limits_are_refused_on_both_paths(
    servers: dict[bool, GatewayTestServer],
) -> None:
    """10,000 headers, one 100 KiB header, 200 short ones, one of 9 KiB, a 9 KiB target:
    each whole in one write, with its body. aiohttp refuses them all; so does the fast
    path (it hands them to aiohttp)."""
    many = {f"X-{i}": "v" for i in range(10_000)}
    cases = [many, {"X-Big": "a" * 100 * 1024}, dict(list(many.items())[:200]),
             {"X-Big": "a" * 9 * 1024}]  # fmt: skip
    requests = [wa_post(extra=extra) for extra in cases]
    requests.append(wa_post().replace(b"/webhooks/whatsapp", b"/webhooks/whatsapp?" + b"a" * 9216))
    for request in requests:
        seen = {}
        for fast in (True, False):
            answers, _ = await exchange(_port(servers[fast]), request, 1)
            seen[fast] = answers[0].status
        assert seen[True] == seen[False], seen
        assert seen[True] in (400, 413, 431), seen
    # At the limits (wa_post has 4 headers of its own): both paths agree on each side.
    for extra, status in ((124, 200), (125, 400)):
        headers = {f"X-{i}": "v" for i in range(extra)}
        for fast in (True, False):
            answers, _ = await exchange(_port(servers[fast]), wa_post(extra=headers), 1)
            assert answers[0].status == status, (fast, extra)


async def test_padded_secret_and_signature_get_the_same_answer_on_both_paths(
    servers: dict[bool, GatewayTestServer],
) -> None:
    """Whitespace around a header value is not part of it (aiohttp strips it): both paths
    hand the same value to the same check, so they agree."""
    secret = BOT_SECRETS[BOT_1]
    requests = [
        tg_post(secret=secret + " "), tg_post(secret=secret + "\t"), tg_post(secret=secret + "x"),
        wa_post().replace(b"X-Hub-Signature-256: sha256=", b"X-Hub-Signature-256:  sha256=", 1),
        wa_post().replace(b"\r\nContent-Type", b" \r\nContent-Type", 1),
    ]  # fmt: skip
    for request in requests:
        seen = {}
        for fast in (True, False):
            answers, _ = await exchange(_port(servers[fast]), request, 1)
            seen[fast] = (answers[0].status, answers[0].body)
        assert seen[True] == seen[False], (request[:80], seen)


async def test_a_malformed_request_logs_one_line_without_traceback_or_its_bytes(
    servers: dict[bool, GatewayTestServer],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fasthttp, "_malformed", fasthttp._Throttled("malformed", every=60))
    broken = b"POST /webhooks/whatsapp HTTP/1.1\r\nX-Secret: hunter2\r\nHost x\r\n\r\n"
    with caplog.at_level(logging.DEBUG):
        for fast in (True, False):
            for _ in range(3):
                answers, _ = await exchange(_port(servers[fast]), broken, 1)
                assert answers[0].status == 400
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].exc_info is None
    assert all("hunter2" not in r.getMessage() and r.exc_info is None for r in caplog.records)


class _AsServed(GatewayTestServer):
    """The gateway as `gateway serve` runs it: aiohttp's handler cancellation off (aiohttp's
    TestServer turns it on, and a cancelled handler hides what a live one does)."""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        return GatewayRunner(self.app, **{**kwargs, "handler_cancellation": False})


async def test_a_client_that_leaves_mid_body_logs_no_error_or_traceback(
    settings: Settings, redis: Redis, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by benchmarks/fuzz.py: a signed webhook whose client closed the connection
    while aiohttp read its body (chunked, without the last chunk) made aiohttp log "Error
    handling request" with a ConnectionResetError traceback, one per such client. Now
    nothing is logged at ERROR, nothing is published, and the port serves the next webhook;
    on both server paths, chunked and with a Content-Length."""
    for fast in (True, False):
        changed = msgspec.structs.replace(settings.server, fast_path=fast)
        server = _AsServed(create_app(msgspec.structs.replace(settings, server=changed), redis_url))
        await server.start_server()
        try:
            for cut in (chunked(wa_post()).removesuffix(b"0\r\n\r\n"), wa_post()[:-10]):
                with caplog.at_level(logging.DEBUG):
                    _, writer = await asyncio.open_connection("127.0.0.1", _port(server))
                    writer.write(cut)
                    await writer.drain()
                    await asyncio.sleep(0.2)
                    writer.close()
                    await asyncio.sleep(0.3)
                errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
                assert not errors, [(fast, r.name, r.getMessage()) for r in errors]
                assert await redis.xlen("gw:inbox:support") == 0
                answers, _ = await exchange(_port(server), wa_post(), 1)
                assert answers[0].status == 200
                await redis.delete("gw:inbox:support")
        finally:
            await server.close()


async def test_a_client_that_leaves_before_its_100_continue_logs_no_error_or_traceback(
    settings: Settings, redis: Redis, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by benchmarks/fuzz.py: a webhook sent with `Expect: 100-continue` whose client
    hung up before aiohttp wrote its `100 Continue` made aiohttp log "Error handling
    request" with a ClientConnectionResetError traceback. Now nothing is logged at ERROR,
    nothing is published, the port serves the next webhook, and an unknown Expect is still
    417."""
    server = _AsServed(create_app(settings, redis_url))
    await server.start_server()
    try:
        head = wa_post().split(b"\r\n\r\n", 1)[0] + b"\r\nExpect: 100-continue\r\n\r\n"
        with caplog.at_level(logging.DEBUG):
            for _ in range(20):  # the head, then at once a reset: no body, no one to answer
                _, writer = await asyncio.open_connection("127.0.0.1", _port(server))
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.write(head)
                await writer.drain()
                writer.transport.abort()
            await asyncio.sleep(0.5)
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
        assert not errors, [(r.name, r.getMessage()) for r in errors]
        assert await redis.xlen("gw:inbox:support") == 0
        answers, _ = await exchange(_port(server), wa_post(), 1)
        assert answers[0].status == 200
        odd = head.replace(b"100-continue", b"200-ok")
        answers, _ = await exchange(_port(server), odd, 1)
        assert answers[0].status == 417
    finally:
        await server.close()


def test_the_open_files_limit_is_raised_for_max_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A soft limit of 1024 would cap connections before `server.max_connections` does
    (and make accept() fail for everyone): it is raised, up to the hard limit."""
    limits = {"now": (1024, 8192)}
    monkeypatch.setattr(resource, "getrlimit", lambda _: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", lambda _, value: limits.update(now=value))
    wanted = 4096 + gateway_server.FD_HEADROOM
    assert gateway_server.raise_fd_limit(wanted) == wanted
    assert limits["now"] == (wanted, 8192)
    assert gateway_server.raise_fd_limit(100_000) == 8192  # no further than the hard limit


async def test_a_connect_line_without_a_target_is_answered_and_logs_no_traceback(
    settings: Settings, redis: Redis, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by benchmarks/fuzz.py (seed 11, case 39069): `CONNECT` and spaces, nothing
    else, on the request line. aiohttp's parser takes it for an HTTP/0.9 request with no URL,
    and aiohttp's request raised AttributeError in the connection's task: a traceback logged
    ("Task exception was never retrieved") and no answer. Now it is answered 4xx with nothing
    logged at ERROR, on both server paths, and the port serves the next webhook."""
    for fast in (True, False):
        changed = msgspec.structs.replace(settings.server, fast_path=fast)
        server = _AsServed(create_app(msgspec.structs.replace(settings, server=changed), redis_url))
        await server.start_server()
        try:
            for line in (b"CONNECT    ", b"CONNECT  "):
                with caplog.at_level(logging.DEBUG):
                    reader, writer = await asyncio.open_connection("127.0.0.1", _port(server))
                    writer.write(line + b"\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
                    answer = await asyncio.wait_for(reader.read(4096), 5)
                    writer.close()
                    await asyncio.sleep(0.1)
                status = answer.split(b"\r\n", 1)[0].split(b" ")
                assert status[0].startswith(b"HTTP/") and status[1][:1] == b"4", answer[:200]
                errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
                assert not errors, [(fast, r.name, r.getMessage()) for r in errors]
            answers, _ = await exchange(_port(server), wa_post(), 1)
            assert answers[0].status == 200
            await redis.delete("gw:inbox:support")
        finally:
            await server.close()
