"""End to end through the HTTP app into a real Redis: what Meta and Telegram see, and what
assistant backends find in their streams."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from tests.conftest import (
    APP_SECRET,
    BOT_1,
    NUMBER_A,
    NUMBER_B,
    VERIFY_TOKEN,
    WABA,
    all_keys,
    all_streams,
    change,
    cluster_mode,
    config_set,
    dedup_marks,
    envelope,
    stream,
    text_message,
    tg_headers,
    wa_body,
    wa_headers,
)
from tests.stall import loop_stall, redis_stalled

pytestmark = pytest.mark.cluster  # also runs against a Redis Cluster (--redis-cluster)

CONTRACT_MESSAGE_KEYS = {
    "schema",
    "event_id",
    "kind",
    "channel",
    "account_id",
    "contact_id",
    "conversation_id",
    "assistant_id",
    "timestamp",
    "message_id",
    "type",
    "text",
    "reply",
    "media",
    "location",
    "reply_to",
    "contact_name",
    "edited",
    "errors",
}


def three_messages_two_numbers() -> dict[str, Any]:
    c1, m1 = text_message("wamid.T1", "5511987650001", "first")
    c2, m2 = text_message("wamid.T2", "5511987650002", "second")
    c3, m3 = text_message("wamid.T3", "14155550003", "third")
    return envelope(
        change(NUMBER_A, "15550001111", contacts=[c1, c2], messages=[m1, m2]),
        change(NUMBER_B, "5511955550000", contacts=[c3], messages=[m3]),
    )


async def post_wa(client: TestClient, payload: dict[str, Any] | bytes, **headers: str) -> int:
    body = payload if isinstance(payload, bytes) else wa_body(payload)
    resp = await client.post(
        "/webhooks/whatsapp", data=body, headers={**wa_headers(body), **headers}
    )
    return resp.status


async def test_verify_handshake_echoes_the_challenge(client: TestClient) -> None:
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    resp = await client.get("/webhooks/whatsapp", params=query)
    assert resp.status == 200
    assert await resp.text() == "1158201444"


async def test_verify_refuses_wrong_token_or_mode(client: TestClient) -> None:
    wrong_token = {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"}
    wrong_mode = {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"}
    for query in (wrong_token, wrong_mode, {}):
        resp = await client.get("/webhooks/whatsapp", params=query)
        assert resp.status == 403
        assert "1" not in await resp.text()


async def test_batch_for_two_numbers_lands_in_each_assistants_inbox(
    client: TestClient, redis: Redis
) -> None:
    assert await post_wa(client, three_messages_two_numbers()) == 200
    support = await stream(redis, "gw:inbox:support")
    sales = await stream(redis, "gw:inbox:sales")
    assert [e["message_id"] for e in support] == ["wamid.T1", "wamid.T2"]
    assert [e["message_id"] for e in sales] == ["wamid.T3"]
    for event in support + sales:
        assert event.keys() >= CONTRACT_MESSAGE_KEYS
        assert event["schema"] == 1 and event["kind"] == "message" and event["type"] == "text"
    assert support[0]["conversation_id"] == f"whatsapp:{NUMBER_A}:5511987650001"
    assert support[0]["assistant_id"] == "support" and sales[0]["assistant_id"] == "sales"
    assert sales[0]["account_id"] == NUMBER_B and sales[0]["text"] == "third"
    assert len({e["event_id"] for e in support + sales}) == 3


async def test_same_post_again_adds_nothing(client: TestClient, redis: Redis) -> None:
    payload = three_messages_two_numbers()
    assert await post_wa(client, payload) == 200
    before = await all_streams(redis)
    assert await post_wa(client, payload) == 200
    assert await all_streams(redis) == before


async def test_redelivery_inside_another_batch_is_published_once(
    client: TestClient, redis: Redis
) -> None:
    c1, m1 = text_message("wamid.R1")
    c2, m2 = text_message("wamid.R2")
    await post_wa(client, envelope(change(NUMBER_A, "15550001111", contacts=[c1], messages=[m1])))
    both = envelope(change(NUMBER_A, "15550001111", contacts=[c1, c2], messages=[m1, m2]))
    await post_wa(client, both)
    assert [e["message_id"] for e in await stream(redis, "gw:inbox:support")] == [
        "wamid.R1",
        "wamid.R2",
    ]


async def test_bad_signature_is_401_and_publishes_nothing(client: TestClient, redis: Redis) -> None:
    body = wa_body(three_messages_two_numbers())
    wrong = {"X-Hub-Signature-256": "sha256=" + "0" * 64}
    resp = await client.post("/webhooks/whatsapp", data=body, headers=wrong)
    assert resp.status == 401
    resp = await client.post("/webhooks/whatsapp", data=body)  # no header at all
    assert resp.status == 401
    other_key = wa_headers(body, secret="another-app-secret")
    resp = await client.post("/webhooks/whatsapp", data=body, headers=other_key)
    assert resp.status == 401
    assert await all_streams(redis) == {}
    written = [k for k in await all_keys(redis) if not k.startswith((b"gw:outbox", b"gw:acct:"))]
    assert written == []  # nothing but the workers' own bookkeeping


async def test_signature_over_escaped_unicode_verifies_and_text_is_decoded(
    client: TestClient, redis: Redis
) -> None:
    contact, message = text_message("wamid.U1", body="Olá! Já te respondo 😀👍🏽", name="João")
    body = wa_body(
        envelope(change(NUMBER_A, "15550001111", contacts=[contact], messages=[message]))
    )
    assert b"\\ud83d" in body  # Meta's escaped form is what is signed
    assert await post_wa(client, body) == 200
    [event] = await stream(redis, "gw:inbox:support")
    assert event["text"] == "Olá! Já te respondo 😀👍🏽"
    assert event["contact_name"] == "João"


async def test_signature_over_raw_utf8_body_verifies_too(client: TestClient, redis: Redis) -> None:
    contact, message = text_message("wamid.U2", body="ação ✓")
    body = json.dumps(
        envelope(change(NUMBER_A, "15550001111", contacts=[contact], messages=[message])),
        ensure_ascii=False,
    ).encode()
    assert await post_wa(client, body) == 200
    assert (await stream(redis, "gw:inbox:support"))[0]["text"] == "ação ✓"


async def test_concurrent_duplicate_posts_publish_once(client: TestClient, redis: Redis) -> None:
    body = wa_body(three_messages_two_numbers())
    statuses = await asyncio.gather(*(post_wa(client, body) for _ in range(20)))
    assert statuses == [200] * 20
    assert len(await stream(redis, "gw:inbox:support")) == 2
    assert len(await stream(redis, "gw:inbox:sales")) == 1


async def test_malformed_json_under_valid_signature_is_200_and_dead_lettered(
    client: TestClient, redis: Redis
) -> None:
    body = b'{"object": "whatsapp_business_account", "entry": [ {"id": '
    assert await post_wa(client, body) == 200
    [letter] = await stream(redis, "gw:deadletter")
    assert letter["reason"] == "malformed_body" and letter["channel"] == "whatsapp"
    import base64

    assert base64.b64decode(letter["body_b64"]) == body
    assert letter["schema"] == 1 and isinstance(letter["received_at"], int) and letter["detail"]
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_deadletters_total{channel="whatsapp",reason="malformed_body"} 1.0' in metrics


async def test_one_bad_item_does_not_lose_the_others(client: TestClient, redis: Redis) -> None:
    c1, m1 = text_message("wamid.G1")
    c2, m2 = text_message("wamid.G2")
    bad = {"from": "5511987650000", "id": "wamid.BAD", "timestamp": {"oops": 1}, "type": "text"}
    payload = envelope(change(NUMBER_A, "15550001111", contacts=[c1, c2], messages=[m1, bad, m2]))
    assert await post_wa(client, payload) == 200
    assert [e["message_id"] for e in await stream(redis, "gw:inbox:support")] == [
        "wamid.G1",
        "wamid.G2",
    ]
    [letter] = await stream(redis, "gw:deadletter")
    assert letter["reason"] == "malformed_item"
    assert "entry[0].changes[0].value.messages[1]" in letter["detail"]
    import base64

    assert base64.b64decode(letter["body_b64"]) == wa_body(payload)  # the body, once


async def test_unknown_number_is_dead_lettered_with_the_body(
    client: TestClient, redis: Redis
) -> None:
    c1, m1 = text_message("wamid.X1")
    c2, m2 = text_message("wamid.X2")
    payload = envelope(
        change("999", "15550009999", contacts=[c1], messages=[m1]),
        change(NUMBER_A, "15550001111", contacts=[c2], messages=[m2]),
    )
    assert await post_wa(client, payload) == 200
    assert [e["message_id"] for e in await stream(redis, "gw:inbox:support")] == ["wamid.X2"]
    [letter] = await stream(redis, "gw:deadletter")
    assert letter["reason"] == "unknown_account" and "999" in letter["detail"]


async def test_oversized_body_is_413_with_and_without_content_length(
    client: TestClient, redis: Redis, settings: Any
) -> None:
    limit = settings.server.max_body_bytes
    big = b"x" * (limit + 1)
    resp = await client.post("/webhooks/whatsapp", data=big, headers=wa_headers(big))
    assert resp.status == 413
    # Too large by its Content-Length is 413 whatever its signature or secret says.
    for path in ("/webhooks/whatsapp", f"/webhooks/telegram/{BOT_1}"):
        resp = await client.post(path, data=big)
        assert resp.status == 413, path

    async def chunks() -> Any:
        for _ in range(limit // 65536 + 2):
            yield b"y" * 65536

    # A signature of the right shape: a missing or malformed one is refused (401) from
    # the head, before any of the body is read.
    signature = {"X-Hub-Signature-256": "sha256=" + "0" * 64}
    resp = await client.post("/webhooks/whatsapp", data=chunks(), headers=signature)
    assert resp.status == 413
    resp = await client.post(f"/webhooks/telegram/{BOT_1}", data=chunks(), headers=tg_headers())
    assert resp.status == 413
    assert await all_streams(redis) == {}


async def test_body_at_the_limit_is_accepted(
    client: TestClient, redis: Redis, settings: Any
) -> None:
    contact, message = text_message("wamid.BIG")
    payload = envelope(change(NUMBER_A, "15550001111", contacts=[contact], messages=[message]))
    body = wa_body(payload)
    body = body[:-1] + b" " * (settings.server.max_body_bytes - len(body)) + b"}"
    assert len(body) == settings.server.max_body_bytes
    assert await post_wa(client, body) == 200
    assert len(await stream(redis, "gw:inbox:support")) == 1


async def test_statuses_never_move_backwards(client: TestClient, redis: Redis) -> None:
    def status(name: str) -> dict[str, Any]:
        return {
            "id": "wamid.S1",
            "status": name,
            "timestamp": "1767226000",
            "recipient_id": "5511987650000",
        }

    for name in ("sent", "read", "delivered", "sent", "read", "failed", "read"):
        await post_wa(client, envelope(change(NUMBER_A, "15550001111", statuses=[status(name)])))
    published = [e["status"] for e in await stream(redis, "gw:inbox:support")]
    assert published == ["sent", "read", "failed"]


async def test_live_message_opens_window_echo_pauses_the_ai(
    client: TestClient, redis: Redis, settings: Any
) -> None:
    now = int(time.time())
    contact, message = text_message("wamid.W1", ts=now - 60)
    live = envelope(change(NUMBER_A, "15550001111", contacts=[contact], messages=[message]))
    await post_wa(client, live)
    key = f"gw:cv:{{gw:inbox:support}}:whatsapp:{NUMBER_A}:5511987650000"
    assert await redis.hgetall(key) == {b"t": str(now - 60).encode(), b"m": b"wamid.W1"}
    assert await redis.ttl(key) > settings.router.conversation_ttl_seconds - 5
    echo = {
        "from": "15550001111",
        "to": "5511987650000",
        "id": "wamid.E1",
        "timestamp": str(now),
        "type": "text",
        "text": {"body": "human here"},
    }
    value = change(NUMBER_A, "15550001111", message_echoes=[echo])
    value["field"] = "smb_message_echoes"
    assert await post_wa(client, envelope(value)) == 200
    state = await redis.hgetall(key)
    assert state[b"t"] == str(now - 60).encode()  # an echo never moves the window
    assert state[b"p"] == str(now + settings.policy.human_takeover_seconds).encode()
    contact, message = text_message("wamid.W2", ts=now)
    await post_wa(
        client, envelope(change(NUMBER_A, "15550001111", contacts=[contact], messages=[message]))
    )
    events = await stream(redis, "gw:inbox:support")
    assert [e["kind"] for e in events] == ["message", "echo", "message"]
    assert [e.get("ai_paused") for e in events] == [False, None, True]


async def test_an_older_message_does_not_move_the_window_back(
    client: TestClient, redis: Redis
) -> None:
    now = int(time.time())
    for wamid, ts in (("wamid.O2", now - 100), ("wamid.O1", now - 400)):
        contact, message = text_message(wamid, ts=ts)
        await post_wa(
            client,
            envelope(change(NUMBER_A, "15550001111", contacts=[contact], messages=[message])),
        )
    key = f"gw:cv:{{gw:inbox:support}}:whatsapp:{NUMBER_A}:5511987650000"
    assert await redis.hget(key, "t") == str(now - 100).encode()


async def test_hidden_phone_number_keeps_the_contact_id(client: TestClient, redis: Redis) -> None:
    first = {
        "from": "5511987650000",
        "from_user_id": "BR.8812345",
        "id": "wamid.B1",
        "timestamp": "1767225600",
        "type": "text",
        "text": {"body": "hi"},
    }
    later = {
        "from_user_id": "BR.8812345",
        "id": "wamid.B2",
        "timestamp": "1767225700",
        "type": "text",
        "text": {"body": "number hidden now"},
    }
    unknown = {
        "from_user_id": "BR.999",
        "id": "wamid.B3",
        "timestamp": "1767225800",
        "type": "text",
        "text": {"body": "never seen"},
    }
    for message in (first, later, unknown):
        await post_wa(client, envelope(change(NUMBER_A, "15550001111", messages=[message])))
    events = await stream(redis, "gw:inbox:support")
    assert [e["contact_id"] for e in events] == ["5511987650000", "5511987650000", "BR.999"]
    assert events[1]["conversation_id"] == f"whatsapp:{NUMBER_A}:5511987650000"
    assert events[1]["user_id"] == "BR.8812345"


def hidden_numbers_of_two_assistants() -> list[dict[str, Any]]:
    """Two contacts, of two assistants, write with their numbers, then with BSUIDs only."""

    def message(wamid: str, user_id: str, sender: str | None = None) -> dict[str, Any]:
        sent = {"from": sender} if sender else {}
        return {
            **sent,
            "from_user_id": user_id,
            "id": wamid,
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": "hi"},
        }

    seen = envelope(
        change(NUMBER_A, "15550001111", messages=[message("wamid.H1", "BR.1", "5511900000001")]),
        change(NUMBER_B, "5511955550000", messages=[message("wamid.H2", "BR.2", "5511900000002")]),
    )
    hidden = envelope(
        change(NUMBER_A, "15550001111", messages=[message("wamid.H3", "BR.1")]),
        change(NUMBER_B, "5511955550000", messages=[message("wamid.H4", "BR.2")]),
    )
    return [seen, hidden]


async def test_hidden_numbers_of_two_assistants_resolve_in_one_webhook(
    client: TestClient, redis: Redis
) -> None:
    for payload in hidden_numbers_of_two_assistants():
        assert await post_wa(client, payload) == 200
    support = [e["contact_id"] for e in await stream(redis, "gw:inbox:support")]
    sales = [e["contact_id"] for e in await stream(redis, "gw:inbox:sales")]
    assert support == ["5511900000001"] * 2 and sales == ["5511900000002"] * 2


def every_stream_at_once(ts: int) -> dict[str, Any]:
    """Two assistants' inboxes, a history sync, an unknown number and a malformed item."""
    c1, m1 = text_message("wamid.E1", "5511987650001", ts=ts)
    c2, m2 = text_message("wamid.E2", "5511987650002", ts=ts)
    c3, m3 = text_message("wamid.E3", "5511987650003", ts=ts)
    old = {**m1, "id": "wamid.E0", "history_context": {"status": "READ"}}
    history = change(
        NUMBER_A,
        "15550001111",
        history=[
            {
                "metadata": {"phase": 1, "chunk_order": 1, "progress": 10},
                "threads": [{"id": "5511987650001", "messages": [old]}],
            }
        ],
    )
    history["field"] = "history"
    return envelope(
        change(NUMBER_A, "15550001111", contacts=[c1], messages=[m1, {"id": 7}]),
        change(NUMBER_B, "5511955550000", contacts=[c2], messages=[m2]),
        history,
        change("999", "15550009999", contacts=[c3], messages=[m3]),
    )


