"""Outbound end to end: commands in `gw:outbox` → policy → the stand-in Graph / Bot API →
one `delivery` event each in the assistant's inbox. Real Redis, real HTTP, workers run in
drain mode (`Outbox.drain`) so tests wait for work, not for time."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from adapters import whatsapp
from adapters.schema import Command
from adapters.whatsapp import PAIR_BUCKET, PAIR_REFILL_SECONDS
from gateway.app import create_app
from gateway.state import OUTBOX
from gateway_demo.standins.bot_api import FakeBotAPI
from gateway_demo.standins.graph_api import FakeGraphAPI
from router.accounts import Account, Directory
from router.entry import Unusable, Usable, decode
from router.keys import inbox, limiter
from router.outbound import Outbox
from tests.conftest import (
    BOT_1,
    NUMBER_A,
    NUMBER_B,
    change,
    envelope,
    make_settings,
    stream,
    text_message,
    tg_headers,
    wa_body,
    wa_headers,
)

pytestmark = pytest.mark.cluster  # also runs against a Redis Cluster (--redis-cluster)

BR_CONTACT = "5511987650000"
US_CONTACT = "14155550100"
TG_CHAT = "123456789"
BOT_1_TOKEN = f"{BOT_1}:AAHtesttokenaaaaaaaaaaaaaaaaaaaaaaa"
BOT_2_TOKEN = "7000000002:AAHtesttokenbbbbbbbbbbbbbbbbbbbbbbb"


@dataclass
class Gateway:
    client: TestClient
    outbox: Outbox
    redis: Redis
    graph: FakeGraphAPI
    bot: FakeBotAPI

    async def contact_writes(
        self, contact: str = BR_CONTACT, number: str = NUMBER_A, ago_s: int = 60
    ) -> None:
        wamid = f"wamid.in.{contact}.{time.time_ns()}"
        c, m = text_message(wamid, contact, ts=int(time.time()) - ago_s)
        body = wa_body(envelope(change(number, "15550001111", contacts=[c], messages=[m])))
        resp = await self.client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
        assert resp.status == 200

    async def tg_user_writes(self, chat: str = TG_CHAT) -> None:
        update = {
            "update_id": time.time_ns() % 10**12,
            "message": {
                "message_id": 7,
                "date": int(time.time()),
                "text": "hi",
                "chat": {"id": int(chat), "type": "private", "first_name": "Ana"},
                "from": {"id": int(chat), "is_bot": False, "first_name": "Ana"},
            },
        }
        resp = await self.client.post(
            f"/webhooks/telegram/{BOT_1}", data=json.dumps(update), headers=tg_headers()
        )
        assert resp.status == 200

    async def command(self, command_id: str, conversation: str, **fields: Any) -> None:
        command = {
            "schema": 1,
            "command_id": command_id,
            "conversation_id": conversation,
            "type": "text",
            **fields,
        }
        await self.redis.xadd("gw:outbox", {"command": json.dumps(command)})

    async def run(self) -> None:
        await self.outbox.drain()

    async def deliveries(self, assistant: str = "support") -> list[dict[str, Any]]:
        events = await stream(self.redis, f"gw:inbox:{assistant}")
        return [e for e in events if e["kind"] == "delivery"]

    async def delivery(self, command_id: str, assistant: str = "support") -> dict[str, Any]:
        found = [d for d in await self.deliveries(assistant) if d["command_id"] == command_id]
        assert len(found) == 1, found
        return found[0]


def wa(contact: str = BR_CONTACT, number: str = NUMBER_A) -> str:
    return f"whatsapp:{number}:{contact}"


def tg(chat: str = TG_CHAT, bot: str = BOT_1) -> str:
    return f"telegram:{bot}:{chat}"


TEMPLATE = {"name": "order_ready", "language": "en_US", "components": [], "category": "utility"}
MARKETING = {**TEMPLATE, "name": "promo", "category": "marketing"}


@pytest.fixture
async def gw(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Gateway]:
    tokens = {NUMBER_A: "token-a", NUMBER_B: "token-b"}
    async with FakeGraphAPI(tokens) as graph, FakeBotAPI([BOT_1_TOKEN, BOT_2_TOKEN]) as bot:
        settings = make_settings(
            redis_url,
            GRAPH_URL=graph.base_url,
            BOT_URL=bot.base_url,
            OUTBOUND_ENABLED="false",
            SEND_WAIT_MAX="5",
        )
        app = create_app(settings, redis_url)
        client = await aiohttp_client(app)
        yield Gateway(client, app[OUTBOX], redis, graph, bot)


async def test_text_inside_the_window_is_sent_and_reported(gw: Gateway) -> None:
    await gw.contact_writes()
    await gw.command("c1", wa(), text="Olá! Como posso ajudar?", reply_to="wamid.q")
    await gw.run()
    [request] = gw.graph.requests
    assert request.token == "token-a" and request.phone_number_id == NUMBER_A
    assert request.body["to"] == "+" + BR_CONTACT
    assert request.body["text"]["body"] == "Olá! Como posso ajudar?"
    assert request.body["context"] == {"message_id": "wamid.q"}
    assert request.body["biz_opaque_callback_data"] == "c1"
    delivery = await gw.delivery("c1")
    assert delivery["outcome"] == "sent" and delivery["reason"] is None
    assert delivery["message_id"].startswith("wamid.") and delivery["duplicate"] is False
    assert delivery["conversation_id"] == wa() and delivery["assistant_id"] == "support"
    assert await gw.redis.xpending("gw:outbox", "gateway") == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }


async def test_text_outside_the_window_is_rejected_without_calling_the_api(gw: Gateway) -> None:
    await gw.command("c-closed", wa(), text="hello")
    await gw.contact_writes(contact=US_CONTACT, ago_s=25 * 3600)  # wrote, but 25 h ago
    await gw.command("c-old", wa(US_CONTACT), text="hello?")
    await gw.run()
    assert gw.graph.requests == []
    for command_id in ("c-closed", "c-old"):
        delivery = await gw.delivery(command_id)
        assert (delivery["outcome"], delivery["reason"]) == ("rejected", "window_closed")


async def test_typing_and_read_follow_the_window_and_use_the_last_inbound(gw: Gateway) -> None:
    await gw.command("t-closed", wa(), type="typing")
    await gw.run()
    assert (await gw.delivery("t-closed"))["reason"] == "window_closed"
    await gw.contact_writes()
    await gw.command("t1", wa(), type="typing")
    await gw.command("r1", wa(), type="read", reply_to="wamid.explicit")
    await gw.run()
    typing, read = gw.graph.requests
    assert typing.body["status"] == "read" and typing.body["typing_indicator"] == {"type": "text"}
    assert typing.body["message_id"].startswith(f"wamid.in.{BR_CONTACT}")
    assert read.body["message_id"] == "wamid.explicit" and "typing_indicator" not in read.body
    assert (await gw.delivery("t1"))["outcome"] == "sent"


async def test_template_from_a_us_number_to_brazil_is_cross_country(gw: Gateway) -> None:
    await gw.command("x1", wa(BR_CONTACT, NUMBER_A), type="template", template=TEMPLATE)
    await gw.command("x2", wa(US_CONTACT, NUMBER_B), type="template", template=TEMPLATE)
    await gw.command("x3", wa("5521999990000", NUMBER_B), type="template", template=TEMPLATE)
    await gw.run()
    for command_id, assistant in (("x1", "support"), ("x2", "sales")):
        delivery = await gw.delivery(command_id, assistant)
        assert (delivery["outcome"], delivery["reason"]) == ("rejected", "cross_country")
    assert (await gw.delivery("x3", "sales"))["outcome"] == "sent"  # BR number to BR contact
    [request] = gw.graph.requests
    assert request.body["template"] == {"name": "order_ready", "language": {"code": "en_US"}}


async def test_in_window_reply_across_the_border_is_not_business_initiated(gw: Gateway) -> None:
    await gw.contact_writes(BR_CONTACT, NUMBER_A)
    await gw.command("in-window", wa(BR_CONTACT, NUMBER_A), text="oi")
    await gw.run()
    assert (await gw.delivery("in-window"))["outcome"] == "sent"


async def test_a_duplicated_command_id_is_sent_once(gw: Gateway) -> None:
    await gw.contact_writes()
    for _ in range(3):
        await gw.command("dup", wa(), text="only once")
    await gw.run()
    await gw.command("dup", wa(), text="only once")  # again, after it finished
    await gw.run()
    assert len(gw.graph.requests) == 1
    deliveries = [d for d in await gw.deliveries() if d["command_id"] == "dup"]
    assert [d["duplicate"] for d in deliveries] == [False, True, True, True]
    assert len({d["message_id"] for d in deliveries}) == 1
    assert {d["outcome"] for d in deliveries} == {"sent"}


async def test_throughput_error_is_retried_and_ends_sent(gw: Gateway) -> None:
    await gw.contact_writes()
    gw.graph.fail(130429, times=2)
    await gw.command("retry", wa(), text="eventually")
    await gw.run()
    assert [r.status for r in gw.graph.requests] == [429, 429, 200]
    delivery = await gw.delivery("retry")
    assert delivery["outcome"] == "sent" and delivery["provider_code"] is None


async def test_the_request_is_built_once_per_command(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built before any slot is taken, and the same request goes out on every attempt."""
    built: list[str] = []
    real = whatsapp.CHANNEL.request

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(args[2].command_id)
        return real(*args, **kwargs)

    monkeypatch.setattr(whatsapp.CHANNEL, "request", counting)
    await gw.contact_writes()
    gw.graph.fail(130429, times=2)
    await gw.command("once", wa(), text="built once")
    await gw.command("typing", wa(), type="typing")
    await gw.run()
    assert built == ["once", "typing"]
    assert [r.status for r in gw.graph.requests] == [429, 429, 200, 200]
    assert gw.graph.requests[3].body["message_id"].startswith(f"wamid.in.{BR_CONTACT}")


