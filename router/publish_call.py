"""Events → publish.lua calls: every operation of one webhook, in its calls' KEYS/ARGV.

Each event gets its `event_id` and is encoded once. An event with a provider identity is an
E (or S, ranked: a status) with its dedup mark; one without is a P (no mark). A message the
contact just wrote is an M (W when nobody wrote it), followed by what goes with it in the
same call: N (its contact changed number), C (a slot of the account's limiter, where the
provider charges inbound messages). Then, in the inbox's call: H (a person answered from
the Business app: the AI steps back), A (an account event's state), L (a sign of life of
the owner's own app: `Routed.alive`), V (a failed status's error leaves its mark:
`Routed.verdict`, router/effects.py), O (a Telegram contact unblocked the bot), U (a BSUID →
wa_id mapping). publish.lua's header describes each.
"""

from __future__ import annotations

import logging
import time

import msgspec

from adapters import CHANNELS
from adapters.channel import adapter_of
from adapters.notice import excerpt
from adapters.schema import (
    ENCODER,
    AccountEvent,
    EchoEvent,
    HistoryEvent,
    MemberEvent,
    MessageEvent,
    Parsed,
    Routed,
    StatusEvent,
)
from router import effects, keys
from router.accounts import Directory
from router.batch import Batch, Calls
from router.deadletters import UNENCODABLE, body_letter, unencodable
from router.records import DeadLetter, new_event_id
from router.routing import Known
from router.settings import PolicySettings, RouterSettings

log = logging.getLogger("gateway.router")

_NOT_PAUSED = b'"ai_paused":false}'
# publish.lua's operation codes, as bytes: sent as they are, by either script host.
_E, _S, _P, _M, _N, _C, _H, _U, _A, _W, _O, _T = (c.encode() for c in "ESPMNCHUAWOT")
_L = b"L"
_V = b"V"


class _Streams:
    """What the router writes for one assistant, named and encoded once."""

    __slots__ = ("history", "inbox", "limiters")

    def __init__(self, assistant: str) -> None:
        self.inbox = keys.inbox(assistant)
        self.history = keys.history(assistant)
        self.limiters: dict[tuple[str, str], str] = {}
        """(channel, account) → the number's limiter key."""