async def test_one_webhook_for_every_stream_lands_in_each_once(
    client: TestClient, redis: Redis
) -> None:
    now = int(time.time())
    assert await post_wa(client, every_stream_at_once(now)) == 200
    streams = await all_streams(redis)
    assert {name: [what(e) for e in events] for name, events in streams.items()} == {
        "gw:inbox:support": ["wamid.E1", "account HISTORY_PROGRESS"],
        "gw:inbox:sales": ["wamid.E2"],
        "gw:history:support": ["wamid.E0"],
        "gw:deadletter": ["unknown_account"],  # one letter names both problems
    }
    [letter] = streams["gw:deadletter"]
    assert "999" in letter["detail"] and "messages[1]" in letter["detail"]
    assert await post_wa(client, every_stream_at_once(now)) == 200  # a redelivery
    again = await all_streams(redis)
    assert {name: len(events) for name, events in again.items()} == {
        "gw:inbox:support": 2,
        "gw:inbox:sales": 1,
        "gw:history:support": 1,
        "gw:deadletter": 2,  # dead letters are kept each time: nothing marks them seen
    }


def what(entry: dict[str, Any]) -> str:
    if "kind" not in entry:  # a dead letter
        return str(entry["reason"])
    if entry["kind"] == "account":
        return f"account {entry['event']}"
    return str(entry["message_id"])


