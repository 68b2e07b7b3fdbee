"""The webhook fast path (gateway/fasthttp.py) on raw sockets: what a client sees on one
connection, byte for byte as sent, against the same app with the fast path on and off."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from itertools import count

import msgspec
import pytest
from redis.asyncio import Redis

from gateway import fasthttp
from gateway.app import create_app
from gateway.config import Settings
from tests.conftest import (
    BOT_1,
    BOT_SECRETS,
    NUMBER_A,
    VERIFY_TOKEN,
    GatewayTestServer,
    change,
    envelope,
    make_settings,
    stream,
    text_message,
    wa_body,
    wa_headers,
)
from tests.stall import redis_stalled

_ids = count()

# Every test on both loops (conftest's pytest_asyncio_loop_factories): production runs
# uvloop, whose transports hand a connection over to aiohttp (`set_protocol`) with their own
# code.
pytestmark = pytest.mark.uvloop_too


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def _head(method: str, target: str, headers: dict[str, str], version: str = "1.1") -> bytes:
    lines = [f"{method} {target} HTTP/{version}", "Host: gateway.test", *(
        f"{name}: {value}" for name, value in headers.items())]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def wa_post(
    wamid: str | None = None, *, signed: bool = True, extra: dict[str, str] | None = None
) -> bytes:
    """One signed WhatsApp webhook with one message (a fresh wamid unless given)."""
    contact, message = text_message(wamid or f"wamid.FAST{next(_ids)}", body="olá")
    body = wa_body(envelope(change(NUMBER_A, "15550001111", contacts=[contact],
                                   messages=[message])))  # fmt: skip
    headers = wa_headers(body) if signed else {"Content-Type": "application/json"}
    headers = {**headers, "Content-Length": str(len(body)), **(extra or {})}
    return _head("POST", "/webhooks/whatsapp", headers) + body


def tg_post(bot: str = BOT_1, secret: str | None = None) -> bytes:
    update = {"update_id": 800_000 + next(_ids), "message": {
        "message_id": 5, "date": 1_700_000_000, "chat": {"id": 42, "type": "private"},
        "from": {"id": 42, "is_bot": False, "first_name": "Ana"}, "text": "hi"}}  # fmt: skip
    body = json.dumps(update).encode()
    headers = {
        "X-Telegram-Bot-Api-Secret-Token": secret or BOT_SECRETS.get(bot, "x"),
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
    }
    return _head("POST", f"/webhooks/telegram/{bot}", headers) + body


def chunked(request: bytes) -> bytes:
    """The same request with its body sent in two chunks (Transfer-Encoding: chunked)."""
    head, body = request.split(b"\r\n\r\n", 1)
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"content-length")]
    half = len(body) // 2
    parts = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]))
    return (
        b"\r\n".join([*lines, b"Transfer-Encoding: chunked"]) + b"\r\n\r\n" + parts + b"0\r\n\r\n"
    )


def get(target: str) -> bytes:
    return _head("GET", target, {})


async def exchange(
    port: int, data: bytes, answers: int, *, pieces: int = 1, rng: random.Random | None = None
) -> tuple[list[Answer], bool]:
    """Send `data` on one connection (cut into `pieces` writes at random places), read
    `answers` answers; also whether the server then closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rng = rng or random.Random(0)
    cuts = sorted(rng.sample(range(1, len(data)), min(pieces - 1, len(data) - 1)))
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        writer.write(data[start:end])
        await writer.drain()
        if pieces > 1:
            await asyncio.sleep(0)
    out: list[Answer] = []
    while len(out) < answers:
        out.append(await asyncio.wait_for(_read_answer(reader), 5))
        if out[-1].status == 100:
            out.pop()
    try:
        closed = await asyncio.wait_for(reader.read(1), 0.2) == b""
    except TimeoutError:
        closed = False
    writer.close()
    return out, closed


async def _read_answer(reader: asyncio.StreamReader) -> Answer:
    status_line = await reader.readline()
    assert status_line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), status_line
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(status_line.split()[1])
    if status == 100:
        return Answer(100, headers, b"")
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(status, headers, body)


@pytest.fixture
async def servers(
    settings: Settings, redis: Redis, redis_url: str
) -> AsyncIterator[dict[bool, GatewayTestServer]]:
    """The same app twice: fast path on (True) and off (False)."""
    out = {fast: await _server(settings, redis_url, fast_path=fast) for fast in (True, False)}
    yield out
    for server in out.values():
        await server.close()


def _port(server: GatewayTestServer) -> int:
    assert server.port is not None
    return server.port


