"""Inbound publishing: parsed events → assistant streams, exactly once, one round trip.

For each webhook the router
1. fans an `account_update` out to every configured number of its WABA,
2. routes each event to its assistant (events of unknown accounts, like items the adapter
   could not use, are listed in one dead letter per webhook, which carries the whole body
   once, so an operator can replay it after fixing the config),
3. resolves BSUID-only contacts to the wa_id seen with that BSUID before (one extra round
   trip, only for webhooks that carry such contacts),
4. assigns `event_id`s, encodes every event once, and runs `publish.lua` once per hash tag
   (target stream), the calls side by side: an event's dedup mark, stream entry, 24-hour
   window and BSUID mapping are written together, atomically, in its stream's slot, so the
   same calls work on one Redis and on a Redis Cluster. A webhook for one assistant (the
   usual case) is one call,
5. then writes its dead letters, if any, in one more call to `gw:deadletter`'s slot.

`start` begins all of this at once: the usual webhook (nothing to look up, one call) is sent
on the lean client's open connection before `start` returns, as a `Flight` whose future the
fast path answers from; no task or coroutine is made for it. `publish` awaits the same.

If Redis fails, `RouterUnavailable` is raised and the gateway answers 503 so the platform
retries: what was published is marked and is not published again; dead letters are written
only once the events are in, so a retry does not write them twice.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from adapters import CHANNELS
from adapters.schema import (
    ENCODER,
    MESSAGE_TYPES,
    AccountEvent,
    AnyEvent,
    BadItem,
    EchoEvent,
    HistoryEvent,
    MemberEvent,
    MessageEvent,
    Parsed,
    Routed,
)
from router import keys
from router.accounts import Directory
from router.client import REDIS_ERRORS, RedisClient, scripts_of
from router.records import DeadLetter, new_event_id
from router.scriptpipe import PipeScript, ScriptHost


class RouterUnavailable(Exception):
    """Redis did not take the events; nothing of this webhook was recorded."""


@dataclass(frozen=True)
class Limits:
    dedup_ttl_seconds: int = 48 * 3600
    inbox_maxlen: int = 1_000_000
    history_maxlen: int = 5_000_000
    deadletter_maxlen: int = 100_000
    contact_map_ttl_seconds: int = 400 * 86400
    conversation_ttl_seconds: int = 400 * 86400
    publish_chunk_events: int = 50
    human_takeover_seconds: int = 900
    limiter_guard_ms: float = 50.0


@dataclass
class Tally:
    """What one publish did, in counts: for metrics, small enough to pass between processes."""

    published: dict[tuple[str, str], int] = field(default_factory=dict)
    """(kind, message type or "") → events published."""
    duplicates: dict[str, int] = field(default_factory=dict)
    """kind → redeliveries not published again."""
    accounts: list[AccountEvent] = field(default_factory=list)
    """Account events published (they move per-number gauges)."""
    deadletters: list[str] = field(default_factory=list)
    """Reason of each dead letter written."""


_KINDS: dict[type[Any], str] = {kind: str(kind.__struct_config__.tag) for kind in AnyEvent.__args__}
"""Event class → its `kind`."""
_LABEL_KEYS: dict[tuple[type[Any], str | None], tuple[str, str]] = {}
"""(event class, its `type`) → its key in `Tally.published`, made once per pair."""


def _label_key(event: AnyEvent) -> tuple[str, str]:
    label = getattr(event, "type", None)
    key = _LABEL_KEYS.get((type(event), label))
    if key is None:
        key = (_KINDS[type(event)], label if label in MESSAGE_TYPES else "")
        if len(_LABEL_KEYS) < 1024:  # bounded by MESSAGE_TYPES; the guard is belt and braces
            _LABEL_KEYS[(type(event), label)] = key
    return key


@dataclass
class Report:
    """What one publish did, for metrics and logs."""

    published: list[AnyEvent] = field(default_factory=list)
    duplicates: list[AnyEvent] = field(default_factory=list)
    deadletters: list[str] = field(default_factory=list)

    def tally(self) -> Tally:
        return _tally(self.published, self.duplicates, self.deadletters)


def _tally(
    published_events: list[AnyEvent], duplicate_events: list[AnyEvent], deadletters: list[str]
) -> Tally:
    published: dict[tuple[str, str], int] = {}
    accounts: list[AccountEvent] = []
    for event in published_events:
        key = _label_key(event)
        published[key] = published.get(key, 0) + 1
        if type(event) is AccountEvent:
            accounts.append(event)
    duplicates: dict[str, int] = {}
    for event in duplicate_events:
        kind = _KINDS[type(event)]
        duplicates[kind] = duplicates.get(kind, 0) + 1
    return Tally(published, duplicates, accounts, deadletters)


_SCRIPT = (Path(__file__).parent / "lua" / "publish.lua").read_text()
_NOT_PAUSED = b'"ai_paused":false}'
# publish.lua's operation codes, as bytes: sent as they are, by either script host.
_E, _S, _P, _M, _N, _C, _H, _U, _A, _W, _O = (c.encode() for c in "ESPMNCHUAWO")


class _Batch:
    """The KEYS/ARGV of one publish.lua call, plus which event each result flag belongs to."""

    __slots__ = ("args", "events", "keys", "once")

    def __init__(self, ttl: bytes) -> None:
        self.keys: list[str] = []
        self.args: list[Any] = [ttl]
        self.events: list[AnyEvent | None] = []
        """One per E/S/P/M operation: the event its result flag is about (None: a letter)."""
        self.once = False
        """Whether the call holds a P operation, which has no mark: run twice, it would
        publish twice, so the call is never joined with others (see `InboundRouter.start`)."""

    def collect(
        self, flags: list[int], published: list[AnyEvent], duplicates: list[AnyEvent]
    ) -> None:
        """Sort this call's events by its result flags: published, or already there."""
        for event, flag in zip(self.events, flags, strict=True):
            if event is None:
                continue
            (published if flag else duplicates).append(event)