async def test_account_update_reaches_every_number_of_the_waba(
    client: TestClient, redis: Redis
) -> None:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": WABA,
                "time": 1767230000,
                "changes": [
                    {
                        "field": "account_update",
                        "value": {
                            "event": "PARTNER_REMOVED",
                            "disconnection_info": {
                                "reason": "PRIMARY_INACTIVITY",
                                "initiated_by": "SYSTEM",
                            },
                        },
                    }
                ],
            }
        ],
    }
    assert await post_wa(client, payload) == 200
    assert await post_wa(client, payload) == 200  # a duplicate delivery
    [support] = await stream(redis, "gw:inbox:support")
    [sales] = await stream(redis, "gw:inbox:sales")
    assert (support["account_id"], sales["account_id"]) == (NUMBER_A, NUMBER_B)
    for event in (support, sales):
        assert event["kind"] == "account" and event["event"] == "PARTNER_REMOVED"
        assert event["connected"] is False and event["timestamp"] == 1767230000
        assert event["detail"]["disconnection_info"]["reason"] == "PRIMARY_INACTIVITY"


async def test_telegram_unknown_bot_bad_secret_and_good_update(
    client: TestClient, redis: Redis
) -> None:
    update = {
        "update_id": 900001,
        "message": {
            "message_id": 55,
            "date": 1767226200,
            "chat": {"id": 123456789, "type": "private", "first_name": "Ana"},
            "from": {"id": 123456789, "is_bot": False, "first_name": "Ana"},
            "text": "/start",
        },
    }
    body = json.dumps(update).encode()
    resp = await client.post("/webhooks/telegram/42", data=body, headers=tg_headers())
    assert resp.status == 404
    resp = await client.post(
        f"/webhooks/telegram/{BOT_1}",
        data=body,
        headers={"X-Telegram-Bot-Api-Secret-Token": "tg-secret_2"},
    )
    assert resp.status == 401
    assert await all_streams(redis) == {}
    for _ in range(2):
        resp = await client.post(f"/webhooks/telegram/{BOT_1}", data=body, headers=tg_headers())
        assert resp.status == 200
    [event] = await stream(redis, "gw:inbox:support")
    assert event["conversation_id"] == f"telegram:{BOT_1}:123456789"
    assert event["text"] == "/start" and event["message_id"] == "55"


