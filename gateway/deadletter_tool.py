"""`gateway deadletters list | show | replay | drop`: the entries of `gw:deadletter`, filtered
by reason, channel, age and stream id.

`replay` runs a stored webhook body through the path a live webhook takes: the adapter's parse
(`router.offload.parse_webhook`, the letter's `channel` as the adapter), then routing, dedup
and publishing (`InboundRouter.publish`), with the letter's own `received_at`. Marks make it
safe to repeat: events already published (at receipt, or by an earlier replay) are not
published again. A letter is deleted (XDEL) only once everything of it was published. A body
that would fail again (still an unknown account, items that still cannot be used, not a
webhook at all) is not published at all and its letter stays, with the reason it fails now
in the result; replay writes no new dead letter for it. A dead-lettered command (`command`
field) is added to `gw:outbox` again as it was stored, then its letter is deleted.

The body is trusted without a signature: its signature was checked when it was received (no
unsigned body is ever dead-lettered), and only the gateway and operators can write
`gw:deadletter`. Anyone who can write to the gateway's Redis can already write to the
assistants' streams directly.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec

from adapters import CHANNELS
from adapters.schema import ParseError
from gateway.app import directory_from
from gateway.config import Settings
from gateway.ops import duration, table
from router import keys
from router.accounts import Directory
from router.client import RedisClient
from router.deadletters import body_letter
from router.inbound import InboundRouter
from router.offload import parse_webhook
from router.records import DeadLetter
from router.routing import Routing
from router.target import route

audit = logging.getLogger("gateway.audit")

_SCAN_COUNT = 1000
_DETAIL_CHARS = 60


@dataclass(frozen=True)
class Filters:
    """Which letters a command applies to; every given filter must match."""

    reasons: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    since_s: float | None = None
    """Received at most this long ago."""
    until_s: float | None = None
    """Received at least this long ago."""
    ids: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = ()
    """Stream id ranges, both ends included; empty: all."""

    def describe(self) -> str:
        """For the audit line: which filters were given (never a value from a letter)."""
        parts = []
        if self.reasons:
            parts.append("reason=" + ",".join(sorted(self.reasons)))
        if self.channels:
            parts.append("channel=" + ",".join(sorted(self.channels)))
        if self.since_s is not None:
            parts.append(f"since={duration(self.since_s)}")
        if self.until_s is not None:
            parts.append(f"until={duration(self.until_s)}")
        if self.ids:
            parts.append(f"id ranges={len(self.ids)}")
        return " ".join(parts) or "none"


@dataclass
class Entry:
    """One entry of `gw:deadletter`: its id, and its letter (None: not a letter)."""

    entry_id: str
    letter: DeadLetter | None
    raw: bytes

    @property
    def kind(self) -> str:
        if self.letter is None:
            return "unreadable"
        if self.letter.command is not None:
            return "command"
        return "body" if self.letter.body_b64 is not None else "none"

    def key(self) -> tuple[int, int]:
        ms, _, seq = self.entry_id.partition("-")
        return int(ms), int(seq or 0)

    def summary(self, now_s: float) -> dict[str, Any]:
        letter = self.letter
        if letter is None:
            return {"id": self.entry_id, "kind": "unreadable"}
        return {
            "id": self.entry_id,
            "kind": self.kind,
            "reason": letter.reason,
            "channel": letter.channel,
            "received_at": letter.received_at,
            "age_seconds": max(now_s - letter.received_at, 0),
            "detail": letter.detail,
            "body_bytes": len(_body(letter) or b"") if letter.body_b64 is not None else None,
        }


def _body(letter: DeadLetter) -> bytes | None:
    if letter.body_b64 is None:
        return None
    try:
        return base64.b64decode(letter.body_b64, validate=True)
    except (binascii.Error, ValueError):
        return None


async def matching(redis: RedisClient, filters: Filters, now_s: float) -> list[Entry]:
    """The dead letters the filters select, oldest first."""
    found = []
    start = "-"
    while True:
        rows = await redis.xrange(keys.DEADLETTER, start, "+", count=_SCAN_COUNT)
        for raw_id, fields in rows:
            entry = _entry(raw_id, fields)
            if _matches(entry, filters, now_s):
                found.append(entry)
        if len(rows) < _SCAN_COUNT:
            return found
        start = "(" + rows[-1][0].decode()


def _entry(raw_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    raw = fields.get(b"event", b"")
    try:
        letter: DeadLetter | None = msgspec.json.decode(raw, type=DeadLetter)
    except (msgspec.DecodeError, msgspec.ValidationError):
        letter = None
    return Entry(raw_id.decode(), letter, raw)


def _matches(entry: Entry, f: Filters, now_s: float) -> bool:
    if f.ids and not any(low <= entry.key() <= high for low, high in f.ids):
        return False
    letter = entry.letter
    if letter is None:
        return not (f.reasons or f.channels or f.since_s is not None or f.until_s is not None)
    if f.reasons and letter.reason not in f.reasons:
        return False
    if f.channels and letter.channel not in f.channels:
        return False
    age = now_s - letter.received_at
    if f.since_s is not None and age > f.since_s:
        return False
    return not (f.until_s is not None and age < f.until_s)


def list_text(entries: list[Entry], now_s: float) -> str:
    rows = []
    for e in entries:
        s = e.summary(now_s)
        detail = s.get("detail") or ""
        if len(detail) > _DETAIL_CHARS:
            detail = detail[: _DETAIL_CHARS - 3] + "..."
        age = s.get("age_seconds")
        rows.append(
            [s["id"], None if age is None else duration(age), s.get("reason"), s.get("channel"),
             s["kind"], s.get("body_bytes"), detail]
        )  # fmt: skip
    return table(["id", "age", "reason", "channel", "kind", "bytes", "detail"], rows)


def show_document(entry: Entry, now_s: float) -> dict[str, Any]:
    """The whole letter: its body decoded (text when it is UTF-8, else base64)."""
    doc = entry.summary(now_s)
    letter = entry.letter
    if letter is None:
        doc["raw"] = entry.raw.decode("utf-8", "replace")
        return doc
    body = _body(letter)
    if body is not None:
        try:
            doc["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            doc["body_b64"] = letter.body_b64
    elif letter.body_b64 is not None:
        doc["body_b64"] = letter.body_b64
    if letter.command is not None:
        doc["command"] = letter.command
    if letter.key is not None:
        doc["key"] = letter.key
    return doc


def show_text(doc: dict[str, Any]) -> str:
    lines = [f"{k}: {v}" for k, v in doc.items() if k not in ("body", "command", "raw")]
    for name in ("command", "body", "raw"):
        if name in doc:
            lines += [f"{name}:", str(doc[name])]
    return "\n".join(lines)


# --- replay ------------------------------------------------------------------------------


@dataclass
class Result:
    """What replaying one letter did."""

    id: str
    outcome: str
    """`replayed` (deleted), `requeued` (a command, deleted), `failed` (kept)."""
    reason: str | None = None
    """Why it failed now: the reason a new letter would have."""
    detail: str | None = None
    published: int = 0
    duplicates: int = 0


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(r.outcome == "failed" for r in self.results)

    def counts(self) -> Counter[str]:
        return Counter(r.outcome for r in self.results)


class Replayer:
    """Replays letters into the gateway's streams with the configured accounts."""

    def __init__(self, redis: RedisClient, settings: Settings) -> None:
        self._redis = redis
        self._directory: Directory = directory_from(settings)
        self._routing = Routing(self._directory)
        self._router = InboundRouter(redis, self._directory, settings.router, settings.policy)

    def _outbox_of(self, command: str) -> str:
        """Where a dead-lettered command is re-queued: the own outbox of the assistant its
        conversation belongs to (read whether or not `outbound.shared_outbox` is on; the
        operator vouches for it), else gw:outbox (where it is dead-lettered again, as not
        routable)."""
        try:
            conversation = json.loads(command).get("conversation_id")
        except (ValueError, AttributeError, RecursionError):
            return keys.OUTBOX
        target = route(self._directory, conversation)
        return keys.outbox(target.account.assistant) if target is not None else keys.OUTBOX

    async def replay(self, entries: list[Entry]) -> Report:
        report = Report()
        for entry in entries:
            report.results.append(await self._one(entry))
        return report

    async def _one(self, entry: Entry) -> Result:
        letter = entry.letter
        if letter is None:
            return Result(entry.entry_id, "failed", "unreadable", "not a dead letter")
        if letter.command is not None:
            await self._redis.xadd(self._outbox_of(letter.command), {"command": letter.command})
            await self._redis.xdel(keys.DEADLETTER, entry.entry_id)
            return Result(entry.entry_id, "requeued")
        body = _body(letter)
        channel = letter.channel
        if body is None or channel is None or channel not in CHANNELS:
            why = "no body" if body is None else f"unknown channel {letter.channel!r}"
            return Result(entry.entry_id, "failed", "not_replayable", why)
        try:
            source, parsed = parse_webhook(channel, body, letter.received_at, letter.key)
        except ParseError as exc:
            return Result(entry.entry_id, "failed", exc.reason, str(exc))
        # What would be dead-lettered again is checked first: such a body is not published
        # (no new dead letter for it), and its letter stays.
        _known, unknown = self._routing.route(CHANNELS[source].channel, parsed)
        if unknown or parsed.bad:
            again = body_letter(source, parsed.bad, unknown, body, letter.received_at, letter.key)
            return Result(entry.entry_id, "failed", again.reason, again.detail)
        tally = await self._router.publish(source, parsed, body, letter.received_at, letter.key)
        published = sum(tally.published.values())
        duplicates = sum(tally.duplicates.values())
        if tally.deadletters:
            # An event that cannot be encoded: the router wrote a letter with the same body
            # and the reason it fails now, so this one is superseded.
            await self._redis.xdel(keys.DEADLETTER, entry.entry_id)
            return Result(
                entry.entry_id,
                "failed",
                tally.deadletters[0],
                "superseded by a new dead letter with the same body",
                published,
                duplicates,
            )
        await self._redis.xdel(keys.DEADLETTER, entry.entry_id)
        return Result(entry.entry_id, "replayed", None, None, published, duplicates)


