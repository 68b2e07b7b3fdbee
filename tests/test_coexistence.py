"""Coexistence: a person answering from the WhatsApp Business app, history sync, contact
sync and account changes, against the assistant's commands (CONTRACT §2.1, §3)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.state import OUTBOX
from gateway_demo.standins.graph_api import FakeGraphAPI
from tests.conftest import NUMBER_A, NUMBER_B, change, envelope, make_settings, stream, wa_body
from tests.test_outbound import BR_CONTACT, Gateway, wa

pytestmark = pytest.mark.cluster  # also runs against a Redis Cluster (--redis-cluster)


@pytest.fixture
async def gw(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Gateway]:
    async with FakeGraphAPI({NUMBER_A: "token-a", NUMBER_B: "token-b"}) as graph:
        settings = make_settings(
            redis_url, GRAPH_URL=graph.base_url, OUTBOUND_ENABLED="false", TAKEOVER="2"
        )
        app = create_app(settings, redis_url)
        client = await aiohttp_client(app)
        yield Gateway(client, app[OUTBOX], redis, graph, None)  # type: ignore[arg-type]


async def post(gw: Gateway, payload: dict[str, Any]) -> None:
    from tests.conftest import wa_headers

    body = wa_body(payload)
    resp = await gw.client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
    assert resp.status == 200


def echo(wamid: str, contact: str = BR_CONTACT, ts: int | None = None) -> dict[str, Any]:
    item = {
        "from": "15550001111",
        "to": contact,
        "id": wamid,
        "type": "text",
        "timestamp": str(ts or int(time.time())),
        "text": {"body": "from the app"},
    }
    value = change(NUMBER_A, "15550001111", message_echoes=[item])
    value["field"] = "smb_message_echoes"
    return envelope(value)


def history(threads: list[dict[str, Any]], progress: int = 40, chunk: int = 1) -> dict[str, Any]:
    value = change(
        NUMBER_A,
        "15550001111",
        history=[
            {
                "metadata": {"phase": 1, "chunk_order": chunk, "progress": progress},
                "threads": threads,
            }
        ],
    )
    value["field"] = "history"
    return envelope(value)


def thread(contact: str, count: int, start: int = 0) -> dict[str, Any]:
    ts = int(time.time()) - 30 * 86400
    messages = [
        {
            "from": contact if i % 2 else "15550001111",
            "id": f"wamid.h.{contact}.{start + i}",
            "timestamp": str(ts + i),
            "type": "text",
            "text": {"body": f"old message {i}"},
            "history_context": {"status": "READ"},
        }
        for i in range(start, start + count)
    ]
    return {"id": contact, "messages": messages}


async def test_echo_pauses_the_assistant_until_the_takeover_expires(gw: Gateway) -> None:
    await gw.contact_writes()
    await post(gw, echo("wamid.echo.a"))
    await gw.command("during", wa(), text="AI reply")
    await gw.command("human", wa(), text="human from the CRM", author="human")
    await gw.run()
    assert (await gw.delivery("during"))["reason"] == "human_active"
    assert (await gw.delivery("human"))["outcome"] == "sent"
    await asyncio.sleep(2.2)  # human_takeover_seconds is 2 in this test
    await gw.command("after", wa(), text="AI again")
    await gw.run()
    assert (await gw.delivery("after"))["outcome"] == "sent"


async def test_an_echo_while_a_reply_waits_for_its_slot_stops_that_reply(gw: Gateway) -> None:
    await gw.contact_writes()
    # The number's budget is used up for the next 0.8 s (as if other replies had taken
    # it): the reply is admitted, then sleeps until its slot.
    seconds, micros = await gw.redis.time()
    tat = (seconds + 0.8) * 1_000_000 + micros  # well inside the 2 s takeover
    await gw.redis.set(f"gw:rl:{{gw:inbox:support}}:whatsapp:{NUMBER_A}", int(tat), px=5000)
    await gw.command("waiting", wa(), text="AI reply in the queue")
    drained = asyncio.create_task(gw.run())
    await asyncio.sleep(0.3)  # the reply now sleeps until its slot
    await post(gw, echo("wamid.echo.race"))
    await drained
    assert (await gw.delivery("waiting"))["reason"] == "human_active"
    assert all(r.body.get("to") != "+" + BR_CONTACT for r in gw.graph.requests)


async def test_history_goes_to_its_own_stream_and_opens_no_window(
    gw: Gateway, redis: Redis
) -> None:
    contact = "5511955554444"  # never wrote live
    await post(gw, history([thread(contact, 6)]))
    events = await stream(redis, "gw:history:support")
    assert [e["kind"] for e in events] == ["history"] * 6
    assert [e["from_me"] for e in events] == [True, False] * 3
    assert events[0]["conversation_id"] == f"whatsapp:{NUMBER_A}:{contact}"
    live = await stream(redis, "gw:inbox:support")
    assert [(e["kind"], e["event"]) for e in live] == [("account", "HISTORY_PROGRESS")]
    assert live[0]["detail"] == {"phase": 1, "chunk_order": 1, "progress": 40}
    await gw.command("reply", wa(contact), text="hi from the assistant")
    await gw.run()
    assert (await gw.delivery("reply"))["reason"] == "window_closed"
    assert (await gw.redis.hget(f"gw:cv:{{gw:inbox:support}}:{wa(contact)}", "p")) is None


async def test_a_large_history_webhook_is_published_whole_and_in_order(
    gw: Gateway, redis: Redis
) -> None:
    threads = [thread(f"55119{i:08d}", 100) for i in range(30)]  # 3,000 messages
    payload = history(threads, progress=100)
    assert len(wa_body(payload)) > 450_000
    await post(gw, payload)
    events = await stream(redis, "gw:history:support")
    assert len(events) == 3000
    assert [e["message_id"] for e in events[:3]] == [f"wamid.h.5511900000000.{i}" for i in range(3)]
    await post(gw, payload)  # Meta's retry of the same sync publishes nothing twice
    assert len(await stream(redis, "gw:history:support")) == 3000
    progress = [e for e in await stream(redis, "gw:inbox:support") if e["kind"] == "account"]
    assert len(progress) == 1 and progress[0]["detail"]["progress"] == 100


async def test_a_large_webhook_is_counted_in_metrics_like_a_small_one(
    gw: Gateway, redis: Redis
) -> None:
    """Large bodies are published by a child process (router/offload.py); what it did
    still shows in this process's metrics."""
    payload = history([thread(f"55119{i:08d}", 100) for i in range(30)], progress=100)
    assert len(wa_body(payload)) > 256 * 1024  # server.offload_bytes, the default
    await post(gw, payload)
    await post(gw, payload)  # the retry: 3,000 duplicates
    text = await (await gw.client.get("/metrics")).text()
    assert 'gateway_events_total{channel="whatsapp",kind="history",type="text"} 3000.0' in text
    assert 'gateway_duplicates_total{channel="whatsapp",kind="history"} 3000.0' in text
    assert f'gateway_history_sync_progress{{account="{NUMBER_A}"}} 100.0' in text