async def test_telegram_garbage_is_200_and_dead_lettered(client: TestClient, redis: Redis) -> None:
    resp = await client.post(
        f"/webhooks/telegram/{BOT_1}", data=b"\xff\x00not json", headers=tg_headers()
    )
    assert resp.status == 200
    [letter] = await stream(redis, "gw:deadletter")
    assert letter["reason"] == "malformed_body" and letter["channel"] == "telegram"


async def test_health_ready_and_metrics(client: TestClient, redis: Redis) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["redis"] == "ok"
    await post_wa(client, three_messages_two_numbers())
    await post_wa(client, three_messages_two_numbers())
    await client.post(
        "/webhooks/whatsapp", data=b"{}", headers={"X-Hub-Signature-256": "sha256=00"}
    )
    text = await (await client.get("/metrics")).text()
    assert 'gateway_events_total{channel="whatsapp",kind="message",type="text"} 3.0' in text
    assert 'gateway_duplicates_total{channel="whatsapp",kind="message"} 3.0' in text
    assert 'gateway_http_requests_total{channel="whatsapp",code="200"} 2.0' in text
    assert 'gateway_http_requests_total{channel="whatsapp",code="401"} 1.0' in text
    assert 'gateway_signature_failures_total{channel="whatsapp"} 1.0' in text
    assert 'gateway_publish_seconds_count{channel="whatsapp"} 2.0' in text
    assert "5511987650001" not in text  # no phone numbers in labels


