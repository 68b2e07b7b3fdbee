"""The Redis client the router works with: one node, or a Redis Cluster.

Both clients take the same calls: every script call names keys of a single hash tag (see
`keys`), so it goes to the one node that owns that slot, and pipelines are non-transactional,
so a cluster splits them by node.
"""

from __future__ import annotations

from typing import TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import RedisClusterException, RedisError

RedisClient: TypeAlias = Redis | RedisCluster

REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)
"""What a Redis call raises when Redis cannot take it. redis-py's cluster client raises
`RedisClusterException`, which is not a `RedisError`, when no node answers at all or a slot
has no node."""


def register_script(client: RedisClient, text: str) -> AsyncScript:
    """A script run by EVALSHA, loaded again on NOSCRIPT (on every primary of a cluster).

    redis-py types `register_script` for a single node only; its script object takes a
    cluster client as it is."""
    return AsyncScript(client, text)  # type: ignore[arg-type]
