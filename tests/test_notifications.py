"""Escalation notices end to end: a handoff, an echo takeover, an `escalate` command and a
reminder each put one notice in `gw:notifications`; the notifier delivers it to a signed
webhook (a real aiohttp receiver here, which checks the signature) and to the staff chat (the
Bot API stand-in); a receiver that fails or is down is retried, then dead-lettered; nothing
on the inbound path waits for any of it. Real Redis, real HTTP; workers in drain mode."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from adapters import CHANNELS
from adapters.account import Account
from adapters.notice import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    NotificationSettings,
    StaffChatSettings,
    WebhookTargetSettings,
    link,
    sign,
    verify,
)
from adapters.schema import Command
from gateway.app import NOTICES, NOTIFIER, create_app
from gateway.config import ConfigError, loads, secrets_of
from gateway.metrics import Metrics
from gateway.state import OUTBOX
from gateway_demo.standins.bot_api import FakeBotAPI
from gateway_demo.standins.graph_api import FakeGraphAPI
from router.notifications import Notices
from router.notifier import Notifier
from router.outbound import Outbox
from tests.conftest import (
    BOT_1,
    NUMBER_A,
    PAGE_A,
    TEST_CONFIG,
    change,
    envelope,
    gateway_env,
    make_settings,
    stream,
    text_message,
    tg_headers,
    wa_body,
    wa_headers,
)

pytestmark = pytest.mark.cluster  # also runs against a Redis Cluster (--redis-cluster)

CONTACT = "5511987650000"
CONVERSATION = f"whatsapp:{NUMBER_A}:{CONTACT}"
TG_CHAT = "123456789"
BOT_TOKENS = [
    f"{BOT_1}:AAHtesttokenaaaaaaaaaaaaaaaaaaaaaaa",
    "7000000002:AAHtesttokenbbbbbbbbbbbbbbbbbbbbbbb",
]
STAFF_TOKEN = "7000000009:AAHstafftokencccccccccccccccccccccc"
STAFF_CHAT = "-1001234567890"
HOOK_SECRET = "hook-secret-0123456789abcdef"
LINK = "https://crm.example/c/{conversation_id}"
PAUSED = "gw:paused:{gw:inbox:support}"


@dataclass
class Receiver:
    """An escalation webhook receiver: checks each request's signature as a customer's
    would, and answers `status` (or is `down`)."""

    status: int = 200
    delay_s: float = 0.0
    received: list[tuple[bytes, dict[str, str], bool]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify(HOOK_SECRET, request.headers, body, int(time.time()))
        self.received.append((body, dict(request.headers), ok))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.Response(status=self.status if ok else 401)


@dataclass
class Gateway:
    client: TestClient
    outbox: Outbox
    notices: Notices
    notifier: Notifier
    redis: Redis
    graph: FakeGraphAPI
    bot: FakeBotAPI
    receiver: Receiver
    metrics: Metrics

    async def contact_writes(self, text: str = "I want a refund, please") -> None:
        wamid = f"wamid.in.{time.time_ns()}"
        c, m = text_message(wamid, CONTACT, body=text, ts=int(time.time()) - 5)
        body = wa_body(envelope(change(NUMBER_A, "15550001111", contacts=[c], messages=[m])))
        resp = await self.client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
        assert resp.status == 200

    async def echo(self, wamid: str) -> None:
        echo = {
            "from": "15550001111",
            "to": CONTACT,
            "id": wamid,
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": "Hi, this is Maria from support"},
        }
        value = change(NUMBER_A, "15550001111", message_echoes=[echo])
        value["field"] = "smb_message_echoes"
        body = wa_body(envelope(value))
        resp = await self.client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
        assert resp.status == 200

    async def command(self, command_id: str, ctype: str, **fields: Any) -> None:
        command = {
            "schema": 1,
            "command_id": command_id,
            "conversation_id": fields.pop("conversation_id", CONVERSATION),
            "type": ctype,
            **fields,
        }
        await self.redis.xadd("gw:outbox", {"command": json.dumps(command)})
        await self.outbox.drain()

    async def delivery(self, command_id: str) -> dict[str, Any]:
        events = await stream(self.redis, "gw:inbox:support")
        found = [e for e in events if e["kind"] == "delivery" and e["command_id"] == command_id]
        assert len(found) == 1, found
        return found[0]

    async def notifications(self) -> list[dict[str, Any]]:
        return await stream(self.redis, "gw:notifications")

    async def pending(self) -> int:
        info = await self.redis.xpending("gw:notifications", "notifier")
        return int(info["pending"])

    def staff_messages(self) -> list[dict[str, Any]]:
        return [
            r.params or {}
            for r in self.bot.requests
            if r.token == STAFF_TOKEN and r.method == "sendMessage"
        ]

    def deliveries_counted(self, target: str, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "gateway_notification_deliveries_total", {"target": target, "outcome": outcome}
        )
        return value or 0.0


def section(hook_url: str, bot_url: str, **overrides: Any) -> NotificationSettings:
    fields: dict[str, Any] = {
        "telegram": StaffChatSettings(bot_token=STAFF_TOKEN, chat_id=STAFF_CHAT, api_base=bot_url),
        "webhooks": [WebhookTargetSettings(url=hook_url, secret=HOOK_SECRET)],
        "link_template": LINK,
        "max_attempts": 3,
        "base_seconds": 0.01,
        "max_seconds": 0.05,
        "request_timeout_seconds": 2.0,
    }
    return NotificationSettings(**{**fields, **overrides})


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield found, str(server.make_url("/hook"))
    await server.close()


async def make_gateway(
    aiohttp_client: Any,
    redis: Redis,
    redis_url: str,
    hook: tuple[Receiver, str],
    **overrides: Any,
) -> AsyncIterator[Gateway]:
    receiver, url = hook
    graph_api = FakeGraphAPI({NUMBER_A: "token-a"})
    async with graph_api as graph, FakeBotAPI([*BOT_TOKENS, STAFF_TOKEN]) as bot:
        settings = make_settings(
            redis_url, GRAPH_URL=graph.base_url, BOT_URL=bot.base_url, OUTBOUND_ENABLED="false"
        )
        notifications = section(overrides.pop("hook_url", url), bot.base_url, **overrides)
        settings = msgspec.structs.replace(settings, notifications=notifications)
        metrics = Metrics()
        app = create_app(settings, redis_url, metrics)
        client = await aiohttp_client(app)
        notices, notifier = app[NOTICES], app[NOTIFIER]
        assert notices is not None and notifier is not None
        yield Gateway(client, app[OUTBOX], notices, notifier, redis, graph, bot, receiver, metrics)


@pytest.fixture
async def gw(
    aiohttp_client: Any, redis: Redis, redis_url: str, receiver: tuple[Receiver, str]
) -> AsyncIterator[Gateway]:
    async for found in make_gateway(aiohttp_client, redis, redis_url, receiver):
        yield found


async def test_a_handoff_notifies_the_stream_a_signed_webhook_and_the_staff_chat(
    gw: Gateway,
) -> None:
    await gw.contact_writes("I want a refund, please")
    await gw.command("ho-1", "handoff")
    assert (await gw.delivery("ho-1"))["outcome"] == "sent"
    [notice] = await gw.notifications()
    assert notice["kind"] == "escalation"
    assert notice["reason"] == "handoff"
    assert notice["command_id"] == "ho-1"
    assert (notice["conversation_id"], notice["channel"]) == (CONVERSATION, "whatsapp")
    assert (notice["account_id"], notice["assistant_id"]) == (NUMBER_A, "support")
    assert notice["last_customer_message"]["text"] == "I want a refund, please"
    assert abs(notice["last_customer_message"]["time"] - time.time()) < 30
    assert notice["link"] == f"https://crm.example/c/{CONVERSATION}"

    assert await gw.notifier.drain() == 1
    [(body, headers, signed)] = gw.receiver.received
    assert signed
    assert json.loads(body) == notice
    assert headers[SIGNATURE_HEADER] == sign(HOOK_SECRET, int(headers[TIMESTAMP_HEADER]), body)
    # The MAC covers the timestamp and every byte of the body.
    assert not verify(HOOK_SECRET, headers, body.replace(b"refund", b"refunD"), int(time.time()))
    later = {**headers, TIMESTAMP_HEADER: str(int(headers[TIMESTAMP_HEADER]) + 1)}
    assert not verify(HOOK_SECRET, later, body, int(time.time()))
    [staff] = gw.staff_messages()
    assert str(staff["chat_id"]) == STAFF_CHAT
    assert "Handoff" in staff["text"] and "I want a refund, please" in staff["text"]
    assert f"https://crm.example/c/{CONVERSATION}" in staff["text"]
    assert await gw.pending() == 0
    assert gw.deliveries_counted("webhook", "delivered") == 1
    assert gw.deliveries_counted("telegram", "delivered") == 1
    # A repeated handoff command_id is answered again but notifies nobody twice.
    await gw.command("ho-1", "handoff")
    assert len(await gw.notifications()) == 1


async def test_a_receiver_answering_500_is_retried_then_dead_lettered_once(gw: Gateway) -> None:
    gw.receiver.status = 500
    await gw.contact_writes()
    await gw.command("ho-2", "handoff")
    await gw.notifier.drain()
    assert len(gw.receiver.received) == 3  # max_attempts
    assert all(signed for _, _, signed in gw.receiver.received)
    [letter] = await stream(gw.redis, "gw:deadletter")
    assert (letter["reason"], letter["channel"]) == ("notification_failed", None)
    assert letter["detail"].endswith(": HTTP 500 after 3 attempt(s)")
    assert letter["detail"].startswith("webhook http://127.0.0.1:")
    assert HOOK_SECRET not in json.dumps(letter)
    [notice] = await gw.notifications()
    assert json.loads(base64.b64decode(letter["body_b64"])) == notice
    assert await gw.pending() == 0  # acknowledged: nothing is delivered again
    assert len(gw.staff_messages()) == 1  # the other target was not held back
    assert gw.deliveries_counted("webhook", "failed") == 1


async def test_a_receiver_that_is_down_is_retried_then_dead_lettered(
    aiohttp_client: Any, redis: Redis, redis_url: str, receiver: tuple[Receiver, str]
) -> None:
    closed = TestServer(web.Application(), host="127.0.0.1")
    await closed.start_server()
    down_url = str(closed.make_url("/hook"))
    await closed.close()
    async for gw in make_gateway(aiohttp_client, redis, redis_url, receiver, hook_url=down_url):
        await gw.contact_writes()
        await gw.command("ho-3", "handoff")
        await gw.notifier.drain()
        [letter] = await stream(gw.redis, "gw:deadletter")
        assert letter["reason"] == "notification_failed"
        assert "network: ClientConnectorError after 3 attempt(s)" in letter["detail"]
        assert await gw.pending() == 0


async def test_a_staff_chat_that_fails_for_good_is_dead_lettered_without_its_token(
    gw: Gateway,
) -> None:
    gw.bot.fail(400, times=10, description="Bad Request: chat not found")
    await gw.contact_writes()
    await gw.command("ho-4", "handoff")
    await gw.notifier.drain()
    assert len(gw.staff_messages()) == 1  # permanent: not retried
    [letter] = await stream(gw.redis, "gw:deadletter")
    assert letter["detail"].startswith("staff chat: Bot API 400: Bad Request: chat not found")
    assert STAFF_TOKEN.split(":")[1] not in json.dumps(letter)
    assert len(gw.receiver.received) == 1


async def test_an_entry_that_is_no_notice_is_dead_lettered_and_acknowledged(gw: Gateway) -> None:
    await gw.redis.xadd("gw:notifications", {"event": b"\xff not json"})
    await gw.redis.xadd("gw:notifications", {"event": b'{"schema": 1, "kind": "escalation"}'})
    assert await gw.notifier.drain() == 2
    letters = await stream(gw.redis, "gw:deadletter")
    assert [letter["detail"][:12] for letter in letters] == ["not a notice"] * 2
    assert base64.b64decode(letters[0]["body_b64"]) == b"\xff not json"
    assert await gw.pending() == 0
    assert gw.receiver.received == [] and gw.staff_messages() == []


async def test_an_echo_takeover_notifies_once_per_pause(gw: Gateway) -> None:
    await gw.contact_writes("Is anyone there?")
    await gw.echo("wamid.echo.1")
    await gw.notices.flush(5)
    [notice] = await gw.notifications()
    assert notice["reason"] == "echo_takeover"
    assert notice["command_id"] is None
    assert notice["last_customer_message"]["text"] == "Is anyone there?"
    await gw.echo("wamid.echo.2")  # the same person goes on: no second notice
    await gw.echo("wamid.echo.1")  # a redelivered echo: nothing
    await gw.notices.flush(5)
    assert len(await gw.notifications()) == 1
    await gw.notifier.drain()
    assert "Takeover" in gw.staff_messages()[0]["text"]
    # After a handback, a person taking over again is news again.
    await gw.command("hb", "handback")
    await gw.echo("wamid.echo.3")
    await gw.notices.flush(5)
    assert [n["reason"] for n in await gw.notifications()] == ["echo_takeover", "echo_takeover"]


async def test_an_echo_under_a_handoff_notifies_nothing_more(gw: Gateway) -> None:
    await gw.contact_writes()
    await gw.command("ho-5", "handoff")
    await gw.echo("wamid.echo.9")
    await gw.notices.flush(5)
    assert [n["reason"] for n in await gw.notifications()] == ["handoff"]


async def test_escalate_is_sent_without_a_provider_call_and_notifies(gw: Gateway) -> None:
    await gw.contact_writes("Cancel my order #4411")
    await gw.command("esc-1", "escalate", text="order over the refund limit")
    delivery = await gw.delivery("esc-1")
    assert (delivery["outcome"], delivery["message_id"]) == ("sent", None)
    assert gw.graph.requests == []
    [notice] = await gw.notifications()
    assert (notice["reason"], notice["command_id"]) == ("escalate", "esc-1")
    assert notice["note"] == "order over the refund limit"
    assert notice["last_customer_message"]["text"] == "Cancel my order #4411"
    # It pauses nothing: the assistant may still answer.
    await gw.command("ai-1", "text", text="A colleague will take over shortly.")
    assert (await gw.delivery("ai-1"))["outcome"] == "sent"
    await gw.notifier.drain()
    assert "order over the refund limit" in gw.staff_messages()[0]["text"]


async def test_escalate_on_telegram_calls_no_bot_method(gw: Gateway) -> None:
    conversation = f"telegram:{BOT_1}:{TG_CHAT}"
    await gw.command("esc-2", "escalate", conversation_id=conversation)
    assert (await gw.delivery("esc-2"))["outcome"] == "sent"
    assert [r for r in gw.bot.requests if r.token != STAFF_TOKEN] == []
    [notice] = await gw.notifications()
    assert (notice["channel"], notice["account_id"]) == ("telegram", BOT_1)
    assert notice["last_customer_message"] is None


def test_escalate_makes_no_handover_call_on_a_handover_page() -> None:
    page = Account(
        "messenger", PAGE_A, "support", "page-token-a", True, 40.0, mode="263902037430900"
    )
    for ctype in ("handoff", "escalate"):
        command = Command(command_id="c", conversation_id=f"messenger:{PAGE_A}:1", type=ctype)
        made = CHANNELS["messenger"].control(page, "http://graph", command, "1")
        assert (made is None) == (ctype == "escalate")


async def test_a_paused_conversation_without_a_human_reply_gets_one_reminder(
    aiohttp_client: Any, redis: Redis, redis_url: str, receiver: tuple[Receiver, str]
) -> None:
    async for gw in make_gateway(
        aiohttp_client, redis, redis_url, receiver, reminder_after_seconds=60
    ):
        await gw.contact_writes("Hello? I am still waiting")
        await gw.command("ho-6", "handoff")
        handed = await gw.redis.zscore(PAUSED, CONVERSATION)
        assert handed is not None
        assert await gw.notices.remind(int(handed) + 59) == 0  # not due yet
        await asyncio.sleep(1.1)
        # A human agent answered: the clock starts again from that answer.
        await gw.command("human-1", "text", text="Looking into it", author="human")
        answered = await gw.redis.zscore(PAUSED, CONVERSATION)
        assert answered is not None and answered > handed
        assert await gw.notices.remind(int(answered) + 59) == 0
        assert await gw.notices.remind(int(answered) + 60) == 1
        assert await gw.notices.remind(int(answered) + 600) == 0  # one per pause
        [reminder] = [n for n in await gw.notifications() if n["reason"] == "reminder"]
        assert reminder["conversation_id"] == CONVERSATION
        assert reminder["last_customer_message"]["text"] == "Hello? I am still waiting"
        assert reminder["idle_since"] == int(answered)
        await gw.notifier.drain()
        assert any("Reminder" in m["text"] for m in gw.staff_messages())


async def test_no_reminder_after_a_handback(
    aiohttp_client: Any, redis: Redis, redis_url: str, receiver: tuple[Receiver, str]
) -> None:
    async for gw in make_gateway(
        aiohttp_client, redis, redis_url, receiver, reminder_after_seconds=60
    ):
        await gw.contact_writes()
        await gw.command("ho-7", "handoff")
        await gw.command("hb-7", "handback")
        assert await gw.notices.remind(int(time.time()) + 3600) == 0
        assert [n["reason"] for n in await gw.notifications()] == ["handoff"]


async def test_a_stalled_receiver_does_not_delay_inbound_webhooks(gw: Gateway) -> None:
    gw.receiver.status = 503
    gw.receiver.delay_s = 1.0  # each attempt hangs a second, then fails
    running = asyncio.create_task(gw.notifier.run())
    try:
        await gw.contact_writes()
        await gw.command("ho-8", "handoff")
        for _ in range(50):
            if gw.receiver.received:
                break
            await asyncio.sleep(0.05)
        assert gw.receiver.received, "the notifier is delivering"
        started = time.perf_counter()
        for i in range(5):
            update = {
                "update_id": 900 + i,
                "message": {
                    "message_id": 10 + i,
                    "date": int(time.time()),
                    "text": "still there?",
                    "chat": {"id": int(TG_CHAT), "type": "private", "first_name": "Ana"},
                },
            }
            resp = await gw.client.post(
                f"/webhooks/telegram/{BOT_1}", data=json.dumps(update), headers=tg_headers()
            )
            assert resp.status == 200
        assert time.perf_counter() - started < 0.5
        await gw.echo("wamid.echo.stall")  # an echo's notice is queued, never awaited
        assert time.perf_counter() - started < 0.6
        assert await gw.pending() == 1  # the stalled notice is still being retried
    finally:
        await gw.notifier.stop(0.1)
        await running


# --- config -------------------------------------------------------------------------------


def _config(notifications: str) -> str:
    return TEST_CONFIG + "notifications:\n" + notifications


@pytest.mark.parametrize(
    ("section_text", "key"),
    [
        ("  link_template: https://crm.example/{contact}\n", "notifications.link_template"),
        (
            "  webhooks: [{url: 'http://crm.example/hook', secret: abcdefghijklmnopqrs}]\n",
            "notifications.webhooks[0].url",
        ),
        (
            "  telegram: {bot_token: 'not-a-token', chat_id: '-100123'}\n",
            "notifications.telegram.bot_token",
        ),
        (
            "  telegram: {bot_token: '1:abc', chat_id: 'general'}\n",
            "notifications.telegram.chat_id",
        ),
        ("  max_attempts: 0\n", "notifications.max_attempts"),
        ("  webhook: []\n", "webhook"),
    ],
)
def test_a_bad_notifications_section_names_its_key(
    redis_url: str, section_text: str, key: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        loads(_config(section_text), gateway_env(redis_url))
    assert key in str(raised.value)
    assert "abcdefghijklmnopqrs" not in str(raised.value)


def test_the_notification_secrets_are_redacted_like_every_other(redis_url: str) -> None:
    text = _config(
        "  telegram: {bot_token: '7000000009:AAHstafftokenccccccccc', chat_id: '-100123'}\n"
        "  webhooks: [{url: 'https://crm.example/hook', secret: hook-secret-0123456789}]\n"
        "  link_template: 'https://crm.example/c/{conversation_id}'\n"
    )
    settings = loads(text, gateway_env(redis_url))
    values = {s.value for s in secrets_of(settings)}
    assert {"7000000009:AAHstafftokenccccccccc", "hook-secret-0123456789"} <= values


# --- properties -----------------------------------------------------------------------------


@given(st.binary(max_size=2048), st.text(min_size=1, max_size=40), st.integers(0, 2**40))
def test_a_signature_verifies_only_its_own_bytes(body: bytes, secret: str, stamp: int) -> None:
    headers = {TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: sign(secret, stamp, body)}
    assert verify(secret, headers, body, stamp)
    assert not verify(secret, headers, body + b"x", stamp)
    assert not verify(secret + "x", headers, body, stamp)
    assert not verify(secret, headers, body, stamp + 301)


@given(st.text(max_size=60))
def test_a_link_cannot_be_steered_by_an_id(contact: str) -> None:
    fields = dict.fromkeys(("conversation_id", "channel", "account_id", "assistant_id"), "x") | {
        "contact_id": contact
    }
    made = link("https://crm.example/c/{contact_id}?from=gw", fields)
    assert made is not None
    assert made.startswith("https://crm.example/c/") and made.endswith("?from=gw")
    middle = made[len("https://crm.example/c/") : -len("?from=gw")]
    assert not set(middle) & set("/?#& ")
