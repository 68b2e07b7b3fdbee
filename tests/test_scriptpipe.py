"""The lean script client of the inbound hot path, against a real redis-server.

What a caller relies on: every call gets its own reply, whatever else is in flight; calls of
one event-loop iteration share one network round trip; a failing script fails only its own
call; Redis restarts, script flushes, timeouts and outages surface as redis-py's errors and
the next call works again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any

import hiredis
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.embedded import EmbeddedRedis, free_port
from router.scriptpipe import ScriptPipe, pack, supports
from tests.stall import loop_stall, redis_stalled

ECHO = "return {KEYS[1], ARGV[1]}"
INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
SLOW = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= 50000
return ARGV[1]
"""
FAIL_ON_BOOM = """
if ARGV[1] == 'boom' then return redis.error_reply('ERR boom asked for') end
return ARGV[1]
"""


@pytest.fixture
async def pipe(redis_url: str, redis: Redis) -> AsyncIterator[ScriptPipe]:
    p = ScriptPipe(redis_url, timeout_s=2.0)
    yield p
    await p.aclose()


@pytest.fixture
def own_server() -> Iterator[EmbeddedRedis]:
    """A redis-server this test may stop and restart."""
    server = EmbeddedRedis(free_port(), None).start()
    yield server
    server.stop()


@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.text(max_size=32),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_pack_is_a_resp_array_of_the_arguments(args: list[bytes | str | int | float]) -> None:
    reader = hiredis.Reader()
    reader.feed(pack(args))
    expected = [_as_redis_writes_it(a) for a in args]
    assert reader.gets() == expected
    assert reader.gets() is False  # nothing left over


def _as_redis_writes_it(arg: bytes | str | int | float) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, float):
        return repr(arg).encode()
    return str(arg).encode()


@given(
    st.lists(st.binary(max_size=40), max_size=5),
    st.lists(st.one_of(st.binary(max_size=64), st.text(max_size=16)), max_size=12),
)
def test_a_call_retried_by_eval_carries_the_same_keys_and_arguments(
    keys: list[bytes], args: list[bytes | str]
) -> None:
    script = ScriptPipe("redis://127.0.0.1:1/0", 1.0).register_script(FAIL_ON_BOOM)
    reader = hiredis.Reader()
    reader.feed(script.command(keys, args) + script.as_eval(script.command(keys, args)))
    rest = [str(len(keys)).encode(), *keys, *(_as_redis_writes_it(a) for a in args)]
    assert reader.gets() == [b"EVALSHA", script.sha.encode(), *rest]
    assert reader.gets() == [b"EVAL", FAIL_ON_BOOM.encode(), *rest]
    assert reader.gets() is False


def test_pack_refuses_booleans() -> None:
    with pytest.raises(TypeError, match="booleans"):
        pack(["SET", "k", True])


def test_supports_plain_tcp_and_unix_sockets_only() -> None:
    assert supports("redis://127.0.0.1:6379/0")
    assert supports("unix:///run/redis.sock")
    assert not supports("rediss://example:6380/0")


async def test_concurrent_calls_each_get_their_own_reply_in_one_write(
    pipe: ScriptPipe, redis: Redis
) -> None:
    echo = pipe.register_script(ECHO)
    await echo(keys=["warm"], args=[0])
    before = pipe.writes
    replies = await asyncio.gather(*(echo(keys=[f"k{i}"], args=[i]) for i in range(500)))
    assert replies == [[f"k{i}".encode(), str(i).encode()] for i in range(500)]
    # 500 calls made in one loop iteration go out in one write, not 500
    assert pipe.writes - before == 1
    # and a lone call is not held back waiting for company
    assert await asyncio.wait_for(echo(keys=["alone"], args=[1]), 0.5) == [b"alone", b"1"]
    assert pipe.writes - before == 2


async def test_a_failing_script_fails_only_its_own_call(pipe: ScriptPipe) -> None:
    script = pipe.register_script(FAIL_ON_BOOM)
    results = await asyncio.gather(
        script(args=["a"]), script(args=["boom"]), script(args=["c"]), return_exceptions=True
    )
    assert results[0] == b"a" and results[2] == b"c"
    assert isinstance(results[1], ResponseError) and "boom asked for" in str(results[1])
    assert await script(args=["d"]) == b"d"  # the connection is still in step


