"""The Redis client the router works with: one node, or a Redis Cluster.

Both clients take the same calls: every script call names keys of a single hash tag (see
`keys`), so it goes to the one node that owns that slot, and pipelines are non-transactional,
so a cluster splits them by node.
"""

from __future__ import annotations

from typing import TypeAlias, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from router.scriptpipe import ScriptHost

RedisClient: TypeAlias = Redis | RedisCluster

REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)
"""What a Redis call raises when Redis cannot take it. redis-py's cluster client raises
`RedisClusterException`, which is not a `RedisError`, when no node answers at all or a slot
has no node."""


def scripts_of(client: RedisClient) -> ScriptHost:
    """redis-py's client as the runner of Lua scripts (EVALSHA, loaded again on NOSCRIPT:
    on every primary of a cluster). redis-py types `register_script` for a single node only;
    the script object it makes takes a cluster client as it is."""
    return cast(ScriptHost, client)
