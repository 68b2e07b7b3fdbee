"""The inbound seam (gateway/receive.py): one `Webhook` in, one `Reply` out, the same object
both server paths use. What a platform sees (the answer) and what an operator sees (the
stream, the dead letters, the metrics) come from `Reply.answer()`, whichever way it ended."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from adapters.whatsapp import sign
from gateway.app import create_app
from gateway.receive import Inbound, Reply, Webhook, settle
from gateway.state import INBOUND, STATE
from tests.conftest import (
    APP_SECRET,
    BOT_1,
    BOT_SECRETS,
    MESSENGER_SECRET,
    NUMBER_A,
    PAGE_A,
    change,
    envelope,
    make_settings,
    meta_headers,
    stream,
    text_message,
    wa_body,
)

SIGNATURE = "x-hub-signature-256"
TG_SECRET = "x-telegram-bot-api-secret-token"


def _whatsapp(wamid: str) -> bytes:
    contact, message = text_message(wamid)
    return wa_body(envelope(change(NUMBER_A, "15550001111", contacts=[contact],
                                   messages=[message])))  # fmt: skip


def _signed(body: bytes, secret: str = APP_SECRET) -> Webhook:
    return Webhook("whatsapp", None, {SIGNATURE: sign(body, secret.encode())}, body)


def _samples(client: TestClient, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = client.app[STATE].metrics.exposition().decode()
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def _inbound(client: TestClient) -> Inbound:
    return client.app[INBOUND]


async def test_the_usual_webhook_waits_on_its_one_script_call_and_is_published_once(
    client: TestClient, redis: Redis
) -> None:
    inbound = await _inbound(client)
    body = _whatsapp("wamid.SEAM1")
    await settle(inbound.receive(_signed(body)))  # the lean client's connection is open now

    replies = [inbound.receive(_signed(_whatsapp("wamid.SEAM2"))) for _ in range(2)]
    for reply in replies:  # sent at once: a script call's reply, no task made for it
        assert reply.future is not None and not isinstance(reply.future, asyncio.Task)
    assert [await settle(r) for r in replies] == [(200, "OK"), (200, "OK")]

    events = await stream(redis, "gw:inbox:support")
    assert [e["message_id"] for e in events] == ["wamid.SEAM1", "wamid.SEAM2"]  # once each
    answered = _samples(client, "gateway_http_requests_total")
    assert answered[(("channel", "whatsapp"), ("code", "200"))] == 3
    duplicates = _samples(client, "gateway_duplicates_total")
    assert duplicates[(("channel", "whatsapp"), ("kind", "message"))] == 1


async def test_a_bad_signature_is_answered_at_once_and_publishes_nothing(
    client: TestClient, redis: Redis
) -> None:
    inbound = await _inbound(client)
    reply = inbound.receive(_signed(_whatsapp("wamid.BAD"), secret="not-the-secret"))
    assert reply.future is None
    assert reply.answer() == (401, "bad signature")
    assert await stream(redis, "gw:inbox:support") == []
    assert _samples(client, "gateway_signature_failures_total") == {(("channel", "whatsapp"),): 1.0}


async def test_what_the_head_refuses_never_reaches_receive(client: TestClient) -> None:
    inbound = await _inbound(client)
    assert inbound.refused("telegram", BOT_1, {TG_SECRET: "wrong"}) == (401, "bad secret token")
    assert inbound.refused("telegram", "999", {TG_SECRET: BOT_SECRETS[BOT_1]})[0] == 404
    assert inbound.refused("telegram", BOT_1, {TG_SECRET: BOT_SECRETS[BOT_1]}) is None
    assert inbound.refused("whatsapp", None, {}) == (401, "bad signature")


async def test_a_malformed_body_under_a_valid_signature_is_dead_lettered_and_answered_200(
    client: TestClient, redis: Redis
) -> None:
    inbound = await _inbound(client)
    reply = inbound.receive(_signed(b'{"object": "whatsapp_business_account", "entry": 7}'))
    assert isinstance(reply.future, asyncio.Task)  # a dead letter to write first
    assert await settle(reply) == (200, "OK")
    [letter] = await stream(redis, "gw:deadletter")
    assert letter["reason"] == "malformed_body"
    assert _samples(client, "gateway_deadletters_total") == {
        (("channel", "whatsapp"), ("reason", "malformed_body")): 1.0
    }


async def test_redis_down_is_503_so_the_platform_retries(aiohttp_client: Any) -> None:
    dead = "redis://127.0.0.1:9/0"  # the discard port: no Redis answers there
    client: TestClient = await aiohttp_client(create_app(make_settings(dead), dead))
    inbound = client.app[INBOUND]
    reply: Reply = inbound.receive(_signed(_whatsapp("wamid.DOWN")))
    assert reply.future is not None
    assert await settle(reply) == (503, "temporarily unavailable")
    errors = _samples(client, "gateway_redis_errors_total")
    assert errors[(("operation", "publish"),)] == 1


async def test_the_fast_path_and_aiohttp_give_the_same_answers_through_the_seam(
    client: TestClient, redis: Redis
) -> None:
    """The aiohttp route (a chunked body never takes the fast path) and the fast path."""
    body = _whatsapp("wamid.BOTH")
    headers = {"X-Hub-Signature-256": sign(body, APP_SECRET.encode())}

    async def chunks() -> Any:
        yield body

    via_aiohttp = await client.post("/webhooks/whatsapp", data=chunks(), headers=headers)
    via_fast = await client.post("/webhooks/whatsapp", data=body, headers=headers)
    assert (via_aiohttp.status, await via_aiohttp.text()) == (200, "OK")
    assert (via_fast.status, await via_fast.text()) == (200, "OK")
    events = await stream(redis, "gw:inbox:support")
    assert [e["message_id"] for e in events] == ["wamid.BOTH"]


# --- one Meta app, one callback URL: bodies dispatched by `object` (CONTRACT §6.1) ----------


def _page_message(mid: str) -> bytes:
    item = {
        "sender": {"id": "7010000000000001"},
        "recipient": {"id": PAGE_A},
        "timestamp": 1788000000321,
        "message": {"mid": mid, "text": "Entrega hoje?"},
    }
    return wa_body({"object": "page", "entry": [{"id": PAGE_A, "time": 1788000000500,
                                                 "messaging": [item]}]})  # fmt: skip


async def test_a_messenger_body_on_the_whatsapp_path_lands_on_messenger(
    client: TestClient, redis: Redis
) -> None:
    """Signed with either app's secret: the path's (WhatsApp's) or the object's (Messenger's)."""
    for mid, secret in (("m_PATH", APP_SECRET), ("m_OBJECT", MESSENGER_SECRET)):
        body = _page_message(mid)
        resp = await client.post(
            "/webhooks/whatsapp", data=body, headers=meta_headers(body, secret)
        )
        assert (resp.status, await resp.text()) == (200, "OK")
    events = await stream(redis, "gw:inbox:support")
    assert [(e["channel"], e["account_id"], e["message_id"]) for e in events] == [
        ("messenger", PAGE_A, "m_PATH"),
        ("messenger", PAGE_A, "m_OBJECT"),
    ]
    answered = _samples(client, "gateway_http_requests_total")
    assert answered[(("channel", "messenger"), ("code", "200"))] == 2


async def test_a_body_signed_by_neither_app_is_refused(client: TestClient, redis: Redis) -> None:
    body = _page_message("m_FORGED")
    resp = await client.post(
        "/webhooks/whatsapp", data=body, headers=meta_headers(body, "not-a-secret-of-ours")
    )
    assert resp.status == 401
    assert await stream(redis, "gw:inbox:support") == []


async def test_an_object_no_channel_handles_is_kept_whole_in_the_dead_letters(
    client: TestClient, redis: Redis
) -> None:
    body = wa_body({"object": "user", "entry": [{"id": "1", "changes": [{"field": "email"}]}]})
    resp = await client.post(
        "/webhooks/whatsapp", data=body, headers=meta_headers(body, APP_SECRET)
    )
    assert (resp.status, await resp.text()) == (200, "OK")  # Meta stops retrying
    [letter] = await stream(redis, "gw:deadletter")
    assert letter["reason"] == "unhandled_object"
    assert base64.b64decode(letter["body_b64"]) == body
    assert "'user'" in letter["detail"]