@pytest.mark.parametrize("warm", [False, True], ids=["first-call", "connection-open"])
async def test_redis_failure_is_503_and_the_retry_is_published(
    client: TestClient, redis: Redis, warm: bool
) -> None:
    """Cold: the failing call is the one that connects (the coroutine path). Warm: the lean
    client's connection is open, so the call is sent at once and answered by callback."""
    expected = []
    if warm:
        contact, message = text_message("wamid.BEFORE")
        payload = envelope(change(NUMBER_A, "15550001111", contacts=[contact], messages=[message]))
        assert await post_wa(client, payload) == 200
        expected.append("wamid.BEFORE")
    contact, message = text_message("wamid.OOM")
    payload = envelope(change(NUMBER_A, "15550001111", contacts=[contact], messages=[message]))
    await config_set(redis, "maxmemory", "1")
    try:
        assert await post_wa(client, payload) == 503
    finally:
        await config_set(redis, "maxmemory", "0")
    assert await dedup_marks(redis) == len(expected)
    assert await post_wa(client, payload) == 200
    expected.append("wamid.OOM")
    assert [e["message_id"] for e in await stream(redis, "gw:inbox:support")] == expected
    text = await (await client.get("/metrics")).text()
    assert 'gateway_http_requests_total{channel="whatsapp",code="503"} 1.0' in text


