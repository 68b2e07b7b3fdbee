"""Commands confined to their assistant: each assistant's own outbox `gw:outbox:<assistant>`
sends only that assistant's conversations; a command for another assistant's conversation is
answered `rejected/invalid_command` in the writer's inbox and touches nothing of the owner's;
the shared `gw:outbox` keeps working, and once turned off its commands are dead-lettered."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.state import OUTBOX
from gateway_demo.standins.bot_api import FakeBotAPI
from gateway_demo.standins.graph_api import FakeGraphAPI
from router.keys import command as command_key
from router.keys import inbox
from tests.conftest import NUMBER_A, NUMBER_B, all_keys, make_settings, stream
from tests.test_outbound import BOT_1_TOKEN, BOT_2_TOKEN, Gateway, tg, wa

pytestmark = pytest.mark.cluster  # also against a Redis Cluster (--redis-cluster)

SUPPORT_CONV = wa(number=NUMBER_A)  # NUMBER_A belongs to `support`
SALES_CONV = wa(number=NUMBER_B, contact="15550009999")  # NUMBER_B to `sales`


async def _gateway(
    aiohttp_client: Any, redis: Redis, redis_url: str, **outbound: Any
) -> AsyncIterator[Gateway]:
    tokens = {NUMBER_A: "token-a", NUMBER_B: "token-b"}
    async with FakeGraphAPI(tokens) as graph, FakeBotAPI([BOT_1_TOKEN, BOT_2_TOKEN]) as bot:
        settings = make_settings(
            redis_url, GRAPH_URL=graph.base_url, BOT_URL=bot.base_url, OUTBOUND_ENABLED="false"
        )
        if outbound:
            changed = msgspec.structs.replace(settings.outbound, **outbound)
            settings = msgspec.structs.replace(settings, outbound=changed)
        app = create_app(settings, redis_url)
        client: TestClient = await aiohttp_client(app)
        yield Gateway(client, app[OUTBOX], redis, graph, bot)


@pytest.fixture
async def gw(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Gateway]:
    async for gateway in _gateway(aiohttp_client, redis, redis_url):
        yield gateway


@pytest.fixture
async def confined(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Gateway]:
    async for gateway in _gateway(aiohttp_client, redis, redis_url, shared_outbox=False):
        yield gateway


async def write(redis: Redis, outbox: str, command_id: str, conversation: str) -> None:
    command = {"command_id": command_id, "conversation_id": conversation, "type": "text"}
    await redis.xadd(outbox, {"command": json.dumps({**command, "text": "hi"})})


async def test_an_assistant_sends_from_its_own_outbox(gw: Gateway) -> None:
    await gw.contact_writes()
    await write(gw.redis, "gw:outbox:support", "own-1", SUPPORT_CONV)
    await gw.run()
    delivery = await gw.delivery("own-1")
    assert delivery["outcome"] == "sent"
    assert [r.phone_number_id for r in gw.graph.requests] == [NUMBER_A]
    # Acknowledged in the group `gateway`, like gw:outbox's entries.
    pending = await gw.redis.xpending("gw:outbox:support", "gateway")
    assert pending["pending"] == 0


async def test_a_command_for_another_assistants_conversation_is_refused(gw: Gateway) -> None:
    await gw.contact_writes()
    await write(gw.redis, "gw:outbox:sales", "foreign-1", SUPPORT_CONV)
    await gw.run()
    assert gw.graph.requests == []  # never sent
    refused = await gw.delivery("foreign-1", assistant="sales")  # told to the writer
    assert (refused["outcome"], refused["reason"]) == ("rejected", "invalid_command")
    assert "belongs to another assistant's account" in refused["detail"]
    assert "gw:outbox:sales" in refused["detail"]
    assert refused["conversation_id"] == SUPPORT_CONV
    # Nothing reaches the owner: no delivery in its inbox, no command record in its slot.
    assert await gw.deliveries("support") == []
    assert await gw.redis.exists(command_key(inbox("support"), "foreign-1")) == 0
    assert (await gw.redis.xpending("gw:outbox:sales", "gateway"))["pending"] == 0


async def test_a_squatted_command_id_does_not_shadow_the_owners_command(gw: Gateway) -> None:
    """`sales` writes `support`'s next command_id first: support's own command still goes."""
    await gw.contact_writes()
    await write(gw.redis, "gw:outbox:sales", "shared-id", SUPPORT_CONV)
    await gw.run()
    await write(gw.redis, "gw:outbox:support", "shared-id", SUPPORT_CONV)
    await gw.run()
    own = await gw.delivery("shared-id", assistant="support")
    assert (own["outcome"], own.get("duplicate", False)) == ("sent", False)
    assert len(gw.graph.requests) == 1


async def test_a_repeated_foreign_command_is_answered_once_more_as_a_duplicate(
    gw: Gateway,
) -> None:
    for _ in range(2):
        await write(gw.redis, "gw:outbox:sales", "foreign-2", tg())  # BOT_1: support's bot
        await gw.run()
    answers = [d for d in await gw.deliveries("sales") if d["command_id"] == "foreign-2"]
    assert [(d["outcome"], d.get("duplicate", False)) for d in answers] == [
        ("rejected", False),
        ("rejected", True),
    ]
    assert gw.bot.requests == []


async def test_the_shared_outbox_still_sends_every_conversation(gw: Gateway) -> None:
    await gw.contact_writes()
    await gw.contact_writes(contact="15550009999", number=NUMBER_B)
    await write(gw.redis, "gw:outbox", "shared-1", SUPPORT_CONV)
    await write(gw.redis, "gw:outbox", "shared-2", SALES_CONV)
    await gw.run()
    assert (await gw.delivery("shared-1"))["outcome"] == "sent"
    assert (await gw.delivery("shared-2", assistant="sales"))["outcome"] == "sent"


async def test_with_the_shared_outbox_off_its_commands_are_dead_lettered(
    confined: Gateway,
) -> None:
    gw = confined
    await gw.contact_writes()
    await write(gw.redis, "gw:outbox", "shared-3", SUPPORT_CONV)
    await write(gw.redis, "gw:outbox:support", "own-3", SUPPORT_CONV)
    await gw.run()
    assert [r.body["biz_opaque_callback_data"] for r in gw.graph.requests] == ["own-3"]
    (letter,) = await stream(gw.redis, "gw:deadletter")
    assert letter["reason"] == "invalid_command"
    assert "outbound.shared_outbox: false" in letter["detail"]
    assert json.loads(letter["command"])["command_id"] == "shared-3"
    assert (await gw.redis.xpending("gw:outbox", "gateway"))["pending"] == 0
    assert [d["command_id"] for d in await gw.deliveries()] == ["own-3"]


async def test_every_assistants_outbox_has_the_group_at_start(gw: Gateway) -> None:
    await gw.outbox.start()
    streams = {k.decode() for k in await all_keys(gw.redis, "gw:outbox*")}
    assert streams == {"gw:outbox", "gw:outbox:support", "gw:outbox:sales"}
    for name in streams:
        groups = await gw.redis.xinfo_groups(name)
        assert [g["name"] for g in groups] == [b"gateway"]