async def test_typing_for_a_contact_that_changed_number_marks_the_new_numbers_message(
    gw: Gateway,
) -> None:
    """The conversation state that counts is the new number's (as publish.lua leaves it)."""
    old, new, now = "14155550021", "14155550022", int(time.time())
    conv = f"gw:cv:{{gw:inbox:support}}:whatsapp:{NUMBER_A}:"
    await gw.redis.hset(conv + old, mapping={"t": now, "m": "wamid.OLD", "a": new})
    await gw.redis.hset(conv + new, mapping={"t": now, "m": "wamid.NEW", "alias": old})
    await gw.command("moved", wa(old), type="typing")
    await gw.run()
    [request] = gw.graph.requests
    assert request.body["message_id"] == "wamid.NEW"
    assert (await gw.delivery("moved"))["outcome"] == "sent"


async def test_131047_fails_with_its_code_and_is_not_retried(gw: Gateway) -> None:
    await gw.contact_writes()
    gw.graph.fail(131047)
    await gw.command("reengage", wa(), text="too late")
    await gw.run()
    assert len(gw.graph.requests) == 1
    delivery = await gw.delivery("reengage")
    assert (delivery["outcome"], delivery["reason"], delivery["provider_code"]) == (
        "failed",
        "provider_error",
        131047,
    )