async def test_a_stream_redis_refuses_is_503_leaves_no_mark_and_the_retry_is_published(
    client: TestClient, redis: Redis
) -> None:
    """The XADD itself fails (the inbox key holds a string, WRONGTYPE): the webhook is
    answered 503 and leaves no dedup mark, so the platform's retry is published. The
    connection is open first, so the call goes out at once and is answered by callback."""
    contact, message = text_message("wamid.FIRST")
    first = envelope(change(NUMBER_A, "15550001111", contacts=[contact], messages=[message]))
    assert await post_wa(client, first) == 200
    await redis.delete("gw:inbox:support")
    await redis.set("gw:inbox:support", "not a stream")
    contact, message = text_message("wamid.REFUSED")
    payload = envelope(change(NUMBER_A, "15550001111", contacts=[contact], messages=[message]))
    assert await post_wa(client, payload) == 503
    assert await dedup_marks(redis) == 1  # wamid.FIRST's only
    await redis.delete("gw:inbox:support")
    assert await post_wa(client, payload) == 200
    assert [e["message_id"] for e in await stream(redis, "gw:inbox:support")] == ["wamid.REFUSED"]
    assert await post_wa(client, payload) == 200  # and now it is a duplicate
    assert len(await stream(redis, "gw:inbox:support")) == 1


async def test_redis_down_is_503_and_not_ready(aiohttp_client: Any, settings: Any) -> None:
    from gateway.app import create_app
    from gateway.embedded import free_port

    app = create_app(settings, f"redis://127.0.0.1:{free_port()}/0")
    client = await aiohttp_client(app)
    assert await post_wa(client, three_messages_two_numbers()) == 503
    assert (await client.get("/readyz")).status == 503
    assert (await client.get("/healthz")).status == 200


@pytest.mark.uvloop_too
@pytest.mark.skipif(
    cluster_mode(),
    reason="a cluster's PING goes through redis-py, whose timeouts still take a stall for "
    "Redis's (benchmarks/README.md, 'Found in the gateway, fixed')",
)
async def test_readyz_stays_ready_when_the_gateway_itself_stalled_past_the_redis_timeout(
    aiohttp_client: Any, settings: Any, redis_url: str
) -> None:
    # Redis answers the readiness PING while the gateway's loop is held (a long callback, or
    # a machine that gives it no CPU) past redis.timeout_seconds. uvloop then runs the
    # expired timeout before it reads the answer: /readyz said "redis": "unavailable" (503)
    # with Redis fine. The PING now goes through the script client (router/scriptpipe.py).
    import msgspec

    from gateway.app import create_app

    redis_section = msgspec.structs.replace(settings.redis, timeout_seconds=0.3)
    app = create_app(msgspec.structs.replace(settings, redis=redis_section), redis_url)
    client = await aiohttp_client(app)
    assert (await client.get("/readyz")).status == 200  # connected
    with loop_stall(0.6) as stall:
        async with redis_stalled(redis_url, 0.2):  # the PING waits for Redis...
            asyncio.get_running_loop().call_later(0.1, stall)  # ...which answers during it
            ready = await client.get("/readyz")
    assert ready.status == 200, await ready.text()
    assert (await ready.json())["redis"] == "ok"