async def test_a_large_malformed_body_is_200_and_dead_lettered_whole(
    gw: Gateway, redis: Redis
) -> None:
    from tests.conftest import wa_headers

    body = b'{"object":"whatsapp_business_account","entry":' + b"[" * 300_000
    resp = await gw.client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
    assert resp.status == 200
    [letter] = await stream(redis, "gw:deadletter")
    assert letter["reason"] == "malformed_body"
    assert base64.b64decode(letter["body_b64"]) == body


async def test_a_large_webhook_while_redis_refuses_writes_is_503_then_retried(
    gw: Gateway, redis: Redis
) -> None:
    payload = history([thread(f"55119{i:08d}", 100) for i in range(30)])
    body = wa_body(payload)
    from tests.conftest import wa_headers

    await redis.config_set("maxmemory", "1")
    try:
        resp = await gw.client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
        assert resp.status == 503
    finally:
        await redis.config_set("maxmemory", "0")
    await post(gw, payload)
    assert await redis.xlen("gw:history:support") == 3000


async def test_history_declined_is_an_account_event(gw: Gateway, redis: Redis) -> None:
    value = change(
        NUMBER_A,
        "15550001111",
        history=[
            {"errors": [{"code": 2593109, "title": "History sync is turned off by the business"}]}
        ],
    )
    value["field"] = "history"
    await post(gw, envelope(value))
    [event] = await stream(redis, "gw:inbox:support")
    assert (event["kind"], event["event"]) == ("account", "HISTORY_DECLINED")
    assert await redis.xlen("gw:history:support") == 0


async def test_contact_sync_publishes_contacts_events(gw: Gateway, redis: Redis) -> None:
    value = change(
        NUMBER_A,
        "15550001111",
        state_sync=[
            {
                "type": "contact",
                "action": "add",
                "metadata": {"timestamp": "1767225600"},
                "contact": {"full_name": "Ana Souza", "phone_number": "+5511955551234"},
            },
            {
                "type": "contact",
                "action": "remove",
                "metadata": {"timestamp": "1767225601"},
                "contact": {"phone_number": "5511955550001"},
            },
        ],
    )
    value["field"] = "smb_app_state_sync"
    await post(gw, envelope(value))
    events = await stream(redis, "gw:inbox:support")
    assert [(e["kind"], e["contact_id"], e["action"], e["contact_name"]) for e in events] == [
        ("contacts", "5511955551234", "add", "Ana Souza"),
        ("contacts", "5511955550001", "remove", None),
    ]


