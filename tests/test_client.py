"""The backends' client (gateway_client/) against the real gateway and a real Redis: every
event kind the gateway writes decodes, every command type the client builds is one the
gateway sends, a delivery is awaited, and a consumer that dies mid-batch leaves its entries
to another consumer of the group."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway.app import OUTBOX, create_app
from gateway_client import (
    KINDS,
    Backend,
    Delivery,
    Message,
    commands,
)
from gateway_demo.standins.bot_api import FakeBotAPI
from gateway_demo.standins.graph_api import FakeGraphAPI
from tests.conftest import (
    BOT_1,
    NUMBER_A,
    all_streams,
    make_settings,
    tg_headers,
)
from tests.test_corpus import LOADED, _post
from tests.test_outbound import BOT_1_TOKEN, BOT_2_TOKEN, Gateway

pytestmark = pytest.mark.cluster  # also against a Redis Cluster (--redis-cluster)

ROOT = Path(__file__).parent.parent


def test_the_client_imports_nothing_of_the_gateway() -> None:
    """A backend installs redis and msgspec, not the gateway's server."""
    code = (
        "import sys, gateway_client; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'gateway', 'adapters', 'router', 'aiohttp', 'httptools', 'yaml'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"


async def test_every_event_the_gateway_writes_decodes(
    client: TestClient, redis: Redis, redis_url: str
) -> None:
    """The whole corpus through the gateway, read back with the client: every kind but
    `delivery` (below) and their keys as the gateway wrote them."""
    for case in LOADED.values():
        await _post(client, case)
    streams = await all_streams(redis)
    streams.pop("gw:deadletter", None)
    kinds = set()
    for name in streams:
        assistant = name.split(":", 2)[2]
        backend = Backend(redis, assistant)
        stream = backend.inbox_key if name.startswith("gw:inbox:") else backend.history_key
        reader = (backend.inbox if stream == backend.inbox_key else backend.history)(
            group="test", block_ms=1
        )
        for _ in range(await redis.xlen(name)):
            item = await anext(reader)
            kinds.add(item.event.__struct_config__.tag)
            assert item.fields["kind"] == item.event.__struct_config__.tag
            assert item.event.event_id == item.fields["event_id"]
            if isinstance(item.event, Message):
                assert item.event.message_id == item.fields["message_id"]
                assert item.event.text == item.fields.get("text")
        await reader.aclose()
    assert kinds == set(KINDS) - {"delivery"}


@pytest.fixture
async def gw(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Gateway]:
    tokens = {NUMBER_A: "token-a"}
    async with FakeGraphAPI(tokens) as graph, FakeBotAPI([BOT_1_TOKEN, BOT_2_TOKEN]) as bot:
        settings = make_settings(
            redis_url, GRAPH_URL=graph.base_url, BOT_URL=bot.base_url, OUTBOUND_ENABLED="true"
        )
        app = create_app(settings, redis_url)
        client = await aiohttp_client(app)
        yield Gateway(client, app[OUTBOX], redis, graph, bot)


async def test_a_message_answered_and_its_delivery_awaited(gw: Gateway, redis: Redis) -> None:
    await gw.tg_user_writes()
    backend = Backend(redis, "support")
    reader = backend.inbox(group="bot", block_ms=100)
    item = await anext(reader)
    event = item.event
    assert isinstance(event, Message) and event.channel == "telegram"
    assert event.conversation_id is not None and not event.ai_paused
    sent = await backend.send(
        commands.text(event.conversation_id, "Olá!", reply_to=event.message_id)
    )
    delivery = await backend.delivery(sent, timeout_s=20)
    assert isinstance(delivery, Delivery)
    assert (delivery.command_id, delivery.outcome) == (sent.command_id, "sent")
    assert gw.bot.requests[-1].params["text"] == "Olá!"
    await reader.aclose()


async def test_every_command_type_is_one_the_gateway_sends(gw: Gateway, redis: Redis) -> None:
    """Each builder's command goes through the gateway's own command decoder and policy: not
    one ends `invalid_command` (the Telegram chat has written, so nothing is out of window)."""
    await gw.tg_user_writes()
    conv = f"telegram:{BOT_1}:123456789"
    built = [
        commands.text(conv, "hi"),
        commands.media(conv, "image", url="https://example.com/a.jpg", caption="a"),
        commands.media(conv, "document", url="https://example.com/a.pdf", filename="a.pdf"),
        commands.media(conv, "audio", url="https://example.com/a.ogg"),
        commands.media(conv, "video", url="https://example.com/a.mp4"),
        commands.location(conv, -23.55, -46.63, name="Sé"),
        commands.buttons(conv, "Pick one", [("a", "A"), ("b", "B")]),
        commands.reaction(conv, "7", "👍"),
        commands.typing(conv),
        commands.read(conv, reply_to="7"),
        commands.handoff(conv),
        commands.handback(conv),
    ]
    backend = Backend(redis, "support")
    sent = [await backend.send(c) for c in built]
    outcomes = {}
    for c, s in zip(built, sent, strict=True):
        delivery = await backend.delivery(s, timeout_s=20)
        outcomes[c.type] = (delivery.outcome, delivery.reason)
    assert all(reason != "invalid_command" for _, reason in outcomes.values()), outcomes
    assert outcomes["text"] == ("sent", None) and outcomes["handoff"] == ("sent", None)
    wa = commands.template(f"whatsapp:{NUMBER_A}:5511987650000", "order_ready", "en_US",
                           category="utility")  # fmt: skip
    delivery = await backend.delivery(await backend.send(wa), timeout_s=20)
    assert delivery.reason != "invalid_command", delivery


async def test_a_consumer_that_dies_mid_batch_leaves_its_entries_to_another(
    redis: Redis, client: TestClient
) -> None:
    for i in range(5):
        update = {"update_id": 9000 + i, "message": {
            "message_id": 100 + i, "date": 1_795_000_000, "text": f"m{i}",
            "chat": {"id": 42, "type": "private", "first_name": "Ana"},
            "from": {"id": 42, "is_bot": False, "first_name": "Ana"}}}  # fmt: skip
        resp = await client.post(f"/webhooks/telegram/{BOT_1}", data=json.dumps(update),
                                 headers=tg_headers())  # fmt: skip
        assert resp.status == 200
    backend = Backend(redis, "support")
    first = backend.inbox(group="bots", consumer="a", batch=5, block_ms=100)
    handled = [(await anext(first)).event]  # handled and acknowledged: the next read acks it
    handled.append((await anext(first)).event)
    await first.aclose()  # dies while handling its second entry: not acknowledged
    pending = await redis.xpending("gw:inbox:support", "bots")
    assert pending["pending"] == 4  # the second and the three it never got to
    second = backend.inbox(group="bots", consumer="b", batch=10, block_ms=100,
                           reclaim_idle_s=0.001)  # fmt: skip
    texts = [getattr((await anext(second)).event, "text", None) for _ in range(4)]
    assert texts == ["m1", "m2", "m3", "m4"]
    await anext_or_none(second)
    assert (await redis.xpending("gw:inbox:support", "bots"))["pending"] == 0
    await second.aclose()


async def anext_or_none(reader: Any) -> None:
    """Let the reader acknowledge what it handed out last (it does so on the next read)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(anext(reader), 0.5)


def _example() -> Any:
    """examples/echo_assistant.py, imported as a module."""
    path = ROOT / "examples" / "echo_assistant.py"
    spec = importlib.util.spec_from_file_location("echo_assistant", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_example_assistant_answers_hands_off_and_then_stays_quiet(
    gw: Gateway, redis: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    example = _example()
    backend = Backend(redis, "support")
    reader = backend.inbox(group="echo", block_ms=100)
    await gw.tg_user_writes()
    assert await example.handle(backend, await next_message(reader)) == ["text"]
    assert gw.bot.requests[-1].params["text"] == "You said: hi"
    await post_tg(gw, "I want a human please")
    assert await example.handle(backend, await next_message(reader)) == ["text", "handoff"]
    await gw.outbox.drain()
    await post_tg(gw, "hello?")
    later = await next_message(reader)
    assert later.ai_paused
    assert await example.handle(backend, later) == []
    out = capsys.readouterr().out
    assert "answered 'hi': sent" in out and "handed off to a human" in out
    assert "a human has this conversation, not answering" in out
    await reader.aclose()


async def next_message(reader: Any) -> Message:
    """The next `message` event (deliveries of the assistant's own commands come between)."""
    while True:
        event = (await anext(reader)).event
        if isinstance(event, Message):
            return event


async def post_tg(gw: Gateway, text: str) -> None:
    update = {"update_id": time.time_ns() % 10**12, "message": {
        "message_id": time.time_ns() % 10**6, "date": int(time.time()), "text": text,
        "chat": {"id": 123456789, "type": "private", "first_name": "Ana"},
        "from": {"id": 123456789, "is_bot": False, "first_name": "Ana"}}}  # fmt: skip
    resp = await gw.client.post(f"/webhooks/telegram/{BOT_1}", data=json.dumps(update),
                                headers=tg_headers())  # fmt: skip
    assert resp.status == 200