async def test_app_secret_is_never_in_answers_or_metrics(client: TestClient) -> None:
    resp = await client.post(
        "/webhooks/whatsapp", data=b"{}", headers={"X-Hub-Signature-256": "bad"}
    )
    assert APP_SECRET not in await resp.text()
    assert APP_SECRET not in await (await client.get("/metrics")).text()


# --- Review items: deep nesting, one dead letter per body, account bans, windows, aliases. ---


def deep_item_batch(depth: int, ts: int, pad: int = 0) -> bytes:
    """Three messages, the middle one nested `depth` levels deep inside its text body."""
    c1, m1 = text_message("wamid.N1", ts=ts)
    _, m2 = text_message("wamid.N2", ts=ts)
    _, m3 = text_message("wamid.N3", ts=ts)
    m2["text"] = {"body": "DEEP"}
    payload = envelope(change(NUMBER_A, "15550001111", contacts=[c1], messages=[m1, m2, m3]))
    payload["padding"] = "x" * pad  # a body over server.offload_bytes goes to the child
    deep = b"[" * depth + b"0" + b"]" * depth
    return wa_body(payload).replace(b'"DEEP"', deep)


@pytest.mark.parametrize("pad", [0, 300 * 1024], ids=["in-process", "offloaded"])
async def test_a_deeply_nested_item_costs_only_itself(
    client: TestClient, redis: Redis, pad: int
) -> None:
    body = deep_item_batch(5000, int(time.time()), pad)
    assert await post_wa(client, body) == 200
    inbox = await stream(redis, "gw:inbox:support")
    assert [e["message_id"] for e in inbox] == ["wamid.N1", "wamid.N3"]
    [letter] = await stream(redis, "gw:deadletter")
    assert letter["reason"] == "malformed_item"
    assert "entry[0].changes[0].value.messages[1]: nested deeper than 64" in letter["detail"]
    import base64

    assert base64.b64decode(letter["body_b64"]) == body


@pytest.mark.parametrize("pad", [0, 300 * 1024], ids=["in-process", "offloaded"])
async def test_a_body_nested_too_deep_is_200_and_dead_lettered_whole(
    client: TestClient, redis: Redis, pad: int
) -> None:
    body = b'{"entry":[],"x":"' + b"p" * pad + b'","deep":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    assert await post_wa(client, body) == 200
    [letter] = await stream(redis, "gw:deadletter")
    assert letter["reason"] == "malformed_body" and "nested deeper" in letter["detail"]


async def test_unknown_accounts_and_bad_items_make_one_bounded_dead_letter(
    client: TestClient, redis: Redis
) -> None:
    ts = int(time.time())
    changes = []
    for i in range(150):  # 150 unknown numbers, 2 events each
        contact, message = text_message(f"wamid.U{i}", ts=ts)
        changes.append(change(f"9{i:05d}", "15550009999", contacts=[contact], messages=[message]))
        changes[-1]["value"]["statuses"] = [
            {"id": f"wamid.S{i}", "status": "read", "timestamp": str(ts), "recipient_id": "1"}
        ]
    bad = [{"id": f"wamid.B{i}", "timestamp": "soon"} for i in range(40)]
    c, good = text_message("wamid.OK", ts=ts)
    changes.append(change(NUMBER_A, "15550001111", contacts=[c], messages=[good, *bad]))
    payload = envelope(*changes)
    body = wa_body(payload)
    assert len(body) > 30 * 1024
    assert await post_wa(client, body) == 200
    assert [e["message_id"] for e in await stream(redis, "gw:inbox:support")] == ["wamid.OK"]
    [letter] = await stream(redis, "gw:deadletter")
    assert letter["reason"] == "unknown_account"
    detail = letter["detail"]
    assert "150 accounts not configured: 900000 (2 events)" in detail
    assert "and 140 more" in detail and "and 30 more" in detail
    assert "40 items not published: malformed_item entry[0].changes[150].value.messages[1]" in (
        detail
    )
    assert len(detail) < 4000
    import base64

    assert base64.b64decode(letter["body_b64"]) == body
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_deadletters_total{channel="whatsapp",reason="unknown_account"} 1.0' in metrics


