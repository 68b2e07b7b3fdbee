"""Telegram end to end: updates through the HTTP app into Redis, commands through the reply
workers to the stand-in Bot API (gateway_demo/standins/bot_api.py). Real Redis, real HTTP; the
workers run in drain mode, so tests wait for work, not for time."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.config import Settings
from gateway.state import OUTBOX
from gateway_demo.standins.bot_api import FakeBotAPI
from router.outbound import Outbox
from tests.conftest import BOT_1, make_settings, stream, tg_headers
from tests.test_fasthttp import _server

TOKEN = f"{BOT_1}:AAHtesttokenaaaaaaaaaaaaaaaaaaaaaaa"
CHAT = 123456789
GROUP = -1001234567890
ANA = {"id": CHAT, "is_bot": False, "first_name": "Ana"}
ANA_CHAT = {"id": CHAT, "type": "private", "first_name": "Ana"}
GROUP_CHAT = {"id": GROUP, "type": "supergroup", "title": "Acme Support"}
OWNER = {"id": 555000111, "is_bot": False, "first_name": "Shop owner"}
BUSINESS = "AbCdEfGhIjKlMnOpQrSt"
_update_ids = itertools.count(930_000_000)
_command_ids = itertools.count(1)


@dataclass
class Telegram:
    client: TestClient[Any, Any]
    outbox: Outbox
    redis: Redis
    api: FakeBotAPI

    async def update(self, key: str, payload: dict[str, Any]) -> None:
        """Telegram delivers one update to bot 1's webhook."""
        body = json.dumps({"update_id": next(_update_ids), key: payload})
        resp = await self.client.post(
            f"/webhooks/telegram/{BOT_1}", data=body, headers=tg_headers()
        )
        assert resp.status == 200

    async def writes(self, text: str = "hi", **extra: Any) -> None:
        message = {"message_id": 7, "date": 1767226400, "chat": ANA_CHAT, "from": ANA}
        await self.update("message", {**message, "text": text, **extra})

    def sent(self, index: int = -1) -> tuple[str, dict[str, Any]]:
        """The method and parameters of a request the Bot API received (the last by default)."""
        request = self.api.requests[index]
        assert request.params is not None
        return request.method, request.params

    async def command(self, chat: int = CHAT, **fields: Any) -> dict[str, Any]:
        """The assistant sends one command; its delivery event, once the workers ran."""
        command_id = f"c{next(_command_ids)}"
        command = {"command_id": command_id, "conversation_id": f"telegram:{BOT_1}:{chat}"}
        await self.redis.xadd("gw:outbox", {"command": json.dumps({**command, **fields})})
        await self.outbox.drain()
        events = await stream(self.redis, "gw:inbox:support")
        [delivery] = [e for e in events if e.get("command_id") == command_id]
        return delivery


@pytest.fixture
async def tg(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Telegram]:
    async with FakeBotAPI([TOKEN]) as api:
        settings = make_settings(redis_url, BOT_URL=api.base_url, OUTBOUND_ENABLED="false")
        app = create_app(settings, redis_url)
        client = await aiohttp_client(app)
        yield Telegram(client, app[OUTBOX], redis, api)


async def _blocked(tg: Telegram, chat: int) -> None:
    """The contact blocked the bot: the first send fails with 403 and opts the chat out."""
    tg.api.block(chat)
    first = await tg.command(chat, type="text", text="hello")
    assert (first["outcome"], first["reason"], first["provider_code"]) == (
        "failed",
        "opted_out",
        403,
    )


# -- a 403 opt-out ends only when the contact acts (CONTRACT §3) -----------------------------

BOOST = {"boost_id": "b1", "add_date": 1767226400, "expiration_date": 1769818400,
         "source": {"source": "premium", "user": ANA}}  # fmt: skip
NOT_THE_CONTACTS_DOING = {
    "chat_boost": (CHAT, {"chat": ANA_CHAT, "boost": BOOST}),
    "removed_chat_boost": (
        CHAT,
        {"chat": ANA_CHAT, "boost_id": "b1", "remove_date": 1767226400, "source": BOOST["source"]},
    ),
    "deleted_business_messages": (
        CHAT,
        {"business_connection_id": BUSINESS, "chat": ANA_CHAT, "message_ids": [3]},
    ),
    "message_reaction_count": (
        GROUP,
        {"chat": GROUP_CHAT, "message_id": 5, "date": 1767226400, "reactions": []},
    ),
    "chat_join_request": (
        CHAT,
        {"chat": GROUP_CHAT, "from": ANA, "user_chat_id": CHAT, "date": 1767226400},
    ),
    "business_message": (
        CHAT,
        {
            "business_connection_id": BUSINESS,
            "message_id": 8,
            "date": 1767226400,
            "chat": ANA_CHAT,
            "from": OWNER,  # the business owner's own message in the customer's chat
            "text": "Hi Ana, the owner here",
        },
    ),
}


@pytest.mark.parametrize(
    ("key", "case"), NOT_THE_CONTACTS_DOING.items(), ids=list(NOT_THE_CONTACTS_DOING)
)
async def test_updates_the_contact_did_not_write_do_not_end_a_block(
    tg: Telegram, key: str, case: tuple[int, dict[str, Any]]
) -> None:
    chat, payload = case
    await _blocked(tg, chat)
    await tg.update(key, payload)
    again = await tg.command(chat, type="text", text="still there?")
    assert (again["outcome"], again["reason"]) == ("rejected", "opted_out")
    assert len(tg.api.requests) == 1  # the blocked chat is not sent to again


