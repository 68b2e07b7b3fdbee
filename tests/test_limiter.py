"""The shared rate limiter, driven through the real Lua scripts on a real Redis.

Property: whatever the arrival pattern (bursts, pauses, stalls), the slots handed out
never put more than `mps` sends into any 1-second window, the first second has no burst,
and slots missed during a pause are not caught up."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.schema import Command
from router import keys
from router.accounts import Account
from router.client import scripts_of
from router.ledger import Claim
from router.pacing import Pacing, Slot
from router.settings import OutboundSettings, PolicySettings
from router.target import Target
from tests.conftest import connect

pytestmark = pytest.mark.cluster  # also runs against a Redis Cluster (--redis-cluster)

MPS = 40
NUMBER = "100200300400500"
FAR = 1e12
"""A wait deadline (monotonic time) no slot reaches."""


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class Bench(NamedTuple):
    """The pacing of one process, and the conversation it paces."""

    pacing: Pacing
    target: Target
    redis: Any

    def claim(self, i: int | str) -> Claim:
        """Command record `i`, owned by `o<i>`."""
        record = keys.command(self.target.inbox, str(i))
        return Claim(record, f"o{i}", self.target, str(i), "text")


async def make_pacing(
    redis_url: str, mps: float = MPS, guard_ms: float = 25.0, observer: Any = None
) -> Bench:
    redis = connect(redis_url)
    await redis.flushall()
    account = Account(
        "whatsapp", NUMBER, "support", "token", True, mps, "+15550001111", "cloud_api"
    )
    policy = PolicySettings(limiter_guard_ms=guard_ms, send_wait_max_seconds=600)
    pacing = Pacing(scripts_of(redis), policy, OutboundSettings(), observer or _Quiet())
    target = Target(account, "14155550100", f"whatsapp:{NUMBER}:14155550100", keys.inbox("support"))
    await redis.hset(target.key("conv"), "t", int(time.time()))
    return Bench(pacing, target, redis)


async def close(bench: Bench) -> None:
    await bench.redis.aclose()


async def admit(bench: Bench, n: int) -> list[float]:
    """Ask for `n` slots at once (typing: the number's limiter only); return their times."""
    command = Command(command_id="x", conversation_id=bench.target.conversation_id, type="typing")

    async def one(i: int) -> float:
        slot = await bench.pacing.admit(bench.claim(i), command, FAR)
        assert isinstance(slot, Slot), slot
        return slot.at_us / 1_000_000  # Redis time, exactly as the limiter decided it

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def max_in_any_window(times: list[float], span: float = 1.0) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= span:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


pattern = st.lists(
    st.tuples(st.integers(1, 30), st.floats(0, 0.3)),  # (burst size, pause after it)
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(bursts=pattern)
def test_no_window_ever_holds_more_than_mps(
    redis_url: str, bursts: list[tuple[int, float]]
) -> None:
    async def scenario() -> list[float]:
        bench = await make_pacing(redis_url)
        slots: list[float] = []
        try:
            for size, pause in bursts:
                slots += await admit(bench, size)
                await asyncio.sleep(pause)
        finally:
            await close(bench)
        return slots

    slots = asyncio.run(scenario())
    assert max_in_any_window(slots) <= MPS
    ordered = sorted(slots)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    assert min(gaps, default=1.0) >= (1.0 + 0.025) / MPS - 0.002  # evenly spaced: no burst


async def test_first_second_has_no_burst_and_missed_slots_are_not_caught_up(redis_url: str) -> None:
    bench = await make_pacing(redis_url, mps=20)
    try:
        first = await admit(bench, 20)
        assert max(first) - min(first) >= 19 * 0.05  # 20 slots spread over a second
        await asyncio.sleep(2.0)  # a stall: about 40 slots go unused
        after = await admit(bench, 21)
    finally:
        await close(bench)
    start = min(after)
    assert sum(1 for t in after if t - start < 1.0) <= 20  # no catch-up burst
    assert max_in_any_window(first + after) <= 20


async def test_the_dispatch_log_caps_late_bunched_sends(redis_url: str) -> None:
    """Workers that wake late all at once: the hard cap still lets only mps through."""
    bench = await make_pacing(redis_url, mps=10)
    command = Command(
        command_id="x",
        conversation_id=bench.target.conversation_id,
        type="text",
        text="x",
        author="human",
    )
    try:
        for i in range(15):
            await bench.redis.hset(bench.claim(i).key, mapping={"s": "waiting", "o": f"o{i}"})
        started = time.monotonic()
        results = await asyncio.gather(
            *(bench.pacing.presend(bench.claim(i), command) for i in range(15))
        )
        elapsed = time.monotonic() - started
    finally:
        await close(bench)
    assert results == [None] * 15  # all eventually allowed ...
    assert elapsed >= 1.0  # ... but the 11th only once the first left the 1-second window


@pytest.mark.parametrize(("mps", "guard_ms"), [(20, 25), (80, 25), (1000, 0)])
def test_interval_leaves_room_for_the_guard(mps: int, guard_ms: float) -> None:
    from router.accounts import interval_us

    assert interval_us(mps, guard_ms) * mps >= 1_000_000 + guard_ms * 1000 - mps


async def test_a_worker_resuming_late_gives_its_slot_back(redis_url: str) -> None:
    late_calls: list[str] = []
    observer = type("Obs", (), {"late": lambda self, ch: late_calls.append(ch)})()
    bench = await make_pacing(redis_url, mps=10, guard_ms=40, observer=observer)
    command = Command(
        command_id="x",
        conversation_id=bench.target.conversation_id,
        type="text",
        text="x",
        author="human",
    )
    claim = bench.claim("late")
    await bench.redis.hset(claim.key, mapping={"s": "waiting", "o": claim.owner})
    script = bench.pacing.scripts["presend"]

    async def slow_presend(**kwargs: Any) -> Any:
        reply = await script(**kwargs)
        if not late_calls:
            await asyncio.sleep(0.05)  # the event loop was busy: resumed 50 ms late
        return reply

    bench.pacing.scripts["presend"] = slow_presend
    try:
        assert await bench.pacing.presend(claim, command) is None
        log = await bench.redis.zrange(bench.target.key("log"), 0, -1)
    finally:
        await close(bench)
    assert late_calls == ["whatsapp"]  # the late slot was given back once ...
    assert log == [claim.owner.encode()]  # ... and exactly one dispatch is on record