async def test_script_flush_is_survived(pipe: ScriptPipe, redis: Redis) -> None:
    incr = pipe.register_script(INCR)
    assert await incr(keys=["n"], args=[2]) == 2
    await redis.script_flush()
    assert await incr(keys=["n"], args=[3]) == 5


async def test_database_number_of_the_url_is_used(redis_url: str, redis: Redis) -> None:
    base = redis_url.rsplit("/", 1)[0]
    p = ScriptPipe(f"{base}/3", timeout_s=2.0)
    try:
        assert await p.register_script(INCR)(keys=["in-db-3"], args=[1]) == 1
    finally:
        await p.aclose()
    assert await redis.exists("in-db-3") == 0
    other = Redis.from_url(f"{base}/3")
    assert await other.get("in-db-3") == b"1"
    await other.flushdb()
    await other.aclose()


async def test_password_is_sent(own_server: EmbeddedRedis) -> None:
    admin = Redis.from_url(own_server.url)
    await admin.config_set("requirepass", "s3cret")
    await admin.aclose()
    wrong = ScriptPipe(own_server.url, timeout_s=2.0)
    with pytest.raises(RedisError):
        await wrong.register_script(INCR)(keys=["x"], args=[1])
    await wrong.aclose()
    url = own_server.url.replace("redis://", "redis://:s3cret@")
    right = ScriptPipe(url, timeout_s=2.0)
    assert await right.register_script(INCR)(keys=["x"], args=[1]) == 1
    await right.aclose()


async def test_outage_raises_connection_error_then_recovers(own_server: EmbeddedRedis) -> None:
    pipe = ScriptPipe(own_server.url, timeout_s=2.0)
    incr = pipe.register_script(INCR)
    try:
        assert await incr(keys=["n"], args=[1]) == 1
        own_server.stop()
        with pytest.raises(RedisConnectionError):
            await incr(keys=["n"], args=[1])
        with pytest.raises(RedisConnectionError):  # still down: refused, not hung
            await incr(keys=["n"], args=[1])
        own_server.start()
        assert await incr(keys=["n"], args=[1]) == 1  # a fresh server, scripts reloaded
    finally:
        await pipe.aclose()


async def test_a_reply_later_than_the_timeout_fails_then_the_next_call_works(
    own_server: EmbeddedRedis,
) -> None:
    pipe = ScriptPipe(own_server.url, timeout_s=0.3)
    echo = pipe.register_script(ECHO)
    try:
        assert await echo(keys=["a"], args=[1]) == [b"a", b"1"]
        async with redis_stalled(own_server.url, 0.8):
            with pytest.raises(RedisTimeoutError):
                await echo(keys=["b"], args=[2])
        assert await echo(keys=["c"], args=[3]) == [b"c", b"3"]
    finally:
        await pipe.aclose()


def _stall(seconds: float) -> None:
    """The event loop kept busy (or the process given no CPU) this long."""
    time.sleep(seconds)


@pytest.mark.uvloop_too
@pytest.mark.parametrize("stalls", ["after-the-write", "before-the-write", "mid-write"])
async def test_the_gateway_stalling_past_the_timeout_is_not_a_redis_timeout(
    redis_url: str, stalls: str
) -> None:
    # The gateway's own loop stalls (a long callback, or no CPU on a busy machine) past the
    # timeout while Redis answers in time: the call used to fail, its webhook answered 503
    # with its events in Redis (a CI fuzz run under load saw six). After the write, the reply
    # comes during the stall and uvloop runs the expired watchdog before it reads it; before
    # the write, the watchdog counted from the queueing; mid-write, the rest of a large
    # request goes out after the stall, and Redis can answer only then. A Redis that sends
    # nothing for the timeout still fails the call (test_a_reply_later_than_the_timeout_...).
    pipe = ScriptPipe(redis_url, timeout_s=0.3)
    echo, slow = pipe.register_script(ECHO), pipe.register_script(SLOW)
    length = pipe.register_script("return string.len(ARGV[1])")
    try:
        assert await echo(keys=["a"], args=[1]) == [b"a", b"1"]  # connected
        if stalls == "mid-write":  # 8 MiB: the socket takes part of it before the stall
            call = length.now(["b"], [b"x" * 8 * 2**20])
            expected: object = 8 * 2**20
        else:  # answered 50 ms after its write
            call, expected = slow.now(["b"], [2]), b"2"
        assert call is not None  # queued now, written once this callback is done
        with loop_stall(0.6) as stall:
            if stalls == "before-the-write":
                _stall(0.6)
            else:
                await asyncio.sleep(0)  # written (or its start): then the stall
                stall()
            assert await call == expected
        assert await echo(keys=["c"], args=[3]) == [b"c", b"3"]
    finally:
        await pipe.aclose()


