"""The outbox under entries that break their handling, and its growth over time.

A command that makes its handling raise (JSON nested too deep to decode, or a bug hit by
some input) must end, dead-lettered and acknowledged, instead of holding a slot of
`outbound.concurrency` forever and coming back after every restart. Entries every consumer
group has acknowledged are trimmed from gw:outbox, and Redis memory near maxmemory shows in
/readyz and the metrics. Real Redis, the stand-in Graph API, workers in drain mode."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from adapters import whatsapp
from adapters.whatsapp import PAIR_BUCKET, PAIR_REFILL_SECONDS
from gateway.app import create_app
from gateway.config import Settings
from gateway.redis_memory import MemoryWatch
from gateway.state import OUTBOX
from gateway_demo.standins.bot_api import FakeBotAPI
from gateway_demo.standins.graph_api import FakeGraphAPI
from router.keys import inbox, limiter
from tests.conftest import NUMBER_A, config_set, make_settings, stream
from tests.test_outbound import BOT_1_TOKEN, BOT_2_TOKEN, BR_CONTACT, Gateway, wa

pytestmark = pytest.mark.cluster  # also runs against a Redis Cluster (--redis-cluster)

DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000
DEEP_ARRAY = "[" * 1000 + "]" * 1000
TOKENS = {NUMBER_A: "token-a", "100200300400600": "token-b"}


def settings_with(redis_url: str, graph: FakeGraphAPI, **outbound: Any) -> Settings:
    settings = make_settings(
        redis_url, GRAPH_URL=graph.base_url, OUTBOUND_ENABLED="false", SEND_WAIT_MAX="5"
    )
    return msgspec.structs.replace(
        settings, outbound=msgspec.structs.replace(settings.outbound, **outbound)
    )


@asynccontextmanager
async def gateway(
    aiohttp_client: Any, redis: Redis, settings: Settings, graph: FakeGraphAPI
) -> AsyncIterator[Gateway]:
    """A gateway process on the shared Redis; a second one on the same Redis is a restart."""
    async with FakeBotAPI([BOT_1_TOKEN, BOT_2_TOKEN]) as bot:
        app = create_app(settings, settings.redis.url or "")
        client = await aiohttp_client(app)
        try:
            yield Gateway(client, app[OUTBOX], redis, graph, bot)
        finally:
            await client.close()


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraphAPI]:
    async with FakeGraphAPI(TOKENS) as fake:
        yield fake


@pytest.fixture
async def gw(
    aiohttp_client: Any, redis: Redis, redis_url: str, graph: FakeGraphAPI
) -> AsyncIterator[Gateway]:
    """One command in flight at a time: an entry that kept its slot would stop all sending."""
    settings = settings_with(redis_url, graph, concurrency=1)
    async with gateway(aiohttp_client, redis, settings, graph) as g:
        yield g


async def pending(redis: Redis) -> int:
    return int((await redis.xpending("gw:outbox", "gateway"))["pending"])


def sent_ids(graph: FakeGraphAPI) -> list[str]:
    return [r.body["biz_opaque_callback_data"] for r in graph.requests if r.status == 200]


def fail_once(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, error: Exception) -> None:
    """`owner.name` raises `error` on its first call, then works as before."""
    real: Callable[..., Any] = getattr(owner, name)
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


# --- entries that break their handling -------------------------------------------------


async def test_commands_nested_too_deep_are_dead_lettered_and_sending_goes_on(
    gw: Gateway, aiohttp_client: Any, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await gw.contact_writes()
    await gw.outbox.ensure_group()
    await gw.redis.xadd("gw:outbox", {"command": DEEP_OBJECT})
    await gw.redis.xadd("gw:outbox", {"command": DEEP_ARRAY})
    await gw.command("after-1", wa(), text="still sent")
    await gw.command("after-2", wa(), text="this one too")
    with caplog.at_level(logging.INFO, logger="gateway.outbound"):
        await gw.outbox.drain(timeout_s=10)  # a stuck slot (concurrency 1) would time out
    assert sent_ids(gw.graph) == ["after-1", "after-2"]
    letters = await stream(gw.redis, "gw:deadletter")
    assert [(d["reason"], d["command"]) for d in letters] == [
        ("invalid_command", DEEP_OBJECT),
        ("invalid_command", DEEP_ARRAY),
    ]
    assert all("RecursionError" in d["detail"] for d in letters)
    assert await pending(gw.redis) == 0
    assert [r.levelname for r in caplog.records if "dead-lettered" in r.getMessage()] == [
        "WARNING",
        "WARNING",
    ]
    # A restart finds nothing to take again.
    settings = settings_with(redis_url, gw.graph, concurrency=1, claim_idle_seconds=0.05)
    async with gateway(aiohttp_client, gw.redis, settings, gw.graph) as restarted:
        await asyncio.sleep(0.1)
        await restarted.outbox.consumer.reclaim()
        await restarted.outbox.drain(timeout_s=10)
    assert len(await stream(gw.redis, "gw:deadletter")) == 2
    assert len(gw.graph.requests) == 2


async def test_an_unexpected_error_before_sending_ends_the_command(
    gw: Gateway,
    aiohttp_client: Any,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await gw.contact_writes()
    await gw.command("boom", wa(), text="meets a bug")
    await gw.command("next", wa(), text="goes out")
    error = RuntimeError("bug while building, token-a leaked into the message")
    fail_once(monkeypatch, whatsapp.CHANNEL, "request", error)
    with caplog.at_level(logging.INFO, logger="gateway.outbound"):
        await gw.outbox.drain(timeout_s=10)
    assert sent_ids(gw.graph) == ["next"]
    [letter] = await stream(gw.redis, "gw:deadletter")
    assert letter["reason"] == "internal_error"
    assert json.loads(letter["command"])["command_id"] == "boom"
    assert letter["detail"].startswith("RuntimeError: bug while building")
    delivery = await gw.delivery("boom")  # the backend hears back: exactly one delivery
    assert (delivery["outcome"], delivery["reason"]) == ("failed", "provider_error")
    assert (await gw.delivery("next"))["outcome"] == "sent"
    assert await pending(gw.redis) == 0
    [line] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "internal_error" in line.getMessage() and "Traceback" in line.getMessage()
    assert all("token-a" not in r.getMessage() for r in caplog.records)
    assert "token-a" not in letter["detail"]
    # A restart does not take it again, and the backend repeating it gets the same answer.
    async with gateway(
        aiohttp_client, gw.redis, settings_with(redis_url, gw.graph), gw.graph
    ) as restarted:
        await restarted.command("boom", wa(), text="meets a bug")
        await restarted.outbox.drain(timeout_s=10)
    answers = [d for d in await gw.deliveries() if d["command_id"] == "boom"]
    assert [(d["outcome"], d["duplicate"]) for d in answers] == [
        ("failed", False),
        ("failed", True),
    ]
    assert sent_ids(gw.graph) == ["next"]
    assert len(await stream(gw.redis, "gw:deadletter")) == 1


async def test_an_unexpected_error_after_the_provider_was_called_never_sends_again(
    gw: Gateway, aiohttp_client: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message may have reached the customer: it ends failed, and is not sent twice."""
    await gw.contact_writes()
    await gw.command("answered", wa(), text="the answer cannot be read")
    await gw.command("next", wa(), text="goes out")
    fail_once(monkeypatch, whatsapp.CHANNEL, "classify", ValueError("unreadable answer"))
    await gw.outbox.drain(timeout_s=10)
    assert sent_ids(gw.graph) == ["answered", "next"]  # the provider took both
    delivery = await gw.delivery("answered")
    assert (delivery["outcome"], delivery["reason"]) == ("failed", "provider_error")
    assert (await gw.delivery("next"))["outcome"] == "sent"
    [letter] = await stream(gw.redis, "gw:deadletter")
    assert (letter["reason"], letter["detail"]) == (
        "internal_error",
        "ValueError: unreadable answer",
    )
    assert await pending(gw.redis) == 0
    settings = settings_with(redis_url, gw.graph, claim_idle_seconds=0.05)
    async with gateway(aiohttp_client, gw.redis, settings, gw.graph) as restarted:
        await asyncio.sleep(0.1)
        await restarted.outbox.consumer.reclaim()
        await restarted.outbox.drain(timeout_s=10)
    assert len(gw.graph.requests) == 2