async def test_retries_stop_after_max_attempts(gw: Gateway) -> None:
    await gw.contact_writes()
    gw.graph.fail(131000, times=10)
    await gw.command("always-500", wa(), text="x")
    await gw.run()
    assert len(gw.graph.requests) == 4  # retry.max_attempts in the test config
    delivery = await gw.delivery("always-500")
    assert (delivery["outcome"], delivery["provider_code"]) == ("failed", 131000)


async def test_marketing_opt_out_is_remembered_until_the_contact_writes(gw: Gateway) -> None:
    await gw.contact_writes(contact="5511900000001", number=NUMBER_B)
    conv = wa("5511900000001", NUMBER_B)
    gw.graph.fail(131050)
    await gw.command("m1", conv, type="template", template=MARKETING)
    await gw.run()
    first = await gw.delivery("m1", "sales")
    assert (first["outcome"], first["reason"], first["provider_code"]) == (
        "failed",
        "opted_out",
        131050,
    )
    await gw.command("m2", conv, type="template", template=MARKETING)
    await gw.command("u1", conv, type="template", template=TEMPLATE)
    await gw.command("t1", conv, text="in-window reply still goes")
    await gw.run()
    assert (await gw.delivery("m2", "sales"))["reason"] == "opted_out"
    assert (await gw.delivery("u1", "sales"))["outcome"] == "sent"
    assert (await gw.delivery("t1", "sales"))["outcome"] == "sent"
    assert len(gw.graph.requests) == 3  # m2 never reached the API
    await gw.contact_writes(contact="5511900000001", number=NUMBER_B)
    await gw.command("m3", conv, type="template", template=MARKETING)
    await gw.run()
    assert (await gw.delivery("m3", "sales"))["outcome"] == "sent"


async def test_telegram_block_is_remembered_until_the_user_writes(gw: Gateway) -> None:
    gw.bot.block(TG_CHAT)
    await gw.command("b1", tg(), text="hello")
    await gw.run()
    first = await gw.delivery("b1")
    assert (first["outcome"], first["reason"], first["provider_code"]) == (
        "failed",
        "opted_out",
        403,
    )
    await gw.command("b2", tg(), text="hello again")
    await gw.run()
    assert (await gw.delivery("b2"))["reason"] == "opted_out"
    assert len(gw.bot.requests) == 1
    gw.bot.unblock(TG_CHAT)
    await gw.tg_user_writes()
    await gw.command("b3", tg(), text="welcome back")
    await gw.run()
    delivery = await gw.delivery("b3")
    assert delivery["outcome"] == "sent" and delivery["message_id"]