def replay_text(report: Report) -> str:
    rows = [
        [r.id, r.outcome, r.published, r.duplicates, r.reason, r.detail] for r in report.results
    ]
    counts = report.counts()
    summary = ", ".join(f"{counts[k]} {k}" for k in ("replayed", "requeued", "failed"))
    headers = ["id", "outcome", "published", "duplicates", "reason now", "detail"]
    return table(headers, rows) + "\n" + summary


def replay_document(report: Report) -> dict[str, Any]:
    counts = report.counts()
    return {
        "replayed": counts["replayed"],
        "requeued": counts["requeued"],
        "failed": counts["failed"],
        "results": [r.__dict__ for r in report.results],
    }


def audit_replay(report: Report, filters: Filters) -> None:
    counts = report.counts()
    audit.info(
        "deadletters replay: %d matched, %d replayed (%d events published, %d duplicates), "
        "%d commands re-queued to their assistants' outboxes (%s if not routable), %d failed "
        "and kept; filters: %s",
        len(report.results),
        counts["replayed"],
        sum(r.published for r in report.results),
        sum(r.duplicates for r in report.results),
        counts["requeued"],
        keys.OUTBOX,
        counts["failed"],
        filters.describe(),
    )


async def drop(redis: RedisClient, entries: list[Entry], filters: Filters) -> int:
    """Delete the letters; how many were deleted (one audit line)."""
    deleted = 0
    ids = [e.entry_id for e in entries]
    for start in range(0, len(ids), _SCAN_COUNT):
        deleted += int(await redis.xdel(keys.DEADLETTER, *ids[start : start + _SCAN_COUNT]))
    reasons = Counter((e.letter.reason if e.letter else "unreadable") for e in entries)
    audit.info(
        "deadletters drop: %d deleted of %d matched (%s); filters: %s",
        deleted,
        len(entries),
        ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())) or "none",
        filters.describe(),
    )
    return deleted


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True)