async def test_an_error_after_the_delivery_was_published_does_not_answer_twice(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    await gw.contact_writes()
    await gw.command("reported", wa(), text="sent and answered, then a bug")
    await gw.command("next", wa(), text="goes out")
    fail_once(monkeypatch, gw.outbox.observer, "delivered", KeyError("metrics bug"))
    await gw.outbox.drain(timeout_s=10)
    assert sent_ids(gw.graph) == ["reported", "next"]
    [delivery] = [d for d in await gw.deliveries() if d["command_id"] == "reported"]
    assert delivery["outcome"] == "sent"
    [letter] = await stream(gw.redis, "gw:deadletter")
    assert letter["reason"] == "internal_error" and "KeyError" in letter["detail"]
    assert await pending(gw.redis) == 0


async def test_a_command_cut_off_by_shutdown_stays_pending(gw: Gateway) -> None:
    """Stopping is not an error: the entry is left for another worker, not dead-lettered."""
    await gw.contact_writes()
    seconds, micros = await gw.redis.time()
    # the contact's pair budget is spent for the next 3 s: the command waits for its slot
    tolerance = int(PAIR_REFILL_SECONDS * 1e6) * (PAIR_BUCKET - 1)
    tat = seconds * 1_000_000 + micros + 3_000_000 + tolerance
    await gw.redis.set(limiter(inbox("support"), "whatsapp", NUMBER_A, BR_CONTACT), tat)
    await gw.command("waiting", wa(), text="cut off")
    await gw.outbox.ensure_group()
    await gw.outbox.consumer.read(block=False)
    await asyncio.sleep(0.3)
    await gw.outbox.stop(timeout_s=0.1)
    assert gw.graph.requests == []
    assert await stream(gw.redis, "gw:deadletter") == []
    assert await gw.deliveries() == []
    assert await pending(gw.redis) == 1


# --- trimming --------------------------------------------------------------------------


async def outbox_ids(redis: Redis) -> list[str]:
    return [i.decode() for i, _ in await redis.xrange("gw:outbox")]


async def test_acknowledged_entries_are_trimmed_but_not_what_another_group_needs(
    gw: Gateway,
) -> None:
    await gw.outbox.ensure_group()
    await gw.redis.xgroup_create("gw:outbox", "audit", id="0")  # an operator's tool
    for i in range(10):
        await gw.command(f"t-{i}", wa(), text=str(i))  # window closed: rejected, acknowledged
    ids = await outbox_ids(gw.redis)
    await gw.outbox.drain(timeout_s=10)
    assert await pending(gw.redis) == 0
    assert await gw.outbox.trim() == 0  # the audit group has read nothing yet
    await gw.redis.xreadgroup("audit", "auditor", {"gw:outbox": ">"}, count=5)
    await gw.redis.xack("gw:outbox", "audit", ids[0], ids[1])
    assert await gw.outbox.trim() == 2  # ids[2] is still pending in the audit group
    assert await outbox_ids(gw.redis) == ids[2:]
    await gw.redis.xack("gw:outbox", "audit", *ids[2:5])
    assert await gw.outbox.trim() == 3  # the audit group has not read ids[5:] yet
    assert await outbox_ids(gw.redis) == ids[5:]
    await gw.redis.xreadgroup("audit", "auditor", {"gw:outbox": ">"})
    await gw.redis.xack("gw:outbox", "audit", *ids[5:])
    assert await gw.outbox.trim() == 5
    assert await gw.redis.xlen("gw:outbox") == 0
    await gw.command("late", wa(), text="after the trim")  # the stream goes on as before
    await gw.outbox.drain(timeout_s=10)
    assert (await gw.delivery("late"))["reason"] == "window_closed"


async def test_entries_not_yet_acknowledged_by_the_gateway_are_kept(gw: Gateway) -> None:
    await gw.outbox.ensure_group()
    await gw.command("read", wa(), text="read by a worker that died")
    await gw.command("unread", wa(), text="not read by anyone")
    await gw.redis.xreadgroup("gateway", "dead-worker", {"gw:outbox": ">"}, count=1)
    assert await gw.outbox.trim() == 0
    assert await gw.redis.xlen("gw:outbox") == 2


async def test_the_outbox_is_trimmed_in_the_background_and_counted(
    aiohttp_client: Any, redis: Redis, redis_url: str, graph: FakeGraphAPI
) -> None:
    settings = settings_with(redis_url, graph, enabled=True, trim_interval_seconds=0.05)
    async with gateway(aiohttp_client, redis, settings, graph) as g:
        for i in range(5):
            await g.command(f"bg-{i}", wa(), text=str(i))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(await g.deliveries()) == 5 and await redis.xlen("gw:outbox") == 0:
                break
            await asyncio.sleep(0.05)
        assert await redis.xlen("gw:outbox") == 0
        metrics = await (await g.client.get("/metrics")).text()
        assert sample(metrics, "gateway_outbox_trimmed_total") == 5


# --- Redis memory ----------------------------------------------------------------------


def sample(exposition: str, name: str) -> float:
    [value] = [line.split()[1] for line in exposition.splitlines() if line.startswith(name + " ")]
    return float(value)


async def memory_infos(redis: Redis) -> list[dict[str, Any]]:
    if isinstance(redis, RedisCluster):
        infos = await redis.info("memory", target_nodes=RedisCluster.PRIMARIES)
        return list(infos.values())
    return [await redis.info("memory")]


async def test_readyz_reports_redis_memory_near_maxmemory_but_stays_ready(
    aiohttp_client: Any, redis: Redis, redis_url: str, graph: FakeGraphAPI
) -> None:
    settings = settings_with(redis_url, graph)
    # A low warn ratio: used_memory moves by several % between two readings (freed client
    # buffers), and maxmemory must stay above it so that Redis keeps taking writes.
    settings = msgspec.structs.replace(
        settings, redis=msgspec.structs.replace(settings.redis, memory_warn_ratio=0.5)
    )
    infos = await memory_infos(redis)
    before = {int(i["maxmemory"]) for i in infos}
    maximum = int(max(int(i["used_memory"]) for i in infos) * 1.2)
    async with gateway(aiohttp_client, redis, settings, graph) as g:
        await config_set(redis, "maxmemory", str(maximum))
        try:
            ready = await g.client.get("/readyz")
            body = await ready.json()
            metrics = await (await g.client.get("/metrics")).text()
        finally:
            await config_set(redis, "maxmemory", str(before.pop()))
    assert ready.status == 200 and body["ready"] is True  # reported, never unready for it
    assert body["redis_memory"].startswith("high (used ")
    assert body["redis_memory"].endswith(f" of {maximum} bytes)")
    assert sample(metrics, "gateway_redis_maxmemory_bytes") == maximum
    assert sample(metrics, "gateway_redis_memory_used_bytes") > maximum * 0.5


async def test_redis_memory_is_ok_below_the_ratio_and_without_maxmemory(redis: Redis) -> None:
    reports: list[tuple[int, int]] = []
    watch = MemoryWatch(redis, 0.9, lambda used, top: reports.append((used, top)), max_age_s=0)
    infos = await memory_infos(redis)
    before = {int(i["maxmemory"]) for i in infos}
    try:
        await config_set(redis, "maxmemory", "0")
        assert await watch.status() == "ok"  # no limit: nothing to warn about
        await config_set(redis, "maxmemory", str(1 << 40))
        assert await watch.status() == "ok"
    finally:
        await config_set(redis, "maxmemory", str(before.pop()))
    assert [top for _used, top in reports] == [0, 1 << 40]