async def test_telegram_text_buttons_and_typing(gw: Gateway) -> None:
    buttons = [{"id": "yes", "title": "Yes"}, {"id": "no", "title": "No"}]
    await gw.command("k1", tg(), type="interactive", text="Confirm?", buttons=buttons)
    await gw.command("k2", tg(), type="typing")
    await gw.run()
    methods = [r.method for r in gw.bot.requests]
    assert methods == ["sendMessage", "sendChatAction"]
    keyboard = gw.bot.requests[0].params["reply_markup"]["inline_keyboard"]
    assert keyboard == [
        [{"text": "Yes", "callback_data": "yes"}],
        [{"text": "No", "callback_data": "no"}],
    ]
    assert (await gw.delivery("k1"))["outcome"] == "sent"


async def test_telegram_429_retry_after_is_obeyed(gw: Gateway) -> None:
    gw.bot.fail(429, retry_after=1, chat_id=TG_CHAT)
    await gw.command("slow", tg(), text="x")
    started = time.monotonic()
    await gw.run()
    first, second = gw.bot.requests
    assert second.arrived - first.arrived >= 1.0
    assert time.monotonic() - started >= 1.0
    assert (await gw.delivery("slow"))["outcome"] == "sent"


async def test_credential_error_halts_the_number_without_a_retry_storm(gw: Gateway) -> None:
    await gw.contact_writes()
    gw.graph.fail(190)
    await gw.command("h1", wa(), text="x")
    await gw.command("h2", wa(), text="y")
    await gw.run()
    assert len(gw.graph.requests) == 1
    for command_id in ("h1", "h2"):
        delivery = await gw.delivery(command_id)
        assert (delivery["outcome"], delivery["provider_code"]) == ("failed", 190)
    metrics = await (await gw.client.get("/metrics")).text()
    assert f'gateway_account_halted{{account="{NUMBER_A}",channel="whatsapp"}} 1.0' in metrics
    ready = await gw.client.get("/readyz")
    assert ready.status == 200  # webhooks are still taken
    assert (await ready.json())["accounts"] == {f"whatsapp:{NUMBER_A}": {"halted": "190"}}