async def test_the_contact_unblocking_the_bot_ends_the_block(tg: Telegram) -> None:
    await _blocked(tg, CHAT)
    tg.api.unblock(CHAT)
    unblocked = {
        "chat": ANA_CHAT,
        "from": ANA,
        "date": 1767226500,
        "old_chat_member": {"user": {"id": 7000000001, "is_bot": True}, "status": "kicked"},
        "new_chat_member": {"user": {"id": 7000000001, "is_bot": True}, "status": "member"},
    }
    await tg.update("my_chat_member", unblocked)
    welcome = await tg.command(type="text", text="welcome back")
    assert (welcome["outcome"], welcome["reason"]) == ("sent", None)


async def test_a_tapped_button_ends_the_block(tg: Telegram) -> None:
    await _blocked(tg, CHAT)
    tg.api.unblock(CHAT)
    origin = {"message_id": 3, "date": 1767226400, "chat": ANA_CHAT, "text": "Pick"}
    await tg.update("callback_query", {"id": "q1", "from": ANA, "data": "yes", "message": origin})
    assert (await tg.command(type="text", text="ok"))["outcome"] == "sent"


# -- business chats: replies go through the business connection ----------------------------


def _business_message(text: str) -> dict[str, Any]:
    return {
        "business_connection_id": BUSINESS,
        "message_id": 90412,
        "date": 1767226410,
        "chat": ANA_CHAT,
        "from": ANA,
        "text": text,
    }


async def test_replies_to_a_business_chat_go_through_its_connection(tg: Telegram) -> None:
    # Ana wrote to the shop's business account; she never started the bot itself, so a reply
    # sent without the connection would fail with 403 and never reach her.
    tg.api.never_started(CHAT)
    tg.api.connect_business(BUSINESS)
    await tg.update("business_message", _business_message("Vocês entregam em Campinas?"))
    [event] = await stream(tg.redis, "gw:inbox:support")
    assert (event["business_connection_id"], event["text"]) == (
        BUSINESS,
        "Vocês entregam em Campinas?",
    )

    reply = await tg.command(type="text", text="Entregamos, sim!", reply_to="90412")
    typing = await tg.command(type="typing")
    assert (reply["outcome"], typing["outcome"]) == ("sent", "sent")
    assert len(tg.api.requests) == 2
    (method, params), (action, action_params) = tg.sent(0), tg.sent(1)
    assert (method, params["business_connection_id"]) == ("sendMessage", BUSINESS)
    assert (action, action_params["business_connection_id"]) == ("sendChatAction", BUSINESS)
    assert params["reply_parameters"] == {"message_id": 90412}


async def test_the_route_follows_the_contacts_latest_message(tg: Telegram) -> None:
    tg.api.connect_business(BUSINESS)
    await tg.update("business_message", _business_message("oi"))
    await tg.writes("hi bot", date=1767226420)  # now Ana writes to the bot directly
    assert (await tg.command(type="text", text="Hello!"))["outcome"] == "sent"
    assert len(tg.api.requests) == 1
    assert "business_connection_id" not in tg.sent()[1]
    await tg.update("business_message", {**_business_message("oi de novo"), "date": 1767226430})
    assert (await tg.command(type="text", text="Olá!"))["outcome"] == "sent"
    assert tg.sent()[1]["business_connection_id"] == BUSINESS


async def test_the_business_owners_own_message_keeps_the_route(tg: Telegram) -> None:
    tg.api.never_started(CHAT)
    tg.api.connect_business(BUSINESS)
    await tg.update("business_message", _business_message("oi"))
    owner = {**_business_message("Hi, owner here"), "from": OWNER, "date": 1767226440}
    await tg.update("business_message", owner)
    assert (await tg.command(type="text", text="Olá!"))["outcome"] == "sent"
    assert tg.sent()[1]["business_connection_id"] == BUSINESS


# -- the secret token: both HTTP paths judge a request alike --------------------------------


@pytest.fixture
async def servers(
    settings: Settings, redis: Redis, redis_url: str
) -> AsyncIterator[dict[bool, int]]:
    """The same app twice, fast path on (True) and off (False): their ports."""
    started = {fast: await _server(settings, redis_url, fast_path=fast) for fast in (True, False)}
    yield {fast: s.port or 0 for fast, s in started.items()}
    for s in started.values():
        await s.close()


async def _status(port: int, secret: bytes) -> int:
    """POST one update with this exact X-Telegram-Bot-Api-Secret-Token value on the wire."""
    body = json.dumps({"update_id": next(_update_ids), "poll": {"id": "1"}}).encode()
    head = (
        f"POST /webhooks/telegram/{BOT_1} HTTP/1.1\r\nHost: gateway.test\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + b"X-Telegram-Bot-Api-Secret-Token: " + secret + b"\r\n\r\n" + body)
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return int(status_line.split()[1])


@pytest.mark.parametrize(
    ("secret", "status"),
    [
        (b"tg-secret_1", 200),
        # Padding around a header value is not part of it (RFC 9110 §5.5): aiohttp drops it
        # before the handler, so the fast path must not judge it either.
        (b"tg-secret_1 ", 200),
        (b"tg-secret_1\t", 200),
        (b"  tg-secret_1  ", 200),
        (b"tg-secret_1 x", 401),
        (b"tg-secret_1\xc2\xa0", 401),
        (b"tg-secret_", 401),
    ],
)
async def test_a_secret_token_gets_the_same_answer_on_both_http_paths(
    servers: dict[bool, int], secret: bytes, status: int
) -> None:
    answers = {fast: await _status(port, secret) for fast, port in servers.items()}
    assert answers == {True: status, False: status}