class _Calls:
    """The publish.lua calls of one slice of a webhook: one `_Batch` per stream, since a
    Redis Cluster runs a script only when all its keys are in one slot, and a stream's name
    is the hash tag of the keys that go with it (`keys`)."""

    __slots__ = ("_ttl", "batches", "letters")

    def __init__(self, ttl: bytes) -> None:
        self._ttl = ttl
        self.batches: dict[str, _Batch] = {}
        self.letters: list[str] = []
        """Reasons of the dead letters these calls write."""

    def batch(self, stream: str) -> _Batch:
        """The call for `stream` and the keys tagged with its name."""
        batch = self.batches.get(stream)
        if batch is None:
            batch = self.batches[stream] = _Batch(self._ttl)
        return batch


class _Streams:
    """What the router writes for one assistant, named and encoded once."""

    __slots__ = ("history", "inbox", "limiters")

    def __init__(self, assistant: str) -> None:
        self.inbox = keys.inbox(assistant)
        self.history = keys.history(assistant)
        self.limiters: dict[tuple[str, str], str] = {}
        """(channel, account) → the number's limiter key."""


class InboundRouter:
    def __init__(
        self,
        redis: RedisClient,
        directory: Directory,
        limits: Limits,
        scripts: ScriptHost | None = None,
    ) -> None:
        """`scripts` runs publish.lua (default: `redis` itself); everything else uses `redis`."""
        self._redis = redis
        self._directory = directory
        self._limits = limits
        self._ttl = b"%d" % limits.dedup_ttl_seconds
        self._inbox_maxlen = b"%d" % limits.inbox_maxlen
        self._history_maxlen = b"%d" % limits.history_maxlen
        self._letter_maxlen = b"%d" % limits.deadletter_maxlen
        self._conversation_ttl = b"%d" % limits.conversation_ttl_seconds
        self._contact_map_ttl = b"%d" % limits.contact_map_ttl_seconds
        self._streams: dict[str, _Streams] = {}
        self._intervals: dict[tuple[str, str], bytes] = {}
        """(channel, account) → the account's send interval, as publish.lua takes it."""
        self._charged = frozenset(name for name, c in CHANNELS.items() if c.charges_inbound)
        host = scripts or scripts_of(redis)
        script = host.register_script(_SCRIPT)
        self._script: Callable[..., Awaitable[Any]] = script
        self._lean = script if isinstance(script, PipeScript) else None
        """publish.lua on the lean client, which sends a call at once: see `start`."""

    async def publish(self, channel: str, parsed: Parsed, body: bytes, received_at: int) -> Report:
        """Publish every event of one webhook; raises `RouterUnavailable` if Redis fails.

        A large body (a 3 MB history sync, published from a child process: see
        router/offload.py) goes in slices: each slice has its own script calls, so Redis runs
        live webhooks' scripts in between. Marks make this safe: if a later slice fails, the
        platform's retry publishes only what is missing.
        """
        started = self.start(channel, parsed, body, received_at)
        if isinstance(started, Flight):
            with contextlib.suppress(*REDIS_ERRORS):  # report() raises it as RouterUnavailable
                await started.future
            return started.report()
        return await started

    def start(
        self, channel: str, parsed: Parsed, body: bytes, received_at: int
    ) -> Flight | Coroutine[Any, Any, Report]:
        """`publish`, begun at once. A webhook that needs nothing looked up first and fits one
        script call (the usual one) is sent now, on the lean client's open connection, and
        comes back as a `Flight`: no task or coroutine per webhook. Any other comes back as
        the coroutine that publishes it.

        Calls sent now in one event-loop iteration are joined into one publish.lua call
        (`PipeScript.join`): the script reads its operations one after another, and each
        webhook's C, N and A follow their own event's operation, so the webhooks do not mix.
        A call with a P operation goes alone (see `_Batch.once`)."""
        known, unknown = self._route(channel, parsed)
        pending = self._hidden_numbers(known)
        lean = self._lean
        if (
            pending
            or lean is None
            or any(r.renamed_to and r.event.conversation_id for r, _ in known)
        ):
            return self._publish_after_lookups(
                channel, known, unknown, pending, parsed, body, received_at
            )
        slices = self._prepare(channel, known, {}, parsed, unknown, body, received_at)
        if len(slices) == 1 and len(batches := slices[0].batches) == 1:
            for batch in batches.values():
                if not batch.keys:
                    continue
                if batch.once:
                    future = lean.now(batch.keys, batch.args)
                else:
                    future = lean.join(batch.keys, batch.args, len(batch.events))
                if future is not None:
                    return Flight(future, batch, slices[0].letters)
        return self._run_slices(slices)

    async def _publish_after_lookups(
        self,
        channel: str,
        known: list[tuple[Routed, str]],
        unknown: dict[str, int],
        pending: list[tuple[Routed, str]],
        parsed: Parsed,
        body: bytes,
        received_at: int,
    ) -> Report:
        # The extra round trips below are awaited only for the webhooks that need them.
        if pending:
            await self._resolve_bsuids(pending)
        originals: dict[int, str] = {}
        if renames := [(r, a) for r, a in known if r.renamed_to and r.event.conversation_id]:
            originals = await self._resolve_renames(renames)
        slices = self._prepare(channel, known, originals, parsed, unknown, body, received_at)
        return await self._run_slices(slices)

    async def _run_slices(self, slices: list[_Calls]) -> Report:
        report = Report()
        for i, calls in enumerate(slices):
            if i:
                await asyncio.sleep(0)
            batches = calls.batches
            if len(batches) == 1:  # the usual: one stream, one call
                for batch in batches.values():
                    if batch.keys:
                        await self._run(batch, report)
            else:
                await self._run_all(calls, report)
            report.deadletters.extend(calls.letters)
        return report

    def _route(
        self, channel: str, parsed: Parsed
    ) -> tuple[list[tuple[Routed, str]], dict[str, int]]:
        unknown: dict[str, int] = {}
        routed = self._fan_out(parsed.events)
        return [(r, a) for r in routed if (a := self._assistant(channel, r, unknown))], unknown

    def _prepare(
        self,
        channel: str,
        known: list[tuple[Routed, str]],
        originals: dict[int, str],
        parsed: Parsed,
        unknown: dict[str, int],
        body: bytes,
        received_at: int,
    ) -> list[_Calls]:
        """The script calls of one webhook: slices of events, then the dead letters. A
        slice with nothing to run is left out (no call, and no turn given to the loop)."""
        size, ttl = self._limits.publish_chunk_events, self._ttl
        slices = []
        bad = parsed.bad
        if len(known) == 1:
            calls = _Calls(ttl)
            item, assistant = known[0]
            try:
                self._add_event(calls, channel, item, assistant, originals)
            except _UNENCODABLE as exc:
                bad = [*bad, _unencodable(item, exc)]
            slices.append(calls)
        else:
            bad = list(bad)
            for start in range(0, len(known), size):
                calls = _Calls(ttl)
                for item, assistant in known[start : start + size]:
                    try:
                        self._add_event(calls, channel, item, assistant, originals)
                    except _UNENCODABLE as exc:
                        bad.append(_unencodable(item, exc))
                slices.append(calls)
        if bad or unknown:
            last = _Calls(ttl)
            self._add_deadletter(last, _body_letter(channel, bad, unknown, body, received_at))
            slices.append(last)
        return slices

    async def deadletter(
        self,
        reason: str,
        channel: str | None,
        received_at: int,
        detail: str | None,
        body: bytes | None = None,
        command: str | None = None,
    ) -> None:
        """Keep something the gateway could not understand, for an operator."""
        letter = DeadLetter(
            1,
            reason,
            channel,
            received_at,
            detail,
            _b64(body) if body is not None else None,
            command,
        )
        calls = _Calls(self._ttl)
        self._add_deadletter(calls, letter)
        await self._run_all(calls, Report())

    def _fan_out(self, events: list[Routed]) -> Iterable[Routed]:
        for item in events:
            if item.waba is None:
                yield item
                continue
            for number in self._directory.wabas.get(item.waba, ()):
                event = msgspec.structs.replace(item.event, account_id=number)
                yield Routed(event, item.dedup, item.rank, item.live)
            if item.waba not in self._directory.wabas:
                yield item  # dead-lettered below as an unknown account

    def _assistant(self, channel: str, item: Routed, unknown: dict[str, int]) -> str | None:
        account = item.event.account_id
        assistant = self._directory.assistant(channel, account)
        if assistant is None:
            unknown[account] = unknown.get(account, 0) + 1
        return assistant

    def _hidden_numbers(self, known: list[tuple[Routed, str]]) -> list[tuple[Routed, str]]:
        """Give a contact whose phone number is hidden the wa_id it had before (CONTRACT §2.1)
        when this same body shows it; the others are left for `_resolve_bsuids`."""
        pending: list[tuple[Routed, str]] = []
        seen: dict[tuple[str, str], str] = {}  # mappings this same body establishes
        for item, assistant in known:
            event, user_id = item.event, getattr(item.event, "user_id", None)
            if not _bsuid_only(event):
                if user_id and event.contact_id:
                    seen[(event.account_id, user_id)] = event.contact_id
            elif (wa_id := seen.get((event.account_id, user_id or ""))) is not None:
                _set_contact(event, wa_id)
            else:
                pending.append((item, assistant))
        return pending

    async def _resolve_bsuids(self, pending: list[tuple[Routed, str]]) -> None:
        """The wa_ids that earlier bodies showed for these BSUID-only contacts."""
        # GETs in a pipeline, not one MGET: the keys of several assistants are in several
        # slots, and a cluster splits a pipeline by node.
        pipe = self._redis.pipeline(transaction=False)
        for item, assistant in pending:
            event = item.event
            pipe.get(keys.bsuid(keys.inbox(assistant), event.account_id, event.contact_id or ""))
        try:
            found = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise RouterUnavailable(str(exc)) from exc
        for (item, _), wa_id in zip(pending, found, strict=True):
            if wa_id:
                _set_contact(item.event, wa_id.decode())

    async def _resolve_renames(self, renames: list[tuple[Routed, str]]) -> dict[int, str]:
        """For a contact that changed its number: the contact id its conversation started
        with (the old number may itself be a renamed one). One extra round trip, only for
        webhooks that carry such a system message."""
        pipe = self._redis.pipeline(transaction=False)
        for item, assistant in renames:
            pipe.hget(
                keys.conversation(keys.inbox(assistant), item.event.conversation_id or ""), "alias"
            )
        try:
            aliases = await pipe.execute()
        except REDIS_ERRORS as exc:
            raise RouterUnavailable(str(exc)) from exc
        return {
            id(item.event): (alias.decode() if alias else item.event.contact_id or "")
            for (item, _), alias in zip(renames, aliases, strict=True)
        }

    def _streams_of(self, assistant: str) -> _Streams:
        streams = self._streams.get(assistant)
        if streams is None:
            streams = self._streams[assistant] = _Streams(assistant)
        return streams

    def _add_event(
        self,
        calls: _Calls,
        channel: str,
        item: Routed,
        assistant: str,
        originals: dict[int, str],
    ) -> None:
        event = item.event
        event.event_id = new_event_id()
        event.assistant_id = assistant
        account = self._directory.get(channel, event.account_id)
        event.account_active = account is None or account.enabled
        streams = self._streams_of(assistant)
        inbox = streams.inbox
        if type(event) is HistoryEvent:
            stream, maxlen = streams.history, self._history_maxlen
        else:
            stream, maxlen = inbox, self._inbox_maxlen
        payload = ENCODER.encode(event)
        batch = calls.batch(stream)
        if item.dedup is None:
            batch.keys.append(stream)
            batch.args += (_P, maxlen, payload)
            batch.events.append(event)
            batch.once = True
            return
        mark = keys.dedup(stream, channel, event.account_id, item.dedup)
        if item.live and type(event) is MessageEvent and event.conversation_id is not None:
            self._add_live(batch, event, inbox, mark, maxlen, payload, item.authored)
            if item.renamed_to:
                original = originals.get(id(event), event.contact_id or "")
                self._add_rename(batch, inbox, event, original, item.renamed_to)
            self._add_charge(batch, channel, streams, event)
        elif item.rank:
            batch.keys += (stream, mark)
            batch.args += (_S, maxlen, b"%d" % item.rank, payload)
            batch.events.append(event)
        else:
            batch.keys += (stream, mark)
            batch.args += (_E, maxlen, payload)
            batch.events.append(event)
        if stream is not inbox:
            # Conversation and BSUID keys are in the inbox's slot; a history event's own
            # stream is elsewhere. (Only account events carry A, which acts on the outcome
            # of the event just before it: theirs is the inbox, the same call.)
            batch = calls.batch(inbox)
        if type(event) is EchoEvent and event.conversation_id is not None:
            self._add_pause(batch, inbox, event)
        if type(event) is AccountEvent and event.connected is not None:
            batch.keys.append(keys.account_state(inbox, channel, event.account_id))
            batch.args += (_A, b"%d" % event.connected, event.event)
        if type(event) is MemberEvent and item.live and event.conversation_id is not None:
            # The contact unblocked the bot (Telegram): its own act ends a 403 opt-out.
            batch.keys.append(keys.conversation(inbox, event.conversation_id))
            batch.args.append(_O)
        user_id = getattr(event, "user_id", None)
        if user_id and event.contact_id and event.contact_id != user_id:
            batch.keys.append(keys.bsuid(inbox, event.account_id, user_id))
            batch.args += (_U, event.contact_id, self._contact_map_ttl)

    def _add_live(
        self,
        batch: _Batch,
        event: MessageEvent,
        inbox: str,
        mark: str,
        maxlen: bytes,
        payload: bytes,
        authored: bool,
    ) -> None:
        """A message the contact just wrote: window, opt-out, AI-pause flag, send budget,
        business route; a live event nobody wrote (`authored` false) gets the flag only."""
        assert payload.endswith(_NOT_PAUSED), "publish.lua flips the trailing ai_paused"
        assert event.conversation_id is not None
        batch.keys += (inbox, mark, keys.conversation(inbox, event.conversation_id))
        batch.args += (
            _M if authored else _W,
            maxlen,
            payload,
            b"%d" % event.timestamp,
            event.message_id,
            self._conversation_ttl,
            ENCODER.encode(event.contact_id),
            ENCODER.encode(event.conversation_id),
            event.business_connection_id or b"",
        )
        batch.events.append(event)

    def _add_charge(
        self, batch: _Batch, channel: str, streams: _Streams, event: MessageEvent
    ) -> None:
        """Where the provider counts inbound messages against the account's throughput
        (`Channel.charges_inbound`), they take a slot of its limiter too."""
        if channel not in self._charged:
            return
        account = self._directory.get(channel, event.account_id)
        if account is None:
            return
        name = (channel, event.account_id)
        limiter = streams.limiters.get(name)
        if limiter is None:  # one per configured number: the cache stays small
            limiter = keys.limiter(streams.inbox, channel, event.account_id)
            streams.limiters[name] = limiter
        interval = self._intervals.get(name)
        if interval is None:
            pace = CHANNELS[channel].account_pace(account, self._limits.limiter_guard_ms)
            interval = self._intervals[name] = b"%d" % pace.interval_us
        batch.keys.append(limiter)
        batch.args += (_C, interval)

    def _add_rename(
        self, batch: _Batch, inbox: str, event: MessageEvent, original: str, new: str
    ) -> None:
        """The contact's number changed: its conversation follows it (see publish.lua N)."""
        prefix = f"{event.channel}:{event.account_id}:"
        batch.keys += (
            keys.conversation(inbox, prefix + c) for c in (original, event.contact_id or "", new)
        )
        batch.args += (_N, original, new, self._conversation_ttl)

    def _add_pause(self, batch: _Batch, inbox: str, event: EchoEvent) -> None:
        """A person answered from the WhatsApp Business app: the AI steps back (CONTRACT §3)."""
        takeover = self._limits.human_takeover_seconds
        if takeover <= 0 or event.conversation_id is None:
            return
        # Counted from the echo's time, but never from later than now: an echo stamped ahead
        # of this clock pauses the AI for `takeover` seconds, not longer.
        start = min(event.timestamp, int(time.time()))
        batch.keys.append(keys.conversation(inbox, event.conversation_id))
        batch.args += (_H, b"%d" % (start + takeover), self._conversation_ttl)

    def _add_deadletter(self, calls: _Calls, letter: DeadLetter) -> None:
        batch = calls.batch(keys.DEADLETTER)
        batch.keys.append(keys.DEADLETTER)
        batch.args += (_P, self._letter_maxlen, msgspec.json.encode(letter))
        batch.events.append(None)
        batch.once = True
        calls.letters.append(letter.reason)

    async def _run_all(self, calls: _Calls, report: Report) -> None:
        """One slice's calls side by side (one round trip); raises if any of them failed."""
        batches = calls.batches
        results = await asyncio.gather(
            *(self._run(batch, report) for batch in batches.values() if batch.keys),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _run(self, batch: _Batch, report: Report) -> None:
        try:
            flags = await self._script(keys=batch.keys, args=batch.args)
        except REDIS_ERRORS as exc:
            raise RouterUnavailable(str(exc)) from exc
        batch.collect(flags, report.published, report.duplicates)


class Flight:
    """A webhook's one publish.lua call, sent by `InboundRouter.start`: its reply comes in
    `future`; once that is done, `report()` says what the call did."""

    __slots__ = ("_batch", "_letters", "future")

    def __init__(self, future: asyncio.Future[Any], batch: _Batch, letters: list[str]) -> None:
        self.future = future
        self._batch = batch
        self._letters = letters

    def report(self) -> Report:
        """What the call published; raises `RouterUnavailable` if it failed."""
        report = Report()
        self._batch.collect(self._flags(), report.published, report.duplicates)
        report.deadletters.extend(self._letters)
        return report

    def tally(self) -> Tally:
        """`report().tally()`, without the report in between."""
        published: list[AnyEvent] = []
        duplicates: list[AnyEvent] = []
        self._batch.collect(self._flags(), published, duplicates)
        return _tally(published, duplicates, list(self._letters))

    def _flags(self) -> list[int]:
        try:
            flags: list[int] = self.future.result()
        except REDIS_ERRORS as exc:
            raise RouterUnavailable(str(exc)) from exc
        return flags


def _bsuid_only(event: AnyEvent) -> bool:
    user_id = getattr(event, "user_id", None)
    return bool(user_id) and event.contact_id == user_id


def _set_contact(event: AnyEvent, contact_id: str) -> None:
    event.contact_id = contact_id
    event.conversation_id = f"{event.channel}:{event.account_id}:{contact_id}"


_UNENCODABLE = (RecursionError, msgspec.EncodeError, OverflowError)
"""An event nested too deep to encode here (its decode, a few frames up the stack, just
managed) or holding a value JSON cannot carry: that one event is dead-lettered."""


def _unencodable(item: Routed, exc: BaseException) -> BadItem:
    event = item.event
    what = f"{_KINDS[type(event)]} {getattr(event, 'message_id', '')}".rstrip()
    return BadItem("malformed_item", b"", f"{what}: cannot be encoded: {type(exc).__name__}")


LISTED_PER_LETTER = 10
"""Unknown accounts and bad items a dead letter names one by one; the rest are counted."""
_LISTED_CHARS = 160


def _body_letter(
    channel: str, bad: list[BadItem], unknown: dict[str, int], body: bytes, received_at: int
) -> DeadLetter:
    """One dead letter per webhook, whatever it could not publish: the body once, and in
    `detail` the unknown accounts and the bad items (position and why), each list bounded.
    Its reason: `unknown_account` when any (fixing the config and replaying the body is the
    operator's one action), else the items' reason when they share one, else `malformed_item`."""
    reasons = {b.reason for b in bad}
    if unknown:
        reason = "unknown_account"
    else:
        reason = reasons.pop() if len(reasons) == 1 else "malformed_item"
    parts = []
    if unknown:
        accounts = [f"{_clip(a)} ({n} events)" for a, n in unknown.items()]
        parts.append(_listed("accounts not configured", accounts))
    if bad:
        parts.append(_listed("items not published", [f"{b.reason} {_clip(b.detail)}" for b in bad]))
    return DeadLetter(1, reason, channel, received_at, "; ".join(parts), _b64(body))


def _listed(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:LISTED_PER_LETTER])
    more = len(items) - LISTED_PER_LETTER
    return f"{len(items)} {title}: {shown}" + (f", and {more} more" if more > 0 else "")


def _clip(text: str) -> str:
    """Provider text in a detail is bounded (an account id or error may be any length)."""
    return text if len(text) <= _LISTED_CHARS else text[: _LISTED_CHARS - 3] + "..."


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