async def test_a_failed_delivery_says_why_in_the_event_and_the_log(
    gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    await gw.contact_writes()
    gw.graph.fail(190)
    with caplog.at_level(logging.WARNING, logger="gateway.outbound"):
        await gw.command("why-1", wa(), text="x")
        await gw.command("why-2", wa(), text="y")
        await gw.run()
    first, second = await gw.delivery("why-1"), await gw.delivery("why-2")
    assert (first["outcome"], first["provider_code"]) == ("failed", 190)
    assert "Invalid OAuth access token" in first["detail"]
    assert "halted by provider error 190" in second["detail"]  # never sent: why, in words
    lines = [r.getMessage() for r in caplog.records if "failed: provider_error" in r.getMessage()]
    assert any(
        line.startswith(f"command why-1 to {wa()} failed: provider_error, provider code 190: ")
        and "Invalid OAuth access token" in line
        for line in lines
    ), lines
    assert all("token-a" not in line for line in lines)


async def test_a_network_failure_says_so_without_the_token(
    aiohttp_client: Any, redis: Redis, redis_url: str
) -> None:
    settings = make_settings(redis_url, OUTBOUND_ENABLED="false", SEND_WAIT_MAX="5")
    app = create_app(settings, redis_url)  # the Bot API at an address nothing listens on
    client = await aiohttp_client(app)
    gw = Gateway(client, app[OUTBOX], redis, None, None)  # type: ignore[arg-type]
    await gw.tg_user_writes()
    await gw.command("net-1", tg(), text="x")
    await gw.run()
    delivery = await gw.delivery("net-1")
    assert (delivery["outcome"], delivery["reason"]) == ("failed", "provider_error")
    assert delivery["detail"].startswith("network: ClientConnectorError: Cannot connect to host")
    assert "AAHtest" not in delivery["detail"]


async def test_handoff_pauses_the_assistant_but_not_humans(gw: Gateway) -> None:
    await gw.contact_writes()
    await gw.command("ho", wa(), type="handoff")
    await gw.command("ai-1", wa(), text="AI here")
    await gw.command("human-1", wa(), text="human here", author="human")
    await gw.run()
    assert (await gw.delivery("ho"))["outcome"] == "sent"
    assert (await gw.delivery("ho"))["message_id"] is None
    assert (await gw.delivery("ai-1"))["reason"] == "human_active"
    assert (await gw.delivery("human-1"))["outcome"] == "sent"
    await gw.contact_writes()
    assert (await stream(gw.redis, "gw:inbox:support"))[-1]["ai_paused"] is True
    await gw.command("hb", wa(), type="handback")
    await gw.command("ai-2", wa(), text="AI again")
    await gw.run()
    assert (await gw.delivery("ai-2"))["outcome"] == "sent"
    assert len(gw.graph.requests) == 2


async def test_an_echo_pauses_the_assistant(gw: Gateway) -> None:
    await gw.contact_writes()
    echo = {
        "from": "15550001111",
        "to": BR_CONTACT,
        "id": "wamid.echo.1",
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": "I got this"},
    }
    value = change(NUMBER_A, "15550001111", message_echoes=[echo])
    value["field"] = "smb_message_echoes"
    body = wa_body(envelope(value))
    assert (
        await gw.client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
    ).status == 200
    await gw.command("after-echo", wa(), text="AI")
    await gw.run()
    assert (await gw.delivery("after-echo"))["reason"] == "human_active"
    assert gw.graph.requests == []


async def test_bad_commands_are_answered_or_dead_lettered(gw: Gateway) -> None:
    await gw.redis.xadd("gw:outbox", {"command": b"not json"})
    await gw.redis.xadd("gw:outbox", {"command": b"[1, 2]"})
    await gw.redis.xadd("gw:outbox", {"other": b"{}"})
    await gw.command("nowhere", "whatsapp:999:123", text="x")
    await gw.command("bad-type", wa(), type="fax")
    await gw.command("no-text", tg(), text=None)
    await gw.run()
    letters = await stream(gw.redis, "gw:deadletter")
    assert sorted(d["reason"] for d in letters) == [
        "invalid_command",
        "invalid_command",
        "invalid_command",
        "unknown_conversation",
    ]
    [garbage] = [d for d in letters if d.get("command") == "not json"]
    assert "body_b64" not in garbage and garbage["schema"] == 1
    for command_id in ("bad-type", "no-text"):
        delivery = await gw.delivery(command_id)
        assert (delivery["outcome"], delivery["reason"]) == ("rejected", "invalid_command")
    assert gw.graph.requests == [] and gw.bot.requests == []
    assert (await gw.redis.xpending("gw:outbox", "gateway"))["pending"] == 0


async def test_disabled_number_rejects_commands(
    aiohttp_client: Any, redis: Redis, redis_url: str
) -> None:
    settings = make_settings(redis_url, OUTBOUND_ENABLED="false")
    app = create_app(settings, redis_url)
    await aiohttp_client(app)
    await redis.xadd(
        "gw:outbox",
        {
            "command": json.dumps(
                {
                    "command_id": "off",
                    "conversation_id": "whatsapp:100200300400700:447700900000",
                    "type": "text",
                    "text": "x",
                }
            )
        },
    )
    await app[OUTBOX].drain()
    [delivery] = [e for e in await stream(redis, "gw:inbox:support") if e["kind"] == "delivery"]
    assert (delivery["outcome"], delivery["reason"]) == ("rejected", "account_inactive")


async def test_status_webhook_carries_the_command_id(gw: Gateway) -> None:
    await gw.contact_writes()
    await gw.command("tracked", wa(), text="track me")
    await gw.run()
    wamid = (await gw.delivery("tracked"))["message_id"]
    status = {
        "id": wamid,
        "status": "delivered",
        "timestamp": str(int(time.time())),
        "recipient_id": BR_CONTACT,
        "biz_opaque_callback_data": "tracked",
    }
    body = wa_body(envelope(change(NUMBER_A, "15550001111", statuses=[status])))
    await gw.client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
    [event] = [e for e in await stream(gw.redis, "gw:inbox:support") if e["kind"] == "status"]
    assert event["command_id"] == "tracked" and event["message_id"] == wamid


async def test_pair_rate_error_backs_off_that_recipient_only(gw: Gateway) -> None:
    other = "5511900000002"
    await gw.contact_writes()
    await gw.contact_writes(contact=other)
    gw.graph.fail(131056, recipient=BR_CONTACT)
    await gw.command("pair", wa(), text="to the busy one")
    await gw.command("free", wa(other), text="to someone else")
    await gw.run()
    to_busy = [r for r in gw.graph.requests if r.body.get("to") == "+" + BR_CONTACT]
    to_free = [r for r in gw.graph.requests if r.body.get("to") == "+" + other]
    assert [r.status for r in to_busy] == [429, 200]
    assert to_busy[1].arrived - to_busy[0].arrived >= 0.9  # pair_base_seconds^1 in the test
    assert to_free[0].arrived < to_busy[1].arrived  # the other recipient did not wait
    assert (await gw.delivery("pair"))["outcome"] == "sent"


async def test_a_contact_out_of_pair_budget_does_not_hold_back_the_number(gw: Gateway) -> None:
    """WhatsApp's pair rate (45 per contact, then one per 6 s) holds back that contact only:
    while its next message waits, the number keeps sending to everyone else."""
    other = "5511900000002"
    await gw.contact_writes()
    await gw.contact_writes(contact=other)
    # the contact's pair budget is spent for the next 3 s (as after 45 quick messages)
    seconds, micros = await gw.redis.time()
    tolerance = int(PAIR_REFILL_SECONDS * 1e6) * (PAIR_BUCKET - 1)
    tat = seconds * 1_000_000 + micros + 3_000_000 + tolerance
    await gw.redis.set(limiter(inbox("support"), "whatsapp", NUMBER_A, BR_CONTACT), tat)
    pushed = time.monotonic()
    await gw.command("spent", wa(), text="to the contact out of budget")
    await gw.command("fresh", wa(other), text="to someone else")
    await gw.run()
    [to_spent] = [r for r in gw.graph.requests if r.body.get("to") == "+" + BR_CONTACT]
    [to_fresh] = [r for r in gw.graph.requests if r.body.get("to") == "+" + other]
    assert to_fresh.arrived - pushed < 1.0  # not 3 s behind the other conversation
    assert to_spent.arrived - pushed >= 2.9
    assert (await gw.delivery("spent"))["outcome"] == "sent"


async def test_waiting_too_long_for_a_slot_is_rate_limited(gw: Gateway) -> None:
    await gw.contact_writes()
    for i in range(130):  # 20 mps coexistence number, send_wait_max 5 s: ~100 fit
        await gw.command(f"burst-{i}", wa(), text=str(i))
    await gw.run()
    outcomes = [(d["outcome"], d["reason"]) for d in await gw.deliveries()]
    assert outcomes.count(("rejected", "rate_limited")) >= 20
    assert gw.graph.peak_per_second(NUMBER_A) <= 20


async def test_a_worker_that_died_mid_entry_is_taken_over(
    aiohttp_client: Any, redis: Redis, redis_url: str
) -> None:
    tokens = {NUMBER_A: "token-a", NUMBER_B: "token-b"}
    async with FakeGraphAPI(tokens) as graph:
        settings = make_settings(
            redis_url, GRAPH_URL=graph.base_url, OUTBOUND_ENABLED="false", CLAIM_IDLE="5"
        )
        app = create_app(settings, redis_url)
        client = await aiohttp_client(app)
        gw = Gateway(client, app[OUTBOX], redis, graph, None)  # type: ignore[arg-type]
        await gw.contact_writes()
        await gw.outbox.ensure_group()
        await gw.command("survivor", wa(), text="sent by the second worker")
        # A worker reads the entry and dies before acknowledging it.
        await redis.xreadgroup("gateway", "dead-worker", {"gw:outbox": ">"}, count=10)
        await gw.run()
        assert graph.requests == []  # still owned by the dead worker
        await redis.xclaim(
            "gw:outbox",
            "gateway",
            "dead-worker",
            0,
            [e for e, _ in (await redis.xrange("gw:outbox"))],
            idle=6000,
        )
        await gw.outbox.consumer.reclaim()
        await gw.run()
        assert len(graph.requests) == 1
        assert (await gw.delivery("survivor"))["outcome"] == "sent"


async def test_a_command_cut_off_mid_send_is_never_sent_again(gw: Gateway) -> None:
    await gw.contact_writes()
    record = "gw:cmd:{gw:inbox:support}:mid-send"
    await gw.redis.hset(record, mapping={"s": "sending", "e": "1-0", "o": "dead/1-0", "l": "0"})
    await gw.command("mid-send", wa(), text="was it sent?")
    await gw.run()
    assert gw.graph.requests == []
    delivery = await gw.delivery("mid-send")
    assert (delivery["outcome"], delivery["reason"]) == ("failed", "provider_error")


async def test_inbound_messages_are_charged_to_the_numbers_budget(gw: Gateway) -> None:
    for i in range(20):  # 20 inbound messages fill the coexistence number's 20 mps
        await gw.contact_writes(contact=f"55119000001{i:02d}")
    await gw.command("after-inbound", wa("5511900000100"), text="x")
    started = time.monotonic()
    await gw.run()
    assert time.monotonic() - started >= 0.5
    assert (await gw.delivery("after-inbound"))["outcome"] == "sent"


def test_results_are_stored_compactly() -> None:
    from router.ledger import Result

    assert msgspec.json.encode(Result("sent", None, None, "wamid.1")) == (
        b'{"outcome":"sent","message_id":"wamid.1"}'
    )
    failed = Result("failed", "provider_error", 190, None, "Graph 190: Invalid OAuth access token")
    assert msgspec.json.decode(msgspec.json.encode(failed), type=Result) == failed


async def post_account_update(gw: Gateway, event: str, time_s: int) -> None:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "200300400500600",
                "time": time_s,
                "changes": [
                    {
                        "field": "account_update",
                        "value": {
                            "event": event,
                            "disconnection_info": {"reason": "PRIMARY_INACTIVITY"},
                        },
                    }
                ],
            }
        ],
    }
    body = wa_body(payload)
    resp = await gw.client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
    assert resp.status == 200