async def test_pipelined_webhooks_and_other_requests_are_answered_in_order(
    servers: dict[bool, GatewayTestServer], redis: Redis
) -> None:
    """One connection, one write: webhooks, then requests aiohttp serves, then webhooks
    again; every answer is right and in order, and every webhook is published."""
    verify = (
        f"/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=77"
    )
    data = b"".join([
        wa_post(), tg_post(), wa_post(signed=False), tg_post(secret="wrong"),
        tg_post(bot="999"), get("/healthz"), get(verify), wa_post(), get("/nowhere"),
        chunked(wa_post()), wa_post(),
    ])  # fmt: skip
    answers, closed = await exchange(_port(servers[True]), data, 11)
    assert [(a.status, a.body) for a in answers] == [
        (200, b"OK"), (200, b"OK"), (401, b"bad signature"), (401, b"bad secret token"),
        (404, b"unknown bot"), (200, b"ok"), (200, b"77"), (200, b"OK"),
        (404, b"404: Not Found"), (200, b"OK"), (200, b"OK"),
    ]  # fmt: skip
    assert not closed
    assert len(await stream(redis, "gw:inbox:support")) == 5  # 4 WhatsApp, 1 Telegram
    # The webhooks were answered by the fast path: aiohttp's answers name it in Server.
    assert ["server" in a.headers for a in answers[:2]] == [False, False]
    assert "aiohttp" in answers[5].headers["server"]


async def test_requests_cut_anywhere_get_the_same_answers_with_the_fast_path_on_and_off(
    servers: dict[bool, GatewayTestServer],
) -> None:
    """Random mixes of requests, each stream of bytes cut into random writes: the fast
    path answers exactly what aiohttp alone answers (status, body, connection kept)."""
    rng = random.Random(20261122)
    kinds = [
        lambda: wa_post(), lambda: tg_post(), lambda: wa_post(signed=False),
        lambda: tg_post(bot="12345"), lambda: get("/healthz"), lambda: get("/nowhere"),
        lambda: chunked(tg_post()), lambda: _head("DELETE", "/webhooks/whatsapp", {}),
        lambda: wa_post(extra={"Expect": "100-continue"}),
        lambda: wa_post().replace(b"HTTP/1.1", b"HTTP/1.0", 1).replace(
            b"Host:", b"Connection: keep-alive\r\nHost:", 1),
        lambda: wa_post().replace(b"POST /webhooks/whatsapp", b"POST /webhooks/whatsapp?x=1"),
        lambda: wa_post().replace(b"sha256=", b"sha256=\xff", 1),  # not UTF-8: a wrong one
    ]  # fmt: skip
    for _ in range(25):
        picks = [rng.randrange(len(kinds)) for _ in range(rng.randint(1, 6))]
        pieces = rng.choice([1, 2, 7, 40])
        seen = {}
        for fast in (True, False):
            data = b"".join(kinds[i]() for i in picks)
            answers, closed = await exchange(
                _port(servers[fast]), data, len(picks), pieces=pieces, rng=random.Random(pieces)
            )
            seen[fast] = ([(a.status, a.body) for a in answers], closed)
        assert seen[True] == seen[False], picks


async def test_a_signature_header_that_is_not_utf8_is_a_wrong_signature(
    servers: dict[bool, GatewayTestServer],
) -> None:
    for fast in (True, False):
        answers, _ = await exchange(
            _port(servers[fast]), wa_post().replace(b"sha256=", b"sha256=\xff", 1), 1
        )
        assert (answers[0].status, answers[0].body) == (401, b"bad signature"), fast


async def test_a_long_pipeline_answered_without_waiting_is_answered_whole(
    servers: dict[bool, GatewayTestServer],
) -> None:
    """2000 requests in one write, each refused at once (a wrong signature, no Redis call in
    between): every one is answered, in order, and the connection stays usable."""
    data = b"".join(wa_post(signed=False) for _ in range(2000)) + wa_post()
    answers, closed = await exchange(_port(servers[True]), data, 2001)
    assert [a.status for a in answers] == [401] * 2000 + [200]
    assert not closed


async def test_a_head_sent_byte_by_byte_is_served(servers: dict[bool, GatewayTestServer]) -> None:
    request = wa_post()
    answers, _ = await exchange(_port(servers[True]), request, 1, pieces=len(request))
    assert answers[0].status == 200


async def test_connection_close_and_http_1_0_close_after_the_answer(
    servers: dict[bool, GatewayTestServer],
) -> None:
    request = wa_post(extra={"Connection": "close"})
    answers, closed = await exchange(_port(servers[True]), request, 1)
    assert (answers[0].status, answers[0].headers.get("connection")) == (200, "close")
    assert closed
    answers, closed = await exchange(
        _port(servers[True]), wa_post().replace(b"HTTP/1.1", b"HTTP/1.0", 1), 1
    )
    assert answers[0].status == 200
    assert closed


