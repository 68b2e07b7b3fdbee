"""What the handlers reach through the aiohttp application: the process's `State` and the
typed `AppKey` of each resource `gateway.app` owns.

A module of its own, below both `gateway.app` (which fills these keys in its cleanup
contexts) and `gateway.handlers` (which reads them), so neither imports the other for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from adapters import Receiver
from gateway.config import Settings
from gateway.metrics import Metrics
from gateway.receive import Inbound
from gateway.redis_memory import MemoryWatch
from router.accounts import Directory
from router.client import RedisClient
from router.outbound import Outbox
from router.scriptpipe import ScriptHost


@dataclass
class State:
    """Per-process state the handlers share. `draining` flips on SIGTERM. `restarted`: a
    worker process started again after a crash (gateway.supervisor)."""

    settings: Settings
    metrics: Metrics
    receivers: dict[str, Receiver]
    """Channel name → its webhook checks, bound to its config section (`Channel.receiver`)."""
    directory: Directory
    draining: bool = False
    restarted: bool = False


STATE = web.AppKey("state", State)
REDIS = web.AppKey[RedisClient]("redis")
REDIS_URL = web.AppKey("redis_url", str)
"""The Redis URL the app was made with (a reload builds the large-webhook child's router
from it)."""
OUTBOX = web.AppKey("outbox", Outbox)
INBOUND = web.AppKey("inbound", Inbound)
"""The webhooks' one way in, for both server paths (gateway/receive.py)."""
SCRIPTS = web.AppKey("scripts", ScriptHost)
"""Runs the Lua scripts of the hot paths: the lean `ScriptPipe`, or redis-py's client."""
MEMORY = web.AppKey("memory", MemoryWatch)