async def test_partner_removed_disconnects_the_number_until_reconnected(gw: Gateway) -> None:
    await gw.contact_writes()
    await post_account_update(gw, "PARTNER_REMOVED", int(time.time()))
    [account] = [e for e in await stream(gw.redis, "gw:inbox:support") if e["kind"] == "account"]
    assert account["connected"] is False and account["account_id"] == NUMBER_A
    await gw.command("while-removed", wa(), text="hello?")
    await gw.run()
    delivery = await gw.delivery("while-removed")
    assert (delivery["outcome"], delivery["reason"]) == ("rejected", "account_disconnected")
    assert gw.graph.requests == []
    await post_account_update(gw, "PARTNER_ADDED", int(time.time()) + 1)
    await gw.command("reconnected", wa(), text="back")
    await gw.run()
    assert (await gw.delivery("reconnected"))["outcome"] == "sent"


async def test_disabled_numbers_webhooks_are_kept_and_marked_inactive(gw: Gateway) -> None:
    c, m = text_message("wamid.disabled.1", "447700900123")
    body = wa_body(envelope(change("100200300400700", "442071838750", contacts=[c], messages=[m])))
    resp = await gw.client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
    assert resp.status == 200
    [event] = await stream(gw.redis, "gw:inbox:support")
    assert event["account_active"] is False and event["message_id"] == "wamid.disabled.1"
    await gw.contact_writes()
    assert (await stream(gw.redis, "gw:inbox:support"))[-1]["account_active"] is True