async def test_bad_requests_are_refused_as_aiohttp_refuses_them(
    servers: dict[bool, GatewayTestServer],
) -> None:
    """Bodies over the limit, conflicting lengths and broken heads never reach a handler."""
    request = wa_post()
    big = re.sub(rb"Content-Length: \d+", b"Content-Length: 3145729", request)  # limit + 1
    doubled = request.replace(b"Content-Length:", b"Content-Length: 3\r\nContent-Length:", 1)
    broken = b"POST /webhooks/whatsapp HTTP/1.1\r\nHost x\r\n\r\n"
    for data, status in ((big, 413), (doubled, 400), (broken, 400)):
        for fast in (True, False):
            answers, _ = await exchange(_port(servers[fast]), data, 1)
            assert answers[0].status == status, (fast, data[:60])


async def test_a_webhook_in_flight_at_shutdown_is_still_answered(
    servers: dict[bool, GatewayTestServer], redis: Redis, redis_url: str
) -> None:
    """Redis is stalled while the webhook publishes; the server shuts down meanwhile: the
    answer still comes, once the events are in, and then the connection closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(servers[True]))
    async with redis_stalled(redis_url, 0.5):
        writer.write(wa_post())
        await writer.drain()
        await asyncio.sleep(0.05)
        closing = asyncio.create_task(servers[True].close())
        answer = await asyncio.wait_for(_read_answer(reader), 5)
        assert (answer.status, answer.headers.get("connection")) == (200, "close")
        assert await reader.read(1) == b""
        await closing
    assert len(await stream(redis, "gw:inbox:support")) == 1


async def test_a_webhook_whose_client_left_is_published_before_shutdown_ends(
    redis: Redis, redis_url: str
) -> None:
    """The client gives up while Redis is stalled, then the server shuts down: shutdown
    waits for that request too, so its events are in (Meta's retry then finds it seen)
    before Redis is closed. The message hides the sender's number, so its publish takes two
    round trips (the BSUID look-up, then the script): cut after the first, nothing would be
    published. (No reply workers here: their own stop would wait for Redis.)"""
    settings = make_settings(redis_url, OUTBOUND_ENABLED="false")
    server = GatewayTestServer(create_app(settings, redis_url))
    await server.start_server()
    _, writer = await asyncio.open_connection("127.0.0.1", _port(server))
    hidden = {"from_user_id": "BR.77", "id": "wamid.GONE", "timestamp": str(int(time.time())),
              "type": "text", "text": {"body": "hi"}}  # fmt: skip
    body = wa_body(envelope(change(NUMBER_A, "15550001111", messages=[hidden])))
    head = {**wa_headers(body), "Content-Length": str(len(body))}
    async with redis_stalled(redis_url, 0.5):
        writer.write(_head("POST", "/webhooks/whatsapp", head) + body)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        await asyncio.sleep(0.05)
        await server.close()
    assert len(await stream(redis, "gw:inbox:support")) == 1


async def test_an_idle_connection_is_closed_after_the_keepalive_time(
    settings: Settings, redis: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`server.keepalive_timeout_seconds` closes an idle connection after a fast-path
    answer and after an aiohttp one (its keepalive_timeout), with the fast path on and off."""
    monkeypatch.setattr(fasthttp, "SWEEP_SECONDS", 0.05)
    for fast in (True, False):
        server = await _server(settings, redis_url, fast_path=fast, keepalive_timeout_seconds=0.3)
        try:
            for request in (wa_post(), get("/healthz")):
                reader, writer = await asyncio.open_connection("127.0.0.1", _port(server))
                writer.write(request)
                assert (await asyncio.wait_for(_read_answer(reader), 5)).status == 200
                started = time.monotonic()
                assert await asyncio.wait_for(reader.read(1), 3) == b""
                assert 0.2 < time.monotonic() - started < 1.5, (fast, request[:20])
                writer.close()
        finally:
            await server.close()


async def _server(settings: Settings, redis_url: str, **server: object) -> GatewayTestServer:
    """A started gateway whose `server` settings are changed as given."""
    changed = msgspec.structs.replace(settings.server, **server)
    app = create_app(msgspec.structs.replace(settings, server=changed), redis_url)
    gateway = GatewayTestServer(app)
    await gateway.start_server()
    return gateway


async def test_access_log_names_each_fast_path_request(
    settings: Settings, redis: Redis, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = GatewayTestServer(create_app(settings, redis_url))
    await server.start_server(access_log=logging.getLogger("gateway.access"))
    try:
        with caplog.at_level(logging.INFO, logger="gateway.access"):
            answers, _ = await exchange(_port(server), wa_post() + wa_post(signed=False), 2)
    finally:
        await server.close()
    assert [a.status for a in answers] == [200, 401]
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.access"]
    assert len(lines) == 2
    assert '"POST /webhooks/whatsapp HTTP/1.1" 200' in lines[0]
    assert '"POST /webhooks/whatsapp HTTP/1.1" 401' in lines[1]
