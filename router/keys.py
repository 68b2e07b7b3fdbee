"""Every Redis key the gateway writes, with its lifetime. Nothing outside the `gw:` prefix.

Streams (names fixed by CONTRACT.md §2), trimmed with XADD MAXLEN ~ (router.*_maxlen):
    gw:inbox:<assistant>     live events and delivery results for one assistant
    gw:history:<assistant>   coexistence history sync, read at the assistant's own pace
    gw:outbox                commands from assistant backends (consumer group `gateway`); the
                             shared outbox, for one-tenant setups (`outbound.shared_outbox`)
    gw:outbox:<assistant>    one assistant's commands (group `gateway`): only its own
                             conversations are sent, others answered rejected/invalid_command
    gw:deadletter            what could not be understood or routed
    gw:notifications         escalation notices (handoff, echo takeover, escalate, reminder),
                             read by each gateway process's notifier (consumer group
                             `notifier`) and by anyone else; notifications.maxlen

State keys belong to one assistant's Redis Cluster slot: their hash tag is the name of a
stream (`{gw:inbox:support}`), so every script touches one slot: publishing an event with
its dedup mark, or deciding a command's policy and rate-limit slots.

    gw:mk:{<stream>}:<bucket>:<shard>
        dedup marks, as fields of hashes: field = 12 bytes of BLAKE2b of
        "<channel>:<account>:<identity>", value "1" or the highest status rank published for
        a message. bucket = unix time // router.dedup_ttl_seconds (the TTL, at least 48 h),
        by Redis's clock; shard = the digest's first 4 bytes mod router.dedup_shards. An
        event is a duplicate when its field is in its shard's hash of the current bucket or
        the one before; the hash of bucket b expires at the end of bucket b + 1, so a mark
        lives between one and two TTLs. The number of keys stays at most
        2 x dedup_shards per stream, whatever the rate: Redis never re-hashes a keyspace of
        millions of marks (one key per mark made it stall at each doubling).
    gw:dd:{<stream>}:<channel>:<account>:<identity>
        a dedup mark as gateways before the bucketed model wrote it (one key per event, TTL
        router.dedup_ttl_seconds); `gateway dedup migrate` moves them into gw:mk:*.
    gw:sent:{<inbox>}:<channel>:<account>:<message_id>
        the command_id of a message the gateway sent, where the provider's statuses do not
        name it (`Channel.statuses_name_command` false: Twilio, Messenger, Instagram).
        TTL router.dedup_ttl_seconds.
    gw:cv:{<inbox>}:<conversation_id>
        hash, one per conversation: t = provider time of the contact's latest live message,
        m = its message id, p = AI paused until (unix s, set by echoes), h = "1" while a
        handoff holds the conversation, oo = opt-out code (131050, or Telegram 403);
        with `notifications:` configured also x = up to 200 characters of the latest
        message's text (what a notice quotes; never logged) and q = the end of the echo
        pause a takeover notice was sent for (a later echo inside it notifies nothing).
        Marks a provider's answer or failed status leaves (router/effects.py): mh =
        "<until>:<code>" marketing templates held (131049), uh = "<until>:<code>" every
        command held (131026; a message from the contact clears it), wc = unix s the
        provider said the window was closed (131047; a later message reopens it).
        TTL router.conversation_ttl_seconds, renewed by every write.
    gw:uid:{<inbox>}:<account>:<bsuid>
        the wa_id a business-scoped user id was last seen with.
        TTL router.contact_map_ttl_seconds, refreshed each time both are seen together.
    gw:rl:{<inbox>}:<channel>:<account>[:<contact>]
        rate limiter state (GCRA theoretical arrival time, µs of Redis time) for a number or
        bot, and for a (number, contact) pair or a Telegram chat. Expires once idle.
    gw:log:{<inbox>}:<channel>:<account>
        sorted set of the number's (or bot's) dispatch times in the last second (µs of Redis
        time): the hard cap behind the limiter. Expires once idle.
    gw:cb:{<inbox>}:<account>:<country>
        a 130497 seen for this number and country: business-initiated sends are refused.
        TTL policy.country_block_seconds.
    gw:acct:{<inbox>}:<channel>:<account>
        hash: halt = provider code that stopped sending (credentials, account), cleared at
        startup; disc = the account event that disconnected the number. For an account
        whose owner's own app must stay alive (`Account.app_idle`: coexistence numbers):
        seen = unix s of the app's latest sign of life (an echo, a contact sync, the
        onboarding; publish.lua `L`), or of the first check that found none; warned = the
        `seen` whose silence was warned of (router/upkeep.py); sync:<kind> = the last
        `gateway accounts sync` request of that kind (JSON: at, outcome, request_id,
        code, detail). No TTL.
    gw:cmd:{<inbox>}:<command_id>
        hash, a command's exactly-once record: s = waiting | sending | done, e = first outbox
        entry id, o = owner (worker), l = lease end (µs), r = the delivery result (JSON).
        TTL router.dedup_ttl_seconds.
    gw:paused:{<inbox>}
        sorted set of the assistant's paused conversations (member: conversation id, score:
        unix s of the last human activity: the handoff, an echo, a human's command), kept
        only with notifications.reminder_after_seconds set. The notifier takes a member out
        when it sends its reminder, or finds it no longer paused; handback takes it out.
        One per assistant, in the inbox's slot: a cluster spreads it with the assistant's
        other state, and the scripts that read it also read the conversation. No TTL: its
        size is the number of paused conversations.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Final

INBOX = "gw:inbox:"
HISTORY = "gw:history:"
OUTBOX = "gw:outbox"
OUTBOXES = "gw:outbox:"
OUTBOX_GROUP = "gateway"
DEADLETTER = "gw:deadletter"
MARKS = "gw:mk:"
NOTIFICATIONS = "gw:notifications"
NOTIFIER_GROUP = "notifier"

WINDOW_SECONDS = 24 * 3600

SEEN = "seen"
"""gw:acct:* field: unix s of the owner's app's latest sign of life."""
WARNED = "warned"
"""gw:acct:* field: the `seen` value whose stretch of silence has been warned of."""
SYNC = "sync:"
"""gw:acct:* field prefix: `sync:<kind>`, the last app data sync request of that kind."""


def inbox(assistant: str) -> str:
    return INBOX + assistant


def outbox(assistant: str) -> str:
    """One assistant's own outbox."""
    return OUTBOXES + assistant


