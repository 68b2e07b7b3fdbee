"""The lost-event oracle: for every signed body answered 200, its events are in the streams or
a dead letter holds it.

What a body must leave behind comes from the gateway's own decoder run here on the same bytes
(`router.offload.parse_webhook`, what both server paths call): a body it refuses or with items
it cannot use must be in `gw:deadletter` (the whole body, base64); each event it yields with
a `message_id` must be found among the published events (by that id), unless the body is in
a dead letter (an unknown account, another app's account: kept whole). An event whose provider
identity an earlier case already used (a mutation set two cases' ids alike) is a redelivery,
not expected again. Events without a message id (account, contact sync) are counted as
unchecked.

`Ledger.verify` reads every inbox, history and dead-letter stream once the batch's answers are
all in, settles the batch's cases, then deletes what it read (the run's Redis stays small).
Also here: smuggled requests (an inner webhook whose token must never be published).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from adapters.schema import ParseError
from router.offload import parse_webhook

STREAM_PATTERNS = ("gw:inbox:*", "gw:history:*")
DEADLETTER = "gw:deadletter"


@dataclass
class Expectation:
    k: int
    seed: str
    body_hash: bytes
    message_ids: frozenset[str]
    must_deadletter: bool


@dataclass
class Ledger:
    """What the answered cases of the current batch must have left in Redis."""

    pending: list[Expectation] = field(default_factory=list)
    forbidden: dict[str, int] = field(default_factory=dict)
    """Message ids of smuggled inner requests (a token each) → the case that sent it."""
    seen_keys: set[int] = field(default_factory=set)
    """Hashes of provider identities (dedup keys) without their case's token, once used."""
    checked: int = 0
    """Cases whose trace was looked for."""
    events_unchecked: int = 0
    lost: list[tuple[int, str, str]] = field(default_factory=list)
    smuggled: list[int] = field(default_factory=list)
    published: int = 0
    deadletters: int = 0

    def expect(self, k: int, seed: str, channel: str, key: str | None, body: bytes,
               token: str) -> None:  # fmt: skip
        """A signed body was answered 200: note what it must have left behind."""
        try:
            _, parsed = parse_webhook(channel, body, int(time.time()), key)
        except ParseError:
            self._add(k, seed, body, frozenset(), True)
            return
        ids = set()
        for routed in parsed.events:
            fresh = routed.dedup is None or token in routed.dedup
            if not fresh:
                mark = hash(routed.dedup)
                fresh = mark not in self.seen_keys
                self.seen_keys.add(mark)
            message_id = getattr(routed.event, "message_id", None)
            if fresh and isinstance(message_id, str):
                ids.add(message_id)
            else:
                self.events_unchecked += 1
        if ids or parsed.bad:
            self._add(k, seed, body, frozenset(ids), bool(parsed.bad))

    def expect_ids(self, k: int, where: str, message_ids: frozenset[str]) -> None:
        """A webhook of a raw case was answered 200: these events must be published."""
        self.pending.append(Expectation(k, where, b"", message_ids, False))

    def forbid(self, message_id: str, k: int) -> None:
        """A smuggled inner webhook: `message_id` must never be published."""
        self.forbidden[message_id] = k

    def _add(self, k: int, seed: str, body: bytes, ids: frozenset[str], dead: bool) -> None:
        self.pending.append(Expectation(k, seed, _digest(body), ids, dead))

    async def verify(self, client: aioredis.Redis) -> None:
        """Settle the pending cases against what Redis holds, then drop what was read."""
        found_ids, found_bodies = await _drain(client, self)
        for case in self.pending:
            self.checked += 1
            if case.body_hash in found_bodies:
                continue
            missing = case.message_ids - found_ids
            if case.must_deadletter or missing:
                why = "no dead letter" if case.must_deadletter else f"missing {sorted(missing)[:3]}"
                self.lost.append((case.k, case.seed, why))
        self.pending.clear()
        for message_id, k in self.forbidden.items():
            if message_id in found_ids:
                self.smuggled.append(k)
        self.forbidden.clear()


def _digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=16).digest()


async def _drain(client: aioredis.Redis, ledger: Ledger) -> tuple[set[str], set[bytes]]:
    ids: set[str] = set()
    bodies: set[bytes] = set()
    names: list[bytes] = []
    for pattern in STREAM_PATTERNS:
        names += [name async for name in client.scan_iter(match=pattern, _type="stream")]
    for name in names:
        for event in await _read_all(client, name):
            ledger.published += 1
            message_id = event.get("message_id")
            if isinstance(message_id, str):
                ids.add(message_id)
    for letter in await _read_all(client, DEADLETTER.encode()):
        ledger.deadletters += 1
        if isinstance(letter.get("body_b64"), str):
            bodies.add(_digest(base64.b64decode(letter["body_b64"])))
    if names:
        await client.delete(*names)
    await client.delete(DEADLETTER)
    return ids, bodies


async def _read_all(client: aioredis.Redis, name: bytes) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    start = "-"
    while True:
        entries = await client.xrange(name, min=start, count=2000)
        for _, fields in entries:
            out.append(json.loads(fields[b"event"]))
        if len(entries) < 2000:
            return out
        start = "(" + entries[-1][0].decode()