class CallBuilder:
    """Builds the publish.lua calls of webhooks; keeps the names and numbers they reuse."""

    def __init__(
        self,
        directory: Directory,
        router: RouterSettings,
        policy: PolicySettings,
        *,
        excerpts: bool = False,
    ) -> None:
        """`excerpts`: keep each live message's text excerpt on its conversation (`x`, for
        escalation notices; only when notifications are configured)."""
        self._directory = directory
        self._excerpts = excerpts
        self._chunk = router.publish_chunk_events
        self._takeover_s = policy.human_takeover_seconds
        self._policy = policy
        self._guard_ms = policy.limiter_guard_ms
        # Numbers as publish.lua takes them, formatted once.
        self._ttl = b"%d" % router.dedup_ttl_seconds
        self._ttl_s = router.dedup_ttl_seconds
        self._shards = router.dedup_shards
        self._inbox_maxlen = b"%d" % router.inbox_maxlen
        self._history_maxlen = b"%d" % router.history_maxlen
        self._letter_maxlen = b"%d" % router.deadletter_maxlen
        self._conversation_ttl = b"%d" % router.conversation_ttl_seconds
        self._contact_map_ttl = b"%d" % router.contact_map_ttl_seconds
        self._streams: dict[str, _Streams] = {}
        self._intervals: dict[tuple[str, str], bytes] = {}
        """(channel, account) → the account's send interval, as publish.lua takes it."""
        self._charged = frozenset(c.channel for c in CHANNELS.values() if c.charges_inbound)
        """Channels some of whose accounts' adapters charge inbound messages (a quick test:
        the account's own adapter decides, `_add_charge`)."""

    def accounts_changed(self) -> None:
        """Send intervals are per account's `mps`, which a reload may change."""
        self._intervals.clear()

    def slices(
        self,
        channel: str,
        known: Known,
        originals: dict[int, str],
        parsed: Parsed,
        unknown: dict[str, int],
        body: bytes,
        received_at: int,
        source: str | None = None,
        key: str | None = None,
    ) -> list[Calls]:
        """The script calls of one webhook: slices of events, then the dead letters. A
        slice with nothing to run is left out (no call, and no turn given to the loop).
        `source`: the adapter whose webhook it was, named in its dead letter (default:
        `channel`; Twilio's webhooks route by whatsapp but are Twilio's bodies)."""
        size, ttl = self._chunk, self._ttl
        slices = []
        bad = parsed.bad
        if len(known) == 1:
            calls = Calls(ttl)
            item, assistant = known[0]
            try:
                self._add_event(calls, channel, item, assistant, originals)
            except UNENCODABLE as exc:
                bad = [*bad, unencodable(item, exc)]
            slices.append(calls)
        else:
            bad = list(bad)
            for start in range(0, len(known), size):
                calls = Calls(ttl)
                for item, assistant in known[start : start + size]:
                    try:
                        self._add_event(calls, channel, item, assistant, originals)
                    except UNENCODABLE as exc:
                        bad.append(unencodable(item, exc))
                slices.append(calls)
        if bad or unknown:
            letter = body_letter(source or channel, bad, unknown, body, received_at, key)
            slices.append(self.letter(letter))
        return slices

    def letter(self, letter: DeadLetter) -> Calls:
        """The one call that writes `letter` to `gw:deadletter` (a P: it has no mark)."""
        calls = Calls(self._ttl)
        batch = calls.batch(keys.DEADLETTER)
        batch.keys.append(keys.DEADLETTER)
        batch.args += (_P, self._letter_maxlen, msgspec.json.encode(letter))
        batch.events.append(None)
        calls.letters.append(letter.reason)
        return calls

    def _streams_of(self, assistant: str) -> _Streams:
        streams = self._streams.get(assistant)
        if streams is None:
            streams = self._streams[assistant] = _Streams(assistant)
        return streams

    def _add_event(
        self,
        calls: Calls,
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
            return
        mark = keys.mark(
            stream, channel, event.account_id, item.dedup, self._ttl_s, self._shards, time.time()
        )
        if item.live and type(event) is MessageEvent and event.conversation_id is not None:
            self._add_live(batch, event, inbox, mark, maxlen, payload, item.authored)
            if item.renamed_to:
                original = originals.get(id(event), event.contact_id or "")
                self._add_rename(batch, inbox, event, original, item.renamed_to)
            self._add_charge(batch, channel, streams, event)
        elif item.rank:
            if type(event) is StatusEvent and event.command_id is None and event.message_id:
                # A status that names no command: publish.lua fills in the command_id the
                # ledger kept for the message, if the gateway sent it (`T`).
                sent = keys.sent(inbox, channel, event.account_id, event.message_id)
                batch.keys += (stream, *mark[:3], sent)
                batch.args += (_T, maxlen, b"%d" % item.rank, payload, mark[3])
            else:
                batch.keys += (stream, *mark[:3])
                batch.args += (_S, maxlen, b"%d" % item.rank, payload, mark[3])
            batch.events.append(event)
        else:
            batch.keys += (stream, *mark[:3])
            batch.args += (_E, maxlen, payload, mark[3])
            batch.events.append(event)
        if stream is not inbox:
            # Conversation and BSUID keys are in the inbox's slot; a history event's own
            # stream is elsewhere. (Only account events carry A, which acts on the outcome
            # of the event just before it: theirs is the inbox, the same call.)
            batch = calls.batch(inbox)
        self._add_inbox_ops(batch, channel, inbox, item)

    def _add_inbox_ops(self, batch: Batch, channel: str, inbox: str, item: Routed) -> None:
        """What an event changes beside its stream entry, in keys of the inbox's slot."""
        event = item.event
        if type(event) is EchoEvent and event.conversation_id is not None:
            self._add_pause(batch, inbox, event)
        if type(event) is AccountEvent and event.connected is not None:
            batch.keys.append(keys.account_state(inbox, channel, event.account_id))
            batch.args += (_A, b"%d" % event.connected, event.event)
        if item.alive:  # the owner's own app showed a sign of life (router/upkeep.py)
            batch.keys.append(keys.account_state(inbox, channel, event.account_id))
            batch.args += (_L, b"%d" % event.timestamp)
        if item.verdict is not None and type(event) is StatusEvent and event.contact_id:
            self._add_verdict(batch, channel, inbox, event, item.verdict)
        if type(event) is MemberEvent and item.live and event.conversation_id is not None:
            # The contact unblocked the bot (Telegram): its own act ends a 403 opt-out.
            batch.keys.append(keys.conversation(inbox, event.conversation_id))
            batch.args.append(_O)
        user_id = getattr(event, "user_id", None)
        if user_id and event.contact_id and event.contact_id != user_id:
            batch.keys.append(keys.bsuid(inbox, event.account_id, user_id))
            batch.args += (_U, event.contact_id, self._contact_map_ttl)

    def _add_verdict(
        self, batch: Batch, channel: str, inbox: str, event: StatusEvent, verdict: str
    ) -> None:
        """A failed status whose error leaves a mark (an opt-out, a hold, a closed window, a
        country block, a halt): the same mark an answer with that code leaves (V)."""
        found = effects.mark(
            self._policy, verdict, inbox, channel, event.account_id, event.contact_id or ""
        )
        if found is None:
            return
        code = event.errors[0].code if event.errors else 0
        batch.keys.append(found.key)
        batch.args += (
            _V,
            verdict,
            b"%d" % code,
            b"%d" % event.timestamp,
            b"%d" % found.hold_s,
            self._conversation_ttl if found.conversation else b"0",
        )
        if verdict == "halt":
            log.error(
                "account %s halted by provider error %s in a failed status of message %s",
                event.account_id,
                code,
                event.message_id,
                extra={"account": event.account_id},
            )

    def _add_live(
        self,
        batch: Batch,
        event: MessageEvent,
        inbox: str,
        mark: keys.Mark,
        maxlen: bytes,
        payload: bytes,
        authored: bool,
    ) -> None:
        """A message the contact just wrote: window, opt-out, AI-pause flag, send budget,
        business route; a live event nobody wrote (`authored` false) gets the flag only."""
        assert payload.endswith(_NOT_PAUSED), "publish.lua flips the trailing ai_paused"
        assert event.conversation_id is not None
        batch.keys += (inbox, *mark[:3], keys.conversation(inbox, event.conversation_id))
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
            excerpt(event.text, event.type).encode() if self._excerpts else b"",
            mark[3],
        )
        batch.events.append(event)

    def _add_charge(
        self, batch: Batch, channel: str, streams: _Streams, event: MessageEvent
    ) -> None:
        """Where the provider counts inbound messages against the account's throughput
        (`Channel.charges_inbound`), they take a slot of its limiter too."""
        if channel not in self._charged:
            return
        account = self._directory.get(channel, event.account_id)
        if account is None or not adapter_of(account).charges_inbound:
            return
        name = (channel, event.account_id)
        limiter = streams.limiters.get(name)
        if limiter is None:  # one per configured number: the cache stays small
            limiter = keys.limiter(streams.inbox, channel, event.account_id)
            streams.limiters[name] = limiter
        interval = self._intervals.get(name)
        if interval is None:
            pace = adapter_of(account).account_pace(account, self._guard_ms)
            interval = self._intervals[name] = b"%d" % pace.interval_us
        batch.keys.append(limiter)
        batch.args += (_C, interval)

    def _add_rename(
        self, batch: Batch, inbox: str, event: MessageEvent, original: str, new: str
    ) -> None:
        """The contact's number changed: its conversation follows it (see publish.lua N)."""
        prefix = f"{event.channel}:{event.account_id}:"
        batch.keys += (
            keys.conversation(inbox, prefix + c) for c in (original, event.contact_id or "", new)
        )
        batch.args += (_N, original, new, self._conversation_ttl)

    def _add_pause(self, batch: Batch, inbox: str, event: EchoEvent) -> None:
        """A person answered from the WhatsApp Business app: the AI steps back (CONTRACT §3)."""
        takeover = self._takeover_s
        if takeover <= 0 or event.conversation_id is None:
            return
        # Counted from the echo's time, but never from later than now: an echo stamped ahead
        # of this clock pauses the AI for `takeover` seconds, not longer.
        start = min(event.timestamp, int(time.time()))
        batch.keys.append(keys.conversation(inbox, event.conversation_id))
        batch.args += (_H, b"%d" % (start + takeover), self._conversation_ttl)
