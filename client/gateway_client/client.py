"""`Backend`: one assistant's side of the gateway, over its Redis.

    backend = Backend.from_url("redis://...", "support")
    async for item in backend.inbox(group="support-bot"):
        event = item.event
        if isinstance(event, Message) and not event.ai_paused and event.conversation_id:
            sent = await backend.send(commands.text(event.conversation_id, "Hi!"))
            delivery = await backend.delivery(sent)

`inbox` reads `gw:inbox:<assistant>` through a consumer group (made if missing): first the
entries another consumer of the group read and left unacknowledged for `reclaim_idle_s` (it
crashed), then new ones. An entry is acknowledged once the loop body that got it finished,
so an entry whose handling was cut off (the process died, the loop raised) is read again by
a consumer of the group. `history` does the same on `gw:history:<assistant>`, at its own pace.
`send` appends a command to the assistant's own outbox `gw:outbox:<assistant>` (the gateway
sends from it only the assistant's own conversations; `shared_outbox=True`: the shared
`gw:outbox`, of one-tenant setups); `delivery` waits for its `delivery` event by reading
the inbox without a group (nothing is acknowledged for anyone). One stream key per call, so
it works unchanged on a Redis Cluster.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import msgspec
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from gateway_client.commands import Command
from gateway_client.events import Delivery, Received, received

log = logging.getLogger("gateway_client")

OUTBOX = "gw:outbox"
"""The shared outbox (one tenant); each assistant also has its own, `gw:outbox:<assistant>`."""
_UNREADABLE = (msgspec.DecodeError, UnicodeDecodeError)


class Sent(NamedTuple):
    """A command appended to an outbox: its id, and where the inbox stood before it (its
    delivery comes after)."""

    command_id: str
    outbox_id: str
    inbox_from: str


class Backend:
    """One assistant's streams on the gateway's Redis."""

    def __init__(
        self, redis: Redis | RedisCluster, assistant: str, *, shared_outbox: bool = False
    ) -> None:
        """`shared_outbox`: write commands to `gw:outbox` instead of the assistant's own
        outbox (a gateway with `outbound.shared_outbox: false` dead-letters those)."""
        self.redis = redis
        self.assistant = assistant
        self.inbox_key = f"gw:inbox:{assistant}"
        self.history_key = f"gw:history:{assistant}"
        self.outbox_key = OUTBOX if shared_outbox else f"{OUTBOX}:{assistant}"

    @classmethod
    def from_url(
        cls, url: str, assistant: str, *, cluster: bool = False, shared_outbox: bool = False
    ) -> Backend:
        redis: Redis | RedisCluster = RedisCluster.from_url(url) if cluster else Redis.from_url(url)
        return cls(redis, assistant, shared_outbox=shared_outbox)

    async def aclose(self) -> None:
        await self.redis.aclose()

    def inbox(
        self,
        group: str,
        consumer: str | None = None,
        *,
        batch: int = 10,
        block_ms: int = 5000,
        reclaim_idle_s: float = 60.0,
    ) -> AsyncIterator[Received]:
        """Every event of the assistant's inbox, once per group (see the module's text)."""
        return self._consume(self.inbox_key, group, consumer, batch, block_ms, reclaim_idle_s)

    def history(
        self,
        group: str,
        consumer: str | None = None,
        *,
        batch: int = 100,
        block_ms: int = 5000,
        reclaim_idle_s: float = 300.0,
    ) -> AsyncIterator[Received]:
        """The synced past messages (coexistence history), as `inbox` reads the inbox."""
        return self._consume(self.history_key, group, consumer, batch, block_ms, reclaim_idle_s)

    async def send(self, command: Command) -> Sent:
        """Append `command` to the outbox (`outbox_key`); the gateway sends it once per
        `command_id`."""
        last = await self.redis.xrevrange(self.inbox_key, count=1)
        inbox_from = _id(last[0][0]) if last else "0-0"
        entry = await self.redis.xadd(self.outbox_key, {"command": command.encode()})
        return Sent(command.command_id, _id(entry), inbox_from)

    async def delivery(self, sent: Sent, timeout_s: float = 60.0) -> Delivery:
        """The `delivery` event of a sent command (the first one: a repeat's has
        `duplicate`). `TimeoutError` when none came within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        after = sent.inbox_from
        while (left := deadline - time.monotonic()) > 0:
            block = max(1, int(min(left, 5.0) * 1000))
            reply = await self.redis.xread({self.inbox_key: after}, count=100, block=block)
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    after = _id(entry_id)
                    found = _delivery_of(fields, sent.command_id)
                    if found is not None:
                        return found
        raise TimeoutError(f"no delivery for command {sent.command_id} in {timeout_s:g} s")

    async def _consume(
        self,
        stream: str,
        group: str,
        consumer: str | None,
        batch: int,
        block_ms: int,
        reclaim_idle_s: float,
    ) -> AsyncIterator[Received]:
        name = consumer or f"{os.uname().nodename}-{os.getpid()}-{secrets.token_hex(3)}"
        await self._ensure_group(stream, group)
        idle_ms = max(1, int(reclaim_idle_s * 1000))
        while True:
            entries = await self._reclaimed(stream, group, name, idle_ms, batch)
            if not entries:
                reply = await self.redis.xreadgroup(
                    group, name, {stream: ">"}, count=batch, block=block_ms
                )
                entries = [e for _s, found in reply or [] for e in found]
            for entry_id, fields in entries:
                item = _received(entry_id, fields)
                if item is not None:
                    yield item  # acknowledged below, once the loop body that got it is done
                await self.redis.xack(stream, group, entry_id)

    async def _reclaimed(
        self, stream: str, group: str, name: str, idle_ms: int, batch: int
    ) -> list[Any]:
        """Entries a consumer of the group read and left unacknowledged for `idle_ms`."""
        reply = await self.redis.xautoclaim(stream, group, name, idle_ms, "0-0", count=batch)
        entries = [(i, f) for i, f in reply[1] if f is not None]
        if entries:
            log.warning("took over %d unacknowledged entries of %s", len(entries), stream)
        return entries

    async def _ensure_group(self, stream: str, group: str) -> None:
        try:
            await self.redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def _id(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _received(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Received | None:
    raw = fields.get(b"event")
    try:
        if raw is None:
            raise msgspec.DecodeError("no `event` field")
        return received(_id(entry_id), raw)
    except (*_UNREADABLE, msgspec.ValidationError) as exc:
        # A kind this client does not know (a newer gateway) or a broken entry: skipped,
        # acknowledged, said once, never a stuck consumer.
        log.warning("skipped entry %s: %s", _id(entry_id), exc)
        return None


def _delivery_of(fields: dict[bytes, bytes], command_id: str) -> Delivery | None:
    item = _received("", fields)
    if item is None or not isinstance(item.event, Delivery):
        return None
    if item.event.command_id != command_id or item.event.duplicate:
        return None
    return item.event