async def test_calls_in_flight_when_scripts_are_flushed_all_get_their_replies(
    pipe: ScriptPipe, redis: Redis
) -> None:
    incr = pipe.register_script(INCR)
    assert await incr(keys=["n"], args=[1]) == 1
    await redis.script_flush()
    # 50 EVALSHAs in one write: each meets NOSCRIPT and is retried as EVAL on the connection
    replies = await asyncio.gather(*(incr(keys=["n"], args=[1]) for _ in range(50)))
    assert sorted(replies) == list(range(2, 52))
    assert await redis.get("n") == b"51"  # each call ran exactly once


async def test_now_sends_on_the_open_connection_and_declines_without_one(
    pipe: ScriptPipe,
) -> None:
    echo = pipe.register_script(ECHO)
    assert echo.now(["k"], [1]) is None  # nothing open yet: the caller awaits the call instead
    assert await echo(keys=["k"], args=[1]) == [b"k", b"1"]
    future = echo.now(["k2"], [2])
    assert future is not None
    assert await future == [b"k2", b"2"]


# Each value has its own key, a set: a value is added once (1, then 0 when run again) and
# logged when added, so the log shows the order the calls ran in.
ADDER = """
local out = {}
for i = 2, #ARGV do
  local added = redis.call('SADD', KEYS[i - 1], ARGV[1] .. ARGV[i])
  if added == 1 then redis.call('RPUSH', 'log', ARGV[1] .. ARGV[i]) end
  out[#out + 1] = added
end
return out
"""

_CALLS = st.lists(
    st.tuples(
        st.booleans(),  # sent at once with now(), or awaited as a call
        st.sampled_from(["t", "u"]),  # a prefix of the values
        st.lists(st.sampled_from("abcdefgh"), max_size=4),  # values: repeats are 0s
    ),
    min_size=1,
    max_size=30,
)


@given(_CALLS)
def test_pipelined_calls_each_get_what_they_would_get_alone_in_call_order(
    redis_url: str, calls: list[tuple[bool, str, list[str]]]
) -> None:
    async def run() -> tuple[list[Any], list[bytes]]:
        client = Redis.from_url(redis_url)
        await client.delete("log", *(f"set:{v}" for v in "abcdefgh"))
        pipe = ScriptPipe(redis_url, timeout_s=2.0)
        script = pipe.register_script(ADDER)
        await script(keys=["set:warm"], args=["w", "warm"])
        await client.delete("log", "set:warm")
        waits: list[Awaitable[Any]] = []
        for now, tag, values in calls:  # all made in one event-loop iteration
            keys, args = [f"set:{v}" for v in values], [tag, *values]
            future = script.now(keys, args) if now else None
            waits.append(future if future is not None else script(keys=keys, args=args))
        replies = list(await asyncio.gather(*waits))
        log = await client.lrange("log", 0, -1)
        await pipe.aclose()
        await client.aclose()
        return replies, log

    replies, log = asyncio.run(run())
    seen: set[str] = set()
    expected_replies, expected_log = [], []
    for _, tag, values in calls:  # the calls one by one, in the order they were made
        reply = []
        for value in values:
            added = tag + value not in seen
            seen.add(tag + value)
            reply.append(int(added))
            if added:
                expected_log.append((tag + value).encode())
        expected_replies.append(reply)
    assert replies == expected_replies
    assert log == expected_log