async def test_connection_state_is_a_gauge_per_number(gw: Gateway) -> None:
    from tests.test_outbound import post_account_update

    await post_account_update(gw, "PARTNER_REMOVED", int(time.time()))
    text = await (await gw.client.get("/metrics")).text()
    assert f'gateway_account_connected{{account="{NUMBER_A}",channel="whatsapp"}} 0.0' in text
    await post_account_update(gw, "ACCOUNT_RECONNECTED", int(time.time()) + 1)
    text = await (await gw.client.get("/metrics")).text()
    assert f'gateway_account_connected{{account="{NUMBER_A}",channel="whatsapp"}} 1.0' in text
    ready = await (await gw.client.get("/readyz")).json()
    assert ready["accounts"] == {}


async def test_history_progress_is_a_gauge_per_number(gw: Gateway) -> None:
    await post(gw, history([thread("5511955557777", 2)], progress=75))
    text = await (await gw.client.get("/metrics")).text()
    assert f'gateway_history_sync_progress{{account="{NUMBER_A}"}} 75.0' in text


def test_module_payloads_are_json() -> None:
    json.dumps(history([thread("1", 1)]))


def number_change(old: str, new: str, wamid: str) -> dict[str, Any]:
    system = {
        "from": old,
        "id": wamid,
        "timestamp": str(int(time.time())),
        "type": "system",
        "system": {
            "body": f"User {old} changed to {new}",
            "wa_id": new,
            "type": "user_changed_number",
        },
    }
    return envelope(change(NUMBER_A, "15550001111", messages=[system]))


async def test_a_changed_number_keeps_its_conversation(gw: Gateway, redis: Redis) -> None:
    old, new, newer = "14155550001", "14155550002", "14155550003"
    await gw.contact_writes(contact=old)
    await post(gw, number_change(old, new, "wamid.sys.1"))
    await gw.contact_writes(contact=new)
    events = [e for e in await stream(redis, "gw:inbox:support") if e["kind"] == "message"]
    assert [e["type"] for e in events] == ["text", "system", "text"]
    assert {e["conversation_id"] for e in events} == {wa(old)}
    assert events[2]["contact_id"] == old
    await gw.command("to-new", wa(old), text="we follow you")
    await gw.run()
    [request] = gw.graph.requests
    assert request.body["to"] == "+" + new
    delivery = await gw.delivery("to-new")
    assert delivery["outcome"] == "sent" and delivery["conversation_id"] == wa(old)
    await post(gw, number_change(new, newer, "wamid.sys.2"))  # and again
    await post(gw, number_change(new, newer, "wamid.sys.2"))  # a redelivery changes nothing
    await gw.contact_writes(contact=newer)
    latest = [e for e in await stream(redis, "gw:inbox:support") if e["kind"] == "message"][-1]
    assert latest["conversation_id"] == wa(old)
    await gw.command("to-newer", wa(old), text="still here")
    await gw.run()
    assert gw.graph.requests[-1].body["to"] == "+" + newer


async def test_a_changed_number_keeps_the_window_and_the_pause(gw: Gateway) -> None:
    old, new = "14155550011", "14155550012"
    await gw.contact_writes(contact=old)
    await post(gw, echo("wamid.echo.before", contact=old))  # a person took over
    await post(gw, number_change(old, new, "wamid.sys.3"))
    await gw.command("paused", wa(old), text="AI")
    await gw.run()
    assert (await gw.delivery("paused"))["reason"] == "human_active"
    await gw.command("human", wa(old), text="human", author="human")
    await gw.run()
    assert (await gw.delivery("human"))["outcome"] == "sent"  # window carried over
    assert gw.graph.requests[-1].body["to"] == "+" + new


async def test_one_malformed_history_thread_costs_only_itself(gw: Gateway, redis: Redis) -> None:
    good = thread("5511955550099", 3)
    bad = {"messages": thread("5511955550098", 2)["messages"]}  # no thread id
    await post(gw, history([good, bad, thread("5511955550097", 2)]))
    assert len(await stream(redis, "gw:history:support")) == 5
    [letter] = await stream(redis, "gw:deadletter")
    assert letter["reason"] == "malformed_item" and "threads[1]" in letter["detail"]


async def test_an_echo_stamped_ahead_of_the_clock_pauses_the_ai_from_now(
    gw: Gateway, redis: Redis
) -> None:
    """Takeover is counted from the echo's time, but never from later than now."""
    now = int(time.time())
    await post(gw, echo("wamid.AHEAD", ts=now + 3600))  # within a day: published
    [event] = await stream(redis, "gw:inbox:support")
    assert event["kind"] == "echo" and event["timestamp"] == now + 3600
    key = f"gw:cv:{{gw:inbox:support}}:whatsapp:{NUMBER_A}:{BR_CONTACT}"
    paused_until = int(await redis.hget(key, "p"))
    assert paused_until <= int(time.time()) + 2  # TAKEOVER=2 in this fixture, not 3602
