"""Redis's used memory against its `maxmemory`: two gauges and a `/readyz` detail.

Redis that reaches `maxmemory` refuses writes (or evicts keys), and one that has none grows
until the kernel kills it; operators should see it coming. High memory does not make an
instance unready: every instance shares the same Redis, so taking them out of the balancer
would only stop webhooks that Redis can still take.

INFO memory is read at most once every `max_age_s`, however often probes and scrapes come;
callers arriving while a reading runs share it. On a Redis Cluster the fullest master counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster

from router.client import REDIS_ERRORS, RedisClient


@dataclass(frozen=True)
class MemoryReading:
    used: int
    maximum: int
    """0: no limit."""

    def fill(self) -> float:
        return self.used / self.maximum if self.maximum else 0.0


class MemoryWatch:
    def __init__(
        self,
        redis: RedisClient,
        warn_ratio: float,
        report: Callable[[int, int], None],
        max_age_s: float = 5.0,
    ) -> None:
        """`report(used, maximum)` is called with every new reading (the gauges)."""
        self._redis = redis
        self._warn_ratio = warn_ratio
        self._report = report
        self._max_age_s = max_age_s
        self._last: MemoryReading | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None

    async def status(self) -> str:
        """`ok`, or `high (used X of Y bytes)` once used memory passes the warn ratio."""
        reading = await self.reading()
        if reading.maximum and reading.used >= self._warn_ratio * reading.maximum:
            return f"high (used {reading.used} of {reading.maximum} bytes)"
        return "ok"

    async def reading(self) -> MemoryReading:
        async with self._lock:
            if self._last is None or time.monotonic() - self._read_at >= self._max_age_s:
                self._last = await self._read()
                self._read_at = time.monotonic()
                self._report(self._last.used, self._last.maximum)
            return self._last

    def refresh_soon(self) -> None:
        """Start a reading in the background unless one is running (for scrapes, which
        report the previous reading rather than wait for Redis)."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._quiet_reading(), name="redis-memory")

    async def aclose(self) -> None:
        """Stop a background reading (before the Redis client closes)."""
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh

    async def _quiet_reading(self) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            await self.reading()

    async def _read(self) -> MemoryReading:
        if isinstance(self._redis, RedisCluster):
            info: Any = await self._redis.info("memory", target_nodes=RedisCluster.PRIMARIES)
        else:
            info = await self._redis.info("memory")
        nodes = [info] if "used_memory" in info else list(info.values())
        readings = [MemoryReading(int(n["used_memory"]), int(n.get("maxmemory", 0))) for n in nodes]
        return max(readings, key=lambda r: (r.fill(), r.used))