async def test_bad_items_alone_make_one_letter_named_by_their_reason(
    client: TestClient, redis: Redis
) -> None:
    c, m = text_message("wamid.OK2")
    groups = [{**m, "id": f"wamid.G{i}", "group_id": "Y2FwaV9ncm91cA"} for i in range(3)]
    payload = envelope(change(NUMBER_A, "15550001111", contacts=[c], messages=[m, *groups]))
    assert await post_wa(client, payload) == 200
    assert [e["message_id"] for e in await stream(redis, "gw:inbox:support")] == ["wamid.OK2"]
    [letter] = await stream(redis, "gw:deadletter")
    assert letter["reason"] == "unsupported_group"
    assert letter["detail"].startswith("3 items not published: unsupported_group entry[0]")


def disabled_update(state: str, time_: int) -> dict[str, Any]:
    value = {"event": "DISABLED_UPDATE", "ban_info": {"waba_ban_state": state}}
    entry = {"id": WABA, "time": time_, "changes": [{"field": "account_update", "value": value}]}
    return {"object": "whatsapp_business_account", "entry": [entry]}


async def test_a_reinstated_account_is_connected_again(client: TestClient, redis: Redis) -> None:
    state = f"gw:acct:{{gw:inbox:support}}:whatsapp:{NUMBER_A}"
    assert await post_wa(client, disabled_update("DISABLE", 1767225601)) == 200
    assert await redis.hget(state, "disc") == b"DISABLED_UPDATE"
    assert await post_wa(client, disabled_update("SCHEDULE_FOR_DISABLE", 1767225602)) == 200
    assert await redis.hget(state, "disc") == b"DISABLED_UPDATE"
    assert await post_wa(client, disabled_update("REINSTATE", 1767225603)) == 200
    assert await redis.hget(state, "disc") is None
    events = [e for e in await stream(redis, "gw:inbox:support") if e["account_id"] == NUMBER_A]
    assert [e["connected"] for e in events] == [False, None, True]


async def test_a_future_timestamp_never_opens_the_window_into_the_future(
    client: TestClient, redis: Redis
) -> None:
    now = int(time.time())
    c, m = text_message("wamid.F1", ts=now + 3600)  # within the day: published, time clamped
    _, far = text_message("wamid.F2")
    far["timestamp"] = "9" * 30
    payload = envelope(change(NUMBER_A, "15550001111", contacts=[c], messages=[m, far]))
    assert await post_wa(client, payload) == 200
    [event] = await stream(redis, "gw:inbox:support")
    assert event["message_id"] == "wamid.F1" and event["timestamp"] == now + 3600
    conversation = f"gw:cv:{{gw:inbox:support}}:{event['conversation_id']}"
    window_start = int(await redis.hget(conversation, "t"))
    assert now <= window_start <= int(time.time())
    [letter] = await stream(redis, "gw:deadletter")
    assert "is not plausible unix seconds" in letter["detail"]


@pytest.mark.parametrize("alias", ['a"b', "back\\slash", "line\nfeed\x01", "BR.9\u00e9"])
async def test_an_alias_with_quotes_or_controls_is_published_as_valid_json(
    client: TestClient, redis: Redis, alias: str
) -> None:
    c, m = text_message("wamid.AL", "5511987650077")
    conversation_id = f"whatsapp:{NUMBER_A}:5511987650077"
    await redis.hset(f"gw:cv:{{gw:inbox:support}}:{conversation_id}", "alias", alias)
    assert (
        await post_wa(client, envelope(change(NUMBER_A, "15550001111", contacts=[c], messages=[m])))
        == 200
    )
    [(_id, fields)] = await redis.xrange("gw:inbox:support")
    event = json.loads(fields[b"event"])  # raises if the alias broke the JSON
    assert event["contact_id"] == alias
    assert event["conversation_id"] == f"whatsapp:{NUMBER_A}:{alias}"