def history(assistant: str) -> str:
    return HISTORY + assistant


def dedup(stream: str, channel: str, account: str, identity: str) -> str:
    """A mark as gateways before the bucketed model kept it (one key per event); read only
    by `gateway dedup migrate`."""
    return f"gw:dd:{{{stream}}}:{channel}:{account}:{identity}"


MARK_DIGEST_BYTES = 12
"""96 bits: marks of a stream collide with odds of about n² / 2⁹⁷ (10⁹ marks: 10⁻¹¹)."""


Mark = tuple[str, str, str, bytes]
"""Where one event's dedup mark lives: the hash of its shard in the buckets b-1, b, b+1 of
the caller's clock (publish.lua picks by Redis's own clock among them), and its field. A
plain tuple: built once per event on the hot path."""


def mark(
    stream: str, channel: str, account: str, identity: str, ttl_s: int, shards: int, now_s: float
) -> Mark:
    """The mark of `identity` (an event of `account` on `channel`) in `stream`."""
    digest = blake2b(f"{channel}:{account}:{identity}".encode(), digest_size=MARK_DIGEST_BYTES)
    field = digest.digest()
    if shards > len(_SHARDS):  # once per process, up to router.dedup_shards
        _SHARDS.extend(str(n) for n in range(len(_SHARDS), shards))
    shard = _SHARDS[int.from_bytes(field[:4], "big") % shards]
    bucket = int(now_s // ttl_s)
    prefixes = _bucket_prefixes.get(stream)
    if prefixes is None or prefixes[0] != bucket:
        # On the hot path: the three prefixes of a stream change once a bucket (48 h).
        base = f"{MARKS}{{{stream}}}:"
        prefixes = (bucket, f"{base}{bucket - 1}:", f"{base}{bucket}:", f"{base}{bucket + 1}:")
        _bucket_prefixes[stream] = prefixes
    return (prefixes[1] + shard, prefixes[2] + shard, prefixes[3] + shard, field)


_SHARDS: Final[list[str]] = []
"""Shard key suffixes, made on first need up to the shard count asked for (the default 1024:
all 65,536 up front would cost each process 4 MB)."""
_bucket_prefixes: dict[str, tuple[int, str, str, str]] = {}
"""stream → (bucket, its three buckets' key prefixes), for the bucket last asked for."""


def sent(inbox_stream: str, channel: str, account: str, message_id: str) -> str:
    """The command_id of a message the gateway sent, for statuses that do not name it."""
    return f"gw:sent:{{{inbox_stream}}}:{channel}:{account}:{message_id}"


def conversation(inbox_stream: str, conversation_id: str) -> str:
    return f"gw:cv:{{{inbox_stream}}}:{conversation_id}"


def bsuid(inbox_stream: str, account: str, user_id: str) -> str:
    return f"gw:uid:{{{inbox_stream}}}:{account}:{user_id}"


def limiter(inbox_stream: str, channel: str, account: str, contact: str | None = None) -> str:
    tail = f":{contact}" if contact is not None else ""
    return f"gw:rl:{{{inbox_stream}}}:{channel}:{account}{tail}"


def dispatch_log(inbox_stream: str, channel: str, account: str) -> str:
    return f"gw:log:{{{inbox_stream}}}:{channel}:{account}"


def country_block(inbox_stream: str, account: str, country: str) -> str:
    return f"gw:cb:{{{inbox_stream}}}:{account}:{country}"


def account_state(inbox_stream: str, channel: str, account: str) -> str:
    return f"gw:acct:{{{inbox_stream}}}:{channel}:{account}"


def command(inbox_stream: str, command_id: str) -> str:
    return f"gw:cmd:{{{inbox_stream}}}:{command_id}"


def paused(inbox_stream: str) -> str:
    """The assistant's paused conversations, by last human activity (reminders)."""
    return f"gw:paused:{{{inbox_stream}}}"
