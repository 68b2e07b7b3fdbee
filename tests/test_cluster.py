"""The gateway on a real Redis Cluster (`pytest --redis-cluster`): the cluster the suite
runs on really spreads the streams over several masters, and a gateway given one node's
address serves webhooks and commands whose keys live on all of them."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.state import REDIS
from tests.conftest import NUMBER_B, change, cluster_mode, envelope, stream, text_message
from tests.test_inbound_http import post_wa, three_messages_two_numbers

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not cluster_mode(), reason="needs a Redis Cluster: pytest --redis-cluster"),
]

STREAMS = ["gw:inbox:support", "gw:inbox:sales", "gw:history:support", "gw:deadletter"]


async def test_the_test_cluster_has_three_masters_and_spreads_the_streams(redis: Redis) -> None:
    assert isinstance(redis, RedisCluster)
    masters = redis.get_primaries()
    assert len(masters) == 3
    info = await redis.cluster_info(target_nodes=RedisCluster.PRIMARIES)
    assert {node: i["cluster_state"] for node, i in info.items()} == {m.name: "ok" for m in masters}
    owners = {name: redis.get_node_from_key(name).name for name in STREAMS}
    assert len(set(owners.values())) >= 2  # cross-node routing is really exercised


async def test_the_gateway_talks_to_the_cluster_through_one_seed(
    client: TestClient, redis: Redis
) -> None:
    gateway_client: Any = client.app[REDIS]
    assert isinstance(gateway_client, RedisCluster)
    assert await post_wa(client, three_messages_two_numbers()) == 200
    support = [e["message_id"] for e in await stream(redis, "gw:inbox:support")]
    sales = [e["message_id"] for e in await stream(redis, "gw:inbox:sales")]
    assert (support, sales) == (["wamid.T1", "wamid.T2"], ["wamid.T3"])
    nodes = {redis.get_node_from_key(name).name for name in ("gw:inbox:support", "gw:inbox:sales")}
    assert len(nodes) == 2


async def test_a_node_that_cannot_write_fails_the_webhook_before_its_dead_letters(
    client: TestClient, redis: Redis
) -> None:
    assert isinstance(redis, RedisCluster)
    sales_node = redis.get_node_from_key("gw:inbox:sales")
    assert sales_node != redis.get_node_from_key("gw:deadletter")
    c1, m1 = text_message("wamid.P1")
    c2, m2 = text_message("wamid.P2")
    payload = envelope(
        change(NUMBER_B, "5511955550000", contacts=[c1], messages=[m1]),
        change("999", "15550009999", contacts=[c2], messages=[m2]),
    )
    await redis.config_set("maxmemory", "1", target_nodes=sales_node)
    try:
        assert await post_wa(client, payload) == 503
    finally:
        await redis.config_set("maxmemory", "0", target_nodes=sales_node)
    assert await redis.xlen("gw:deadletter") == 0  # the platform's retry writes it, once
    assert await post_wa(client, payload) == 200
    assert [e["message_id"] for e in await stream(redis, "gw:inbox:sales")] == ["wamid.P1"]
    [letter] = await stream(redis, "gw:deadletter")
    assert letter["reason"] == "unknown_account"
