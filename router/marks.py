"""Moving dedup marks of the one-key-per-event model (`gw:dd:*`, gateways before the bucketed
model) into the bucket hashes (`gw:mk:*`, router/keys.py), so an upgrade keeps recognising the
redeliveries of events received before it.

Each old key names its stream (the hash tag), channel, account and identity, so its new
field and hashes follow from the name alone; `migrate_mark.lua` moves one key atomically
(keeping the higher status rank if the new model already marked the event) and deletes it.
Safe to run more than once, and while gateways run: a key moved or expired meanwhile is
skipped. Until it has run, an event received before the upgrade and delivered again after it
is published again (its old mark is not consulted).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from redis.asyncio.cluster import RedisCluster

from router import keys, scripts
from router.client import RedisClient
from router.scriptpipe import ScriptHost
from router.settings import RouterSettings

OLD = re.compile(rb"gw:dd:\{(?P<stream>[^}]+)\}:(?P<channel>[^:]+):(?P<account>[^:]+):(?P<id>.+)")
"""`gw:dd:{<stream>}:<channel>:<account>:<identity>` (the identity may hold colons)."""
SCAN_COUNT = 1000


async def _old_marks(redis: RedisClient) -> AsyncIterator[bytes | str]:
    """SCAN for gw:dd:* on the one Redis, or on every master of a cluster (SCAN is per node)."""
    if not isinstance(redis, RedisCluster):
        async for name in redis.scan_iter(match="gw:dd:*", count=SCAN_COUNT):
            yield name
        return
    for node in redis.get_primaries():
        cursor = 0
        while True:
            # a cluster client answers {node name: next cursor} and the node's names
            cursors, names = await redis.scan(
                cursor, match="gw:dd:*", count=SCAN_COUNT, target_nodes=node
            )
            for name in names:
                yield name
            cursor = int(cursors[node.name]) if isinstance(cursors, dict) else int(cursors)
            if not cursor:
                break


@dataclass
class Migrated:
    moved: int = 0
    gone: int = 0
    """Expired or moved by another run between the scan and the move."""
    unreadable: int = 0
    """Keys under gw:dd: whose name is not a mark's (left as they are)."""
    seconds: float = 0.0


async def migrate(redis: RedisClient, host: ScriptHost, router: RouterSettings) -> Migrated:
    """Move every `gw:dd:*` mark (every master of a cluster) into its bucket hash."""
    move = scripts.load(host, "migrate_mark")
    done = Migrated()
    started = time.monotonic()
    async for name in _old_marks(redis):
        raw = name if isinstance(name, bytes) else name.encode()
        found = OLD.fullmatch(raw)
        if found is None:
            done.unreadable += 1
            continue
        stream, channel, account, identity = (p.decode() for p in found.groups())
        mark = keys.mark(
            stream,
            channel,
            account,
            identity,
            router.dedup_ttl_seconds,
            router.dedup_shards,
            time.time(),
        )
        moved = await move(keys=[raw.decode(), *mark[:3]], args=[router.dedup_ttl_seconds, mark[3]])
        if int(moved):
            done.moved += 1
        else:
            done.gone += 1
    done.seconds = time.monotonic() - started
    return done