async def test_a_restart_with_the_number_re_enabled_forgets_the_disconnect(gw: Gateway) -> None:
    state = f"gw:acct:{{gw:inbox:support}}:whatsapp:{NUMBER_A}"
    await gw.redis.hset(state, mapping={"disc": "PARTNER_REMOVED", "enabled": "1"})
    assert await gw.outbox.start()  # a plain restart: still disconnected
    assert await gw.redis.hget(state, "disc") == b"PARTNER_REMOVED"
    await gw.redis.hset(state, "enabled", "0")  # it was disabled at the previous start
    assert await gw.outbox.start()
    assert await gw.redis.hget(state, "disc") is None
    assert await gw.redis.hget(state, "enabled") == b"1"


async def test_time_behind_earlier_replies_counts_against_the_wait_budget(gw: Gateway) -> None:
    await gw.contact_writes()
    for i in range(60):  # one contact: 45 go at the number's pace, then one per 6 s (pair rate)
        await gw.command(f"q-{i}", wa(), text=str(i))
    await gw.run()
    deliveries = {d["command_id"]: d for d in await gw.deliveries()}
    sent = [i for i in range(60) if deliveries[f"q-{i}"]["outcome"] == "sent"]
    limited = [i for i in range(60) if deliveries[f"q-{i}"]["reason"] == "rate_limited"]
    assert sent == list(range(len(sent))) and 45 <= len(sent) <= 47  # in order, then none
    assert limited == list(range(len(sent), 60))  # send_wait_max is 5 s in these tests
    arrivals = [r.body["biz_opaque_callback_data"] for r in gw.graph.requests]
    assert arrivals == [f"q-{i}" for i in sent]  # replies reach the customer in order


async def test_an_entry_delivered_too_often_is_dead_lettered_and_answered(gw: Gateway) -> None:
    await gw.contact_writes()
    await gw.outbox.ensure_group()
    await gw.command("poison", wa(), text="crashes every worker")
    reply = await gw.redis.xreadgroup("gateway", "w0", {"gw:outbox": ">"})
    [[_name, [(entry_id, _fields)]]] = reply
    for i in range(6):  # six workers took it and died: delivered 7 times
        await gw.redis.xclaim("gw:outbox", "gateway", f"w{i + 1}", 0, [entry_id])
    await gw.redis.xclaim("gw:outbox", "gateway", "w7", 0, [entry_id], idle=60_000)
    await gw.outbox.consumer.reclaim()
    await gw.run()
    assert gw.graph.requests == []
    [letter] = await stream(gw.redis, "gw:deadletter")
    assert letter["reason"] == "max_deliveries" and "poison" in letter["command"]
    delivery = await gw.delivery("poison")
    assert (delivery["outcome"], delivery["reason"]) == ("failed", "provider_error")
    assert (await gw.redis.xpending("gw:outbox", "gateway"))["pending"] == 0


