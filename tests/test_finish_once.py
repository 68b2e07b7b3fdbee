"""A command is answered once even when finish.lua runs twice (found by benchmarks/faults.py:
a call that timed out during a Redis stall still runs once Redis resumes, and
`Ledger._record` runs it again) or after another worker took the command over."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from router import scripts

pytestmark = pytest.mark.cluster  # also against a Redis Cluster (--redis-cluster)

KEY, INBOX = "gw:cmd:{gw:inbox:a}:c1", "gw:inbox:a"


def args(owner: str, outcome: str = "sent") -> list[str | int]:
    result = f'{{"outcome":"{outcome}"}}'
    delivery = f'{{"kind":"delivery","command_id":"c1","outcome":"{outcome}"}}'
    return [result, delivery, 1000, 60, "", "c1", "", owner]


async def test_finish_run_twice_publishes_one_delivery(redis: Redis) -> None:
    finish = redis.register_script(scripts.source("finish"))
    await redis.hset(KEY, mapping={"s": "sending", "o": "w1", "l": "0", "e": "1-0"})  # type: ignore[misc]
    assert await finish(keys=[KEY, INBOX], args=args("w1")) == 1
    assert await finish(keys=[KEY, INBOX], args=args("w1")) == 0
    assert await redis.xlen(INBOX) == 1
    assert await redis.hget(KEY, "s") == b"done"  # type: ignore[misc]


async def test_a_worker_whose_command_was_taken_over_answers_nothing(redis: Redis) -> None:
    """w1's lease ran out in a stall and w2 owns the record now: w2 answers, w1 does not."""
    finish = redis.register_script(scripts.source("finish"))
    await redis.hset(KEY, mapping={"s": "sending", "o": "w2", "l": "0", "e": "1-0"})  # type: ignore[misc]
    assert await finish(keys=[KEY, INBOX], args=args("w1")) == 0
    assert await redis.xlen(INBOX) == 0
    assert await finish(keys=[KEY, INBOX], args=args("w2", "failed")) == 1
    ((_id, fields),) = await redis.xrange(INBOX)
    assert b'"outcome":"failed"' in fields[b"event"]


async def test_a_repeat_still_publishes_its_duplicate_delivery(redis: Redis) -> None:
    """The publish-only call (a repeated command_id) is not guarded: it is its own delivery."""
    finish = redis.register_script(scripts.source("finish"))
    await redis.hset(KEY, mapping={"s": "done", "r": '{"outcome":"sent"}'})  # type: ignore[misc]
    repeat = ["", '{"kind":"delivery","duplicate":true}', 1000, 60, "", "c1", "", "w9"]
    assert await finish(keys=[KEY, INBOX], args=repeat) == 1
    assert await redis.xlen(INBOX) == 1
