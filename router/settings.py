"""The router's sections of config.yaml: `router`, `policy`, `outbound` (with its `retry`).

The bottom layer of settings: `gateway.config` composes these structs into its one frozen
`Settings` (and decodes, substitutes and checks the file); the router's classes take them as
they are, in the units the config file uses (seconds, counts), so no translator sits between
the two. Nothing here imports the project.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

Seconds = Annotated[float, msgspec.Meta(ge=0)]

_STRUCT = {"frozen": True, "forbid_unknown_fields": True, "kw_only": True}


class RouterSettings(msgspec.Struct, **_STRUCT):
    dedup_ttl_seconds: Annotated[int, msgspec.Meta(ge=48 * 3600)] = 48 * 3600
    dedup_shards: Annotated[int, msgspec.Meta(ge=1, le=65536)] = 1024
    """Dedup marks are fields of hashes, one per (stream, time bucket, shard): this many
    shards per stream and bucket, so no hash grows past a few thousand fields at the rates
    the gateway takes (router/keys.py `marks`)."""
    """How long a delivered wamid / status / update_id is remembered (at least 48 h)."""
    inbox_maxlen: Annotated[int, msgspec.Meta(ge=1000)] = 1_000_000
    """Approximate cap of each inbox stream (XADD MAXLEN ~)."""
    history_maxlen: Annotated[int, msgspec.Meta(ge=1000)] = 5_000_000
    deadletter_maxlen: Annotated[int, msgspec.Meta(ge=100)] = 100_000
    contact_map_ttl_seconds: Annotated[int, msgspec.Meta(ge=86400)] = 400 * 86400
    """How long a BSUID → wa_id mapping is kept after it was last seen."""
    conversation_ttl_seconds: Annotated[int, msgspec.Meta(ge=2 * 86400)] = 400 * 86400
    """How long a conversation's state (window time, pause, opt-out) outlives its last use."""
    publish_chunk_events: Annotated[int, msgspec.Meta(ge=10, le=100_000)] = 50
    """A webhook with more events than this (history sync) is published in slices of this
    size, one script call each, so Redis runs live webhooks' scripts in between (a 500-event
    slice kept Redis busy for several ms; see README)."""


class PolicySettings(msgspec.Struct, **_STRUCT):
    send_wait_max_seconds: Seconds = 60.0
    human_takeover_seconds: Annotated[int, msgspec.Meta(ge=0)] = 900
    country_block_seconds: Annotated[int, msgspec.Meta(ge=0)] = 604800
    marketing_hold_seconds: Annotated[int, msgspec.Meta(ge=0)] = 86400
    """After Meta's per-user marketing cap (WhatsApp 131049, Twilio 63049), in an answer or
    a failed status: marketing templates to that contact are `rejected/held` this long
    (Meta: wait at least 24 h). 0: no hold."""
    undeliverable_hold_seconds: Annotated[int, msgspec.Meta(ge=0)] = 3600
    """After "message undeliverable" (WhatsApp 131026; Twilio 63003, 63024): every command
    to that contact is `rejected/undeliverable` this long, or until the contact writes
    (which shows it can be reached), so nothing loops on a number that cannot receive.
    0: no hold."""
    limiter_guard_ms: Annotated[float, msgspec.Meta(ge=0, le=500)] = 50.0
    """Sends are spaced (1 s + guard) / mps apart, so network jitter between the gateway and
    the provider cannot put mps + 1 sends into one 1-second window at the provider."""


class RetrySettings(msgspec.Struct, **_STRUCT):
    """Backoff for retryable provider answers: base × 2^(attempt-1), capped, ± jitter."""

    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    base_seconds: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    max_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.2
    pair_base_seconds: Annotated[float, msgspec.Meta(ge=1)] = 4.0
    """WhatsApp 131056 (pair rate): that recipient waits base^attempt seconds (4, 16, 64)."""


class OutboundSettings(msgspec.Struct, **_STRUCT):
    enabled: bool = True
    """Run reply workers in this process (read the outboxes and send)."""
    shared_outbox: bool = True
    """Send the commands of the shared gw:outbox (one tenant, or backends trusted alike).
    False: only each assistant's gw:outbox:<assistant> is sent from, and every command
    written to gw:outbox is dead-lettered (`invalid_command`), never sent."""
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 256
    """Commands in flight per process (most of them sleep until their rate-limit slot)."""
    claim_idle_seconds: Annotated[float, msgspec.Meta(gt=0)] = 120.0
    """An outbox entry pending this long on a consumer that stopped heartbeating is taken
    over by another process."""
    max_deliveries: Annotated[int, msgspec.Meta(ge=1)] = 5
    dead_consumer_seconds: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    """At start, consumers of the outbox group idle this long with nothing pending (left by
    processes that restarted) are removed from the group."""
    request_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    trim_interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """How often gw:outbox entries every consumer group has acknowledged are deleted."""
    retry: RetrySettings = msgspec.field(default_factory=RetrySettings)