async def test_an_invalid_command_takes_no_rate_limit_slot(gw: Gateway) -> None:
    await gw.contact_writes()
    slot = f"gw:rl:{{gw:inbox:support}}:whatsapp:{NUMBER_A}"
    before = await gw.redis.get(slot)  # the inbound message's charge
    buttons = [{"id": str(i), "title": f"option {i}"} for i in range(4)]  # WhatsApp allows 3
    await gw.command("four-buttons", wa(), type="interactive", text="pick", buttons=buttons)
    await gw.run()
    delivery = await gw.delivery("four-buttons")
    assert (delivery["outcome"], delivery["reason"]) == ("rejected", "invalid_command")
    assert await gw.redis.get(slot) == before
    assert gw.graph.requests == []


async def test_consumers_left_by_restarted_processes_are_removed_at_start(
    aiohttp_client: Any, redis: Redis, redis_url: str
) -> None:
    """Each process reads gw:outbox as a consumer of its own; what restarts leave behind is
    cleaned up, but never a consumer that still holds entries another process must take over."""
    await redis.xgroup_create("gw:outbox", "gateway", id="0", mkstream=True)
    await redis.xadd("gw:outbox", {"command": "{}"})
    await redis.xreadgroup("gateway", "gone-with-an-entry", {"gw:outbox": ">"}, count=1)
    await redis.xreadgroup("gateway", "gone-empty", {"gw:outbox": ">"}, count=1)
    settings = make_settings(redis_url, CLAIM_IDLE="30")
    settings = msgspec.structs.replace(
        settings,
        outbound=msgspec.structs.replace(settings.outbound, dead_consumer_seconds=0.2),
    )
    await asyncio.sleep(0.3)
    await aiohttp_client(create_app(settings, redis_url))  # starts the reply workers
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        consumers = await redis.xinfo_consumers("gw:outbox", "gateway")
        names = {c["name"].decode() for c in consumers}
        if "gone-empty" not in names:
            break
        await asyncio.sleep(0.05)
    assert "gone-empty" not in names
    assert "gone-with-an-entry" in names  # its pending entry waits for a takeover


ROUTABLE = wa(BR_CONTACT, NUMBER_A)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ("invalid_command", "entry has no command field")),
        (b"{not json", ("invalid_command", "not JSON")),
        (b'[{"command_id": "a"}]', ("invalid_command", "entry is not a JSON object")),
        (b'{"command_id": "a", "type": "text"}', ("unknown_conversation", "")),
        (
            b'{"command_id": "a", "conversation_id": 5, "type": "text"}',
            ("unknown_conversation", ""),
        ),
        (
            b'{"command_id": "a", "conversation_id": "whatsapp:999:1", "type": "text"}',
            ("unknown_conversation", ""),
        ),
        (
            b'{"command_id": "a", "conversation_id": "whatsapp:999:1", "type": "bogus"}',
            ("unknown_conversation", ""),
        ),
        (f'{{"conversation_id": "{ROUTABLE}", "type": "text"}}'.encode(), ("invalid_command", "")),
        (
            f'{{"command_id": "", "conversation_id": "{ROUTABLE}", "type": "text"}}'.encode(),
            ("invalid_command", "command_id missing"),
        ),
        (
            f'{{"command_id": 7, "conversation_id": "{ROUTABLE}", "type": "text"}}'.encode(),
            ("invalid_command", "command_id missing"),
        ),
        (
            f'{{"command_id": "a", "conversation_id": "{ROUTABLE}", "type": "bogus"}}'.encode(),
            ("invalid", None),
        ),
        (
            f'{{"command_id": "a", "conversation_id": "{ROUTABLE}", "type": "text"}}'.encode(),
            ("text", Command),
        ),
    ],
)
def test_each_entry_is_decoded_once_into_its_outcome(raw: bytes | None, expected: Any) -> None:
    """CONTRACT §2.2: dead letters for what cannot be routed or has no command_id; routed, the
    typed Command of a valid one, or none for one that is not valid (it gets a
    `rejected/invalid_command` delivery)."""
    account = Account("whatsapp", NUMBER_A, "support", "t", True, 20.0, "+15550001111")
    decoded = decode(raw, Directory({("whatsapp", NUMBER_A): account}))
    if expected[0] in ("text", "invalid"):  # routed: the metric's type, the typed command
        assert isinstance(decoded, Usable) and decoded.target.conversation_id == ROUTABLE
        assert decoded.ctype == expected[0]
        assert isinstance(decoded.command, Command) == (expected[1] is Command)
    else:
        assert isinstance(decoded, Unusable) and decoded.reason == expected[0]
        assert decoded.detail.startswith(expected[1])
