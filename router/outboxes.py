"""The outbox streams one process reads in the group `gateway`, and what is done to all of
them at once: groups created, dead consumers forgotten, abandoned entries taken over, depth
reported, in-flight entries kept, acknowledged entries trimmed.

The streams: the shared `gw:outbox`, and `gw:outbox:<assistant>` for every configured
assistant. Each is its own key (on a Redis Cluster, in its own slot), so every call names one
stream. An entry is known across them by its reference (`ref`): its id in gw:outbox, as it
always was, and `<stream>/<id>` in an assistant's own outbox (ids are unique only within a
stream).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from redis.exceptions import ResponseError

from router import keys
from router.accounts import Directory
from router.client import RedisClient

log = logging.getLogger("gateway.outbound")


class Claimed(NamedTuple):
    """An entry taken over from a consumer that stopped: where, and its delivery count."""

    stream: str
    entry_id: str
    fields: dict[bytes, bytes]
    deliveries: int


class Outboxes:
    """Stream → the assistant it belongs to (None: the shared gw:outbox)."""

    def __init__(self, redis: RedisClient, directory: Directory, trim: Any) -> None:
        """`trim`: the loaded `trim.lua`."""
        self._redis = redis
        self._directory = directory
        self._trim = trim
        self.streams: dict[str, str | None] = {}
        self.add()

    def add(self) -> list[str]:
        """The outbox of every configured assistant (and gw:outbox); returns the new ones.
        Streams are only added: one whose assistant left the config is read until restart."""
        assistants = sorted({a.assistant for a in self._directory.accounts.values()})
        wanted: dict[str, str | None] = {keys.OUTBOX: None}
        wanted.update({keys.outbox(a): a for a in assistants})
        new = [stream for stream in wanted if stream not in self.streams]
        self.streams.update(wanted)
        return new

    async def ensure_group(self, streams: Iterable[str] | None = None) -> None:
        for stream in list(self.streams if streams is None else streams):
            try:
                await self._redis.xgroup_create(stream, keys.OUTBOX_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def forget_dead_consumers(self, me: str, idle_ms: float) -> None:
        """Every process reads as a consumer of its own, so each restart leaves a name behind
        in the group. Names idle for `idle_ms` with nothing pending are removed: a live
        consumer is re-created by its next read, and one with pending entries keeps them
        until another process takes them over."""
        for stream in list(self.streams):
            for consumer in await self._redis.xinfo_consumers(stream, keys.OUTBOX_GROUP):
                name = _id(consumer["name"])
                if consumer["pending"] or consumer["idle"] < idle_ms or name == me:
                    continue
                await self._redis.xgroup_delconsumer(stream, keys.OUTBOX_GROUP, name)
                log.info("removed %s consumer %s (idle, nothing pending)", stream, name)

    async def take_over(self, me: str, idle_ms: int) -> list[Claimed]:
        """XAUTOCLAIM every stream's entries idle longer than `idle_ms`."""
        found = []
        for stream in list(self.streams):
            reply = await self._redis.xautoclaim(
                stream, keys.OUTBOX_GROUP, me, idle_ms, "0-0", count=100
            )
            for entry_id, fields in [(_id(i), f) for i, f in reply[1] if f is not None]:
                info = await self._redis.xpending_range(
                    stream, keys.OUTBOX_GROUP, min=entry_id, max=entry_id, count=1
                )
                count = int(info[0]["times_delivered"]) if info else 1
                log.warning("took over %s entry %s (delivery %d)", stream, entry_id, count)
                found.append(Claimed(stream, entry_id, fields, count))
        return found

    async def depth(self) -> tuple[int, int, float]:
        """Every outbox together: entries, pending, the age of the oldest pending one (s)."""
        length = pending = 0
        age = 0.0
        for stream in list(self.streams):
            length += await self._redis.xlen(stream)
            summary = await self._redis.xpending(stream, keys.OUTBOX_GROUP)
            oldest = summary.get("min") if summary else None
            if oldest:
                age = max(age, time.time() - int(_id(oldest).split("-")[0]) / 1000)
            pending += int(summary.get("pending", 0)) if summary else 0
        return length, pending, age

    async def keep(self, me: str, refs: Iterable[str]) -> None:
        """Re-claim our in-flight entries, so they do not look abandoned."""
        by_stream: dict[str, list[Any]] = {}
        for reference in refs:
            stream, entry_id = unref(reference)
            by_stream.setdefault(stream, []).append(entry_id)
        for stream, ids in by_stream.items():
            await self._redis.xclaim(stream, keys.OUTBOX_GROUP, me, 0, ids, justid=True)

    async def trim(self) -> int:
        """Delete the entries every consumer group (ours and any other, e.g. an operator's
        tool) has acknowledged; how many (`trim.lua` says which)."""
        deleted = 0
        for stream in list(self.streams):
            deleted += int(await self._trim(keys=[stream], args=[]))
        return deleted


def ref(stream: str, entry_id: str) -> str:
    """An entry's reference across the outboxes."""
    return entry_id if stream == keys.OUTBOX else f"{stream}/{entry_id}"


def unref(reference: str) -> tuple[str, str]:
    stream, _, entry_id = reference.rpartition("/")
    return (stream or keys.OUTBOX), entry_id


def _id(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
