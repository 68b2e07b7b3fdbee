"""Dedup marks as fields of bucketed, sharded hashes (router/keys.py `gw:mk:*`): redeliveries
are dropped as before, the number of keys stays bounded whatever the traffic, a mark is found
in the bucket before the current one, a gateway whose clock is off at a bucket's edge still
finds them, and `gateway dedup migrate` moves the marks of the one-key-per-event model."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

import router.publish_call
from gateway.app import create_app
from router import keys
from tests.conftest import (
    NUMBER_A,
    TEST_CONFIG,
    all_keys,
    change,
    dedup_marks,
    envelope,
    gateway_env,
    make_settings,
    stream,
    text_message,
    wa_body,
    wa_headers,
)
from tests.test_inspect import run

pytestmark = pytest.mark.cluster  # also against a Redis Cluster (--redis-cluster)

TTL = 172800
INBOX = "gw:inbox:support"


async def post_wa(client: TestClient, payload: dict[str, Any]) -> int:
    body = wa_body(payload)
    answer = await client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
    return answer.status


def write_config(tmp_path: Path, redis_url: str) -> list[str]:
    """`--config` and `--env-file` for this test's Redis (a cluster's with --redis-cluster)."""
    config, env = tmp_path / "config.yaml", tmp_path / "test.env"
    config.write_text(TEST_CONFIG)
    env.write_text("".join(f"{k}={v}\n" for k, v in gateway_env(redis_url).items()))
    return ["--config", str(config), "--env-file", str(env)]


def message(wamid: str) -> dict[str, Any]:
    contact, item = text_message(wamid)
    return envelope(change(NUMBER_A, "15550001111", contacts=[contact], messages=[item]))


@pytest.fixture
async def few_shards(aiohttp_client: Any, redis_url: str) -> TestClient:
    settings = make_settings(redis_url)
    router_settings = msgspec.structs.replace(settings.router, dedup_shards=8)
    app = create_app(msgspec.structs.replace(settings, router=router_settings), redis_url)
    client: TestClient = await aiohttp_client(app)
    return client


async def test_many_events_keep_the_key_count_bounded(few_shards: TestClient, redis: Redis) -> None:
    for n in range(300):
        assert await post_wa(few_shards, message(f"wamid.MANY{n}")) == 200
    assert await post_wa(few_shards, message("wamid.MANY7")) == 200  # a redelivery
    assert len(await stream(redis, INBOX)) == 300
    assert await dedup_marks(redis) == 300
    hashes = await all_keys(redis, "gw:mk:*")
    assert 1 <= len(hashes) <= 8  # one bucket, at most dedup_shards hashes
    assert await all_keys(redis, "gw:dd:*") == []
    for key in hashes:
        # kept until the end of the next bucket: between one and two TTLs from now
        assert TTL < await redis.ttl(key) <= 2 * TTL


async def test_a_mark_in_the_bucket_before_still_drops_the_redelivery(
    client: TestClient, redis: Redis
) -> None:
    now = time.time()
    earlier = keys.mark(INBOX, "whatsapp", NUMBER_A, "m:wamid.PREV", TTL, 1024, now - TTL)
    await redis.hset(earlier[1], earlier[3], "1")  # type: ignore[misc]
    assert await post_wa(client, message("wamid.PREV")) == 200
    assert await stream(redis, INBOX) == []  # a duplicate
    # two buckets back is past the TTL: published
    older = keys.mark(INBOX, "whatsapp", NUMBER_A, "m:wamid.OLDER", TTL, 1024, now - 2 * TTL)
    await redis.hset(older[1], older[3], "1")  # type: ignore[misc]
    assert await post_wa(client, message("wamid.OLDER")) == 200
    assert [e["message_id"] for e in await stream(redis, INBOX)] == ["wamid.OLDER"]


@pytest.mark.parametrize("skew", [-1.0, 1.0], ids=["clock-behind", "clock-ahead"])
async def test_a_gateway_clock_off_at_a_bucket_edge_still_finds_the_marks(
    client: TestClient, redis: Redis, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    """A gateway whose clock says the neighbouring bucket (a bucket's edge, a skew of seconds)
    names the buckets around its own; Redis's clock picks where the mark goes."""
    real = time.time
    shifted = SimpleNamespace(time=lambda: real() + skew * TTL)
    monkeypatch.setattr(router.publish_call, "time", shifted)
    assert await post_wa(client, message("wamid.SKEW")) == 200
    monkeypatch.setattr(router.publish_call, "time", time)
    assert await post_wa(client, message("wamid.SKEW")) == 200
    assert [e["message_id"] for e in await stream(redis, INBOX)] == ["wamid.SKEW"]


async def test_migrate_moves_old_marks_and_they_keep_working(
    client: TestClient,
    redis: Redis,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = keys.dedup(INBOX, "whatsapp", NUMBER_A, "m:wamid.BEFORE")
    await redis.set(old, "1", ex=3600)
    await redis.set("gw:dd:not-a-mark", "1", ex=3600)
    code, out, _ = await run(capsys, "dedup", "migrate", *write_config(tmp_path, redis_url))
    assert code == 0
    assert out.startswith("1 marks moved, 0 gone meanwhile, 1 unreadable keys left")
    assert await redis.exists(old) == 0
    assert await post_wa(client, message("wamid.BEFORE")) == 200
    assert await stream(redis, INBOX) == []  # recognised through its moved mark
    code, out, _ = await run(capsys, "dedup", "migrate", *write_config(tmp_path, redis_url))
    assert (code, out.split()[0]) == (0, "0")  # nothing left to move


@given(
    identity=st.text(min_size=1, max_size=40),
    shards=st.integers(1, 4096),
    now=st.floats(1e9, 4e9),
)
def test_a_marks_keys_share_the_streams_slot_and_name_three_buckets(
    identity: str, shards: int, now: float
) -> None:
    mark = keys.mark(INBOX, "telegram", "7000000001", identity, TTL, shards, now)
    assert len(mark[3]) == keys.MARK_DIGEST_BYTES
    buckets = []
    for key in mark[:3]:
        assert key.startswith("gw:mk:{gw:inbox:support}:")  # one hash tag: one slot
        bucket, shard = key.rsplit(":", 2)[1:]
        assert 0 <= int(shard) < shards
        buckets.append(int(bucket))
    assert buckets == [int(now // TTL) - 1, int(now // TTL), int(now // TTL) + 1]
    again = keys.mark(INBOX, "telegram", "7000000001", identity, TTL, shards, now)
    assert again == mark  # the same event always has the same field and shard
